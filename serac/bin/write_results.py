#!/usr/bin/env python3
"""Write a recipe's RESULTS.md from the files of a run (never typed by hand).

Reads, under each --exp-dir: config.yaml (model, parameters, environment), decode/<set>/wer-summary-*.txt and
stats-*.json (WER, real-time factor), decode/<set>/cohorts-<suffix>/cohort-summary-<key>.json and
cohort-wer-<key>.tsv (per-cohort WER), and the last epoch checkpoint's training statistics.

Usage:
  python -m serac.bin.write_results --exp-dir exp/lstm --sets dev,test --cohort-set test \
      --keys accent,gender,age_band,state,region --title "synth_assistant / asr" --out RESULTS.md
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Dict, List

import yaml

from serac.decode.results import read_summary_wer
from serac.utils import atomic_write_text, provenance
from serac.utils import format_number as fmt


def decode_rows(exp_dir: Path, set_name: str) -> List[Dict]:
    rows = []
    for summary in sorted((exp_dir / "decode" / set_name).glob(f"wer-summary-{set_name}-*.txt")):
        suffix = summary.name[len(f"wer-summary-{set_name}-"): -len(".txt")]
        stats_path = summary.with_name(f"stats-{set_name}-{suffix}.json")
        stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
        rows.append({"suffix": suffix, "wer": read_summary_wer(summary), **stats})
    return rows


def seen_section(exp_dir: Path, set_name: str, text_path: Path) -> List[str]:
    """WER of each decode of ``set_name`` on the sentences that occur verbatim in the training transcripts and on
    the novel ones: an LM trained on those transcripts helps the first kind most."""
    from serac.scoring.wer import load_transcripts, wer_stats

    seen = {ln.strip() for ln in text_path.read_text(encoding="utf-8").splitlines() if ln.strip()}
    out = [f"### {set_name}: sentences seen in the training transcripts vs novel ones", "",
           f"A command grammar repeats itself: some {set_name} sentences occur verbatim in `{text_path.name}` (the "
           f"training transcripts the LM is trained on). WER on each part:", "",
           "| decoding | seen: utts | seen: WER % | novel: utts | novel: WER % |", "|---|---|---|---|---|"]
    for recogs in sorted((exp_dir / "decode" / set_name).glob(f"recogs-{set_name}-*.txt")):
        suffix = recogs.name[len(f"recogs-{set_name}-"): -len(".txt")]
        parts = {True: [], False: []}
        for r in load_transcripts(recogs):
            parts[" ".join(r[1]) in seen].append(r)
        cells = []
        for k in (True, False):
            st = wer_stats(parts[k]) if parts[k] else None
            cells += [str(len(parts[k])), fmt(st["wer"] if st else None)]
        out.append(f"| {suffix} | " + " | ".join(cells) + " |")
    return out


def model_section(exp_dir: Path) -> List[str]:
    cfg = yaml.safe_load((exp_dir / "config.yaml").read_text())
    env = cfg.get("env", {})
    enc = cfg["model"]["encoder"]
    lines = [f"- encoder: `{enc.get('name')}` {json.dumps({k: v for k, v in enc.items() if k != 'name'})}",
             f"- parameters: {env.get('num_params', 0) / 1e6:.2f} M (encoder {env.get('encoder_params', 0) / 1e6:.2f} M),"
             f" vocabulary {env.get('vocab_size')}, {cfg['train']['num_epochs']} epochs, "
             f"loss `{cfg['loss'].get('rnnt_type', 'regular')}` pruned RNN-T (prune range {cfg['loss']['prune_range']})",
             f"- software: torch {env.get('torch')}, lhotse {env.get('lhotse')}, RNN-T backend {env.get('rnnt_backend')},"
             f" git {env.get('git_revision')}, {env.get('cpus')} CPUs"]
    epochs = sorted((int(m.group(1)), p) for p in exp_dir.glob("epoch-*.pt")
                    if (m := re.fullmatch(r"epoch-(\d+)\.pt", p.name)))
    if epochs:
        import torch

        ckpt = torch.load(epochs[-1][1], map_location="cpu", weights_only=False)
        ts = ckpt.get("train_stats", {})
        valid = ckpt.get("valid", {})
        lines.append(f"- last epoch ({epochs[-1][0]}): valid loss {fmt(valid.get('loss'), 4)}, "
                     f"{fmt(ts.get('audio_s', 0) / max(ts.get('elapsed_s', 1e-9), 1e-9), 0)} s of audio per second "
                     f"of training, non-finite losses skipped: {ckpt.get('num_nonfinite', 0)}")
    return lines


def copy_figure(png: Path, figures_dir: Path, out_path: Path) -> str:
    """Copy a plot next to RESULTS.md (exp/ is not committed) and return its link relative to RESULTS.md."""
    import os
    import shutil

    figures_dir.mkdir(parents=True, exist_ok=True)
    dest = figures_dir / png.name
    shutil.copyfile(png, dest)
    return Path(os.path.relpath(dest, out_path.parent)).as_posix()


def cohort_section(exp_dir: Path, set_name: str, keys: List[str], suffix: str, figures_dir: Path,
                   out_path: Path) -> List[str]:
    from serac.fairness.cohort_reports import interval_cell, read_cohort_tsv

    cdir = exp_dir / "decode" / set_name / f"cohorts-{suffix}"
    out = [f"### Per-cohort WER on {set_name} ({suffix})", "",
           "| key | cohorts | overall WER | best cohort | worst cohort | worst/best | relative gap % | "
           "WER std | bottom share of speakers % |", "|---|---|---|---|---|---|---|---|---|"]
    detail = []
    for key in keys:
        summary_path = cdir / f"cohort-summary-{key}.json"
        if not summary_path.is_file():
            raise FileNotFoundError(f"{summary_path} missing: run the scoring stage first")
        s = json.loads(summary_path.read_text())
        sm = s["summary"]
        ratio = sm["max_wer"] / sm["min_wer"] if sm["min_wer"] > 0 else None
        if sm.get("all_cohorts_tie"):
            extremes = f"all tie ({sm['min_wer']:.2f}) | all tie ({sm['max_wer']:.2f})"
        else:
            small = set(sm.get("too_small_cohorts", ()))
            mark = {c: " (too small to judge)" if c in small else "" for c in (sm["top_cohort"], sm["bottom_cohort"])}
            extremes = (f"{sm['top_cohort']} ({sm['min_wer']:.2f}){mark[sm['top_cohort']]} | "
                        f"{sm['bottom_cohort']} ({sm['max_wer']:.2f}){mark[sm['bottom_cohort']]}")
        out.append(f"| {key} | {sm['num_cohorts']} | {s['overall']['wer']:.2f} | {extremes} | {fmt(ratio)} | "
                   f"{fmt(sm['relative_gap'], 1)} | {sm['std_wer']:.2f} | {sm['bottom_speaker_share']:.1f} |")
        detail += ["", f"#### {key}", "", "| cohort | speakers | utts | words | WER | 95% CI | ins | del | sub |",
                   "|---|---|---|---|---|---|---|---|---|"]
        for r in read_cohort_tsv(cdir / f"cohort-wer-{key}.tsv"):
            interval = interval_cell(r["ci_low"], r["ci_high"], r["num_speakers"], r.get("too_small") == "1")
            detail.append(f"| {r['cohort']} | {r['num_speakers']} | {r['num_utts']} | {r['num_words']} | {r['wer']} | "
                          f"{interval} | {r['ins']} | {r['del']} | {r['sub']} |")
        png = cdir / f"cohort-wer-{key}.png"
        if png.is_file():
            detail += ["", f"![{key}]({copy_figure(png, figures_dir, out_path)})"]
    if (cdir / "speaker-wer-map.png").is_file():
        detail += ["", f"![speaker WER map]({copy_figure(cdir / 'speaker-wer-map.png', figures_dir, out_path)})"]
    return out + detail


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--sets", default="test")
    p.add_argument("--cohort-set", default="test")
    p.add_argument("--cohort-suffix", help="decode suffix the cohorts were scored for (default: first greedy)")
    p.add_argument("--keys", default="")
    p.add_argument("--title", default="Results")
    p.add_argument("--command", default="./run.sh", help="the command that reproduces the table")
    p.add_argument("--preamble", default="", help="a file whose text goes under the title")
    p.add_argument("--seen-text", help="training transcripts (one per line, e.g. <lang>/transcript_words.txt): "
                   "WER is also split by whether each test sentence occurs there (what an LM on them memorised)")
    p.add_argument("--out", required=True)
    p.add_argument("--figures-dir", help="where plots are copied (default: results/ next to --out)")
    args = p.parse_args()
    exp_dir = Path(args.exp_dir)
    sets = [s for s in args.sets.split(",") if s]
    lines = [f"# {args.title}", "",
             f"Written by `serac.bin.write_results` from the files of `{exp_dir}` on {time.strftime('%Y-%m-%d')}; "
             f"reproduce with `{args.command}`; {provenance({exp_dir.name: exp_dir})}", ""]
    if args.preamble:
        lines += [Path(args.preamble).read_text().rstrip(), ""]
    lines += ["## Model", ""] + model_section(exp_dir) + ["", "## WER", "",
              "| set | decoding | WER % | ins | del | sub | words | RTF (1 thread) |", "|---|---|---|---|---|---|---|---|"]
    first_greedy = None
    for s in sets:
        for r in decode_rows(exp_dir, s):
            lines.append(f"| {s} | {r['suffix']} | {r['wer']:.2f} | {r.get('ins', '-')} | {r.get('del', '-')} | "
                         f"{r.get('sub', '-')} | {r.get('words', '-')} | {fmt(r.get('rtf'), 3)} |")
            if first_greedy is None and s == args.cohort_set and r["suffix"].startswith("greedy_search"):
                first_greedy = r["suffix"]
    if args.seen_text:
        lines += [""] + seen_section(exp_dir, args.cohort_set, Path(args.seen_text))
    keys = [k for k in args.keys.split(",") if k]
    if keys:
        suffix = args.cohort_suffix or first_greedy
        if suffix is None:
            raise SystemExit(f"no greedy_search decode of {args.cohort_set} found in {exp_dir}")
        out_path = Path(args.out)
        figures = Path(args.figures_dir) if args.figures_dir else out_path.parent / "results"
        lines += [""] + cohort_section(exp_dir, args.cohort_set, keys, suffix, figures, out_path)
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
