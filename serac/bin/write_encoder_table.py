#!/usr/bin/env python3
"""Write the encoder comparison table (e.g. egs/synth_assistant/asr/RESULTS-encoders.md) from the files of a run,
never by hand: one row per experiment directory, and a closing sentence, computed from the same numbers, saying
which model has the lowest test WER and whether the ConvRNN-T paper's claim (ConvRNN-T lowest) holds.

Reads, under each --exp-dirs entry:
  config.yaml                                   encoder name and config, parameters (encoder and total), epochs
  epoch-E.pt                                    the validation losses of epoch E (pruned RNN-T and CTC), so a
                                                model that did not train shows as such next to its WER
  decode/<set>/wer-summary-<set>-<suffix>.txt   WER of greedy_search-epoch-E-avg-N and
                                                modified_beam_search-epoch-E-avg-N-beam-B on every --sets entry
  decode/<set>/stats-<set>-streaming_greedy_search-chunk-<C>ms-epoch-E-avg-N.json
                                                streaming WER, RTF, compute ms per chunk, algorithmic latency
  decode/<cohort-set>/cohorts-<greedy suffix>/cohort-summary-<cohort-key>.json
                                                worst cohort and its WER
and computes encoder GFLOPs per second of audio with serac.encoders.cost.encoder_flops_per_second.
A missing file is an error naming it (the stage that writes it has not run).

Usage:
  python -m serac.bin.write_encoder_table --exp-dirs exp/compare/lstm,exp/compare/conv_rnnt,exp/compare/conformer \
      --sets dev,test --epoch 30 --avg 5 --beam 4 --chunk-ms 160 --streaming-sets test \
      --cohort-set test --cohort-key accent --claim-sets test --out RESULTS-encoders.md
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from serac.decode.naming import decode_suffix, format_ms, streaming_suffix
from serac.decode.results import read_summary_wer
from serac.checkpoint import load_checkpoint
from serac.utils import atomic_write_text
from serac.utils import format_number as fmt

PAPER_WINNER = "conv_rnnt"  # Radfar et al., Interspeech 2022: ConvRNN-T has the lowest WER of the four


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dirs", required=True, help="comma-separated experiment directories, one per model")
    p.add_argument("--sets", default="dev,test", help="decoded sets (greedy and beam WER columns)")
    p.add_argument("--epoch", type=int, required=True)
    p.add_argument("--avg", type=int, default=1)
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--chunk-ms", type=float, default=160.0)
    p.add_argument("--streaming-sets", default="test", help="sets decoded by steps/decode_streaming.sh (comma-separated)")
    p.add_argument("--cohort-set", default="test")
    p.add_argument("--cohort-key", default="accent", help="cohort attribute for the worst-cohort column; '' for none")
    p.add_argument("--claim-sets", default="test", help="sets on which the lowest WER is named")
    p.add_argument("--title", default="Encoder comparison")
    p.add_argument("--command", default="./run.sh", help="the command that reproduces the table")
    p.add_argument("--out", required=True)
    return p


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing ({what}): run the stage that writes it first")
    return path


def encoder_gflops(cfg: Dict[str, Any]) -> float:
    """Encoder GFLOPs per second of audio, counted on a freshly built encoder of the run's configuration (the
    count depends on shapes only, not on the trained weights)."""
    import torch

    from serac.encoders import build_encoder
    from serac.encoders.cost import encoder_flops_per_second

    torch.manual_seed(0)
    num_features = int(cfg.get("env", {}).get("num_features") or 80)
    return encoder_flops_per_second(build_encoder(num_features, cfg["model"]["encoder"])) / 1e9


def collect(exp_dir: Path, args: argparse.Namespace) -> Dict[str, Any]:
    """Every figure of one row, from the run's files."""
    cfg = yaml.safe_load(_require(exp_dir / "config.yaml", "written by training").read_text())
    env = cfg.get("env", {})
    row: Dict[str, Any] = {"exp_dir": str(exp_dir), "model": cfg["model"]["encoder"]["name"],
                           "encoder_params": env.get("encoder_params"), "params": env.get("num_params"),
                           "num_epochs": cfg["train"]["num_epochs"], "gflops": encoder_gflops(cfg), "wer": {}}
    valid = load_checkpoint(_require(exp_dir / f"epoch-{args.epoch}.pt", "written by training")).get("valid", {})
    row["valid"] = {k: valid.get(k) for k in ("pruned_loss", "ctc_loss")}
    greedy = decode_suffix("greedy_search", args.epoch, args.avg, args.beam)
    beam = decode_suffix("modified_beam_search", args.epoch, args.avg, args.beam)
    for s in args.sets:
        for method, suffix in (("greedy", greedy), ("beam", beam)):
            path = exp_dir / "decode" / s / f"wer-summary-{s}-{suffix}.txt"
            row["wer"][(s, method)] = read_summary_wer(_require(path, f"{method} decode of {s}"))
    stream = streaming_suffix(args.chunk_ms, args.epoch, args.avg)
    row["streaming"] = {}
    for s in args.streaming_sets:
        stats_path = exp_dir / "decode" / s / f"stats-{s}-{stream}.json"
        row["streaming"][s] = json.loads(_require(stats_path, f"streaming decode of {s}").read_text())
    if args.cohort_key:
        summary_path = (exp_dir / "decode" / args.cohort_set / f"cohorts-{greedy}" /
                        f"cohort-summary-{args.cohort_key}.json")
        sm = json.loads(_require(summary_path, f"{args.cohort_key} cohort scoring").read_text())["summary"]
        row["worst_cohort"] = (sm["bottom_cohort"], sm["max_wer"])
    return row


def _m(n: Optional[int]) -> str:
    return fmt(None if n is None else n / 1e6)


def claim_sentences(rows: List[Dict[str, Any]], claim_sets: Sequence[str]) -> List[str]:
    """Which model has the lowest WER on each claim set (modified beam search, then greedy), and whether that
    supports the paper's claim that ConvRNN-T is lowest. Ties are reported as ties."""
    models = [r["model"] for r in rows]
    out = []
    verdicts = []
    for s in claim_sets:
        for method, label in (("beam", "modified beam search"), ("greedy", "greedy search")):
            wers = {r["model"]: r["wer"][(s, method)] for r in rows}
            best = min(wers.values())
            winners = [m for m in models if wers[m] == best]
            who = " and ".join(f"`{m}`" for m in winners) + (" (tied)" if len(winners) > 1 else "")
            line = f"Lowest {s} WER with {label}: {who}, {best:.2f}%"
            if PAPER_WINNER in wers and PAPER_WINNER not in winners:
                line += f"; `{PAPER_WINNER}` has {wers[PAPER_WINNER]:.2f}% ({wers[PAPER_WINNER] - best:+.2f} absolute)"
            out.append(line + ".")
            if method == "beam":
                verdicts.append(PAPER_WINNER in winners and len(winners) == 1)
    if PAPER_WINNER not in models:
        out.append(f"`{PAPER_WINNER}` is not among the compared models, so the paper's claim (ConvRNN-T has the "
                   f"lowest WER) cannot be checked here.")
    elif all(verdicts):
        out.append(f"The paper's claim that ConvRNN-T has the lowest WER **holds** in this run (modified beam search, "
                   f"{', '.join(claim_sets)}).")
    else:
        failed = [s for s, ok in zip(claim_sets, verdicts) if not ok]
        out.append(f"The paper's claim that ConvRNN-T has the lowest WER **does not hold** in this run (modified beam "
                   f"search on {', '.join(failed)}).")
    return out


def render(rows: List[Dict[str, Any]], args: argparse.Namespace) -> str:
    date = time.strftime("%Y-%m-%d")
    epochs = sorted({r["num_epochs"] for r in rows})
    enc = [r["encoder_params"] for r in rows if r["encoder_params"]]
    spread = (max(enc) / min(enc) - 1) * 100 if enc else None
    sources = ", ".join(f"`{r['exp_dir']}`" for r in rows)
    lines = [f"# {args.title}", "",
             f"Written by `serac.bin.write_encoder_table` from the files of {sources} on {date}; reproduce with "
             f"`{args.command}`.", "",
             f"Epoch {args.epoch}, averaged over the last {args.avg}; trained for {', '.join(map(str, epochs))} "
             f"epoch(s). Encoder parameter counts differ by at most {fmt(spread, 1)}% (largest / smallest). "
             f"Streaming: {format_ms(args.chunk_ms)} ms chunks, one utterance at a time, greedy search after every "
             f"chunk (`steps/decode_streaming.sh`).", "",
             "## WER %", ""]
    head = ["model"] + [f"{s} {m}" for s in args.sets for m in ("greedy", "beam")]
    if args.cohort_key:
        head.append(f"worst {args.cohort_key} on {args.cohort_set} (greedy)")
    head += [f"streaming {s} ({format_ms(args.chunk_ms)} ms)" for s in args.streaming_sets]
    head.append(f"valid loss, epoch {args.epoch}: pruned / CTC")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"`{r['model']}`"] + [f"{r['wer'][(s, m)]:.2f}" for s in args.sets for m in ("greedy", "beam")]
        if args.cohort_key:
            cells.append(f"{r['worst_cohort'][1]:.2f} ({r['worst_cohort'][0]})")
        cells += [f"{r['streaming'][s]['wer']:.2f}" for s in args.streaming_sets]
        cells.append(f"{fmt(r['valid']['pruned_loss'], 3)} / {fmt(r['valid']['ctc_loss'], 3)}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Valid loss: per frame on the training run's validation cuts, from the epoch-{args.epoch} checkpoint "
              "(not the averaged model). A CTC loss still at the all-blank plateau where training starts marks a model "
              "that did not learn to use the audio."]
    first = args.streaming_sets[0]  # cost and latency from the first streaming set (the others run the same way)
    threads = sorted({r["streaming"][first]["num_threads"] for r in rows})
    within_chunk = ""
    if all(r["streaming"][first]["algorithmic_latency_ms"] == r["streaming"][first]["chunk_ms"] for r in rows):
        within_chunk = " (for every model here it equals the chunk: the look-ahead lies inside the chunk)"
    lines += ["", "## Size, compute and latency", "",
              "| model | encoder params (M) | total params (M) | encoder GFLOPs / s of audio | streaming RTF | "
              "compute ms per chunk: mean | p50 | p90 | p99 | look-ahead ms | algorithmic latency ms |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        st = r["streaming"][first]
        lat = st["chunk_compute_ms"]
        lines.append(f"| `{r['model']}` | {_m(r['encoder_params'])} | {_m(r['params'])} | {r['gflops']:.3f} | "
                     f"{fmt(st['rtf'], 4)} | {fmt(lat['mean'])} | {fmt(lat['p50'])} | {fmt(lat['p90'])} | "
                     f"{fmt(lat['p99'])} | {format_ms(st['look_ahead_ms'])} | {format_ms(st['algorithmic_latency_ms'])} |")
    lines += ["",
              "GFLOPs: `encoder_flops_per_second` (matmuls, convolutions, attention and LSTMs; elementwise work not "
              f"counted). RTF and compute time per chunk: the streaming decode of {first}, timed by itself with "
              f"{' / '.join(map(str, threads))} thread(s), one utterance at a time (percentiles over full-size "
              "chunks); timings depend on the machine and its load. Algorithmic latency: measured, the longest a "
              "feature frame waits for the input its encoder output needs" + within_chunk + ".", "", "## Verdict", ""]
    lines += claim_sentences(rows, args.claim_sets)
    return "\n".join(lines) + "\n"


def main() -> None:
    args = get_parser().parse_args()
    args.sets = [s for s in args.sets.split(",") if s]
    args.claim_sets = [s for s in args.claim_sets.split(",") if s]
    args.streaming_sets = [s for s in args.streaming_sets.split(",") if s]
    if not args.streaming_sets:
        raise SystemExit("--streaming-sets is empty")
    unknown = [s for s in args.claim_sets if s not in args.sets]
    if unknown:
        raise SystemExit(f"--claim-sets {unknown} are not among --sets {args.sets}")
    exp_dirs = [Path(d) for d in args.exp_dirs.split(",") if d]
    if not exp_dirs:
        raise SystemExit("--exp-dirs is empty")
    try:
        rows = [collect(d, args) for d in exp_dirs]
    except FileNotFoundError as e:
        raise SystemExit(str(e))
    atomic_write_text(args.out, render(rows, args))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
