"""RESULTS.md of the STS recipe, from the files of a run (never typed by hand): the conversations, one row per
system (cpWER, ORC-WER, turn counting, turn-boundary latency, with their intervals), per overlap-ratio bin, the
streaming cost, and the paper's claims side by side with what this run measured.

A claim's verdict comes from the paired 95% bootstrap interval of the difference (serac.multitalker.scoring's
:func:`paired_differences`): **holds** when the whole interval lies on the claimed side of zero, **does not hold**
when it lies wholly on the other side, **undecided** when it contains zero (this run is too small or too short to
tell). Whether the size of the effect matches the paper's is a separate question the table states but does not
judge: the paper's numbers are on LibriCSS with much larger models.

The **single-speaker floor** (``single_talker``: a single-talker model decoding each mixture as one stream; a system
whose config has no ``separator``) is a row of every table marked "floor", and the claims section reads each
family's STS against it (not a paper claim: what two channels buy over one).

A difference between systems that do not recognise speech says nothing about the paper's claims (a system that
emits nothing "loses" turn counting to one that emits anything): a claim involving a system whose ORC-WER is at or
above :data:`UNTRAINED_ORC_WER` is marked **not testable here**, its difference and interval still shown.
"""
from __future__ import annotations

import csv
import datetime
import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import yaml

from serac.multitalker.scoring import TABLE_HEADER, group_label, paired_differences, table_rows
from serac.scoring.power import interval_side
from serac.utils import provenance

#: what each system of the recipe is (conf/<name>.yaml)
SYSTEM_NAMES = {"sts": "STS (turn tokens, FastEmit, end-of-turn penalty)",
                "mt_rnnt": "MT-RNN-T (two channels, no turn tokens; turns by silence)",
                "sts_no_penalty": "STS without the end-of-turn penalty",
                "sts_no_fastemit": "STS without FastEmit",
                "sts_init": "STS initialised from the single-talker asr model (residual separator)",
                "mt_rnnt_init": "MT-RNN-T initialised as sts_init is",
                "sts_no_penalty_init": "sts_init without the end-of-turn penalty",
                "sts_no_fastemit_init": "sts_init without FastEmit",
                "sts_activity_init": "sts_init with the speech-activity multi-task term",
                "single_talker": "the single-talker asr model (--init-from), not trained on mixtures, decoding each "
                                 "mixture as one stream (turns by silence)"}

#: the single-speaker floor's system name (conf/single_talker.yaml): the baseline of the floor rows of the claims
FLOOR = "single_talker"

#: the families of systems trained alike, each read against its own baselines: from scratch (``sts`` -
#: ``mt_rnnt``) and initialised from the single-talker model (``sts_init`` - ``mt_rnnt_init``; conf/*_init.yaml)
CLAIM_VARIANTS = ("", "_init")


@dataclass
class Claim:
    text: str            #: the paper's claim
    system: str
    baseline: str
    key: str             #: a key of paired_differences' output
    better: str          #: "lower" or "higher": the side of zero the claim says the difference lies on
    unit: str
    #: the baseline is one system for every family (the floor), not ``baseline + variant``
    shared_baseline: bool = False


CLAIMS = (
    Claim("+4.6% absolute turn-counting accuracy over the prior work (MT-RNN-T)", "sts", "mt_rnnt",
          "turn_counting", "higher", "points"),
    Claim("-17% relative WER over the prior work (MT-RNN-T): ORC-WER", "sts", "mt_rnnt", "orcwer", "lower",
          "points"),
    Claim("-17% relative WER over the prior work (MT-RNN-T): cpWER", "sts", "mt_rnnt", "cpwer", "lower", "points"),
    Claim("lower end-of-turn latency with the latency penalty (median <eot> emission)", "sts", "sts_no_penalty",
          "end_latency_median_ms", "lower", "ms"),
    Claim("FastEmit emits earlier (median <eot> emission; the paper trains STS with it)", "sts", "sts_no_fastemit",
          "end_latency_median_ms", "lower", "ms"),
    Claim("FastEmit emits earlier (median <sot> emission)", "sts", "sts_no_fastemit", "start_latency_median_ms",
          "lower", "ms"),
    Claim("speech activity as a second training signal improves recognition: ORC-WER", "sts_activity", "sts",
          "orcwer", "lower", "points"),
    Claim("speech activity as a second training signal improves recognition: cpWER", "sts_activity", "sts",
          "cpwer", "lower", "points"),
    Claim("speech activity as a second training signal improves segmentation: turn counting", "sts_activity", "sts",
          "turn_counting", "higher", "points"),
    Claim("(not a paper claim) STS beats the single-speaker floor: ORC-WER", "sts", FLOOR, "orcwer", "lower",
          "points", shared_baseline=True),
    Claim("(not a paper claim) STS beats the single-speaker floor: cpWER", "sts", FLOOR, "cpwer", "lower", "points",
          shared_baseline=True),
    Claim("(not a paper claim) STS beats the single-speaker floor: turn counting", "sts", FLOOR, "turn_counting",
          "higher", "points", shared_baseline=True),
)


#: ORC-WER (%) at or above which a system is taken not to recognise speech yet (its claims are not testable)
UNTRAINED_ORC_WER = 90.0


def verdict(ci: Sequence[float], better: str) -> str:
    side = interval_side(ci)
    if side is None:   # NaN: nothing to compare
        return "undecided (nothing measured)"
    good, bad = ("below", "above") if better == "lower" else ("above", "below")
    return "holds" if side == good else "does not hold" if side == bad else "undecided"


def _f(x: Optional[float], digits: int = 2) -> str:
    return "-" if x is None or x != x else f"{x:.{digits}f}"


def conversation_summary(manifest_dir: Path, sets: Sequence[str] = ("conv:train", "conv:dev", "conv:test")
                         ) -> List[List[str]]:
    """Conversations, hours, turns, speakers per set ``prefix:split`` (``<prefix>_cuts_<split>.jsonl.gz``: simulated
    MixedCuts, or cuts of real recordings with their turns as supervisions such as LibriCSS windows)."""
    rows = []
    for item in sets:
        prefix, _, split = item.partition(":")
        path = Path(manifest_dir) / f"{prefix}_cuts_{split}.jsonl.gz"
        if not path.is_file():
            continue
        n = turns = 0
        seconds = 0.0
        speakers = set()
        with gzip.open(path, "rt") as f:
            for line in f:
                d = json.loads(line)
                n += 1
                if "tracks" in d:
                    ends = [t["offset"] + t["cut"]["duration"] for t in d["tracks"]]
                    seconds += max(ends) if ends else d.get("duration", 0.0)
                    sups = [s for t in d["tracks"] for s in t["cut"].get("supervisions", [])]
                else:
                    seconds += d.get("duration", 0.0)
                    sups = d.get("supervisions", [])
                turns += len(sups)
                speakers.update(s.get("speaker") for s in sups)
        label = split if prefix == "conv" else f"{prefix} {split}"
        rows.append([label, str(n), f"{seconds / 3600:.2f}", f"{turns / max(n, 1):.1f}", str(len(speakers))])
    return rows


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def claim_rows(scores: Dict[str, Dict[str, Any]], untrained: Sequence[str], n_bootstrap: int) -> List[List[str]]:
    """One row per paper claim and family of systems (:data:`CLAIM_VARIANTS`) whose system and baseline were both
    scored; a claim no family ran is one "not run" row. The verdict comes from the paired interval; a pair with a
    system that has not learned the task is "not testable here"."""
    rows = []
    for c in CLAIMS:
        pairs = [(c.system + v, c.baseline + ("" if c.shared_baseline else v)) for v in CLAIM_VARIANTS]
        pairs = [(system, baseline) for system, baseline in pairs if system in scores and baseline in scores]
        if not pairs:
            rows.append([c.text, f"`{c.system}` - `{c.baseline}`", "not run", "-", "-"])
        for system, baseline in pairs:
            d = paired_differences(scores[system], scores[baseline], n_bootstrap)[c.key]
            value = f"{_f(d['diff'])} {c.unit}"
            if "relative_pct" in d:
                value += f" ({_f(d['relative_pct'], 1)}% relative)"
            said = verdict(d["ci"], c.better)
            if system in untrained or baseline in untrained:
                said = f"not testable here (interval alone: {said})"
            rows.append([c.text, f"`{system}` - `{baseline}`", value, f"[{_f(d['ci'][0])}, {_f(d['ci'][1])}]", said])
    return rows


def write_results(systems: Sequence[str], exp_root: Path, set_name: str, suffix: str, out: Path,
                  streaming_set: Optional[str] = None, streaming_suffix: Optional[str] = None,
                  manifest_dir: Optional[Path] = None, timing: Optional[Path] = None, n_bootstrap: int = 1000,
                  command: str = "", title: str = "synth_assistant / sts: separator-transducer-segmenter",
                  note: str = "", summary_sets: Sequence[str] = ("conv:train", "conv:dev", "conv:test"),
                  summary_title: str = "Conversations (simulated, speakers disjoint across splits)",
                  suffixes: Optional[Mapping[str, str]] = None,
                  streaming_suffixes: Optional[Mapping[str, str]] = None) -> str:
    """The RESULTS.md text (also written to ``out``). ``suffix`` / ``streaming_suffix`` name every system's decodes
    but those given in ``suffixes`` / ``streaming_suffixes`` (system -> suffix: the floor, decoded at its own
    checkpoint)."""
    exp_root = Path(exp_root)
    suffixes, streaming_suffixes = dict(suffixes or {}), dict(streaming_suffixes or {})
    unknown = sorted((set(suffixes) | set(streaming_suffixes)) - set(systems))
    if unknown:
        raise ValueError(f"suffixes given for systems {unknown} that are not among --systems {list(systems)}")
    scores: Dict[str, Dict[str, Any]] = {}
    configs: Dict[str, Dict[str, Any]] = {}
    for s in systems:
        path = exp_root / s / "decode" / set_name / f"multitalker-{set_name}-{suffixes.get(s, suffix)}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} missing: run the scoring stage for system {s}")
        scores[s] = json.loads(path.read_text())
        configs[s] = yaml.safe_load((exp_root / s / "config.yaml").read_text())
    floors = [s for s in systems if "separator" not in (configs[s].get("model") or {})]   # one output stream

    def label(s: str) -> str:
        return f"`{s}` (floor)" if s in floors else f"`{s}`"

    lines = [f"# {title}", "",
             f"Written by `serac.bin.write_multitalker_results` from the files of `{exp_root}` on "
             f"{datetime.date.today().isoformat()}; reproduce with `{command or './run.sh'}`; "
             + provenance({s: exp_root / s for s in systems}), ""]
    if note:
        lines += [note, ""]
    if manifest_dir is not None:
        rows = conversation_summary(Path(manifest_dir), summary_sets)
        if rows:
            lines += [f"### {summary_title}", ""]
            lines += _table(("split", "conversations", "hours", "turns / conversation", "speakers"), rows) + [""]
    any_s = scores[systems[0]]
    bins = {k: v["conversations"] for k, v in any_s["bins"].items()}
    group = group_label(any_s)   # what the bins are: overlap-ratio bins, or e.g. LibriCSS's conditions
    if group == "overlap":
        lines += [f"Test conversations per overlap-ratio bin (nearest of {', '.join(bins)}): "
                  + ", ".join(f"{k}: {v}" for k, v in bins.items()) + ".", ""]
    else:
        lines += [f"`{set_name}` conversations per {group}: " + ", ".join(f"{k}: {v}" for k, v in bins.items()) + ".",
                  ""]

    own = "".join(f"; `{s}`: `{x}`" for s, x in suffixes.items() if x != suffix)
    lines += [f"### Systems on `{set_name}` (greedy search, `{suffix}`{own})", "",
              "WERs with speaker-bootstrap 95% intervals, turn counting with a conversation-bootstrap interval, "
              "latencies = emission time - reference boundary over matched turns (negative: early). Definitions: "
              "docs/sts.md, serac/multitalker/metrics.py.", ""]
    if floors:
        lines += [f"The floor ({', '.join(f'`{s}`' for s in floors)}) is a single-talker model decoding each mixture "
                  "as one output stream, not trained on mixtures (epochs: 0 here, then its own single-talker "
                  "training). Its ORC-WER puts every reference turn on that stream; its cpWER maps the stream to one "
                  "reference speaker and scores the other against nothing (meeteval's cpWER with two references and "
                  "one hypothesis). Its turns are read from silences (--gap-s), as MT-RNN-T's: turn counting and "
                  "latency say what a one-stream silence segmenter gets (overlapping turns cannot be two turns).", ""]
    header = ("system", "params", "epochs") + TABLE_HEADER[2:]
    rows = []
    for s in systems:
        env = configs[s].get("env", {})
        epochs = str(configs[s]["train"]["num_epochs"])
        rows.append([f"{label(s)}: {SYSTEM_NAMES.get(s, s)}", f"{env.get('num_params', 0) / 1e6:.2f} M",
                     f"0 (+{epochs} single-talker)" if s in floors else epochs] + table_rows(scores[s])[0][2:])
    lines += _table(header, rows) + [""]

    lines += [f"### Per {'overlap-ratio bin' if group == 'overlap' else group} (`{set_name}`)", ""]
    bin_rows = []
    for s in systems:
        for r in table_rows(scores[s])[1:]:
            bin_rows.append([label(s), r[0].split(" ", 1)[1], r[1], r[2], r[4], r[6], r[10], r[11]])
    lines += _table(("system", group, "conversations", "cpWER %", "ORC-WER %", "turn counting %",
                     "end latency median ms", "end latency p90 ms"), bin_rows) + [""]

    lines += ["### The paper's claims here", "",
              "Differences system - baseline on the same test conversations with paired bootstrap 95% intervals "
              f"({n_bootstrap} resamples; WERs: speakers resampled, turn counting and latency: conversations). "
              "Verdict from the interval: holds / does not hold / undecided (it contains 0).", ""]
    untrained = [s for s in systems if scores[s]["overall"]["orcwer"]["wer"] >= UNTRAINED_ORC_WER]
    if untrained:
        lines += [f"**Not recognising speech yet** (ORC-WER >= {UNTRAINED_ORC_WER:g}%): "
                  + ", ".join(f"`{s}` ({_f(scores[s]['overall']['orcwer']['wer'])}%)" for s in untrained)
                  + ". A claim involving one of them is not testable on this run: its difference compares "
                  "models that have not learned the task (e.g. one that emits nothing against one that emits "
                  "its prior), whatever the interval says.", ""]
    lines += _table(("paper (LibriCSS)", "here", "difference", "95% CI", "verdict"),
                    claim_rows(scores, untrained, n_bootstrap)) + [""]

    if streaming_set and streaming_suffix:
        srows = []
        for s in systems:
            name = f"{streaming_set}-{streaming_suffixes.get(s, streaming_suffix)}"
            stats_path = exp_root / s / "decode" / streaming_set / f"stats-{name}.json"
            score_path = exp_root / s / "decode" / streaming_set / f"multitalker-{name}.json"
            if not stats_path.is_file():
                continue
            st = json.loads(stats_path.read_text())
            orc = json.loads(score_path.read_text())["overall"]["orcwer"]["wer"] if score_path.is_file() else None
            lat = st.get("chunk_compute_ms", {})
            srows.append([label(s), _f(orc), _f(st.get("rtf"), 4), _f(lat.get("mean")), _f(lat.get("p90")),
                          _f(st.get("algorithmic_latency_ms"), 0)])
        if srows:
            own_streaming = "".join(f"; `{s}`: `{x}`" for s, x in streaming_suffixes.items() if x != streaming_suffix)
            lines += [f"### Streaming (`{streaming_set}`, `{streaming_suffix}`{own_streaming}, batch 1, one thread)",
                      ""]
            lines += _table(("system", "ORC-WER %", "RTF", "chunk compute ms mean", "chunk compute ms p90",
                             "algorithmic latency ms"), srows) + [""]
    if timing is not None and Path(timing).is_file():
        with open(timing) as f:
            trows = [r for r in csv.DictReader(f, delimiter="\t")]
        if trows:
            total = sum(int(r["seconds"]) for r in trows)
            lines += ["### Wall time of this run (exp/timing.tsv)", ""]
            lines += _table(("stage", "name", "seconds", "finished"),
                            [[r["stage"], r["name"], r["seconds"], r["finished"]] for r in trows]
                            + [["", "total", str(total), ""]]) + [""]
    text = "\n".join(lines)
    Path(out).write_text(text)
    return text
