#!/usr/bin/env python3
"""Write the encoder comparison table (e.g. egs/synth_assistant/asr/RESULTS-encoders.md) from the files of a run,
never by hand: the WER of every model and seed, one table with each model's mean WER over its seeds next to its
size, compute and streaming cost, the paired speaker-bootstrap 95% interval of ConvRNN-T's relative WER difference
against every other model, whether each training had converged, and a verdict on the ConvRNN-T paper's claim
(ConvRNN-T has the lowest WER), computed from those intervals.

--exp-dirs lists one directory per training; directories whose config.yaml names the same encoder are the seeds of
one model (config.yaml's train.seed tells them apart). Reads, under each:
  config.yaml                                   encoder name and config, seed, parameters (encoder and total)
  epoch-E.pt, epoch-(E-1).pt, epoch-(E-2).pt    the validation losses of the last three epochs (convergence), and
                                                of epoch E the pruned RNN-T and CTC parts (a model that did not
                                                learn to use the audio shows as such next to its WER)
  decode/<set>/wer-summary-<set>-<suffix>.txt   WER of greedy_search-epoch-E-avg-N and
                                                modified_beam_search-epoch-E-avg-N-beam-B on every --sets entry
  decode/<set>/recogs-<set>-<suffix>.txt        the transcripts of both on every --claim-sets entry (per-speaker
                                                errors for the interval)
  decode/<set>/stats-<set>-streaming_greedy_search-chunk-<C>ms-epoch-E-avg-N.json
                                                streaming WER, RTF, compute ms per chunk, algorithmic latency
  decode/<cohort-set>/cohorts-<greedy suffix>/cohort-summary-<cohort-key>.json
                                                worst cohort and its WER
and --cuts-pattern with {set} replaced by a claim set: that set's cuts, for the speaker of every utterance.
Encoder GFLOPs per second of audio come from serac.encoders.cost.encoder_flops_per_second. A missing file is an
error naming it (the stage that writes it has not run).

The interval: per speaker of the claim set, the errors of a model averaged over its seeds (with equal seed counts
the same ratio as summing them), ConvRNN-T against model X on the same draws of speakers (paired), the relative
difference sum(E_ConvRNN-T) / sum(E_X) - 1 and its 2.5-97.5 percentiles over --n-bootstrap draws of as many
speakers as the set has (serac.scoring.power). The claim holds if every interval (ConvRNN-T against each other
model, modified beam search, every claim set) lies below 0, does not hold if one lies above 0, and is undecided
at this size otherwise. Greedy search gets its own line.

A failed training: one whose greedy WER on the first --sets entry that is not a claim set (dev) is --failed-wer
(90) percent or more did not learn to recognise speech (its loss can be flat at the CTC all-blank plateau and pass
for converged); it is named in the convergence table and the verdict, and the claim is judged a second time with
each model counted by its seeds that learned.

Convergence: the validation loss (the "valid loss" of each epoch line in log/train.log, stored in epoch-N.pt; the
checkpoints are read because log/train.log restarts when a training resumes) of epochs E-2, E-1 and E; a training
whose loss moved by less than --converged-pct percent from E-2 to E has converged, otherwise it was still improving
(or rising). A verdict about a model with an unconverged seed says so.

With --converge-epoch E0 (run.sh: E - --compare-converge-gap), convergence is judged on dev WER instead, where it
matters: per model, the relative difference of its greedy WER on the judge set (dev) at epoch E against epoch E0
(both averaged over --avg checkpoints; each speaker's errors averaged over the model's seeds) with its paired
speaker-bootstrap interval. A model whose interval lies below 0 was still improving (flagged in the verdict), one
whose interval lies above 0 got worse, one whose interval includes 0 showed no decidable change over the last E - E0
epochs and counts as converged. The validation losses are then tabled as a trend only (at 15 epochs the
encoder comparison's validation loss moved by 3-37% between consecutive epochs, in both directions, more than any
threshold that would mean "converged"). Reads decode/<dev>/recogs-<dev>-greedy_search-epoch-E(0)-avg-N.txt (and wer-summary) of every run.

Usage:
  python -m serac.bin.write_encoder_table \
      --exp-dirs exp/compare/lstm-seed1,exp/compare/lstm-seed2,exp/compare/conv_rnnt-seed1,exp/compare/conv_rnnt-seed2 \
      --sets dev,test --epoch 30 --avg 5 --beam 4 --chunk-ms 160 --streaming-sets test \
      --cohort-set test --cohort-key accent --claim-sets test --cuts-pattern 'data/fbank/synth_cuts_{set}.jsonl.gz' \
      --out RESULTS-encoders.md
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from serac.checkpoint import load_checkpoint
from serac.decode.naming import decode_suffix, format_ms, streaming_suffix
from serac.decode.results import read_summary_wer
from serac.scoring.per_speaker import Result, cut_speakers
from serac.scoring.power import interval_side, pooled_speaker_errors, relative_difference_interval
from serac.scoring.wer import load_transcripts
from serac.train.convergence import CONVERGENCE_EPOCHS, convergence
from serac.utils import atomic_write_text, provenance
from serac.utils import format_number as fmt

PAPER_WINNER = "conv_rnnt"  # Radfar et al., Interspeech 2022: ConvRNN-T has the lowest WER of the four
PAPER_MODELS = ("lstm", "conv_rnnt", "conformer", "contextnet")
# (key in the tables, decoding method, words): modified beam search first, the decoding the paper reports
METHODS = (("beam", "modified_beam_search", "modified beam search"), ("greedy", "greedy_search", "greedy search"))


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dirs", required=True,
                   help="comma-separated experiment directories, one per training; those of one encoder are its seeds")
    p.add_argument("--sets", default="dev,test", help="decoded sets (greedy and beam WER columns)")
    p.add_argument("--epoch", type=int, required=True)
    p.add_argument("--avg", type=int, default=1)
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--chunk-ms", type=float, default=160.0)
    p.add_argument("--streaming-sets", default="test", help="sets decoded by steps/decode_streaming.sh (comma-separated)")
    p.add_argument("--cohort-set", default="test")
    p.add_argument("--cohort-key", default="accent", help="cohort attribute for the worst-cohort column; '' for none")
    p.add_argument("--claim-sets", default="test", help="sets on which the paper's claim is judged (intervals)")
    p.add_argument("--cuts-pattern", required=True,
                   help="the cuts of a claim set, {set} standing for its name (the speakers of the bootstrap), e.g. "
                        "'data/fbank/synth_cuts_{set}.jsonl.gz'")
    p.add_argument("--n-bootstrap", type=int, default=1000, help="speaker-bootstrap draws per interval")
    p.add_argument("--converged-pct", type=float, default=2.0,
                   help="a training has converged if its validation loss moved by less than this many percent from "
                        "epoch E-2 to E")
    p.add_argument("--converge-epoch", type=int, default=0,
                   help="judge convergence on dev WER: each model's greedy WER on the judge set (dev) at --epoch "
                        "against this earlier epoch (same --avg), paired speaker bootstrap; 0: by validation loss")
    p.add_argument("--failed-wer", type=float, default=90.0,
                   help="a training whose greedy WER on the first --sets entry that is not a claim set (dev) is at "
                        "least this many percent did not learn to recognise speech: flagged, and the claim is also "
                        "judged on the trainings that learned")
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


def collect_run(exp_dir: Path, args: argparse.Namespace) -> Dict[str, Any]:
    """Every figure of one training (one model, one seed), from its files."""
    cfg = yaml.safe_load(_require(exp_dir / "config.yaml", "written by training").read_text())
    env = cfg.get("env", {})
    run: Dict[str, Any] = {"exp_dir": str(exp_dir), "cfg": cfg, "model": cfg["model"]["encoder"]["name"],
                           "seed": cfg["train"].get("seed"), "encoder_params": env.get("encoder_params"),
                           "params": env.get("num_params"), "num_epochs": cfg["train"]["num_epochs"], "wer": {},
                           "recogs": {}}
    first = max(1, args.epoch - CONVERGENCE_EPOCHS + 1)
    valid = {e: load_checkpoint(_require(exp_dir / f"epoch-{e}.pt", "written by training")).get("valid", {})
             for e in range(first, args.epoch + 1)}
    for e, v in valid.items():
        if v.get("loss") is None:
            raise SystemExit(f"{exp_dir}/epoch-{e}.pt has no validation loss (valid.loss): not a serac checkpoint")
    run["valid"] = {k: valid[args.epoch].get(k) for k in ("pruned_loss", "ctc_loss")}
    run["convergence"] = convergence([valid[e]["loss"] for e in sorted(valid)], args.epoch, args.converged_pct)
    for s in args.sets:
        for key, method, _ in METHODS:
            suffix = decode_suffix(method, args.epoch, args.avg, args.beam)
            path = exp_dir / "decode" / s / f"wer-summary-{s}-{suffix}.txt"
            run["wer"][(s, key)] = read_summary_wer(_require(path, f"{method} decode of {s}"))
            if s in args.claim_sets:
                run["recogs"][(s, key)] = _require(exp_dir / "decode" / s / f"recogs-{s}-{suffix}.txt",
                                                   f"{method} decode of {s}")
    stream = streaming_suffix(args.chunk_ms, args.epoch, args.avg)
    run["streaming"] = {}
    for s in args.streaming_sets:
        stats_path = exp_dir / "decode" / s / f"stats-{s}-{stream}.json"
        run["streaming"][s] = json.loads(_require(stats_path, f"streaming decode of {s}").read_text())
    if args.converge_epoch:
        cset = judge_set(args)
        for e in (args.epoch, args.converge_epoch):
            suffix = decode_suffix("greedy_search", e, args.avg, args.beam)
            what = f"greedy decode of {cset} at epoch {e} (convergence, --converge-epoch)"
            run["recogs"][(cset, f"greedy@{e}")] = _require(exp_dir / "decode" / cset / f"recogs-{cset}-{suffix}.txt",
                                                             what)
            run["wer"][(cset, f"greedy@{e}")] = read_summary_wer(
                _require(exp_dir / "decode" / cset / f"wer-summary-{cset}-{suffix}.txt", what))
    if args.cohort_key:
        greedy = decode_suffix("greedy_search", args.epoch, args.avg, args.beam)
        summary_path = (exp_dir / "decode" / args.cohort_set / f"cohorts-{greedy}" /
                        f"cohort-summary-{args.cohort_key}.json")
        sm = json.loads(_require(summary_path, f"{args.cohort_key} cohort scoring").read_text())["summary"]
        run["worst_cohort"] = (sm["bottom_cohort"], sm["max_wer"])
    return run


def judge_set(args: argparse.Namespace) -> str:
    """The set a failed training is judged on: the first --sets entry that is not a claim set (dev), else the first."""
    return next((s for s in args.sets if s not in args.claim_sets), args.sets[0])


def failed_training(run: Dict[str, Any], args: argparse.Namespace) -> bool:
    """A training that did not learn to recognise speech: greedy WER >= --failed-wer on the judge set (e.g. a CTC
    head still at the all-blank plateau and a transducer emitting one sentence for every utterance). Stores that
    WER in ``run["judge_wer"]`` for the tables that name it."""
    run["judge_wer"] = run["wer"][(judge_set(args), "greedy")]
    return run["judge_wer"] >= args.failed_wer


def group_models(runs: List[Dict[str, Any]], args: argparse.Namespace) -> List[Dict[str, Any]]:
    """The runs of each encoder (in the order of first appearance) as one model: its seeds, mean WERs over them,
    size and compute (from the first seed's configuration; seeds differ in the random numbers only)."""
    models: Dict[str, Dict[str, Any]] = {}
    for r in runs:
        m = models.setdefault(r["model"], {"model": r["model"], "runs": []})
        twin = [o["exp_dir"] for o in m["runs"] if o["seed"] == r["seed"]]
        if twin:
            raise SystemExit(f"{twin[0]} and {r['exp_dir']} are both {r['model']} with seed {r['seed']}: "
                             f"give each seed once")
        m["runs"].append(r)
    for m in models.values():
        for r in m["runs"]:
            r["failed"] = failed_training(r, args)
        first = m["runs"][0]
        m.update(encoder_params=first["encoder_params"], params=first["params"], gflops=encoder_gflops(first["cfg"]),
                 seeds=[r["seed"] for r in m["runs"]],
                 wer={k: float(np.mean([r["wer"][k] for r in m["runs"]])) for k in first["wer"]})
    return list(models.values())


def interval_result(interval: Tuple[float, float]) -> str:
    """'lower' (the interval lies below 0: ConvRNN-T's WER is lower), 'higher' (above 0), or 'undecided'."""
    side = interval_side(interval)
    return "lower" if side == "below" else "higher" if side == "above" else "undecided"


class ClaimDecodes:
    """The claim sets' decodes, each file read once, when first needed: the speakers of a set's cuts and every run's
    recogs."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.n_bootstrap, self.cuts_pattern = args.n_bootstrap, args.cuts_pattern
        self._speakers: Dict[str, Dict[str, Any]] = {}
        self.transcripts: Dict[Path, List[Result]] = {}

    def cuts(self, set_name: str) -> Path:
        return _require(Path(self.cuts_pattern.format(set=set_name)), f"the cuts of {set_name} (--cuts-pattern)")

    def speakers(self, set_name: str) -> Dict[str, Any]:
        if set_name not in self._speakers:
            self._speakers[set_name] = cut_speakers(self.cuts(set_name))
        return self._speakers[set_name]

    def results(self, run: Dict[str, Any], key: Tuple[str, str]) -> List[Result]:
        path = run["recogs"][key]
        if path not in self.transcripts:
            self.transcripts[path] = load_transcripts(path)
        return self.transcripts[path]

    def difference(self, runs_a: Sequence[Dict[str, Any]], runs_b: Sequence[Dict[str, Any]], key: Tuple[str, str],
                   key_b: Optional[Tuple[str, str]] = None) -> Dict[str, Any]:
        """A's relative WER difference to B on ``key`` (set, method; B's decode ``key_b`` if given, e.g. another
        epoch of the same set), each speaker's errors averaged over a side's runs, with its paired speaker-bootstrap
        interval; KeyError / ValueError on decodes that do not pair."""
        key_b = key_b or key
        ea, eb, names = pooled_speaker_errors([self.results(r, key) for r in runs_a],
                                              [self.results(r, key_b) for r in runs_b], self.speakers(key[0]))
        interval = relative_difference_interval(ea, eb, len(names), self.n_bootstrap)
        point = 100.0 * (ea.sum() / eb.sum() - 1.0) if eb.sum() > 0 else float("nan")
        return {"point": point, "interval": interval, "result": interval_result(interval), "speakers": len(names)}


def compare_to_winner(models: List[Dict[str, Any]], args: argparse.Namespace, decodes: ClaimDecodes
                      ) -> List[Dict[str, Any]]:
    """The interval of ConvRNN-T against every other model, per claim set and decoding method (none without
    ConvRNN-T)."""
    winner = next((m for m in models if m["model"] == PAPER_WINNER), None)
    if winner is None:
        return []
    out = []
    for s in args.claim_sets:
        for key, _, words in METHODS:
            for other in models:
                if other is winner:
                    continue
                pairs = [(winner["runs"], other["runs"], False)]
                learned_a, learned_b = _learned(winner), _learned(other)
                if learned_a and learned_b and (learned_a != winner["runs"] or learned_b != other["runs"]):
                    pairs.append((learned_a, learned_b, True))  # also without the trainings that did not learn
                for runs_a, runs_b, learned_only in pairs:
                    try:
                        diff = decodes.difference(runs_a, runs_b, (s, key))
                    except (KeyError, ValueError) as e:  # other cuts, other references, or no errors to divide by
                        raise SystemExit(f"{PAPER_WINNER} vs {other['model']} on {s} ({words}, cuts "
                                         f"{decodes.cuts(s)}): {e.args[0]}")
                    label = f"`{other['model']}`"
                    if learned_only:
                        label += f" (seeds that learned: {_seeds(runs_b)}; {PAPER_WINNER}: {_seeds(runs_a)})"
                    out.append({"set": s, "method": key, "words": words, "other": other["model"], "label": label,
                                "learned_only": learned_only,
                                "has_failed": learned_a != winner["runs"] or learned_b != other["runs"], **diff})
    return out


def seed_spread(models: List[Dict[str, Any]], args: argparse.Namespace, decodes: ClaimDecodes
                ) -> List[Dict[str, Any]]:
    """Each further seed of a model against its first seed (the same recipe, other random numbers), per claim set and
    decoding method: the relative WER difference and its paired speaker-bootstrap interval. The intervals of the
    comparisons resample speakers, not trainings; these rows show how far two trainings of one recipe differ."""
    out = []
    for s in args.claim_sets:
        for key, _, words in METHODS:
            for m in models:
                first = m["runs"][0]
                for other in m["runs"][1:]:
                    try:
                        diff = decodes.difference([other], [first], (s, key))
                    except (KeyError, ValueError) as e:
                        raise SystemExit(f"{m['model']} seed {other['seed']} vs seed {first['seed']} on {s} "
                                         f"({words}): {e.args[0]}")
                    out.append({"set": s, "method": key, "words": words, "model": m["model"], "seed": other["seed"],
                                "first": first["seed"], **diff})
    return out


def dev_convergence(models: List[Dict[str, Any]], args: argparse.Namespace, decodes: ClaimDecodes) -> None:
    """With --converge-epoch: each model's greedy WER on the judge set (dev) at --epoch against --converge-epoch,
    seeds pooled per speaker, paired speaker bootstrap; stored as ``model["dev_convergence"]`` with its status
    ('still improving' if the interval lies below 0, 'worse' above 0, otherwise 'no decidable change', which counts
    as converged)."""
    if not args.converge_epoch:
        return
    cset = judge_set(args)
    now, before = (cset, f"greedy@{args.epoch}"), (cset, f"greedy@{args.converge_epoch}")
    for m in models:
        try:
            diff = decodes.difference(m["runs"], m["runs"], now, before)
        except (KeyError, ValueError) as e:
            raise SystemExit(f"{m['model']}: epoch {args.epoch} vs {args.converge_epoch} on {cset} (greedy, cuts "
                             f"{decodes.cuts(cset)}): {e.args[0]}")
        status = {"lower": "still improving", "higher": "worse"}.get(diff["result"], "no decidable change")
        m["dev_convergence"] = {**diff, "status": status, "converged": status != "still improving",
                                "wer": {e: float(np.mean([r["wer"][(cset, f"greedy@{e}")] for r in m["runs"]]))
                                        for e in (args.converge_epoch, args.epoch)}}


def _learned(model: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [r for r in model["runs"] if not r["failed"]]


def _seeds(runs: Sequence[Dict[str, Any]]) -> str:
    return " ".join(str(r["seed"]) for r in runs)


def claim_verdict(comparisons: Sequence[Dict[str, Any]]) -> Tuple[str, List[Dict[str, Any]]]:
    """'holds' if every interval lies below 0, 'does not hold' if one lies above 0 (then those comparisons),
    otherwise 'undecided at this size' (then the undecided ones)."""
    above = [c for c in comparisons if c["result"] == "higher"]
    if above:
        return "does not hold", above
    undecided = [c for c in comparisons if c["result"] == "undecided"]
    if undecided:
        return "undecided at this size", undecided
    return "holds", []


def _which(comparisons: Sequence[Dict[str, Any]]) -> str:
    return "; ".join(f"vs {c['label']} on {c['set']} [{c['interval'][0]:+.1f}%, {c['interval'][1]:+.1f}%]"
                     for c in comparisons)


def verdict_lines(models: List[Dict[str, Any]], comparisons: List[Dict[str, Any]],
                  args: argparse.Namespace) -> List[str]:
    """The paper's claim judged from the intervals (modified beam search; greedy search on its own line), the
    paper's models missing from the run, and a flag on every model with an unconverged seed."""
    names = [m["model"] for m in models]
    absent = [m for m in PAPER_MODELS if m not in names]
    if PAPER_WINNER not in names:
        return [f"`{PAPER_WINNER}` is not among the compared models, so the paper's claim (ConvRNN-T has the lowest "
                f"WER) cannot be checked here."]
    if len(names) == 1:
        return [f"Only `{PAPER_WINNER}` is in this run: there is nothing to compare it with."]
    out = []
    failed = [(m["model"], r) for m in models for r in m["runs"] if r["failed"]]
    subsets = [("", lambda c: not c["learned_only"])]
    if failed:  # the claim again, each model by the seeds that learned
        subsets.append(("Counting only the trainings that learned, w",
                        lambda c: c["learned_only"] or not c["has_failed"]))
    for prefix, keep in subsets:
        for key, _, words in METHODS:
            chosen = [c for c in comparisons if c["method"] == key and keep(c)]
            if not chosen:
                continue
            verdict, which = claim_verdict(chosen)
            line = (f"{prefix or 'W'}ith {words} on {', '.join(args.claim_sets)}, the paper's claim that ConvRNN-T has "
                    f"the lowest WER **{verdict}**")
            if verdict == "holds":
                line += " (every interval lies below 0)."
            elif verdict == "does not hold":
                line += f": ConvRNN-T's WER is higher {_which(which)}."
            else:
                line += f": no interval lies above 0, but these include 0: {_which(which)}."
            out.append(line)
    if failed:
        who = "; ".join(f"`{name}` seed {r['seed']} ({judge_set(args)} greedy WER {r['judge_wer']:.1f}%)"
                        for name, r in failed)
        out.append(f"**Flagged**: trainings that did not learn to recognise speech ({judge_set(args)} greedy WER >= "
                   f"{fmt(args.failed_wer, 0)}%): {who}. The first verdict pools them with their models' other "
                   f"seeds, so against such a model it compares a failed training more than the encoder; the second "
                   f"counts each model by its seeds that learned (a model none of whose seeds learned is left out "
                   f"of it).")
    if absent:
        out.append(f"Not in this run: {', '.join(f'`{m}`' for m in absent)} (of the paper's four); the claim is "
                   f"judged against {', '.join(f'`{m}`' for m in names if m != PAPER_WINNER)} only.")
    if args.converge_epoch:
        cset = judge_set(args)
        improving = [m for m in models if not m["dev_convergence"]["converged"]]
        if improving:
            who = "; ".join(f"`{m['model']}` {_difference_cells(m['dev_convergence']).replace(' | ', ' ')}"
                            for m in improving)
            out.append(f"**Flagged**: still improving on {cset} from epoch {args.converge_epoch} to {args.epoch} "
                       f"(greedy WER, the interval lies below 0): {who}; this verdict compares models that were "
                       f"still training, not the encoders at convergence.")
        else:
            out.append(f"Every model had stopped improving by epoch {args.epoch}: no {cset} greedy WER fell decidably "
                       f"from epoch {args.converge_epoch} to {args.epoch} (every interval includes 0 or lies above "
                       f"it; Convergence, above).")
        return out
    unconverged = [(m["model"], r) for m in models for r in m["runs"] if not r["convergence"]["converged"]]
    if unconverged:
        who = "; ".join(f"`{name}` seed {r['seed']}: {r['convergence']['status']}"
                        + (f", {r['convergence']['change']:+.1f}%" if r["convergence"]["change"] is not None else "")
                        for name, r in unconverged)
        out.append(f"**Flagged**: not every training is known to have converged by epoch {args.epoch} ({who}), so "
                   f"this verdict compares models that may still have been training, not the encoders at "
                   f"convergence.")
    else:
        out.append(f"Every training had converged by epoch {args.epoch} (validation loss within "
                   f"{fmt(args.converged_pct, 1)}% over the last {CONVERGENCE_EPOCHS} epochs).")
    return out


def _m(n: Optional[int]) -> str:
    return fmt(None if n is None else n / 1e6)


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _difference_cells(c: Dict[str, Any]) -> str:
    """The 'relative difference | 95% interval' cells of a comparison row."""
    point = "-" if np.isnan(c["point"]) else f"{c['point']:+.1f}%"
    return f"{point} | [{c['interval'][0]:+.1f}%, {c['interval'][1]:+.1f}%]"


def render(models: List[Dict[str, Any]], comparisons: List[Dict[str, Any]], args: argparse.Namespace,
           seed_rows: Sequence[Dict[str, Any]] = ()) -> str:
    date = time.strftime("%Y-%m-%d")
    runs = [r for m in models for r in m["runs"]]
    epochs = sorted({r["num_epochs"] for r in runs})
    enc = [m["encoder_params"] for m in models if m["encoder_params"]]
    spread = (max(enc) / min(enc) - 1) * 100 if enc else None
    sources = ", ".join(f"`{r['exp_dir']}`" for r in runs)
    first = args.streaming_sets[0]  # cost and latency from the first streaming set (the others run the same way)
    lines = [f"# {args.title}", "",
             f"Written by `serac.bin.write_encoder_table` from the files of {sources} on {date}; reproduce with "
             f"`{args.command}`; {provenance({Path(r['exp_dir']).name: Path(r['exp_dir']) for r in runs})}", "",
             f"Epoch {args.epoch}, averaged over the last {args.avg}; trained for {', '.join(map(str, epochs))} "
             f"epoch(s). Encoder parameter counts differ by at most {fmt(spread, 1)}% (largest / smallest). "
             f"Streaming: {format_ms(args.chunk_ms)} ms chunks, one utterance at a time, greedy search after every "
             f"chunk (`steps/decode_streaming.sh`).", "",
             "## Accuracy and cost (mean over seeds)", ""]
    wer_cols = [f"{s} {k}" for s in args.sets for k in ("greedy", "beam")]
    head = (["model", "seeds"] + wer_cols + [f"streaming {first} ({format_ms(args.chunk_ms)} ms)",
            "encoder params (M)", "total params (M)", "encoder GFLOPs / s of audio", "streaming RTF",
            "compute ms per chunk: p50", "p90", "algorithmic latency ms"])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in models:
        st = [r["streaming"][first] for r in m["runs"]]
        cells = ([f"`{m['model']}`", " ".join(map(str, m["seeds"]))]
                 + [f"{m['wer'][(s, k)]:.2f}" for s in args.sets for k in ("greedy", "beam")]
                 + [f"{_mean([x['wer'] for x in st]):.2f}", _m(m["encoder_params"]), _m(m["params"]),
                    f"{m['gflops']:.3f}", fmt(_mean([x["rtf"] for x in st]), 4),
                    fmt(_mean([x["chunk_compute_ms"]["p50"] for x in st])),
                    fmt(_mean([x["chunk_compute_ms"]["p90"] for x in st])),
                    format_ms(max(x["algorithmic_latency_ms"] for x in st))])
        lines.append("| " + " | ".join(cells) + " |")
    threads = sorted({r["streaming"][first]["num_threads"] for r in runs})
    within_chunk = ""
    if all(r["streaming"][first]["algorithmic_latency_ms"] == r["streaming"][first]["chunk_ms"] for r in runs):
        within_chunk = " (for every model here it equals the chunk: the look-ahead lies inside the chunk)"
    lines += ["", "WER: the mean of the seeds' WERs (each seed's in the next table). GFLOPs: "
              "`encoder_flops_per_second` (matmuls, convolutions, attention and LSTMs; elementwise work not "
              f"counted). RTF and compute time per chunk: the streaming decode of {first}, timed by itself with "
              f"{' / '.join(map(str, threads))} thread(s), one utterance at a time, percentiles over full-size "
              "chunks, averaged over the seeds; timings depend on the machine and its load. Algorithmic latency: "
              "measured, the longest a feature frame waits for the input its encoder output needs" + within_chunk
              + ".", "", "## WER % per seed", ""]
    head = ["model", "seed"] + wer_cols
    if args.cohort_key:
        head.append(f"worst {args.cohort_key} on {args.cohort_set} (greedy)")
    head += [f"streaming {s} ({format_ms(args.chunk_ms)} ms)" for s in args.streaming_sets]
    head.append(f"valid loss, epoch {args.epoch}: pruned / CTC")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in models:
        for r in m["runs"]:
            cells = [f"`{m['model']}`", str(r["seed"])] + [f"{r['wer'][(s, k)]:.2f}" for s in args.sets
                                                          for k in ("greedy", "beam")]
            if args.cohort_key:
                cells.append(f"{r['worst_cohort'][1]:.2f} ({r['worst_cohort'][0]})")
            cells += [f"{r['streaming'][s]['wer']:.2f}" for s in args.streaming_sets]
            cells.append(f"{fmt(r['valid']['pruned_loss'], 3)} / {fmt(r['valid']['ctc_loss'], 3)}")
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Valid loss: per frame on the training run's validation cuts, from the epoch-{args.epoch} checkpoint "
              "(not the averaged model). A CTC loss still at the all-blank plateau where training starts marks a model "
              "that did not learn to use the audio."]
    if comparisons:
        lines += ["", "## ConvRNN-T against each model: relative WER difference, 95% interval", "",
                  "| set | decoding | against | relative difference | 95% interval | ConvRNN-T's WER is |",
                  "|---|---|---|---|---|---|"]
        for c in comparisons:
            lines.append(f"| {c['set']} | {c['words']} | {c['label']} | {_difference_cells(c)} | {c['result']} |")
        sizes = sorted({c["speakers"] for c in comparisons})
        lines += ["", "Relative difference: sum over speakers of ConvRNN-T's errors / the other model's - 1, each "
                  "speaker's errors averaged over a model's seeds. Interval: paired speaker bootstrap "
                  f"(`serac.scoring.power`), {args.n_bootstrap} draws of {' / '.join(map(str, sizes))} speakers (the "
                  "set's) with replacement, both models on the same draw; 2.5-97.5 percentiles. `lower`: the interval "
                  "lies below 0; `higher`: above 0; `undecided`: it includes 0."]
    # the largest seed-to-seed difference (NaN without seed rows: then no comparison is flagged against it)
    largest = max((abs(c["point"]) for c in seed_rows if not np.isnan(c["point"])), default=float("nan"))
    if seed_rows:
        lines += ["", "## Seed to seed: the same recipe, another training", "",
                  "| set | decoding | model | seed vs seed | relative difference | 95% interval | decided |",
                  "|---|---|---|---|---|---|---|"]
        for c in seed_rows:
            lines.append(f"| {c['set']} | {c['words']} | `{c['model']}` | {c['seed']} vs {c['first']} | "
                         f"{_difference_cells(c)} | {'no' if c['result'] == 'undecided' else 'yes'} |")
        lines += ["", "The same relative difference and interval between two seeds of one model (paired speaker "
                  "bootstrap as above). The intervals of the comparisons resample test speakers, not trainings: a "
                  "difference between two models that is not much larger than the differences between two trainings "
                  f"of one model (here up to {largest:.1f}%) says as much about the seeds as about the encoders."]
    first_epoch = max(1, args.epoch - CONVERGENCE_EPOCHS + 1)
    epochs_read = f"epoch {args.epoch}" if first_epoch == args.epoch else f"epochs {first_epoch}-{args.epoch}"
    lines += ["", "## Convergence", ""]
    if args.converge_epoch:
        cset, e0 = judge_set(args), args.converge_epoch
        lines += [f"| model | seeds | {cset} greedy, epoch {e0} | epoch {args.epoch} | relative change | 95% interval "
                  f"| judged |", "|---|---|---|---|---|---|---|"]
        for m in models:
            dc = m["dev_convergence"]
            lines.append(f"| `{m['model']}` | {' '.join(map(str, m['seeds']))} | {dc['wer'][e0]:.2f} | "
                         f"{dc['wer'][args.epoch]:.2f} | {_difference_cells(dc)} | {dc['status']} |")
        lines += ["", f"{cset} greedy WER of the model averaged over {args.avg} checkpoints at epoch {e0} and at epoch "
                  f"{args.epoch} (mean of the seeds); relative change: sum over speakers of the errors at epoch "
                  f"{args.epoch} / at epoch {e0} - 1, each speaker's errors averaged over the seeds; interval: paired "
                  f"speaker bootstrap as above ({args.n_bootstrap} draws). `still improving`: the interval lies below "
                  f"0; `no decidable change` (converged at this budget): it includes 0; `worse`: above 0 "
                  f"(`--converge-epoch`). The validation losses below are a trend only.", ""]
    lines += [f"| model | seed | valid loss, {epochs_read} | change, first to last | "
              f"{'trend' if args.converge_epoch else 'judged'} |", "|---|---|---|---|---|"]
    for m in models:
        for r in m["runs"]:
            cv = r["convergence"]
            change = "-" if cv["change"] is None else f"{cv['change']:+.1f}%"
            status = cv["status"]
            if r["failed"]:
                status = (f"did not learn ({judge_set(args)} greedy WER {r['judge_wer']:.1f}% "
                          f">= {fmt(args.failed_wer, 0)}%)")
            lines.append(f"| `{m['model']}` | {r['seed']} | {' / '.join(f'{x:.4f}' for x in cv['losses'])} | "
                         f"{change} | {status} |")
    rule = (f"converged if it moved by less than {fmt(args.converged_pct, 1)}% from the first of them to the last "
            f"(`--converged-pct`)")
    if args.converge_epoch:  # judged on dev WER above; the losses are a trend
        rule = f"a trend only, `converged` meaning that it moved by less than {fmt(args.converged_pct, 1)}%"
    lines += ["", f"Validation loss per frame (the `valid loss` of the epoch lines in `log/train.log`, read from the "
              f"epoch checkpoints) of the last {CONVERGENCE_EPOCHS} epochs; {rule}; a training whose greedy WER on "
              f"{judge_set(args)} is {fmt(args.failed_wer, 0)}% or more did not learn to recognise speech "
              f"(`--failed-wer`), however flat its loss.",
              "", "## Verdict", ""]
    lines += verdict_lines(models, comparisons, args)
    close = [c for c in comparisons
             if c["result"] != "undecided" and not c["learned_only"] and abs(c["point"]) <= 2 * largest]
    if close:
        which = "; ".join(f"vs `{c['other']}` on {c['set']} ({c['words']}) {c['point']:+.1f}%" for c in close)
        lines.append(f"**Seeds**: these decided differences are no more than twice the largest difference between two "
                     f"seeds of one model ({largest:.1f}%, above): {which}. More seeds per model, not more test "
                     f"speakers, would make them firm.")
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
    if args.converge_epoch and not 0 < args.converge_epoch < args.epoch:
        raise SystemExit(f"--converge-epoch {args.converge_epoch} must lie between 0 and --epoch {args.epoch}")
    if "{set}" not in args.cuts_pattern:
        raise SystemExit(f"--cuts-pattern {args.cuts_pattern!r} has no {{set}}")
    exp_dirs = [Path(d) for d in args.exp_dirs.split(",") if d]
    if not exp_dirs:
        raise SystemExit("--exp-dirs is empty")
    try:
        models = group_models([collect_run(d, args) for d in exp_dirs], args)
        decodes = ClaimDecodes(args)
        comparisons = compare_to_winner(models, args, decodes)
        seed_rows = seed_spread(models, args, decodes)
        dev_convergence(models, args, decodes)
    except FileNotFoundError as e:
        raise SystemExit(str(e))
    atomic_write_text(args.out, render(models, comparisons, args, seed_rows))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
