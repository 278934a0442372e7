"""Streaming decoding: each utterance's features go through the encoder's ``streaming_forward`` chunk by chunk
(state carried between chunks) and greedy hypotheses are extended after every chunk, as a live recogniser would.
The files are those of :mod:`serac.decode.results` plus ``streaming-summary-<set>-<suffix>.txt``.

One stream at a time (batch 1): the per-chunk compute time is what one user's recogniser spends after each chunk
arrives. Definitions:

* chunk compute time: wall time of one ``streaming_greedy_search`` call (feature normalisation, encoder chunk,
  greedy search over its frames), over full-size chunks only (an utterance's shorter last chunk would pull the
  percentiles down); mean / p50 / p90 / p99 in ms.
* RTF: the summed compute time of every chunk (last ones included) / audio duration. Reading features from disk
  is not counted (``stats[wall_seconds]`` has the total).
* algorithmic latency: measured, not declared. When a chunk returns encoder frames ``i0..i1``, frame ``i0``
  covers input frames from ``subsampling_factor * i0``; the time between the start of that input frame and the
  end of the input received so far is its wait. The maximum over all chunks is reported (in ms of feature
  frames, without the fbank window). For serac's encoders the look-ahead lies inside the chunk (a chunk is a
  multiple of ``chunk_multiple`` > ``look_ahead``), so this equals the chunk duration; an encoder that held
  frames back for more right context would show it here.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from serac.data.tokenizer import Tokenizer
from serac.decode.job import load_model, open_cuts, set_threads
from serac.decode.naming import STREAMING_METHOD, format_ms, streaming_suffix
from serac.decode.results import merge_streaming_stats, result_path, write_streaming_results
from serac.decode.offline import check_one_supervision, write_conversation_hyps
from serac.decode.shards import shard_of, shard_paths, write_shard
from serac.multitalker.decode import ConversationHyp, channel_results, conversation_hyps
from serac.multitalker.training import num_output_channels
from serac.scoring.wer import Result
from serac.transducer.model import Transducer
from serac.transducer.search import streaming_greedy_search

DEFAULT_CHUNK_MS = 160.0


def resolve_chunk_frames(chunk_ms: Optional[float], chunk_frames: Optional[int], frame_shift_s: float,
                         chunk_multiple: int, where: str) -> int:
    """The chunk in feature frames, checked against the encoder: a positive multiple of ``chunk_multiple``.
    ``where`` names the model (and cut) in the error message."""
    if chunk_frames is None:
        ms = DEFAULT_CHUNK_MS if chunk_ms is None else chunk_ms
        frames = ms / (1000.0 * frame_shift_s)
        if ms <= 0 or abs(frames - round(frames)) > 1e-6:
            raise ValueError(f"{where}: --chunk-ms {format_ms(ms)} is not a positive whole number of "
                             f"{format_ms(1000 * frame_shift_s)} ms feature frames")
        chunk_frames = int(round(frames))
    if chunk_frames <= 0 or chunk_frames % chunk_multiple:
        raise ValueError(f"{where}: a chunk of {chunk_frames} feature frames "
                         f"({format_ms(chunk_frames * frame_shift_s * 1000)} ms) is not a positive multiple of the "
                         f"encoder's chunk_multiple ({chunk_multiple} frames = "
                         f"{format_ms(chunk_multiple * frame_shift_s * 1000)} ms)")
    return chunk_frames


@dataclass
class StreamedUtterance:
    tokens: List[int]  # row 0's (the utterance's, for a single-talker model)
    rows: List[List[int]] = field(default_factory=list)  # every output row's tokens (C rows for an STS model)
    frames: List[List[int]] = field(default_factory=list)  # each row's tokens' emission frames
    full_chunk_seconds: List[float] = field(default_factory=list)  # compute time of each full-size chunk
    compute_seconds: float = 0.0  # every chunk, the last partial one included
    max_wait_frames: int = 0  # algorithmic latency in feature frames (see the module docstring)


@torch.no_grad()
def stream_utterance(model: Transducer, feats: torch.Tensor, chunk_frames: int) -> StreamedUtterance:
    """Decode one utterance's features (T, F) chunk by chunk. The tail that does not fill a chunk goes in as the
    stream's final chunk, cut to a multiple of the subsampling factor as ``forward`` cuts it, so the transcript
    equals offline greedy search on ``model.encode`` of the whole utterance (up to float rounding)."""
    encoder = model.encoder
    factor = encoder.subsampling_factor
    total = feats.size(0)
    usable = total - total % factor
    x = feats.unsqueeze(0)
    out = StreamedUtterance(tokens=[])
    state = None
    start = 0
    while start < usable:
        end = min(start + chunk_frames, usable)
        final = end - start < chunk_frames
        emitted_before = state.num_encoder_frames if state is not None else 0
        t0 = time.perf_counter()
        state = streaming_greedy_search(model, x[:, start:end], state, final=final)
        elapsed = time.perf_counter() - t0
        out.compute_seconds += elapsed
        if not final:
            out.full_chunk_seconds.append(elapsed)
        if state.num_encoder_frames > emitted_before:
            out.max_wait_frames = max(out.max_wait_frames, end - factor * emitted_before)
        start = end
    if state is not None:
        out.tokens, out.rows, out.frames = state.hyps[0], state.hyps, state.frames
    else:
        rows = int(getattr(encoder, "num_output_channels", 1))
        out.rows, out.frames = [[] for _ in range(rows)], [[] for _ in range(rows)]
    return out


def decode_cuts_streaming(model: Transducer, tokenizer: Tokenizer, cuts, cuts_path: str, chunk_frames: int,
                          conversations: Optional[List[ConversationHyp]] = None, as_conversations: bool = False
                          ) -> Tuple[List[Result], Dict[str, Any]]:
    """Stream every cut (batch 1). Returns (results, raw stats with the per-chunk times in ms). A multi-channel
    (STS) model's results are per channel, and ``conversations`` receives each conversation's channel tokens and
    emission times (serac/multitalker/decode.py); with ``as_conversations`` a single-talker model's stream is
    such a conversation's one channel (serac.decode.offline.decode_cuts)."""
    num_features = int(model.feat_mean.numel())
    channels = num_output_channels(model)
    by_conversation = channels > 1 or as_conversations
    results = []
    chunk_ms_all: List[float] = []
    audio_s = compute_s = 0.0
    max_wait = 0
    t_start = time.time()
    for cut in cuts:
        if not cut.has_features:
            raise ValueError(f"{cuts_path}: cut {cut.id} has no features (did the fbank stage run?)")
        if not cut.supervisions:
            raise ValueError(f"{cuts_path}: cut {cut.id} has no supervision (no reference text)")
        if not by_conversation:
            check_one_supervision(cut, f"{cuts_path}: ")
        feats = torch.from_numpy(cut.load_features())
        if feats.ndim != 2 or feats.size(1) != num_features:
            raise ValueError(f"{cuts_path}: cut {cut.id} has features of shape {tuple(feats.shape)}; the model "
                             f"expects (frames, {num_features})")
        streamed = stream_utterance(model, feats, chunk_frames)
        if by_conversation:
            conv = conversation_hyps([cut.id], streamed.rows, streamed.frames, channels,
                                     int(model.encoder.subsampling_factor), float(cut.frame_shift))[0]
            results.extend(channel_results(cut, conv, tokenizer))
            if conversations is not None:
                conversations.append(conv)
        else:
            results.append((cut.id, (cut.supervisions[0].text or "").split(),
                            tokenizer.decode(streamed.tokens).split()))
        chunk_ms_all.extend(1000.0 * s for s in streamed.full_chunk_seconds)
        compute_s += streamed.compute_seconds
        audio_s += cut.duration
        max_wait = max(max_wait, streamed.max_wait_frames)
    return results, {"audio_seconds": audio_s, "compute_seconds": compute_s, "wall_seconds": time.time() - t_start,
                     "max_wait_frames": max_wait, "chunk_compute_ms_all": chunk_ms_all}


def decode_set_streaming(exp_dir: str, lang_dir: str, cuts_path: str, set_name: str, epoch: int, avg: int = 1,
                         chunk_ms: Optional[float] = None, chunk_frames: Optional[int] = None,
                         out_dir: Optional[str] = None, num_shards: int = 1, shard: int = 1,
                         num_threads: int = 1, as_conversations: bool = False) -> Path:
    """Stream ``cuts_path`` (or shard ``shard`` of ``num_shards``) through the model of ``exp_dir``; returns the
    recogs file written. ``as_conversations``: a single-talker model streams each conversation cut as one channel.
    A chunk the encoder cannot take, or bad input, raises ValueError naming it."""
    set_threads(num_threads)
    out = Path(out_dir) if out_dir else Path(exp_dir) / "decode" / set_name
    cuts, first = open_cuts(cuts_path)
    model, tokenizer, _ = load_model(Path(exp_dir), Path(lang_dir), epoch, avg, first.num_features)
    if getattr(model, "cohort_key", None) is not None:
        raise NotImplementedError(f"{exp_dir}: streaming decoding of a model with a cohort embedding is not "
                                  f"implemented (decode it offline: serac.bin.decode)")
    encoder = model.encoder
    frame_shift = float(first.frame_shift)
    chunk_frames = resolve_chunk_frames(chunk_ms, chunk_frames, frame_shift, encoder.chunk_multiple,
                                        f"{exp_dir} ({type(encoder).__name__})")
    chunk_ms = chunk_frames * frame_shift * 1000.0
    suffix = streaming_suffix(chunk_ms, epoch, avg)
    cuts = shard_of(cuts, shard, num_shards)
    logging.info(f"streaming {cuts_path} through {type(encoder).__name__} in chunks of {chunk_frames} frames "
                 f"({format_ms(chunk_ms)} ms; chunk_multiple {encoder.chunk_multiple}, look_ahead "
                 f"{encoder.look_ahead} frames), {num_threads} thread(s)")
    convs: List[ConversationHyp] = []
    results, raw = decode_cuts_streaming(model, tokenizer, cuts, cuts_path, chunk_frames, conversations=convs,
                                         as_conversations=as_conversations)
    stats = {"method": STREAMING_METHOD, "encoder": getattr(encoder, "registry_name", type(encoder).__name__),
             "epoch": epoch, "avg": avg, "num_threads": num_threads, "num_utts": len(results),
             "chunk_frames": chunk_frames, "chunk_ms": chunk_ms, "frame_shift_ms": frame_shift * 1000.0,
             "chunk_multiple": encoder.chunk_multiple, "look_ahead_ms": encoder.look_ahead * frame_shift * 1000.0,
             "audio_seconds": raw["audio_seconds"], "compute_seconds": raw["compute_seconds"],
             "wall_seconds": raw["wall_seconds"], "algorithmic_latency_ms": raw["max_wait_frames"] * frame_shift * 1000.0,
             "chunk_compute_ms_all": raw["chunk_compute_ms_all"]}
    write_conversation_hyps(out, set_name, suffix, shard, num_shards, convs, tokenizer, stats)
    if num_shards > 1:
        write_shard(out, set_name, suffix, shard, num_shards, results, stats)
        return shard_paths(out, set_name, suffix, shard)["recogs"]
    write_streaming_results(out, set_name, suffix, results, merge_streaming_stats([stats]))
    return result_path(out, "recogs", set_name, suffix)
