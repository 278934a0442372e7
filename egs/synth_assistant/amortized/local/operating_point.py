#!/usr/bin/env python3
"""The amortized recipe's choices made on **dev** (test is touched once, by the chosen models):

* ``select``: the operating point, the amortized model with the fewest executed encoder FLOPs whose dev WER is
  within ``--max-rel-wer`` percent (relative) of the reference's dev WER (none: the one with the smallest WER);
* ``static-skip``: the static module-drop baseline of a gated model, its modules' majority decisions on dev: a
  module that runs on fewer than half of the dev frames is dropped on every frame (``static_skip`` of the
  encoder), the others run on every frame, so its FLOPs match the gated model's to the extent that the gates'
  decisions are static.

Also the measures ``local/write_results.py`` reports from a decode's ``compute-<set>-<suffix>.tsv``: each module's
on-fraction and the per-frame-decision share (the share of frame decisions that differ from their module's
majority decision: 0 for static pruning, at most 0.5).

Usage:
  local/operating_point.py select --reference dense-ft --suffix greedy_search-epoch-6-avg-1 \
      --model amortized-cw0.2=exp/amortized-cw0.2 --model amortized-cw0.4=exp/amortized-cw0.4   # prints a name
  local/operating_point.py static-skip exp/amortized-cw0.4/decode/dev/compute-dev-greedy_search-epoch-6-avg-1.tsv
      # prints e.g. [mha1,mha2,ffn2]
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from serac.decode.results import read_summary_wer


def read_compute(path: Path) -> Dict[str, Dict]:
    """cut_id -> {frames, flops, dense_flops, mha (per block frames on) or None, ffn (likewise) or None}."""
    path = Path(path)
    out = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            row = {"frames": int(r["frames"]), "flops": float(r["flops"]), "dense_flops": float(r["dense_flops"]),
                   "mha": None, "ffn": None}
            if r.get("mha_frames") is not None:
                row["mha"] = [int(x) for x in r["mha_frames"].split()]
                row["ffn"] = [int(x) for x in r["ffn_frames"].split()]
            out[r["cut_id"]] = row
    if not out:
        raise ValueError(f"{path}: no utterances")
    return out


def module_fractions(rows: Dict[str, Dict], cuts: Optional[Sequence[str]] = None) -> Optional[List[List[float]]]:
    """Per block [MHA, FFN]: the share of the valid frames (of ``cuts``, default all) the module ran on; None
    when the decode did not record module frames."""
    ids = list(rows) if cuts is None else list(cuts)
    if not ids or rows[ids[0]]["mha"] is None:
        return None
    frames = sum(rows[c]["frames"] for c in ids)
    blocks = len(rows[ids[0]]["mha"])
    return [[sum(rows[c][m][b] for c in ids) / max(frames, 1) for m in ("mha", "ffn")] for b in range(blocks)]


def per_frame_decision_share(rows: Dict[str, Dict], majority: Optional[List[List[float]]] = None,
                             cuts: Optional[Sequence[str]] = None) -> Optional[float]:
    """The share of (frame, module) decisions that differ from the module's majority decision, over the valid
    frames of ``cuts`` (default all). The majority is taken from ``majority`` (module fractions, e.g. of the
    whole set) or else from the same frames. 0: static (every frame decided alike); 0.5 at most."""
    own = module_fractions(rows, cuts)
    if own is None:
        return None
    ref = own if majority is None else majority
    # a module whose majority is "on" differs on its off frames, one whose majority is "off" on its on frames
    differ = [(1 - f) if r >= 0.5 else f for fr, rr in zip(own, ref) for f, r in zip(fr, rr)]
    return sum(differ) / len(differ)


def static_skip(rows: Dict[str, Dict]) -> List[str]:
    """The modules that run on fewer than half of the frames: ``["mha1", "ffn2", ...]`` (blocks from 1)."""
    fractions = module_fractions(rows)
    if fractions is None:
        raise ValueError("the decode recorded no module frames (mha_frames / ffn_frames): not a gated model, or "
                         "decoded before serac recorded them")
    return [f"{m}{b + 1}" for m, i in (("mha", 0), ("ffn", 1)) for b, fr in enumerate(fractions) if fr[i] < 0.5]


def select(models: Dict[str, Path], reference: Path, suffix: str, set_name: str, max_rel_wer: float) -> str:
    """The gated model with the fewest executed FLOPs on ``set_name`` within ``max_rel_wer`` % relative WER of
    the reference there; none within: the one with the lowest WER."""
    def wer(exp: Path) -> float:
        return read_summary_wer(exp / "decode" / set_name / f"wer-summary-{set_name}-{suffix}.txt")

    def fraction(exp: Path) -> float:
        rows = read_compute(exp / "decode" / set_name / f"compute-{set_name}-{suffix}.tsv")
        return sum(r["flops"] for r in rows.values()) / sum(r["dense_flops"] for r in rows.values())

    ref = wer(reference)
    scored = {name: (100 * (wer(exp) / ref - 1) if ref > 0 else 0.0, fraction(exp), wer(exp))
              for name, exp in models.items()}
    within = [n for n, (rel, _, _) in scored.items() if rel <= max_rel_wer]
    if within:
        return min(within, key=lambda n: (scored[n][1], scored[n][0]))
    return min(scored, key=lambda n: (scored[n][2], scored[n][1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("select")
    s.add_argument("--model", action="append", required=True, metavar="NAME=EXP_DIR")
    s.add_argument("--reference", required=True, help="EXP_DIR of the dense reference")
    s.add_argument("--suffix", required=True)
    s.add_argument("--set", default="dev")
    s.add_argument("--max-rel-wer", type=float, default=5.0)
    k = sub.add_parser("static-skip")
    k.add_argument("compute_tsv")
    args = p.parse_args()
    if args.command == "select":
        models = {}
        for spec in args.model:
            name, sep, exp = spec.partition("=")
            if not sep:
                p.error(f"--model {spec}: expected NAME=EXP_DIR")
            models[name] = Path(exp)
        print(select(models, Path(args.reference), args.suffix, args.set, args.max_rel_wer))
    else:
        print("[" + ",".join(static_skip(read_compute(Path(args.compute_tsv)))) + "]")


if __name__ == "__main__":
    main()
