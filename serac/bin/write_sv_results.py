#!/usr/bin/env python3
"""Write the speaker-verification RESULTS.md from a run's files: per model and trial set, EER/minDCF overall and per
cohort, gender EER gap, EER std across accents (or native-language groups), the ARW weights per training cohort,
and the paper's VoxCeleb numbers side by side (Jin et al., Interspeech 2022).

Usage:
  python -m serac.bin.write_sv_results --exp-root exp --models none,aps,pl,pw,resemblyzer \
      --sets "synth:accent,alnum:native_group" --command "cd egs/synth_assistant/sv && ./run.sh" --out RESULTS.md
  # reads exp/<model>/score/<set>/metrics.json, exp/<model>/train-summary.json, data/manifests/summary.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict, List, Optional

from serac.speaker.metrics import C_FA, C_MISS, format_percent
from serac.utils import atomic_write_text, git_revision

NAMES = {"none": "baseline (no reweighting)", "aps": "ARW: accumulated pairwise similarity",
         "pl": "ARW: k-means pseudo-labels", "pw": "ARW: pairwise weights", "resemblyzer": "resemblyzer (reference)"}
SET_TITLES = {"synth": "Synthetic held-out speakers (dev + test splits, balanced by accent and gender)",
              "alnum": "Real voices: alphanumeric (every speaker of ../shared/data/alphanumeric, 3 recordings each)"}
# Jin et al. 2022, VoxCeleb1 test, baseline vs pairwise-weighting ARW (abstract; baseline derived from the stated
# relative reductions: 1.08 / (1 - 0.077) = 1.17, 1.25 / (1 - 0.101) = 1.39, 0.67 / (1 - 0.030) = 0.69).
PAPER = {"eer": (1.17, 1.08), "male": (1.39, 1.25), "female": (0.69, 0.67), "gap": (0.70, 0.58),
         "std": (0.21, 0.19)}


def _load(path: Path) -> Optional[dict]:
    return json.loads(path.read_text()) if path.is_file() else None


def _gap(by: dict, key: str) -> Optional[float]:
    return (by.get(key) or {}).get("eer_gap")


def set_table(exp_root: Path, models: List[str], set_name: str, group_key: str) -> List[str]:
    rows = []
    groups: List[str] = []
    metrics: Dict[str, dict] = {}
    for m in models:
        rep = _load(exp_root / m / "score" / set_name / "metrics.json")
        if rep is not None:
            metrics[m] = rep
            for g in rep["by"].get(group_key, {}).get("cohorts", {}):
                if g not in groups:
                    groups.append(g)
    if not metrics:
        return [f"(no scores for {set_name})", ""]
    genders = sorted({g for r in metrics.values() for g in r["by"].get("gender", {}).get("cohorts", {})})
    first = next(iter(metrics.values()))["overall"]
    rows.append(f"{first['num_target']} target and {first['num_nontarget']} non-target trials (impostors of the "
                "enrolment speaker's gender); EER and per-cohort EER in %, minDCF at P_target "
                f"{next(iter(metrics.values()))['p_target']}, C_miss {C_MISS:g}, C_fa {C_FA:g}.")
    rows.append("")
    head = ["model", "EER", "minDCF"] + [f"EER {g}" for g in genders] + ["gender gap", f"{group_key} std",
                                                                      f"worst {group_key}"]
    rows += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, rep in metrics.items():
        by = rep["by"]
        gcoh = by.get("gender", {}).get("cohorts", {})
        acoh = by.get(group_key, {}).get("cohorts", {})
        worst = max(acoh.items(), key=lambda kv: kv[1]["eer"]) if acoh else None
        cells = [NAMES.get(m, m), format_percent(rep["overall"]["eer"]), f"{rep['overall']['min_dcf']:.3f}"]
        cells += [format_percent(gcoh[g]["eer"]) if g in gcoh else "-" for g in genders]
        cells += [format_percent(_gap(by, "gender")), format_percent(by.get(group_key, {}).get("eer_std")),
                  f"{worst[0]} {format_percent(worst[1]['eer'])}" if worst else "-"]
        rows.append("| " + " | ".join(cells) + " |")
    rows += ["", f"EER (%) per {group_key}:", ""]
    head = [group_key] + [m for m in metrics]
    rows += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        cells = [g]
        for m, rep in metrics.items():
            c = rep["by"].get(group_key, {}).get("cohorts", {}).get(g)
            cells.append(f"{format_percent(c['eer'])} ({c['num_target']}/{c['num_nontarget']})" if c else "-")
        rows.append("| " + " | ".join(cells) + " |")
    rows += ["", "(target/non-target trials in parentheses)", ""]
    return rows


def paper_table(exp_root: Path, set_name: str, group_key: str) -> List[str]:
    base = _load(exp_root / "none" / "score" / set_name / "metrics.json")
    pw = _load(exp_root / "pw" / "score" / set_name / "metrics.json")
    rows = ["| quantity | paper baseline | paper pairwise ARW | paper change | ours baseline | ours pairwise ARW |"
            " ours change |", "|---|---|---|---|---|---|---|"]

    def ours(rep, what):
        if rep is None:
            return None
        by = rep["by"]
        if what == "eer":
            return 100 * rep["overall"]["eer"]
        if what in ("male", "female"):
            c = by.get("gender", {}).get("cohorts", {}).get(what[0])
            return None if c is None else 100 * c["eer"]
        if what == "gap":
            g = _gap(by, "gender")
            return None if g is None else 100 * g
        s = by.get(group_key, {}).get("eer_std")
        return None if s is None else 100 * s

    labels = {"eer": "EER (%)", "male": "EER male (%)", "female": "EER female (%)",
              "gap": "gender EER gap (% abs.)", "std": f"EER std across nationality / {group_key} (% abs.)"}
    for what, (pb, pa) in PAPER.items():
        ob, oa = ours(base, what), ours(pw, what)
        change = "-" if ob is None or oa is None or ob == 0 else f"{100 * (oa - ob) / ob:+.1f}%"
        rows.append(f"| {labels[what]} | {pb:.2f} | {pa:.2f} | {100 * (pa - pb) / pb:+.1f}% | "
                    f"{'-' if ob is None else f'{ob:.2f}'} | {'-' if oa is None else f'{oa:.2f}'} | {change} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-root", default="exp")
    p.add_argument("--models", default="none,aps,pl,pw,resemblyzer")
    p.add_argument("--sets", default="synth:accent,alnum:native_group", help="set:grouping-key,...")
    p.add_argument("--title", default="synth_assistant / sv: speaker verification with adversarial reweighting")
    p.add_argument("--command", default="cd egs/synth_assistant/sv && ./run.sh")
    p.add_argument("--summary", default="data/manifests/summary.json", help="corpus sizes (optional)")
    p.add_argument("--timing", default="exp/timing.tsv", help="stage<TAB>seconds lines written by run.sh")
    p.add_argument("--out", default="RESULTS.md")
    args = p.parse_args()
    root = Path(args.exp_root)
    models = [m for m in args.models.split(",") if m]
    sets = [tuple(s.split(":")) for s in args.sets.split(",") if s]
    lines = [f"# {args.title}", "",
             f"Written by the recipe's last stage from the files of one run ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}), "
             f"git revision `{git_revision()}`.", "", "```", args.command, "```", ""]
    trained = [(m, _load(root / m / "train-summary.json")) for m in models]
    trained = [(m, s) for m, s in trained if s]
    if trained:
        s0 = trained[0][1]
        lines += [f"Training: {s0['num_utterances']} utterances of {s0['num_speakers']} training speakers, "
                  f"{s0['steps']} steps, a {s0['num_parameters']}-parameter ECAPA-TDNN (one thread).", ""]
        lines += ["| model | training time (s) | final loss | mean ARW weight by training cohort (second half of the"
                  " game) |", "|---|---|---|---|"]
        for m, s in trained:
            w = s.get("mean_weight_by_cohort") or {}
            wtxt = ", ".join(f"{k} {v:.2f}" for k, v in w.items()) if w else "-"
            lines.append(f"| {NAMES.get(m, m)} | {s['train_seconds']:.0f} | {s['curve'][-1]['loss']:.3f} | {wtxt} |")
        lines.append("")
    for set_name, key in sets:
        lines += [f"## {SET_TITLES.get(set_name, set_name)}", ""] + set_table(root, models, set_name, key)
    for set_name, key in sets:
        lines += [f"## Side by side with the paper (VoxCeleb) -- ours on {set_name}", ""]
        lines += paper_table(root, set_name, key) + [""]
    lines += ["The paper's numbers are from VoxCeleb2-trained models scored on VoxCeleb1 (nationality groups); ours are"
              " a small model trained for minutes on a synthetic corpus, so only the direction of the changes is"
              " comparable, and with a few hundred trials per cohort an EER difference below a few points is within"
              " noise.", ""]
    timing = Path(args.timing)
    if timing.is_file():
        lines += ["Stage times on this machine (s): " + ", ".join(
            f"{l.split(chr(9))[0]} {float(l.split(chr(9))[1]):.0f}" for l in timing.read_text().splitlines() if l), ""]
    atomic_write_text(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
