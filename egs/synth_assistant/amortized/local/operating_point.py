#!/usr/bin/env python3
"""The amortized recipe's choices made on **dev** (test is touched once, by the chosen models):

* ``select``: the operating point, the gated model with the fewest executed encoder FLOPs (of the reference's, on
  the same dev utterances) whose dev WER is within ``--max-rel-wer`` percent (relative) of the reference's dev WER
  (none within: the one with the smallest dev WER);
* ``static-skip``: the static module-drop baseline of a gated model, its modules' majority decisions on dev: a
  module that runs on fewer than half of the dev frames is dropped on every frame (``static_skip`` of the
  encoder), the others run on every frame, so its FLOPs match the gated model's to the extent that the gates'
  decisions are static.

Also the measures ``local/write_results.py`` reports from a decode's ``compute-<set>-<suffix>.tsv``: each module's
on-fraction, the per-frame-decision share (the share of frame decisions that differ from their module's
majority decision: 0 for static pruning, at most 0.5) and its within-utterance part (decisions that differ from
the module's majority in the same utterance: what is decided frame by frame, not utterance by utterance).

A model is ``NAME=EXP_DIR[:EPOCH]``: its decodes are named by ``--suffix`` with the epoch replaced by EPOCH
(``greedy_search-epoch-6-avg-1`` -> ``greedy_search-epoch-12-avg-1`` for ``:12``), so models trained for different
numbers of epochs (joint training from scratch) sit in one comparison.

Usage:
  local/operating_point.py select --reference exp/dense-ft --suffix modified_beam_search-epoch-6-avg-1-beam-4 \
      --model amortized-cw0.2=exp/amortized-cw0.2 --model joint-cw0.4=exp/joint-cw0.4:18   # prints a name
  local/operating_point.py static-skip exp/amortized-cw0.4/decode/dev/compute-dev-modified_beam_search-epoch-6-avg-1-beam-4.tsv
      # prints e.g. [mha1,mha2,ffn2]
"""
from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from serac.decode.results import read_summary_wer, result_path


class Model(NamedTuple):
    """One trained model as the recipe names it: its exp dir and the suffix of its decodes."""
    name: str
    exp_dir: Path
    suffix: str

    def decode_file(self, set_name: str, kind: str, ext: str = "txt") -> Path:
        """``EXP_DIR/decode/<set>/<kind>-<set>-<suffix>.<ext>``; a clear error when it is missing."""
        path = result_path(self.exp_dir / "decode" / set_name, kind, set_name, self.suffix, ext)
        if not path.is_file():
            raise FileNotFoundError(f"{self.name}: {path} is missing (every model is decoded on dev and test with "
                                    f"{self.suffix}: run the recipe's decode stage)")
        return path


def model_suffix(suffix: str, epoch: Optional[int]) -> str:
    """``suffix`` with its ``epoch-<N>`` replaced by ``epoch-<epoch>`` (unchanged for None)."""
    if epoch is None:
        return suffix
    if not re.search(r"epoch-\d+", suffix):
        raise ValueError(f"suffix {suffix!r} names no epoch (epoch-<N>) to replace with {epoch}")
    return re.sub(r"epoch-\d+", f"epoch-{epoch}", suffix, count=1)


def parse_model(spec: str, suffix: str) -> Model:
    """``NAME=EXP_DIR[:EPOCH]`` -> :class:`Model` (the suffix's epoch replaced by EPOCH when given)."""
    name, sep, rest = spec.partition("=")
    if not sep or not name or not rest:
        raise ValueError(f"--model {spec}: expected NAME=EXP_DIR[:EPOCH]")
    exp_dir, colon, epoch = rest.rpartition(":")
    if not colon:
        return Model(name, Path(rest), suffix)
    if not epoch.isdigit() or not exp_dir:
        raise ValueError(f"--model {spec}: EPOCH after the last ':' must be a whole number")
    return Model(name, Path(exp_dir), model_suffix(suffix, int(epoch)))


def read_compute(path: Path) -> Dict[str, Dict]:
    """cut_id -> {frames, flops, dense_flops, mha (per block frames on) or None, ffn (likewise) or None}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: compute TSV missing")
    out: Dict[str, Dict] = {}
    blocks = None
    with open(path, newline="") as f:
        for line_no, r in enumerate(csv.DictReader(f, delimiter="\t"), start=2):
            where = f"{path}:{line_no} (cut {r.get('cut_id')})"
            try:
                row = {"frames": int(r["frames"]), "flops": float(r["flops"]),
                       "dense_flops": float(r["dense_flops"]), "mha": None, "ffn": None}
                if r.get("mha_frames") is not None:
                    row["mha"] = [int(x) for x in r["mha_frames"].split()]
                    row["ffn"] = [int(x) for x in r["ffn_frames"].split()]
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise ValueError(f"{where}: not a compute row ({e})") from None
            if row["mha"] is not None:
                if len(row["mha"]) != len(row["ffn"]) or (blocks is not None and len(row["mha"]) != blocks):
                    raise ValueError(f"{where}: mha_frames / ffn_frames have {len(row['mha'])} / {len(row['ffn'])} "
                                     f"blocks{'' if blocks is None else f', earlier rows {blocks}'}")
                blocks = len(row["mha"])
                if any(not 0 <= n <= row["frames"] for n in row["mha"] + row["ffn"]):
                    raise ValueError(f"{where}: module frames outside 0..{row['frames']} (the utterance's frames)")
            if r["cut_id"] in out:
                raise ValueError(f"{where}: duplicate cut id")
            out[r["cut_id"]] = row
    if not out:
        raise ValueError(f"{path}: no utterances")
    return out


def flop_fraction(rows: Mapping[str, Dict], ref_rows: Mapping[str, Dict], cuts: Optional[Sequence[str]] = None,
                  what: str = "decode") -> float:
    """Executed FLOPs of ``rows`` over those of ``ref_rows`` on the same utterances (``cuts``, default all)."""
    if set(rows) != set(ref_rows):
        raise ValueError(f"{what}: covers other utterances than the reference's decode "
                         f"({len(set(rows) ^ set(ref_rows))} differ)")
    ids = list(rows) if cuts is None else list(cuts)
    return sum(rows[c]["flops"] for c in ids) / sum(ref_rows[c]["flops"] for c in ids)


def module_fractions(rows: Mapping[str, Dict], cuts: Optional[Sequence[str]] = None) -> Optional[List[List[float]]]:
    """Per block [MHA, FFN]: the share of the valid frames (of ``cuts``, default all) the module ran on; None
    when the decode did not record module frames."""
    ids = list(rows) if cuts is None else list(cuts)
    if not ids or rows[ids[0]]["mha"] is None:
        return None
    frames = sum(rows[c]["frames"] for c in ids)
    blocks = len(rows[ids[0]]["mha"])
    return [[sum(rows[c][m][b] for c in ids) / max(frames, 1) for m in ("mha", "ffn")] for b in range(blocks)]


def module_differ_shares(own: List[List[float]], majority: Optional[List[List[float]]] = None) -> List[List[float]]:
    """Per block [MHA, FFN]: the share of frames whose decision differs from the module's majority decision
    (majority from ``majority``'s fractions, else from ``own``): a module whose majority is "on" differs on its
    off frames, one whose majority is "off" on its on frames."""
    ref = own if majority is None else majority
    return [[(1 - f) if r >= 0.5 else f for f, r in zip(fr, rr)] for fr, rr in zip(own, ref)]


def per_frame_decision_share(rows: Mapping[str, Dict], majority: Optional[List[List[float]]] = None,
                             cuts: Optional[Sequence[str]] = None) -> Optional[float]:
    """The share of (frame, module) decisions that differ from the module's majority decision, over the valid
    frames of ``cuts`` (default all). The majority is taken from ``majority`` (module fractions, e.g. of the
    whole set) or else from the same frames. 0: static (every frame decided alike); 0.5 at most."""
    own = module_fractions(rows, cuts)
    if own is None:
        return None
    differ = [d for block in module_differ_shares(own, majority) for d in block]
    return sum(differ) / len(differ)


def within_utterance_share(rows: Mapping[str, Dict], cuts: Optional[Sequence[str]] = None) -> Optional[float]:
    """The share of (frame, module) decisions that differ from the module's majority decision within the same
    utterance, over the valid frames of ``cuts`` (default all): the part of :func:`per_frame_decision_share` that
    is decided frame by frame (the rest is whole utterances deciding differently); never larger than it."""
    ids = list(rows) if cuts is None else list(cuts)
    if not ids or rows[ids[0]]["mha"] is None:
        return None
    frames = sum(rows[c]["frames"] for c in ids)
    modules = 2 * len(rows[ids[0]]["mha"])
    differ = sum(min(on, rows[c]["frames"] - on) for c in ids for m in ("mha", "ffn") for on in rows[c][m])
    return differ / max(frames * modules, 1)


def static_skip(rows: Mapping[str, Dict]) -> List[str]:
    """The modules that run on fewer than half of the frames: ``["mha1", "ffn2", ...]`` (blocks from 1)."""
    fractions = module_fractions(rows)
    if fractions is None:
        raise ValueError("the decode recorded no module frames (mha_frames / ffn_frames): not a gated model, or "
                         "decoded before serac recorded them")
    return [f"{m}{b + 1}" for m, i in (("mha", 0), ("ffn", 1)) for b, fr in enumerate(fractions) if fr[i] < 0.5]


def rel_wer(wer: float, ref_wer: float) -> float:
    """Relative WER change against the reference, in percent (0 when the reference makes no errors)."""
    return 100 * (wer / ref_wer - 1) if ref_wer > 0 else 0.0


def within(wer: float, ref_wer: float, max_rel_wer: float) -> bool:
    """Whether ``wer`` is within ``max_rel_wer`` % relative of ``ref_wer``, the bound included (WERs are read with
    two decimals, so 10.50 against 10.00 is +5% exactly, not the float's +5.000000000000004%)."""
    return rel_wer(wer, ref_wer) <= max_rel_wer + 1e-9


def select(points: Mapping[str, Tuple[float, float]], ref_wer: float, max_rel_wer: float) -> str:
    """``points``: name -> (WER, FLOP fraction) on one set. The model with the smallest FLOP fraction whose WER is
    within ``max_rel_wer`` % relative of ``ref_wer`` (ties: the smaller WER); none within: the smallest WER (ties:
    the smaller fraction)."""
    if not points:
        raise ValueError("select: no gated model to choose from")
    admitted = [n for n, (wer, _) in points.items() if within(wer, ref_wer, max_rel_wer)]
    if admitted:
        return min(admitted, key=lambda n: (points[n][1], points[n][0], n))
    return min(points, key=lambda n: (points[n][0], points[n][1], n))


def dev_points(models: Sequence[Model], reference: Model, set_name: str = "dev") -> Dict[str, Tuple[float, float]]:
    """name -> (WER, FLOP fraction of the reference's) on ``set_name``, from each model's decode files."""
    ref_rows = read_compute(reference.decode_file(set_name, "compute", "tsv"))
    return {m.name: (read_summary_wer(m.decode_file(set_name, "wer-summary")),
                     flop_fraction(read_compute(m.decode_file(set_name, "compute", "tsv")), ref_rows,
                                   what=f"{m.name} on {set_name}"))
            for m in models}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("select")
    s.add_argument("--model", action="append", required=True, metavar="NAME=EXP_DIR[:EPOCH]")
    s.add_argument("--reference", required=True, metavar="EXP_DIR[:EPOCH]", help="the dense reference")
    s.add_argument("--suffix", required=True)
    s.add_argument("--set", default="dev")
    s.add_argument("--max-rel-wer", type=float, default=5.0)
    k = sub.add_parser("static-skip")
    k.add_argument("compute_tsv")
    args = p.parse_args()
    if args.command == "select":
        try:
            models = [parse_model(spec, args.suffix) for spec in args.model]
            reference = parse_model(f"reference={args.reference}", args.suffix)
            points = dev_points(models, reference, args.set)
            ref_wer = read_summary_wer(reference.decode_file(args.set, "wer-summary"))
        except (ValueError, FileNotFoundError) as e:
            p.error(str(e))
        print(select(points, ref_wer, args.max_rel_wer))
    else:
        print("[" + ",".join(static_skip(read_compute(Path(args.compute_tsv)))) + "]")


if __name__ == "__main__":
    main()
