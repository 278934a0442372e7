#!/usr/bin/env python3
"""Utterance embeddings of a cut manifest, from a serac speaker model (stored fbank features) or from an audio
extractor of serac.speaker.embeddings (resemblyzer, fbank-stats: from the cuts' audio at 16 kHz).

Usage:
  python -m serac.bin.sv_embed --model exp/pw/model.pt --cuts data/fbank/synth_cuts_test.jsonl.gz \
      --out exp/pw/embeddings/test.npz
  python -m serac.bin.sv_embed --extractor resemblyzer --cuts data/fbank/alnum_cuts_all.jsonl.gz \
      --out exp/resemblyzer/embeddings/alnum.npz
  # the .npz holds ids (utterance = supervision ids, as in the trial lists) and vectors (one unit-length row each); skips when --out exists
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from lhotse import load_manifest_lazy

from serac.speaker.trials import utterance_id
from serac.utils import atomic_path, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--model", help="a model.pt written by serac.bin.train_sv")
    g.add_argument("--extractor", choices=["resemblyzer", "fbank-stats"])
    p.add_argument("--cuts", required=True, help="comma-separated cut manifests")
    p.add_argument("--out", required=True)
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--force", action="store_true")
    return p


def _cuts(paths: str):
    for path in paths.split(","):
        for cut in load_manifest_lazy(path):
            yield path, cut


def main() -> None:
    args = get_parser().parse_args()
    setup_logging()
    torch.set_num_threads(args.num_threads)
    out = Path(args.out)
    if out.is_file() and not args.force:
        logging.info(f"{out} exists; skipping")
        return
    ids, vectors = [], []
    if args.model:
        from serac.speaker.embeddings import SeracExtractor

        ex = SeracExtractor(args.model)
        for path, cut in _cuts(args.cuts):
            if not cut.has_features:
                raise ValueError(f"{path}: cut {cut.id} has no features (run the fbank stage first)")
            if cut.features.sampling_rate != ex.sampling_rate:
                source = cut.recording.sources[0].source if cut.has_recording else cut.id
                raise ValueError(f"{path}: cut {cut.id} ({source}): features at {cut.features.sampling_rate} "
                                 f"Hz, the model was trained at {ex.sampling_rate} Hz")
            ids.append(utterance_id(cut))
            vectors.append(ex.embed_features(cut.load_features()))
    else:
        from serac.speaker.embeddings import cut_audio, get_extractor

        ex = get_extractor(args.extractor)
        for _, cut in _cuts(args.cuts):
            ids.append(utterance_id(cut))
            v = ex.embed_utterance(cut_audio(cut), 16000)
            vectors.append(v / max(np.linalg.norm(v), 1e-12))
    if not ids:
        raise ValueError(f"{args.cuts}: no cuts to embed")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, ids=np.array(ids), vectors=np.stack(vectors).astype(np.float32))
    logging.info(f"wrote {len(ids)} embeddings ({ex.name}) to {out}")


if __name__ == "__main__":
    main()
