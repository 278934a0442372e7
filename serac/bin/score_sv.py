#!/usr/bin/env python3
"""Score a trial list with cosine similarity of utterance embeddings: EER and minDCF overall and per cohort
(the trial list's attribute columns), gender gap, std across cohorts (serac/speaker/metrics.py).

Usage:
  python -m serac.bin.score_sv --trials data/trials/synth.tsv --embeddings exp/pw/embeddings/synth.npz \
      --out-dir exp/pw/score/synth
  # writes scores.tsv (label enrol test score) and metrics.json
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from serac.speaker.metrics import P_TARGET, format_percent, sv_report
from serac.speaker.trials import read_trials
from serac.utils import atomic_write_text, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", required=True)
    p.add_argument("--embeddings", required=True, help=".npz from serac.bin.sv_embed")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--p-target", type=float, default=P_TARGET)
    return p


def main() -> None:
    args = get_parser().parse_args()
    setup_logging()
    trials = read_trials(args.trials)
    data = np.load(args.embeddings)
    index = {str(u): i for i, u in enumerate(data["ids"])}
    vectors = data["vectors"].astype(np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    missing = sorted({u for t in trials for u in (t.enrol, t.test) if u not in index})
    if missing:
        raise ValueError(f"{args.embeddings}: no embedding for {len(missing)} trial utterances of {args.trials}, "
                         f"e.g. {missing[0]}")
    scores = np.array([float(vectors[index[t.enrol]] @ vectors[index[t.test]]) for t in trials])
    labels = [t.target for t in trials]
    keys = list(trials[0].attributes)
    report = sv_report(scores, labels, {k: [t.attributes.get(k) for t in trials] for k in keys}, args.p_target)
    report["trials"] = str(args.trials)
    report["embeddings"] = str(args.embeddings)
    out = Path(args.out_dir)
    atomic_write_text(out / "scores.tsv", "".join(f"{int(t.target)}\t{t.enrol}\t{t.test}\t{s:.6f}\n"
                                                  for t, s in zip(trials, scores)))
    atomic_write_text(out / "metrics.json", json.dumps(report, indent=1) + "\n")
    o = report["overall"]
    logging.info(f"{args.trials}: EER {format_percent(o['eer'])}% minDCF {o['min_dcf']:.3f} "
                 f"({o['num_target']} target, {o['num_nontarget']} non-target trials) -> {out}/metrics.json")


if __name__ == "__main__":
    main()
