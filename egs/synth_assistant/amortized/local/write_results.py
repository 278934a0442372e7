#!/usr/bin/env python3
"""Write the amortized-Transformer recipe's RESULTS.md (and the WER-vs-compute plot) from the files of a run.

Reads, per --model NAME=EXP_DIR: config.yaml (encoder settings, parameters), log/train.log (last epoch line),
decode/test/wer-summary-test-<suffix>.txt, stats-test-<suffix>.json, compute-test-<suffix>.tsv (executed encoder
FLOPs per utterance) and cohorts-<suffix>/cohort-summary-<key>.json / cohort-wer-<key>.tsv; --timing is
serac.bin.time_encoders' JSON (encoder CPU time of every model in one process); --cuts gives each test
utterance's cohort. Nothing is typed by hand: every number below comes from those files.

Usage:
  local/write_results.py --model dense-ft=exp/dense-ft --model amortized-cw1=exp/amortized-cw1 \
      --reference dense-ft --init exp/dense --suffix greedy_search-epoch-3-avg-1 \
      --cuts data/fbank/synth_cuts_test.jsonl.gz --timing exp/encoder-time.json --stage-timing exp/timing.tsv \
      --plot results/wer-vs-compute.png --out RESULTS.md
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

from serac.decode.results import read_summary_wer
from serac.utils import atomic_write_text, provenance
from serac.utils import format_number as fmt

# Xie et al. (Interspeech 2022): 60% less compute at 3% relative WER degradation (LibriSpeech)
PAPER_SAVING, PAPER_REL_WER = 60.0, 3.0
# this recipe's targets
TARGET_SAVING, TARGET_REL_WER, TARGET_SPEEDUP = 50.0, 5.0, 1.6


def read_compute(path: Path) -> Dict[str, Tuple[float, float]]:
    """cut_id -> (executed FLOPs, dense FLOPs of the same encoder)."""
    with open(path, newline="") as f:
        return {r["cut_id"]: (float(r["flops"]), float(r["dense_flops"])) for r in csv.DictReader(f, delimiter="\t")}


def last_epoch_line(exp_dir: Path) -> str:
    """The trainer's summary of the last epoch in log/train.log (losses, time, audio/s)."""
    log = exp_dir / "log" / "train.log"
    found = re.findall(r"(epoch \d+: train loss[^\n]*)", log.read_text()) if log.is_file() else []
    return found[-1] if found else "-"


def load_model_row(name: str, exp_dir: Path, suffix: str, keys: List[str]) -> Dict[str, Any]:
    cfg = yaml.safe_load((exp_dir / "config.yaml").read_text())
    enc = cfg["model"]["encoder"]
    dec = exp_dir / "decode" / "test"
    row: Dict[str, Any] = {
        "name": name, "exp_dir": str(exp_dir), "encoder": enc, "params": cfg.get("env", {}).get("encoder_params"),
        "kind": "amortized" if enc.get("arbitrators", True) else "dense",
        "distilled": bool((cfg.get("distill") or {}).get("teacher")),
        "wer": read_summary_wer(dec / f"wer-summary-test-{suffix}.txt"),
        "stats": json.loads((dec / f"stats-test-{suffix}.json").read_text()),
        "compute": read_compute(dec / f"compute-test-{suffix}.tsv"),
        "last_epoch": last_epoch_line(exp_dir), "cohorts": {}, "cohort_wer": {},
    }
    for key in keys:
        cdir = dec / f"cohorts-{suffix}"
        summary = cdir / f"cohort-summary-{key}.json"
        if summary.is_file():
            row["cohorts"][key] = json.loads(summary.read_text())["summary"]
            with open(cdir / f"cohort-wer-{key}.tsv", newline="") as f:
                row["cohort_wer"][key] = {r["cohort"]: r["wer"] for r in csv.DictReader(f, delimiter="\t")}
    return row


def cohort_of(cuts_path: Path, key: str) -> Dict[str, str]:
    from serac.fairness.cohort_metrics import load_cut_attributes

    return {cut_id: str(attrs.get(key, "?")) for cut_id, attrs in load_cut_attributes(cuts_path).items()}


def flop_breakdown(encoder_cfg: Dict[str, Any]) -> List[str]:
    """What one output frame (40 ms) of the encoder costs, part by part, from the encoder the config builds."""
    from serac.encoders import build_encoder

    enc = build_encoder(80, {**encoder_cfg, "arbitrators": True})
    b = enc.blocks[0]
    n = len(enc.blocks)
    dense = enc.dense_flops_per_frame
    parts = [("front end (2 causal convs + projection)", enc.front_flops, 1),
             ("MHA projections (Q, K, V, out) per block", b.mha_proj_flops, n),
             (f"attention scores + weighted sum over {enc.left_context + enc.chunk_size} keys per block",
              b.attn_core_flops, n),
             ("FFN per block", b.ffn_flops, n), ("output projection", enc.out_flops, 1),
             ("arbitrator per block (amortized models only)", b.arbitrator_flops, n)]
    lines = ["| part | kFLOPs / frame | x | share of dense |", "|---|---|---|---|"]
    for label, flops, times in parts:
        lines.append(f"| {label} | {flops / 1e3:.1f} | {times} | {100 * flops * times / dense:.1f}% |")
    lines.append(f"| **dense encoder** | **{dense / 1e3:.1f}** | | 100% |")
    return lines


def paired_rel_wer_interval(errors: Dict[str, int], ref_errors: Dict[str, int], speaker: Dict[str, str],
                            n_bootstrap: int, seed: int = 0) -> Tuple[float, float]:
    """95% percentile interval of the relative WER change against the reference (``E / E_ref - 1``, the same
    reference words on both sides), resampling speakers with replacement, both models on the same resample
    (paired): how much of a difference is the choice of test speakers."""
    import numpy as np

    if set(errors) != set(ref_errors):
        raise ValueError("paired bootstrap: the two decodes cover different utterances")
    spk = sorted({speaker[c] for c in errors})
    index = {s: i for i, s in enumerate(spk)}
    e, e_ref = np.zeros(len(spk)), np.zeros(len(spk))
    for c, n in errors.items():
        e[index[speaker[c]]] += n
        e_ref[index[speaker[c]]] += ref_errors[c]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(spk), size=(n_bootstrap, len(spk)))
    num, den = e[draws].sum(1), e_ref[draws].sum(1)
    ratios = num[den > 0] / den[den > 0] - 1
    if ratios.size == 0:
        raise ValueError("paired bootstrap: the reference makes no errors on any resample")
    low, high = np.percentile(100 * ratios, [2.5, 97.5])
    return float(low), float(high)


def fewer(saving: float) -> str:
    """'12.3% fewer' / '4.0% more' (FLOPs)."""
    return f"{saving:.1f}% fewer" if saving >= 0 else f"{-saving:.1f}% more"


def write_plot(rows: List[Dict[str, Any]], reference: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, x_key, x_label in [(axes[0], "flop_fraction", "executed encoder FLOPs (fraction of dense)"),
                               (axes[1], "time_fraction", "measured encoder CPU time (fraction of dense)")]:
        for distilled, label, style in [(False, "amortized", "o-"), (True, "amortized + distillation", "^--")]:
            amortized = sorted((r for r in rows if r["kind"] == "amortized" and r["distilled"] == distilled
                                and r.get(x_key) is not None), key=lambda r: r[x_key])
            if amortized:
                ax.plot([r[x_key] for r in amortized], [r["wer"] for r in amortized], style, label=label)
                for r in amortized:
                    ax.annotate(f"w={r['encoder'].get('cost_weight')}", (r[x_key], r["wer"]), fontsize=8,
                                textcoords="offset points", xytext=(4, 4))
        for r in rows:
            if r["kind"] == "dense" and r.get(x_key) is not None:
                is_ref = r["name"] == reference
                ax.plot(r[x_key], r["wer"], "*" if is_ref else "s", markersize=12 if is_ref else 8,
                        label="dense" if is_ref else f"sliding window (left {r['encoder'].get('left_context')})")
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test WER (%), greedy")
    axes[0].legend(fontsize=8)
    fig.suptitle("synth_assistant test: WER vs encoder compute")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def paper_comparison(rows: List[Dict[str, Any]], ref: Dict[str, Any]) -> str:
    amortized = [r for r in rows if r["kind"] == "amortized"]
    if not amortized:
        return "No amortized model in this run."
    head = (f"The paper reports {PAPER_SAVING:.0f}% less compute at +{PAPER_REL_WER:.0f}% relative WER; the target "
            f"here is >= {TARGET_SAVING:.0f}% fewer encoder FLOPs at <= +{TARGET_REL_WER:.0f}% relative WER and a "
            f">= {TARGET_SPEEDUP}x measured encoder speed-up (against the dense reference, {ref['wer']:.2f}% WER). ")
    within = [r for r in amortized if r["rel_wer"] <= TARGET_REL_WER]
    if not within:
        best = min(amortized, key=lambda r: r["rel_wer"])
        return head + (f"No cost weight stays within +{TARGET_REL_WER:.0f}%: the smallest WER increase is "
                       f"{best['rel_wer']:+.1f}% relative ({best['name']}, cost weight "
                       f"{best['encoder'].get('cost_weight')}, "
                       f"{fewer(best['saving'])} FLOPs, {fmt(best['speedup'])}x measured speed-up), so the target "
                       f"is not met.")
    best = max(within, key=lambda r: r["saving"])
    met = [best["saving"] >= TARGET_SAVING, (best["speedup"] or 0) >= TARGET_SPEEDUP]
    verdict = ("the target is met" if all(met) else "the target is not met (" + " and ".join(
        m for m, ok in zip([f"FLOP saving below {TARGET_SAVING:.0f}%", f"speed-up below {TARGET_SPEEDUP}x"], met)
        if not ok) + ")")
    return head + (f"The best point within +{TARGET_REL_WER:.0f}% relative WER is {best['name']} (cost weight "
                   f"{best['encoder'].get('cost_weight')}): {fewer(best['saving'])} FLOPs at {best['rel_wer']:+.1f}% "
                   f"relative WER ({best['wer']:.2f}%), {fmt(best['speedup'])}x measured encoder speed-up, so "
                   f"{verdict}; against the paper's {PAPER_SAVING:.0f}% at +{PAPER_REL_WER:.0f}%, that is "
                   f"{best['saving'] - PAPER_SAVING:+.1f} points of FLOP saving at "
                   f"{best['rel_wer'] - PAPER_REL_WER:+.1f} points of relative WER.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, metavar="NAME=EXP_DIR")
    p.add_argument("--reference", required=True, help="the dense model every ratio is taken against")
    p.add_argument("--init", help="the dense model the others were fine-tuned from (its training line is shown)")
    p.add_argument("--suffix", required=True)
    p.add_argument("--cuts", required=True, help="the test cuts (cohort attributes)")
    p.add_argument("--timing", required=True)
    p.add_argument("--stage-timing")
    p.add_argument("--keys", default="accent,region,gender")
    p.add_argument("--compute-key", default="accent")
    p.add_argument("--plot", default="results/wer-vs-compute.png")
    p.add_argument("--command", default="./run.sh")
    p.add_argument("--n-bootstrap", type=int, default=1000, help="speaker resamples for the relative-WER interval")
    p.add_argument("--out", default="RESULTS.md")
    args = p.parse_args()

    keys = list(dict.fromkeys([args.compute_key] + args.keys.split(",")))
    rows = []
    for spec in args.model:
        name, exp_dir = spec.split("=", 1)
        rows.append(load_model_row(name, Path(exp_dir), args.suffix, keys))
    by_name = {r["name"]: r for r in rows}
    if args.reference not in by_name:
        raise SystemExit(f"--reference {args.reference} is not one of the models {list(by_name)}")
    ref = by_name[args.reference]
    timing = json.loads(Path(args.timing).read_text())
    ref_flops = ref["compute"]
    from serac.fairness.cohort_metrics import load_cut_attributes, score_utterances

    speaker = {c: str(a.get("speaker", c)) for c, a in load_cut_attributes(args.cuts).items()}
    for r in rows:
        recogs = Path(r["exp_dir"]) / "decode" / "test" / f"recogs-test-{args.suffix}.txt"
        r["errors"] = {c: u.errors for c, u in score_utterances(recogs).items()}
    for r in rows:
        if set(r["compute"]) != set(ref_flops):
            raise SystemExit(f"{r['name']}: its test decode covers other utterances than {args.reference}'s")
        r["flop_fraction"] = sum(f for f, _ in r["compute"].values()) / sum(f for f, _ in ref_flops.values())
        r["saving"] = 100 * (1 - r["flop_fraction"])
        t = timing["models"].get(r["name"])
        r["time_fraction"] = t["time_vs_reference"] if t else None
        r["speedup"] = t["speedup_vs_reference"] if t else None
        r["rel_wer"] = 100 * (r["wer"] - ref["wer"]) / ref["wer"] if ref["wer"] > 0 else 0.0
        r["rel_wer_ci"] = paired_rel_wer_interval(r["errors"], ref["errors"], speaker, args.n_bootstrap)
        worst = r["cohorts"].get(args.compute_key, {})
        r["worst_cohort"] = (worst.get("bottom_cohort"), worst.get("max_wer"))

    out: List[str] = [
        "# synth_assistant / amortized: compute-cost amortized streaming Transformer",
        "",
        f"Written by `local/write_results.py` from the files of a run ({time.strftime('%Y-%m-%d %H:%M')}); "
        f"command: `{args.command}`; "
        + provenance({r["name"]: Path(r["exp_dir"]) for r in rows}),
        "",
        "Xie et al., *Compute cost amortized Transformer for streaming ASR*, Interspeech 2022: per-frame arbitrators "
        "skip each block's MHA and FFN; skipped frames are not computed. Here: a dense streaming Transformer "
        "transducer trained from scratch, then fine-tuned for the same number of epochs as itself (the reference), "
        "with a restricted attention left context (sliding-window baseline), and with arbitrators at each cost "
        "weight. Test set, greedy search, every model decoded on its own. FLOPs are counted per utterance by the "
        "encoder (what the gathered inference runs, arbitrators and front end included; `docs/encoders.md`); "
        "CPU time is the encoder's process CPU time on the whole test set, all models in one process on one thread, "
        f"interleaved batch by batch (passes over test: {timing['repeats']}). The interval on the relative WER "
        f"change resamples test speakers ({args.n_bootstrap} paired bootstrap draws: both models on the same "
        "speakers), so it says how much of a difference the choice of test speakers could make."
        + (" Models named `amortized-kd-*` are also distilled from the dense reference during their fine-tune "
           "(serac's addition, not the paper's: `docs/encoders.md`)." if any(r["distilled"] for r in rows) else ""),
        "",
        f"![WER vs compute]({args.plot})",
        "",
        "## WER vs compute",
        "",
        f"| model | cost weight | left context | executed encoder FLOPs (of dense) | encoder CPU time (of dense) "
        f"| speed-up | test WER % | rel. WER change [95% CI] | worst {args.compute_key} WER % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        enc = r["encoder"]
        worst_name, worst_wer = r["worst_cohort"]
        out.append(
            f"| {r['name']} | {enc.get('cost_weight') if r['kind'] == 'amortized' else '-'} | "
            f"{enc.get('left_context')} | {r['flop_fraction']:.3f} ({fewer(r['saving'])}) | "
            f"{fmt(r['time_fraction'], 3)} | {fmt(r['speedup'], 2)}x | {r['wer']:.2f} | {r['rel_wer']:+.1f}% "
            f"[{r['rel_wer_ci'][0]:+.1f}, {r['rel_wer_ci'][1]:+.1f}] | "
            f"{fmt(worst_wer)} ({worst_name or '-'}) |")
    out += ["", paper_comparison(rows, ref), ""]

    # compute and WER per cohort
    cohort = cohort_of(Path(args.cuts), args.compute_key)
    names = sorted(set(cohort[c] for c in ref_flops))
    shown = [r for r in rows if r["name"] != args.reference]
    out += [f"## Executed encoder FLOPs per {args.compute_key} (fraction of the dense reference's FLOPs on the same "
            "utterances)", "",
            f"| {args.compute_key} | utts | " + " | ".join(r["name"] for r in shown) + " |",
            "|---|---|" + "---|" * len(shown)]
    for c in names:
        ids = [i for i in ref_flops if cohort[i] == c]
        ref_sum = sum(ref_flops[i][0] for i in ids)
        cells = [f"{sum(r['compute'][i][0] for i in ids) / ref_sum:.3f}" for r in shown]
        out.append(f"| {c} | {len(ids)} | " + " | ".join(cells) + " |")
    gated = [r for r in shown if (timing["models"].get(r["name"]) or {}).get("gate_on_fraction")]
    if gated:
        num_blocks = len(timing["models"][gated[0]["name"]]["gate_on_fraction"])
        out += ["", "## Where the arbitrators run the modules (fraction of test frames each block's MHA / FFN runs on)",
                "", "| model | " + " | ".join(f"block {b + 1}" for b in range(num_blocks)) + " |",
                "|---|" + "---|" * num_blocks]
        for r in gated:
            fr = timing["models"][r["name"]]["gate_on_fraction"]
            out.append(f"| {r['name']} | " + " | ".join(f"{m:.2f} / {f:.2f}" for m, f in fr) + " |")
    out += ["", f"## WER per {args.compute_key} (%)", "",
            f"| {args.compute_key} | " + " | ".join(r["name"] for r in rows) + " |", "|---|" + "---|" * len(rows)]
    for c in names:
        out.append(f"| {c} | " + " | ".join(r["cohort_wer"].get(args.compute_key, {}).get(c, "-") for r in rows) + " |")
    out += ["", "## Disparity (worst vs best cohort, relative WER gap)", "",
            "| model | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for r in rows:
        cells = []
        for k in keys:
            s = r["cohorts"].get(k)
            cells.append(f"{s['bottom_cohort']} {fmt(s['relative_gap'], 1)}%" if s and s.get("relative_gap") is not None
                         else "-")
        out.append(f"| {r['name']} | " + " | ".join(cells) + " |")

    out += ["", "## What a frame costs (dense encoder, FLOPs = multiply-accumulates x 2)", ""]
    out += flop_breakdown(ref["encoder"])
    out += ["", "## Training", "", "| model | encoder | parameters (encoder) | last epoch |", "|---|---|---|---|"]
    init_rows = [("dense (from scratch, the others' init)", Path(args.init))] if args.init else []
    for name, exp_dir in init_rows + [(r["name"], Path(r["exp_dir"])) for r in rows]:
        cfg = yaml.safe_load((exp_dir / "config.yaml").read_text())
        enc = {k: v for k, v in cfg["model"]["encoder"].items() if k != "name"}
        params = cfg.get("env", {}).get("encoder_params", 0)
        out.append(f"| {name} | `{json.dumps(enc)}` | {params / 1e6:.2f} M | {last_epoch_line(exp_dir)} |")
    if args.stage_timing and Path(args.stage_timing).is_file():
        out += ["", "## Stage times (wall clock, this run)", "", "| stage | name | seconds | finished |",
                "|---|---|---|---|"]
        with open(args.stage_timing, newline="") as f:
            for r in csv.DictReader(f, delimiter="\t"):
                out.append(f"| {r['stage']} | {r['name']} | {r['seconds']} | {r['finished']} |")
    write_plot(rows, args.reference, Path(args.plot))
    atomic_write_text(Path(args.out), "\n".join(out) + "\n")


if __name__ == "__main__":
    main()
