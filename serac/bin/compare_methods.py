#!/usr/bin/env python3
"""Comparison tables of the fairness recipes: cohort-discovery methods (Dheram et al.) and mitigation methods
(Trinh et al.), as JSON and Markdown.

Usage:
  # discovery: one row per serac.bin.discover_cohorts output dir
  python -m serac.bin.compare_methods discovery --dir exp/discovery/geo --dir exp/discovery/geodemo \
      --dir exp/discovery/auto --out-md exp/discovery/comparison.md --out-json exp/discovery/comparison.json
  # mitigation: per-region WER of several decodes of the same test set against a baseline decode
  python -m serac.bin.compare_methods mitigation --cuts data/asr/synth_cuts_test.jsonl.gz --key region \
      --targets-file data/sets/targets.txt --baseline "no adaptation" \
      --method "no adaptation" ../asr/exp/lstm/decode/test/recogs-test-greedy_search-epoch-12-avg-4.txt \
      --method "fine-tuning" exp/ft/finetune/decode/test/recogs-test-greedy_search-epoch-4-avg-1.txt exp/ft/finetune \
      --fisher exp/ewc/fisher.pt --theta-star exp/ewc/theta_star.pt --out-md mitigation.md --out-json mitigation.json

  # the same for another attribute, targeting the baseline's worst cohort on dev (a cohort-summary JSON of
  # steps/score_cohorts.sh), with discovered cohorts from cohort maps
  python -m serac.bin.compare_methods mitigation --cuts data/asr/synth_cuts_test.jsonl.gz --key accent \
      --targets-from-summary exp/discovery/baseline-cohorts-dev/cohort-summary-accent.json ...

  # a discovery's cohorts (Dheram et al.): its bottom cohort on dev targeted, and every row's dev-ranked
  # bottom/top gap on test (the bottom and top cohorts of the discovery's fit, as in its summary)
  python -m serac.bin.compare_methods mitigation --cuts data/asr/synth_cuts_test.jsonl.gz --key auto_cohort \
      --cohort-map exp/discovery/auto/cohort-map.tsv --targets-from-discovery exp/discovery/auto ...

Mitigation columns (test set; cohorts = the values of --key, e.g. regions):
  A method named several times (one --method per seed) is the mean of its runs, with their standard deviation.
  overall WER; WER pooled over the targeted cohorts' utterances; over the other cohorts'; mean / min / max /
  variance (population, ddof=0) of the per-cohort WERs and the bottom/top gap (max - min) / min; each with its
  relative change against the baseline, in percent. The 95% intervals of the relative changes of the overall,
  targeted and other WERs come from a paired speaker bootstrap (the same resampled speakers for the method and the
  baseline). With --targets-from-discovery, also the dev-ranked gap (WER of the discovery's dev-bottom cohort - that of
  its dev-top cohort) / dev-top, on this set, and its relative change. With an experiment directory, the number of training steps and, unless the method is named by
  --from-scratch, the Fisher distance 0.5 * sum_i F_i (theta_i - theta*_i)^2 of its last checkpoint.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from serac.fairness.cohort_metrics import (apply_cohort_maps, cohort_wer, load_cohort_map, load_cut_attributes,
                                           score_utterances)
from serac.utils import format_number as fmt
from serac.utils import atomic_write_text


# ---------------------------------------------------------------------------------------------------------------
# discovery
# ---------------------------------------------------------------------------------------------------------------

def discovery_table(dirs: List[Path]) -> Dict[str, Any]:
    rows = []
    for d in dirs:
        s = json.loads((d / "summary.json").read_text())
        row = {"dir": str(d), "method": s["method"], "key": s["key"], "description": s["description"],
               "fit": {k: s["fit"].get(k) for k in ("num_cohorts", "num_speakers", "bottom", "top", "bottom_wer",
                                                      "top_wer", "relative_gap", "bottom_speaker_share")}}
        for name in ("eval", "eval_own"):
            if s.get(name):
                row[name] = {k: s[name].get(k) for k in ("num_cohorts", "num_speakers", "bottom", "top", "bottom_wer",
                                                           "top_wer", "relative_gap", "bottom_speaker_share")}
        p = s.get("params", {})
        if s["method"] == "geo":
            row["settings"] = f"max {p.get('max_leaves')} leaves, >= {p.get('min_speakers')} spk / {p.get('min_words')} words"
        elif s["method"] == "geodemo":
            model = json.loads((d / "model.json").read_text())
            row["settings"] = f"{model['partition']['attribute']}={model['partition']['value']} vs rest"
        elif s["method"] == "auto":
            row["method"] = f"auto ({p.get('embedding')})"
            row["settings"] = f"{p.get('embedding')} + k-means k={p.get('num_clusters')}"
        else:
            row["method"] = f"{s['key']} (given labels)"
            row["settings"] = "no discovery: reference"
        rows.append(row)
    return {"rows": rows}


def discovery_markdown(table: Dict[str, Any]) -> str:
    lines = ["| method | settings | cohorts (dev) | dev: gap % | dev: bottom share % | test, dev-ranked: gap % | "
             "test, dev-ranked: bottom share % | test, re-ranked: gap % | test, re-ranked: bottom share % |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table["rows"]:
        e, o = r.get("eval") or {}, r.get("eval_own") or {}
        lines.append(f"| {r['method']} | {r['settings']} | {r['fit']['num_cohorts']} | {fmt(r['fit']['relative_gap'], 1)} | "
                     f"{fmt(r['fit']['bottom_speaker_share'], 1)} | {fmt(e.get('relative_gap'), 1)} | "
                     f"{fmt(e.get('bottom_speaker_share'), 1)} | {fmt(o.get('relative_gap'), 1)} | "
                     f"{fmt(o.get('bottom_speaker_share'), 1)} |")
    lines += ["", "| method | dev bottom (WER %) | dev top (WER %) | test: dev-bottom WER % | test: dev-top WER % |",
              "|---|---|---|---:|---:|"]
    for r in table["rows"]:
        f, e = r["fit"], r.get("eval") or {}
        lines.append(f"| {r['method']} | `{f['bottom']}` ({fmt(f['bottom_wer'], 2)}) | `{f['top']}` "
                     f"({fmt(f['top_wer'], 2)}) | {fmt(e.get('bottom_wer'), 2)} | {fmt(e.get('top_wer'), 2)} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# mitigation
# ---------------------------------------------------------------------------------------------------------------

def rel(x: Optional[float], base: Optional[float]) -> Optional[float]:
    if x is None or base is None or base == 0:
        return None
    return (x - base) / base * 100.0


def last_checkpoint(exp_dir: Path) -> Optional[Path]:
    epochs = [(int(m.group(1)), p) for p in exp_dir.glob("epoch-*.pt") if (m := re.fullmatch(r"epoch-(\d+)\.pt", p.name))]
    return max(epochs)[1] if epochs else None


def method_stats(recogs: Path, attrs, key: str, targets: List[str]) -> Dict[str, Any]:
    scored = score_utterances(recogs)
    report = cohort_wer(scored, attrs, key, n_bootstrap=0)
    per_speaker: Dict[str, List[int]] = defaultdict(lambda: [0, 0])  # speaker -> [errors, words]
    target_of: Dict[str, bool] = {}
    tot = {True: [0, 0], False: [0, 0]}
    for cut_id, u in scored.items():
        a = attrs[cut_id]
        is_target = str(a[key]) in targets
        spk = str(a.get("speaker", cut_id))
        per_speaker[spk][0] += u.errors
        per_speaker[spk][1] += u.num_words
        target_of[spk] = is_target
        tot[is_target][0] += u.errors
        tot[is_target][1] += u.num_words
    wers = np.array([c.wer for c in report.cohorts])
    lo, hi = float(wers.min()), float(wers.max())
    return {"overall": report.overall_wer,
            "targeted": 100.0 * tot[True][0] / tot[True][1] if tot[True][1] else None,
            "other": 100.0 * tot[False][0] / tot[False][1] if tot[False][1] else None,
            "mean": float(wers.mean()), "min": lo, "max": hi, "var": float(wers.var(ddof=0)),
            "gap": 100.0 * (hi - lo) / lo if lo > 0 else None,
            "worst": report.bottom_cohort, "regions": {c.cohort: c.wer for c in report.cohorts},
            "num_utts": report.num_utts, "_per_speaker": dict(per_speaker), "_target_of": target_of}


def paired_bootstrap(method: Dict[str, Any], base: Dict[str, Any], target: Optional[bool], n: int = 2000,
                     seed: int = 0):
    """95% percentile interval of the relative WER change (method vs baseline) over the targeted (or other, or with
    ``target=None`` all) speakers, resampling speakers with replacement, the same draw for both decodes."""
    speakers = sorted(s for s, t in base["_target_of"].items() if target is None or t == target)
    if not speakers:
        return None
    m = np.array([method["_per_speaker"][s] for s in speakers], dtype=np.float64)
    b = np.array([base["_per_speaker"][s] for s in speakers], dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(speakers), size=(n, len(speakers)))
    m_wer = m[idx, 0].sum(1) / np.maximum(m[idx, 1].sum(1), 1)
    b_wer = b[idx, 0].sum(1) / np.maximum(b[idx, 1].sum(1), 1)
    ok = b_wer > 0
    change = 100.0 * (m_wer[ok] - b_wer[ok]) / b_wer[ok]
    lo, hi = np.quantile(change, [0.025, 0.975])
    return [float(lo), float(hi)]


METRICS = ("overall", "targeted", "other", "mean", "min", "max", "var", "gap")


def dev_ranked_gap(cohort_wers: Dict[str, float], bottom: str, top: str) -> Optional[float]:
    """(WER of ``bottom`` - WER of ``top``) / WER of ``top``, in percent: the disparity between the cohorts that
    were bottom and top on another set (dev), read on this one; None when either has no utterance here."""
    if bottom not in cohort_wers or top not in cohort_wers:
        return None
    return rel(cohort_wers[bottom], cohort_wers[top])


def _checkpoint_info(exp_dir: Path, fisher, theta_star, from_scratch: bool = False) -> Dict[str, Any]:
    ckpt_path = last_checkpoint(exp_dir)
    if ckpt_path is None:
        return {}
    import torch

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    ewc = ckpt.get("config", {}).get("ewc") or {}
    info = {"steps": ckpt.get("batch_idx_train"), "epochs": ckpt.get("epoch"),
            "ewc_lambda": ewc.get("lambda") if ewc.get("fisher") else None}
    if fisher is not None and not from_scratch:  # a distance from theta* says nothing of a model not started there
        from serac.train.ewc import ewc_distance

        info["fisher_distance"] = ewc_distance(ckpt["model"], fisher, theta_star)
    return info


def aggregate_runs(name: str, runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One row from the decodes of one method trained with different seeds: every number is the mean over the
    runs (``sd``: their sample standard deviation); per speaker, the mean errors (so that the paired bootstrap
    compares mean WERs)."""
    n = len(runs)
    row: Dict[str, Any] = {"method": name, "num_runs": n, "recogs": [r["recogs"] for r in runs]}
    for k in METRICS:
        vals = np.array([r[k] for r in runs if r[k] is not None], dtype=np.float64)
        row[k] = float(vals.mean()) if len(vals) else None
        row.setdefault("sd", {})[k] = float(vals.std(ddof=1)) if len(vals) > 1 else None
    regions = sorted(runs[0]["regions"])
    row["regions"] = {c: float(np.mean([r["regions"][c] for r in runs if c in r["regions"]])) for c in regions}
    row["worst"] = max(sorted(row["regions"]), key=lambda c: row["regions"][c])
    row["num_utts"] = runs[0]["num_utts"]
    row["_per_speaker"] = {s: [float(np.mean([r["_per_speaker"][s][0] for r in runs])), runs[0]["_per_speaker"][s][1]]
                           for s in runs[0]["_per_speaker"]}
    row["_target_of"] = runs[0]["_target_of"]
    for k in ("steps", "epochs", "ewc_lambda", "fisher_distance"):
        vals = [r[k] for r in runs if r.get(k) is not None]
        if vals:
            row[k] = vals[0] if k == "ewc_lambda" else float(np.mean(vals)) if k == "fisher_distance" else \
                int(round(float(np.mean(vals))))
    row["runs"] = [{k: r.get(k) for k in (*METRICS, "steps", "fisher_distance", "recogs")} for r in runs]
    return row


def mitigation_table(args) -> Dict[str, Any]:
    attrs = load_cut_attributes(args.cuts)
    if args.cohort_map:
        attrs = apply_cohort_maps(attrs, [load_cohort_map(p) for p in args.cohort_map])
    targets = [t for t in (args.targets.split(",") if args.targets else []) if t]
    if args.targets_file:
        targets += [t.strip() for t in Path(args.targets_file).read_text().splitlines() if t.strip()]
    for path in args.targets_from_summary:  # the bottom cohort of a cohort-summary-<key>.json (the baseline on dev)
        summary = json.loads(Path(path).read_text())
        if summary.get("key") != args.key:
            raise ValueError(f"{path}: a summary of {summary.get('key')!r}, not of --key {args.key!r}")
        targets.append(str(summary["summary"]["bottom_cohort"]))
    discovery = None
    if args.targets_from_discovery:  # the bottom cohort of a discovery's fit (dev); its top for the dev-ranked gap
        path = Path(args.targets_from_discovery) / "summary.json"
        summary = json.loads(path.read_text())
        if summary.get("key") != args.key:
            raise ValueError(f"{path}: a discovery of {summary.get('key')!r}, not of --key {args.key!r}")
        discovery = {"dir": str(args.targets_from_discovery), "method": summary["method"],
                     "embedding": (summary.get("params") or {}).get("embedding"),
                     "bottom": str(summary["fit"]["bottom"]), "top": str(summary["fit"]["top"])}
        targets.append(discovery["bottom"])
    if not targets:
        raise ValueError("no targeted cohorts (--targets, --targets-file, --targets-from-summary or "
                         "--targets-from-discovery)")
    fisher = theta_star = None
    if args.fisher and args.theta_star:
        import torch

        from serac.train.ewc import load_fisher

        fisher = load_fisher(args.fisher)
        theta_star = torch.load(args.theta_star, map_location="cpu", weights_only=False)["model"]
    runs: Dict[str, List[Dict[str, Any]]] = {}
    for spec in args.method:  # a name given several times = several runs (seeds) of one method
        if len(spec) not in (2, 3):
            raise ValueError(f"--method NAME RECOGS [EXP_DIR], got {spec}")
        name, recogs = spec[0], Path(spec[1])
        run = {"recogs": str(recogs), **method_stats(recogs, attrs, args.key, targets)}
        if len(spec) == 3:
            run.update(_checkpoint_info(Path(spec[2]), fisher, theta_star, from_scratch=name in args.from_scratch))
        runs.setdefault(name, []).append(run)
    rows = [aggregate_runs(name, rs) for name, rs in runs.items()]
    if discovery is not None:
        for r in rows:
            r["bottom_top_gap"] = dev_ranked_gap(r["regions"], discovery["bottom"], discovery["top"])
    names = [r["method"] for r in rows]
    if args.baseline not in names:
        raise ValueError(f"baseline {args.baseline!r} is not among the methods {names}")
    base = rows[names.index(args.baseline)]
    ft = rows[names.index(args.reference)] if args.reference in names else None
    for r in rows:
        r["rel"] = {k: rel(r[k], base[k]) for k in METRICS}
        if discovery is not None:
            r["rel"]["bottom_top_gap"] = rel(r["bottom_top_gap"], base["bottom_top_gap"])
        if r is not base:
            r["ci_overall"] = paired_bootstrap(r, base, None, seed=args.seed)
            r["ci_targeted"] = paired_bootstrap(r, base, True, seed=args.seed)
            r["ci_other"] = paired_bootstrap(r, base, False, seed=args.seed)
        if ft is not None and r is not ft and r is not base:
            r["vs_reference"] = {"method": ft["method"],
                                 "targeted": rel(r["targeted"], ft["targeted"]), "other": rel(r["other"], ft["other"]),
                                 "ci_targeted": paired_bootstrap(r, ft, True, seed=args.seed),
                                 "ci_other": paired_bootstrap(r, ft, False, seed=args.seed)}
    targeted_speakers = sum(base["_target_of"].values())  # each speaker is in one cohort
    for r in rows:
        r.pop("_per_speaker"), r.pop("_target_of")
    return {"key": args.key, "targets": targets, "targeted_speakers": targeted_speakers, "discovery": discovery,
            "baseline": args.baseline, "reference": args.reference,
            "from_scratch": list(args.from_scratch),
            "cuts": str(args.cuts), "rows": rows}


def _ci(ci) -> str:
    return "" if not ci else f" [{ci[0]:+.1f}, {ci[1]:+.1f}]"


def _sd(r: Dict[str, Any], k: str) -> str:
    sd = (r.get("sd") or {}).get(k)
    return "" if sd is None else f" ±{sd:.2f}"


def mitigation_markdown(t: Dict[str, Any], tolerance: float = 1.0) -> str:
    rows = t["rows"]
    seeds = max(r.get("num_runs", 1) for r in rows)
    what = "region" if t["key"] in ("region", "geo_region") else "cohort"
    lines = [f"Targeted `{t['key']}`: {', '.join(f'`{x}`' for x in t['targets'])}. Relative changes (%) are against "
             f"**{t['baseline']}**; brackets: 95% paired speaker-bootstrap interval of that change."
             + (f" Trained methods: mean over {seeds} seeds (± sample standard deviation across seeds)."
                if seeds > 1 else ""), "",
             f"| method | steps | WER % | rel % | targeted WER % | rel % | other WER % | rel % | {what} mean % | "
             f"{what} min % | {what} max % (worst) | gap % | {what} var | rel var % | Fisher dist. |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        rr = r["rel"]
        dist = r.get("fisher_distance")
        lines.append(
            f"| {r['method']} | {r.get('steps') if r.get('steps') is not None else '-'} | {r['overall']:.2f}"
            f"{_sd(r, 'overall')} | {fmt(rr['overall'], 1)}{_ci(r.get('ci_overall'))} | {fmt(r['targeted'], 2)}"
            f"{_sd(r, 'targeted')} | {fmt(rr['targeted'], 1)}{_ci(r.get('ci_targeted'))} | {fmt(r['other'], 2)}"
            f"{_sd(r, 'other')} | {fmt(rr['other'], 1)}{_ci(r.get('ci_other'))} | {r['mean']:.2f} | {r['min']:.2f} | "
            f"{r['max']:.2f} (`{r['worst']}`) | {fmt(r['gap'], 1)} | {r['var']:.2f}{_sd(r, 'var')} | "
            f"{fmt(rr['var'], 1)} | {'-' if dist is None else f'{dist:.3g}'} |")
    regions = sorted(rows[0]["regions"], key=lambda c: (c not in t["targets"], c))
    lines += ["", f"Per-{what} WER (%), targeted {what}s first:", "",
              "| method | " + " | ".join(f"{c}{' *' if c in t['targets'] else ''}" for c in regions) + " |",
              "|---|" + "---:|" * len(regions)]
    for r in rows:
        lines.append(f"| {r['method']} | " + " | ".join(fmt(r["regions"].get(c), 2) for c in regions) + " |")
    # plain-language checks, computed from the numbers above
    base = next(r for r in rows if r["method"] == t["baseline"])
    lines += ["", "Checks (computed from the table):", ""]
    for r in rows:
        if r is base:
            continue
        rr = r["rel"]
        ci = r.get("ci_targeted")
        sig = "" if not ci else (", interval excludes 0" if ci[1] < 0 or ci[0] > 0 else ", interval includes 0")
        parts = [f"targeted {fmt(rr['targeted'], 1)}% ({'better' if (rr['targeted'] or 0) < 0 else 'not better'}{sig})",
                 f"other {what}s {fmt(rr['other'], 1)}% ({'kept' if rr['other'] is not None and rr['other'] <= tolerance else 'not kept'} "
                 f"within +{tolerance:g}% of baseline)",
                 f"overall {fmt(rr['overall'], 1)}%{_ci(r.get('ci_overall'))}", f"variance {fmt(rr['var'], 1)}%",
                 f"gap {fmt(r['gap'], 1)}% (baseline {fmt(base['gap'], 1)}%)"]
        vs = r.get("vs_reference")
        if vs is not None and r.get("ewc_lambda") is not None:
            less = vs["other"] is not None and vs["other"] < 0
            parts.append(f"vs {vs['method']}: other {what}s {fmt(vs['other'], 1)}%{_ci(vs['ci_other'])} "
                         f"({'forgets less' if less else 'does not forget less'}), targeted {fmt(vs['targeted'], 1)}%"
                         f"{_ci(vs['ci_targeted'])}")
        lines.append(f"- **{r['method']}**: " + "; ".join(parts))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------

def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("discovery", help="compare cohort-discovery outputs")
    d.add_argument("--dir", action="append", required=True, type=Path)
    d.add_argument("--out-md", required=True)
    d.add_argument("--out-json", required=True)
    m = sub.add_parser("mitigation", help="compare decodes of mitigation variants per region")
    m.add_argument("--cuts", required=True, help="cuts manifest of the decoded set (attributes)")
    m.add_argument("--key", default="region")
    m.add_argument("--cohort-map", action="append", default=[])
    m.add_argument("--targets", default="", help="comma-separated targeted cohorts")
    m.add_argument("--targets-file", help="one targeted cohort per line")
    m.add_argument("--targets-from-summary", action="append", default=[], metavar="JSON",
                   help="target the bottom cohort of this cohort-summary-<key>.json (steps/score_cohorts.sh; e.g. "
                        "the baseline's dev decode)")
    m.add_argument("--targets-from-discovery", metavar="DIR",
                   help="target the bottom cohort of this serac.bin.discover_cohorts output (its fit: dev) and add "
                        "the dev-ranked bottom/top gap of every row")
    m.add_argument("--from-scratch", action="append", default=[], metavar="NAME",
                   help="a method trained from scratch, not from theta*: no Fisher distance")
    m.add_argument("--method", nargs="+", action="append", required=True, metavar="NAME RECOGS [EXP_DIR]")
    m.add_argument("--baseline", required=True, help="name of the --method all others are compared with")
    m.add_argument("--reference", default="fine-tuning",
                   help="EWC rows are also compared with this method (forgetting vs plain fine-tuning)")
    m.add_argument("--fisher")
    m.add_argument("--theta-star")
    m.add_argument("--tolerance", type=float, default=1.0, help="the other regions count as kept when their WER rises by at most X%% (relative)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out-md", required=True)
    m.add_argument("--out-json", required=True)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s")
    args = get_parser().parse_args(argv)
    try:
        if args.command == "discovery":
            table = discovery_table(args.dir)
            md = discovery_markdown(table)
        else:
            table = mitigation_table(args)
            md = mitigation_markdown(table, args.tolerance)
    except (ValueError, FileNotFoundError, KeyError) as e:
        logging.error(str(e))
        return 1
    atomic_write_text(args.out_json, json.dumps(table, indent=2) + "\n")
    atomic_write_text(args.out_md, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
