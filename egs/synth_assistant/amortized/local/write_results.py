#!/usr/bin/env python3
"""Write the amortized-Transformer recipe's RESULTS.md (and the WER-vs-compute plot) from the files of a run.

Reads, per --model NAME=EXP_DIR[:EPOCH] (EPOCH replaces the epoch of --suffix in that model's decode names; joint
models train for more epochs): config.yaml (encoder settings, how it was trained, parameters), log/train.log
(last epoch line), decode/{dev,test}/wer-summary-<set>-<suffix>.txt and compute-<set>-<suffix>.tsv (executed
encoder FLOPs and the frames each block's MHA / FFN ran on, per utterance), decode/test/recogs-test-<suffix>.txt
and cohorts-<suffix>/cohort-summary-<key>.json / cohort-wer-<key>.tsv; --timing is serac.bin.time_encoders' JSON
(encoder CPU time of every model in one process; optional); --cuts gives each test utterance's speaker and
cohorts. Nothing is typed by hand: every number below comes from those files.

The operating point is chosen on dev (local/operating_point.py: the gated model with the fewest FLOPs within
--max-rel-wer percent relative dev WER of the reference); test is reported once for it, with the paired
speaker-bootstrap interval of its relative WER change and the verdicts of the recipe's and the paper's claims,
and against its static module-drop counterpart static-<NAME> when the run has one.

Usage:
  local/write_results.py --model dense-ft=exp/dense-ft --model amortized-cw1=exp/amortized-cw1 \
      --model joint-cw1=exp/joint-cw1:18 --model static-amortized-cw1=exp/static-amortized-cw1 \
      --reference dense-ft --init exp/dense --suffix modified_beam_search-epoch-6-avg-1-beam-4 \
      --cuts data/fbank/synth_cuts_test.jsonl.gz --timing exp/encoder-time.json --stage-timing exp/timing.tsv \
      --compute-key accent,condition --plot results/wer-vs-compute.png --out RESULTS.md
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # local/operating_point.py, also when imported by a test
from operating_point import (Model, dev_points, flop_fraction, module_differ_shares, module_fractions,  # noqa: E402
                             parse_model, per_frame_decision_share, read_compute, rel_wer, select, within,
                             within_utterance_share)
from serac.decode.results import read_summary_wer  # noqa: E402
from serac.scoring.power import interval_side  # noqa: E402
from serac.utils import atomic_write_text, provenance  # noqa: E402
from serac.utils import format_number as fmt  # noqa: E402

# Xie et al. (Interspeech 2022): 60% less compute at 3% relative WER degradation (LibriSpeech)
PAPER_SAVING, PAPER_REL_WER = 60.0, 3.0
# this recipe's targets
TARGET_SAVING, TARGET_REL_WER, TARGET_SPEEDUP = 50.0, 5.0, 1.6


def last_epoch_line(exp_dir: Path) -> str:
    """The trainer's summary of the last epoch (losses, time, audio/s): from log/train.log, or, when the newest run
    had nothing left to train (a rerun of a finished stage rewrites train.log with "nothing to do"), from the newest
    of the earlier runs' log/train-<time>.log that has one."""
    logs = [exp_dir / "log" / "train.log"] + sorted((exp_dir / "log").glob("train-*.log"), reverse=True)
    for log in logs:
        found = re.findall(r"(epoch \d+: train loss[^\n]*)", log.read_text()) if log.is_file() else []
        if found:
            return found[-1]
    return "-"


def model_kind(name: str, encoder_cfg: Dict[str, Any]) -> str:
    """``amortized`` (per-frame arbitrators), ``static`` (arbitrators off, modules dropped by ``static_skip``, or
    named ``static-<NAME>``: the counterpart of a gated model whose majority runs every module drops none) or
    ``dense`` (every module on every frame: the reference, the sliding-window baselines)."""
    if encoder_cfg.get("arbitrators", True):  # the encoder's default
        return "amortized"
    return "static" if encoder_cfg.get("static_skip") or name.startswith("static-") else "dense"


def training_label(name: str, cfg: Dict[str, Any]) -> str:
    """How a model was trained, from its config.yaml: fine-tuned from <init dir> / from scratch with gate warm-up
    / static drop of <NAME> / distilled."""
    enc = cfg["model"]["encoder"]
    kind = model_kind(name, enc)
    init = (cfg.get("paths") or {}).get("init_from")
    init = None if init in (None, "None", "") else Path(str(init))
    if kind == "static":
        return f"static drop of {name[len('static-'):]}" if name.startswith("static-") else "static module drop"
    if kind == "amortized" and (cfg.get("distill") or {}).get("teacher"):
        return "distilled"
    if init is not None:
        return f"fine-tuned from {init.parent.name or init}"
    if kind == "amortized" and int(enc.get("gate_warmup_steps") or 0) > 0:
        return "from scratch with gate warm-up"
    return "from scratch"


def load_model_row(model: Model, keys: List[str]) -> Dict[str, Any]:
    """Everything RESULTS.md shows of one model, read from its exp dir (dev and test decodes must exist)."""
    cfg_path = model.exp_dir / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{model.name}: {cfg_path} is missing")
    cfg = yaml.safe_load(cfg_path.read_text())
    enc = cfg["model"]["encoder"]
    row: Dict[str, Any] = {
        "name": model.name, "model": model, "exp_dir": str(model.exp_dir), "encoder": enc,
        "params": cfg.get("env", {}).get("encoder_params"), "kind": model_kind(model.name, enc),
        "training": training_label(model.name, cfg),
        "distilled": bool((cfg.get("distill") or {}).get("teacher")),
        "wer": read_summary_wer(model.decode_file("test", "wer-summary")),
        "dev_wer": read_summary_wer(model.decode_file("dev", "wer-summary")),
        "compute": read_compute(model.decode_file("test", "compute", "tsv")),
        "last_epoch": last_epoch_line(model.exp_dir), "cohorts": {}, "cohort_wer": {},
    }
    cdir = model.exp_dir / "decode" / "test" / f"cohorts-{model.suffix}"
    for key in keys:
        summary = cdir / f"cohort-summary-{key}.json"
        if summary.is_file():
            row["cohorts"][key] = json.loads(summary.read_text())["summary"]
            with open(cdir / f"cohort-wer-{key}.tsv", newline="") as f:
                row["cohort_wer"][key] = {r["cohort"]: r["wer"] for r in csv.DictReader(f, delimiter="\t")}
    return row


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

    from serac.scoring.power import relative_difference_interval

    if set(errors) != set(ref_errors):
        raise ValueError("paired bootstrap: the two decodes cover different utterances")
    spk = sorted({speaker[c] for c in errors})
    index = {s: i for i, s in enumerate(spk)}
    e, e_ref = np.zeros(len(spk)), np.zeros(len(spk))
    for c, n in errors.items():
        e[index[speaker[c]]] += n
        e_ref[index[speaker[c]]] += ref_errors[c]
    return relative_difference_interval(e, e_ref, len(spk), n_bootstrap, seed)


def fewer(saving: float) -> str:
    """'12.3% fewer' / '4.0% more' (FLOPs)."""
    return f"{saving:.1f}% fewer" if saving >= 0 else f"{-saving:.1f}% more"


def claim_verdict(saving: float, interval: Tuple[float, float], min_saving: float, max_rel_wer: float) -> str:
    """The verdict on "saving >= min_saving % FLOPs at <= +max_rel_wer % relative WER" from the measured saving
    and the 95% interval of the relative WER change: the interval inside the bound holds, outside it does not."""
    side = interval_side(interval, max_rel_wer, upper_inclusive=True)   # the bound itself is inside "<= +max_rel_wer %"
    if saving < min_saving or side == "above":
        return "does not hold"
    if side == "below":
        return "holds"
    return "undecided at this size"


def gating_verdict(interval: Tuple[float, float]) -> str:
    """"Input-adaptive gating beats static pruning at matched FLOPs" from the 95% interval of the static model's
    relative WER change against the gated one: entirely above 0 holds, entirely at or below 0 does not."""
    side = interval_side(interval, upper_inclusive=True)   # at or below 0: the static model nowhere worse
    if side == "above":
        return "holds"
    if side == "below":
        return "does not hold"
    return "undecided"


def pct(change: Optional[float]) -> str:
    """'+1.2%', '-' for none."""
    return fmt(change) if change is None else f"{change:+.1f}%"


def ci(interval: Optional[Tuple[float, float]]) -> str:
    """'[-1.2, +3.4]' (percent), '[-]' for none."""
    return "[-]" if interval is None else f"[{interval[0]:+.1f}, {interval[1]:+.1f}]"


def operating_point_section(rows: List[Dict[str, Any]], ref: Dict[str, Any], points: Dict[str, Tuple[float, float]],
                            chosen: Optional[str], max_rel_wer: float) -> List[str]:
    """The dev choice, its test result (once) and the verdicts of the recipe's target and the paper's claim."""
    out = ["## Operating point (chosen on dev, reported once on test)", ""]
    head = (f"The paper reports {PAPER_SAVING:.0f}% less compute at +{PAPER_REL_WER:.0f}% relative WER; the target "
            f"here is >= {TARGET_SAVING:.0f}% fewer encoder FLOPs at <= +{TARGET_REL_WER:.0f}% relative WER (and a "
            f">= {TARGET_SPEEDUP}x measured encoder speed-up) against the dense reference {ref['name']}.")
    if chosen is None:
        return out + [head + " No gated model in this run: no operating point."]
    r = next(r for r in rows if r["name"] == chosen)
    dev_rel, dev_fraction = rel_wer(points[chosen][0], ref["dev_wer"]), points[chosen][1]
    admitted = [n for n, (w, _) in points.items() if within(w, ref["dev_wer"], max_rel_wer)]
    how = (f"the gated model with the fewest executed encoder FLOPs on dev among the {len(admitted)} of "
           f"{len(points)} within +{max_rel_wer:g}% relative dev WER of the reference ({ref['dev_wer']:.2f}%)"
           if admitted else
           f"no gated model is within +{max_rel_wer:g}% relative dev WER of the reference ({ref['dev_wer']:.2f}%), "
           f"so the one with the lowest dev WER")
    speed = ("not measured" if r["speedup"] is None else
             f"{r['speedup']:.2f}x, target {'met' if r['speedup'] >= TARGET_SPEEDUP else 'not met'}")
    out += [head + f" The operating point is chosen on dev, test unseen: {how} is **{chosen}** ({r['training']}; "
            f"dev: {dev_fraction:.3f} of the reference's FLOPs, {points[chosen][0]:.2f}% WER, {dev_rel:+.1f}% "
            f"relative). On test, once: {fewer(r['saving'])} FLOPs, {r['wer']:.2f}% WER against {ref['wer']:.2f}%, "
            f"a relative WER change of {r['rel_wer']:+.1f}% {ci(r['rel_wer_ci'])} (95%, paired speaker bootstrap); "
            f"measured encoder speed-up {speed}.", "",
            "Verdicts from the interval (holds: saving >= S and the interval's upper end <= +R; does not hold: "
            "saving < S or the lower end > +R; otherwise undecided at this size):", ""]
    for label, saving, bound in [("the recipe's target", TARGET_SAVING, TARGET_REL_WER),
                                 ("the paper's claim", PAPER_SAVING, PAPER_REL_WER)]:
        out.append(f"- {label}, saving >= {saving:.0f}% FLOPs at <= +{bound:.0f}% relative WER: "
                   f"**{claim_verdict(r['saving'], r['rel_wer_ci'], saving, bound)}** ({r['saving']:.1f}% saved, "
                   f"interval {ci(r['rel_wer_ci'])}).")
    return out


def static_section(rows: List[Dict[str, Any]], chosen: Optional[str], speaker: Dict[str, str],
                   n_bootstrap: int) -> List[str]:
    """Each gated model against its static module-drop counterpart ``static-<NAME>`` (the modules its gates run on
    fewer than half of the dev frames dropped on every frame): FLOPs, test WER, the paired interval of the static
    model's relative WER change against the gated one, and the verdict."""
    by_name = {r["name"]: r for r in rows}
    pairs = [(by_name[r["name"][len("static-"):]], r) for r in rows if r["kind"] == "static"
             and r["name"].startswith("static-") and r["name"][len("static-"):] in by_name]
    out = ["## Input-adaptive gating vs static pruning at matched FLOPs (test)", "",
           "`static-<NAME>`: the dense model fine-tuned with the modules that NAME's arbitrators run on fewer than "
           "half of the dev frames dropped on every frame (`static_skip`), the others run on every frame. The "
           "interval is the static model's relative WER change against the gated one (paired speaker bootstrap); "
           "the claim \"input-adaptive gating beats static pruning at matched FLOPs\" holds if it is entirely "
           "above 0, does not hold if it is entirely at or below 0, and is undecided otherwise.", ""]
    if pairs:
        out += ["| gated model | static model | modules dropped | FLOPs gated / static (of dense) | test WER % gated "
                "/ static | static vs gated rel. WER [95% CI] | verdict |", "|---|---|---|---|---|---|---|"]
    for gated, static in pairs:
        # a relative change needs the gated model's errors: with none on test there is nothing to compare against
        interval = (paired_rel_wer_interval(static["errors"], gated["errors"], speaker, n_bootstrap)
                    if sum(gated["errors"].values()) > 0 else None)
        verdict = gating_verdict(interval) if interval else "undecided (the gated model makes no test errors)"
        static["vs_gated"] = (pct(rel_wer(static["wer"], gated["wer"]) if interval else None), interval, verdict)
        dropped = ", ".join(static["encoder"].get("static_skip") or []) or "none"
        out.append(f"| {gated['name']} | {static['name']} | {dropped} | {gated['flop_fraction']:.3f} / "
                   f"{static['flop_fraction']:.3f} | {gated['wer']:.2f} / {static['wer']:.2f} | "
                   f"{static['vs_gated'][0]} {ci(interval)} | {verdict} |")
    if chosen is None:
        return out
    static = by_name.get(f"static-{chosen}")
    if static is None or static["kind"] != "static":
        out += ([""] if pairs else []) + [f"The operating point {chosen} has no static counterpart "
                                            f"(`static-{chosen}`) in this run: the comparison at matched FLOPs is "
                                            "not made for it."]
        return out
    gated = by_name[chosen]
    change, interval, verdict = static["vs_gated"]
    out += ["", f"At the operating point: {chosen} runs {gated['flop_fraction']:.3f} of the dense FLOPs on test, "
            f"static-{chosen} {static['flop_fraction']:.3f}; test WER {gated['wer']:.2f}% vs {static['wer']:.2f}%, "
            f"static vs gated {change} {ci(interval)}: input-adaptive gating beats static pruning at matched "
            f"FLOPs: **{verdict}**."]
    return out


def cohort_compute_table(key: str, cohort: Dict[str, str], shown: List[Dict[str, Any]],
                         ref: Dict[str, Any]) -> List[str]:
    """Executed FLOPs per cohort of ``key`` (fraction of the reference's on the same utterances), with the spread
    (max - min over the cohorts) per model as the last row."""
    ref_rows = ref["compute"]
    missing = sorted(set(ref_rows) - set(cohort))
    if missing:
        raise ValueError(f"--cuts: no cut {missing[0]!r} (and {len(missing) - 1} more of the test decode)")
    names = sorted(set(cohort[c] for c in ref_rows))
    out = [f"## Executed encoder FLOPs per {key} (fraction of the dense reference's FLOPs on the same utterances)",
           "", f"| {key} | utts | " + " | ".join(r["name"] for r in shown) + " |", "|---|---|" + "---|" * len(shown)]
    fractions = {r["name"]: [] for r in shown}
    for c in names:
        ids = [i for i in ref_rows if cohort[i] == c]
        cells = []
        for r in shown:
            fractions[r["name"]].append(flop_fraction(r["compute"], ref_rows, ids, r["name"]))
            cells.append(f"{fractions[r['name']][-1]:.3f}")
        out.append(f"| {c} | {len(ids)} | " + " | ".join(cells) + " |")
    out.append("| **spread (max - min)** | | " + " | ".join(
        f"{max(fractions[r['name']]) - min(fractions[r['name']]):.3f}" for r in shown) + " |")
    return out


def module_table(gated: List[Dict[str, Any]]) -> List[str]:
    """Per gated model and block: the fraction of test frames its MHA / FFN ran on and, in brackets, the share
    of those modules' frame decisions that differ from the module's majority decision on test."""
    gated = [r for r in gated if r["module_fractions"] is not None]
    if not gated:
        return []
    num_blocks = max(len(r["module_fractions"]) for r in gated)
    out = ["## Where the arbitrators run the modules (fraction of test frames each block's MHA / FFN runs on)", "",
           "In brackets: the per-frame-decision share of the block's MHA / FFN, the share of its test frames decided "
           "against the module's majority decision on test (0: the module is on, or off, on every frame, as static "
           "pruning would have it; 0.5 at most). The main table's column averages it over all modules.", "",
           "| model | " + " | ".join(f"block {b + 1}" for b in range(num_blocks)) + " |",
           "|---|" + "---|" * num_blocks]
    for r in gated:
        shares = module_differ_shares(r["module_fractions"])
        out.append(f"| {r['name']} | " + " | ".join(
            f"{m:.2f} / {f:.2f} ({sm:.2f} / {sf:.2f})" for (m, f), (sm, sf) in zip(r["module_fractions"], shares))
            + " |")
    return out


def times(speedup: Optional[float]) -> str:
    """'2.64x', or '-' when not measured."""
    return fmt(speedup) if speedup is None else f"{speedup:.2f}x"


def search_label(suffix: str) -> str:
    """How the decodes of ``suffix`` searched: "greedy search" or "modified beam search (beam N)"."""
    beam = re.search(r"-beam-(\d+)", suffix)
    if suffix.startswith("modified_beam_search"):
        return f"modified beam search (beam {beam.group(1)})" if beam else "modified beam search"
    return "greedy search"


def write_plot(rows: List[Dict[str, Any]], reference: str, chosen: Optional[str], path: Path,
               search: str = "greedy search") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, x_key, x_label in [(axes[0], "flop_fraction", "executed encoder FLOPs (fraction of dense)"),
                               (axes[1], "time_fraction", "measured encoder CPU time (fraction of dense)")]:
        for training in sorted({r["training"] for r in rows if r["kind"] == "amortized"}):
            amortized = sorted((r for r in rows if r["kind"] == "amortized" and r["training"] == training
                                and r.get(x_key) is not None), key=lambda r: r[x_key])
            if amortized:
                ax.plot([r[x_key] for r in amortized], [r["wer"] for r in amortized], "o-",
                        label=f"gated, {training}")
                for r in amortized:
                    ax.annotate(f"w={r['encoder'].get('cost_weight')}", (r[x_key], r["wer"]), fontsize=8,
                                textcoords="offset points", xytext=(4, 4))
        static = [r for r in rows if r["kind"] == "static" and r.get(x_key) is not None]
        if static:
            ax.plot([r[x_key] for r in static], [r["wer"] for r in static], "x", markersize=9,
                    label="static module drop")
        for r in rows:
            if r["kind"] == "dense" and r.get(x_key) is not None:
                is_ref = r["name"] == reference
                ax.plot(r[x_key], r["wer"], "*" if is_ref else "s", markersize=12 if is_ref else 8,
                        label="dense" if is_ref else f"sliding window (left {r['encoder'].get('left_context')})")
            if r["name"] == chosen and r.get(x_key) is not None:
                ax.plot(r[x_key], r["wer"], "o", markersize=14, markerfacecolor="none", color="k",
                        label="operating point (chosen on dev)")
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"test WER (%), {search}")
    axes[0].legend(fontsize=7)
    fig.suptitle("synth_assistant test: WER vs encoder compute")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def baseline_verdict(interval: Tuple[float, float]) -> str:
    """The reference's relative WER change against the baseline: "at least as good" holds when the interval is
    entirely below 0, does not hold when it is entirely above 0, and is undecided when it contains 0."""
    side = interval_side(interval)
    return {"below": "holds (better)", "above": "does not hold (worse)"}.get(side, "undecided at this size (level)")


def baseline_section(spec: Optional[str], ref: Dict[str, Any], speaker: Dict[str, str], n_bootstrap: int,
                     search: str = "greedy search") -> List[str]:
    """The dense reference against a baseline decode of the same test set (``NAME=RECOGS``: the asr recipe's LSTM
    transducer, as that recipe decodes it), with the paired speaker-bootstrap interval of the
    reference's relative WER change and the verdict on "the dense reference is at least as good as the baseline"."""
    if not spec:
        return []
    from serac.fairness.cohort_metrics import score_utterances

    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"--baseline {spec}: expected NAME=RECOGS_FILE")
    out = [f"## The dense reference against the baseline {name} (test)", ""]
    if not Path(path).is_file():
        return out + [f"Not compared: `{path}` is missing (decode the baseline on test first)."]
    scored = score_utterances(path)
    if set(scored) != set(ref["errors"]):
        raise ValueError(f"--baseline {path}: its test cuts are not the reference's ({len(scored)} vs "
                         f"{len(ref['errors'])} utterances, {len(set(scored) ^ set(ref['errors']))} not in both)")
    errors = {c: u.errors for c, u in scored.items()}
    words = sum(u.num_words for u in scored.values())
    wer = 100 * sum(errors.values()) / max(words, 1)
    interval = paired_rel_wer_interval(ref["errors"], errors, speaker, n_bootstrap) if sum(errors.values()) else None
    change = pct(rel_wer(ref["wer"], wer) if interval else None)
    verdict = baseline_verdict(interval) if interval else "undecided (the baseline makes no test errors)"
    return out + [
        f"`{path}`: the same test utterances; the reference: {search}. The interval is the reference's "
        "relative WER change against the baseline (paired speaker bootstrap); \"the dense reference is at least "
        "as good as the baseline\" holds if it is entirely below 0, does not hold if it is entirely above 0, and "
        "is undecided otherwise.", "",
        f"| model | test WER % | {ref['name']} vs {name} rel. WER [95% CI] | at least as good |", "|---|---|---|---|",
        f"| {name} | {wer:.2f} | - | - |",
        f"| {ref['name']} | {ref['wer']:.2f} | {change} {ci(interval)} | **{verdict}** |"]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, metavar="NAME=EXP_DIR[:EPOCH]",
                   help="EPOCH replaces the epoch of --suffix in this model's decode names (default: --suffix's)")
    p.add_argument("--reference", required=True, help="the dense model every ratio is taken against")
    p.add_argument("--init", help="the dense model the others were fine-tuned from (its training line is shown)")
    p.add_argument("--suffix", required=True, help="decode suffix, e.g. modified_beam_search-epoch-6-avg-1-beam-4")
    p.add_argument("--cuts", required=True, help="the test cuts (speakers and cohort attributes)")
    p.add_argument("--timing", help="serac.bin.time_encoders' JSON (encoder CPU time); none: not shown")
    p.add_argument("--stage-timing")
    p.add_argument("--keys", default="accent,region,gender", help="cohort keys of the disparity table")
    p.add_argument("--compute-key", default="accent,condition",
                   help="comma list: a table of executed FLOPs per cohort of each key (the first also gives the "
                        "main table's worst-cohort column and the WER-per-cohort table)")
    p.add_argument("--max-rel-wer", type=float, default=TARGET_REL_WER,
                   help="the operating point: fewest dev FLOPs within this relative dev WER (percent) of the reference")
    p.add_argument("--plot", default="results/wer-vs-compute.png")
    p.add_argument("--command", default="./run.sh")
    p.add_argument("--baseline", metavar="NAME=RECOGS",
                   help="a baseline's test recogs (e.g. the asr recipe's LSTM): the reference is compared with it")
    p.add_argument("--n-bootstrap", type=int, default=1000, help="speaker resamples for the relative-WER interval")
    p.add_argument("--out", default="RESULTS.md")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    try:
        write(args)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"{Path(__file__).name}: {e}")


def write(args: argparse.Namespace) -> None:
    compute_keys = [k for k in args.compute_key.split(",") if k]
    if not compute_keys:
        raise ValueError("--compute-key: no key")
    keys = list(dict.fromkeys(compute_keys + [k for k in args.keys.split(",") if k]))
    models = [parse_model(spec, args.suffix) for spec in args.model]
    if len({m.name for m in models}) != len(models):
        raise ValueError(f"--model: a name given twice ({[m.name for m in models]})")
    rows = [load_model_row(m, keys) for m in models]
    by_name = {r["name"]: r for r in rows}
    if args.reference not in by_name:
        raise ValueError(f"--reference {args.reference} is not one of the models {list(by_name)}")
    ref = by_name[args.reference]
    timing = json.loads(Path(args.timing).read_text()) if args.timing else {"models": {}, "repeats": None}
    from serac.fairness.cohort_metrics import load_cut_attributes, score_utterances

    attributes = load_cut_attributes(args.cuts)
    speaker = {c: str(a.get("speaker", c)) for c, a in attributes.items()}
    for r in rows:
        r["errors"] = {c: u.errors for c, u in score_utterances(r["model"].decode_file("test", "recogs")).items()}
        missing = sorted(set(r["errors"]) - set(speaker))
        if missing:
            raise ValueError(f"{r['name']}: test cut {missing[0]!r} is not in --cuts {args.cuts}")
    for r in rows:
        r["flop_fraction"] = flop_fraction(r["compute"], ref["compute"], what=f"{r['name']}'s test decode")
        r["saving"] = 100 * (1 - r["flop_fraction"])
        t = timing["models"].get(r["name"])
        r["time_fraction"] = t["time_vs_reference"] if t else None
        r["speedup"] = t["speedup_vs_reference"] if t else None
        r["rel_wer"] = rel_wer(r["wer"], ref["wer"])
        r["rel_wer_ci"] = paired_rel_wer_interval(r["errors"], ref["errors"], speaker, args.n_bootstrap)
        r["module_fractions"] = module_fractions(r["compute"])
        r["decision_share"] = per_frame_decision_share(r["compute"])  # majority from test itself
        r["within_utterance_share"] = within_utterance_share(r["compute"])
        worst = r["cohorts"].get(compute_keys[0], {})
        r["worst_cohort"] = (worst.get("bottom_cohort"), worst.get("max_wer"))
    gated = [r for r in rows if r["kind"] == "amortized"]
    points = dev_points([r["model"] for r in gated], ref["model"]) if gated else {}
    chosen = select(points, ref["dev_wer"], args.max_rel_wer) if gated else None

    passes = f" (passes over test: {timing['repeats']})" if args.timing else " (not measured in this run)"
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
        "weight; gated models trained jointly from scratch (gate warm-up, then a rising cost weight) and static "
        "module-drop baselines sit in the same tables (column \"training\"). Every model is decoded on dev and test, "
        f"{search_label(args.suffix)}, each on its own; the operating point is chosen on dev and test is read once "
        "for it. FLOPs are counted per utterance by the encoder (what the gathered inference runs, arbitrators and "
        "front end included; `docs/encoders.md`); CPU time is the encoder's process CPU time on the whole test "
        f"set, all models in one process on one thread, interleaved batch by batch{passes}. The interval on the "
        f"relative WER change resamples test speakers ({args.n_bootstrap} paired bootstrap draws: both models on "
        "the same speakers), so it says how much of a difference the choice of test speakers could make. The "
        "per-frame-decision share is the share of (frame, module) decisions on test that differ from the module's "
        "majority decision on test: 0 is static pruning, 0.5 the most input-dependent; in brackets its part decided "
        "within utterances (decisions that differ from the module's majority in the same utterance), the rest being "
        "whole utterances decided differently."
        + (" Models named `amortized-kd-*` are also distilled from the dense reference during their fine-tune "
           "(serac's addition, not the paper's: `docs/encoders.md`)." if any(r["distilled"] for r in rows) else ""),
        "",
        f"![WER vs compute]({args.plot})",
        "",
        "## WER vs compute",
        "",
        f"| model | training | cost weight | left context | executed encoder FLOPs (of dense) | encoder CPU time "
        f"(of dense) | speed-up | dev WER % | test WER % | rel. WER change [95% CI] | per-frame-decision share "
        f"(within utterances) "
        f"| worst {compute_keys[0]} WER % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        enc = r["encoder"]
        worst_name, worst_wer = r["worst_cohort"]
        out.append(
            f"| {r['name']} | {r['training']} | {enc.get('cost_weight') if r['kind'] == 'amortized' else '-'} | "
            f"{enc.get('left_context')} | {r['flop_fraction']:.3f} ({fewer(r['saving'])}) | "
            f"{fmt(r['time_fraction'], 3)} | {times(r['speedup'])} | {r['dev_wer']:.2f} | {r['wer']:.2f} | "
            f"{r['rel_wer']:+.1f}% {ci(r['rel_wer_ci'])} | {fmt(r['decision_share'], 3)} "
            f"({fmt(r['within_utterance_share'], 3)}) | "
            f"{fmt(worst_wer)} ({worst_name or '-'}) |")
    baseline = baseline_section(args.baseline, ref, speaker, args.n_bootstrap, search_label(args.suffix))
    out += ([""] + baseline) if baseline else []
    out += [""] + operating_point_section(rows, ref, points, chosen, args.max_rel_wer)
    out += [""] + static_section(rows, chosen, speaker, args.n_bootstrap)

    # compute and WER per cohort
    shown = [r for r in rows if r["name"] != args.reference]
    cohorts = {k: {c: str(a.get(k, "?")) for c, a in attributes.items()} for k in compute_keys}
    for k in compute_keys:
        out += [""] + cohort_compute_table(k, cohorts[k], shown, ref)
    table = module_table(gated)
    if table:
        out += [""] + table
    for k in compute_keys:
        names = sorted(set(cohorts[k][c] for c in ref["compute"]))
        out += ["", f"## WER per {k} (%)", "", f"| {k} | " + " | ".join(r["name"] for r in rows) + " |",
                "|---|" + "---|" * len(rows)]
        for c in names:
            out.append(f"| {c} | " + " | ".join(r["cohort_wer"].get(k, {}).get(c, "-") for r in rows) + " |")
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
    write_plot(rows, args.reference, chosen, Path(args.plot), search_label(args.suffix))
    atomic_write_text(Path(args.out), "\n".join(out) + "\n")


if __name__ == "__main__":
    main()
