"""Decoding in shards (``steps/decode.sh --nj N`` runs N jobs as a job array) and merging them into the files one
job writes. Shard J of N holds every N-th cut in id order; a shard writes ``recogs-<set>-<suffix>.shard-J.txt``
and ``stats-<set>-<suffix>.shard-J.json``, which :func:`merge_shards` turns into the whole decode's files (the
recogs are sorted by cut id, so they do not depend on N)."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from serac.decode.results import merge_streaming_stats, write_results, write_streaming_results
from serac.scoring.wer import Result, load_transcripts, store_transcripts
from serac.utils import atomic_write_text


def shard_of(cuts, shard: int, num_shards: int):
    """Shard ``shard`` (1-based) of ``num_shards``: every num_shards-th cut in id order."""
    if not 1 <= shard <= num_shards:
        raise ValueError(f"shard {shard} must be in 1..{num_shards}")
    if num_shards <= 1:
        return cuts
    ids = sorted(c.id for c in cuts)
    mine = set(ids[shard - 1 :: num_shards])
    return cuts.filter(lambda c: c.id in mine).to_eager()


def shard_paths(out_dir: Path, set_name: str, suffix: str, shard: int) -> Dict[str, Path]:
    out_dir = Path(out_dir)
    return {"recogs": out_dir / f"recogs-{set_name}-{suffix}.shard-{shard}.txt",
            "stats": out_dir / f"stats-{set_name}-{suffix}.shard-{shard}.json"}


def hyps_path(out_dir: Path, set_name: str, suffix: str, shard: Optional[int] = None) -> Path:
    """A multi-talker decode's per-conversation hypotheses (serac/multitalker/decode.py), or one shard's."""
    return Path(out_dir) / f"hyps-{set_name}-{suffix}{f'.shard-{shard}' if shard else ''}.jsonl"


def write_shard(out_dir: Path, set_name: str, suffix: str, shard: int, num_shards: int,
                results: Sequence[Result], stats: Dict[str, Any]) -> None:
    """The files of one shard (merged later by :func:`merge_shards`)."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    paths = shard_paths(out_dir, set_name, suffix, shard)
    store_transcripts(paths["recogs"], results)
    atomic_write_text(paths["stats"], json.dumps(stats) + "\n")
    logging.info(f"shard {shard}/{num_shards}: {len(results)} utterances")


def merge_shards(out_dir: Path, set_name: str, suffix: str, num_shards: int) -> Dict[str, Any]:
    """Merge shards 1..num_shards into the files of one whole decode, then remove the shard files. Streaming
    shards (their stats carry the raw per-chunk times) also get the streaming summary."""
    out_dir = Path(out_dir)
    results: List[Result] = []
    shard_stats: List[Dict[str, Any]] = []
    for j in range(1, num_shards + 1):
        paths = shard_paths(out_dir, set_name, suffix, j)
        if not paths["recogs"].is_file():
            raise FileNotFoundError(f"shard {j} of {num_shards} missing: {paths['recogs']}")
        results.extend(load_transcripts(paths["recogs"]))
        shard_stats.append(json.loads(paths["stats"].read_text()))
    if "num_conversations" in shard_stats[-1]:  # a multi-talker decode counts conversations besides channel rows
        shard_stats[-1]["num_conversations"] = sum(s.get("num_conversations", 0) for s in shard_stats)
    if "chunk_compute_ms_all" in shard_stats[-1]:
        # streaming shards carry their raw per-chunk times: percentiles cannot be merged from per-shard ones
        stats = write_streaming_results(out_dir, set_name, suffix, results, merge_streaming_stats(shard_stats))
    else:
        stats = dict(shard_stats[-1])
        audio_s = sum(s["audio_seconds"] for s in shard_stats)
        dec_s = sum(s["decode_seconds"] for s in shard_stats)
        stats.update({"audio_seconds": audio_s, "decode_seconds": dec_s, "rtf": dec_s / max(audio_s, 1e-9),
                      "num_shards": num_shards})
        stats = write_results(out_dir, set_name, suffix, results, stats)
    hyps = [hyps_path(out_dir, set_name, suffix, j) for j in range(1, num_shards + 1)]
    if any(p.is_file() for p in hyps):  # a multi-talker decode's conversation hypotheses
        from serac.multitalker.decode import merge_hyps

        missing = [str(p) for p in hyps if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"hypothesis shards missing: {', '.join(missing)}")
        merge_hyps(hyps, hyps_path(out_dir, set_name, suffix))
        for p in hyps:
            p.unlink()
    for j in range(1, num_shards + 1):
        for path in shard_paths(out_dir, set_name, suffix, j).values():
            path.unlink()
    logging.info(f"merged {num_shards} shards, {len(results)} utterances")
    return stats
