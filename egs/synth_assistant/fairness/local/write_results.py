#!/usr/bin/env python3
"""Write RESULTS.md of the fairness recipe from the files of a run (stage 9; never typed by hand).

Usage: local/write_results.py --asr-dir ../asr --baseline "exp/lstm epoch 12 avg 4" --discovery exp/discovery \
         --sets data/sets/targets.json --fisher exp/ewc/fisher.json --finetune-config exp/ewc/finetune.yaml \
         --mitigation exp/mitigation.md --mitigation-json exp/mitigation.json --seeds "7 8 9" \
         --by-key exp/by-key --dev exp/mitigation-dev.json --arw-exp exp/arw --arw-config conf/arw.yaml \
         --arw-name "ARW (from scratch)" --speaker-model exp/speaker/model.pt \
         --attr-cuts data/fbank/synth_cuts_dev.jsonl.gz,data/fbank/synth_cuts_test.jsonl.gz \
         --discovered exp/discovered --timing exp/timing.tsv --command "./run.sh" --out RESULTS.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import time
from pathlib import Path
from typing import Dict, Optional

import yaml

from serac.scoring.power import interval_side
from serac.utils import atomic_write_text, provenance
from serac.utils import format_number as fmt

PAPER_DISCOVERY = ("Dheram et al. 2022 (production data): geodemographic 41.7% gap / 0.8% bottom share, "
                   "automatic 65.0% / 10.0%.")
# what issue 18 quotes of the paper's mitigation (oversampling, cohort embedding) for the discovered bottom cohorts
PAPER_MITIGATION = "the bottom/top gap about 56% before mitigation, about 40% after"
# the rows of the discovered-cohort table: the paper's mitigations (stage 9's method names start so)
DHERAM_MITIGATIONS = ("oversampling", "cohort embedding")
PAPER_EWC = ("Trinh et al. 2022 (production data, 126 regions): EWC -3.2% relative WER on the worst region, "
             "-1.3% overall, -7.9% cross-region variance, better than the other transfer-learning baselines.")


def timing_section(path: Path) -> list:
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if line.strip()]
    latest = {}
    for stage, name, seconds, finished in rows:
        latest[int(stage)] = (name, int(seconds), finished)
    total = sum(v[1] for v in latest.values())
    lines = ["| stage | what | seconds | finished |", "|---:|---|---:|---|"]
    for stage in sorted(latest):
        name, seconds, finished = latest[stage]
        lines.append(f"| {stage} | {name} | {seconds} | {finished} |")
    lines.append(f"| | **total** | **{total}** ({total / 60:.1f} min) | |")
    return lines


def penalty_scale(mit: dict) -> list:
    """What lambda means here: the penalty the plain fine-tuned model would pay, against its per-frame loss."""
    ft = next((r for r in mit["rows"] if r["method"] == mit.get("reference")), None)
    lams = [r["ewc_lambda"] for r in mit["rows"] if r.get("ewc_lambda") is not None]
    if ft is None or ft.get("fisher_distance") is None or not lams:
        return []
    d = ft["fisher_distance"]
    pay = ", ".join(f"{lam:g}: {lam * d:.3g}" for lam in lams)
    return [f"Scale of lambda: plain fine-tuning ends at a Fisher distance of {d:.3g}, so with lambda it would pay a "
            f"penalty of lambda x {d:.3g} per frame ({pay}), against a transducer loss of a few tenths per frame: the "
            f"sweep runs from a negligible to a dominant penalty."]


def baseline_fit(fisher: dict) -> str:
    """Train vs validation loss of the baseline's last checkpoint: how much it overfits its training speakers."""
    import torch

    last = fisher["settings"]["checkpoints"][-1][0]
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    tr, va = ckpt.get("train_stats") or {}, ckpt.get("valid") or {}
    if not tr.get("frames") or va.get("loss") is None:
        return ""
    return (f"The baseline's last epoch ends at a training loss of {tr['loss'] / tr['frames']:.3f} per frame against "
            f"{va['loss']:.3f} on dev ({Path(last).name}).")


def reading(region: dict, comparison: dict, mit: dict, fisher: dict) -> list:
    out = []
    n_dev, n_test = region["fit"]["num_speakers"], region["eval"]["num_speakers"]
    gen = [r["method"] for r in comparison["rows"] if (r.get("eval") or {}).get("relative_gap") is not None
           and r["eval"]["relative_gap"] > 0]
    out.append(f"- Discovery is fitted on {n_dev} dev speakers and evaluated on {n_test} test speakers. Methods whose "
               f"dev-bottom cohort is still worse than their dev-top cohort on test: "
               f"{', '.join(gen) if gen else 'none'}. Dev gaps are inflated by selection on dev (small cohorts "
               f"with extreme WERs are what the search finds); re-ranked test gaps are inflated the same way on test.")
    rows = {r["method"]: r for r in mit["rows"]}
    base = rows[mit["baseline"]]
    ft = rows.get(mit.get("reference"))
    if ft is not None:
        others = [r for r in mit["rows"] if r is not base and r is not ft and r.get("ewc_lambda") is None]
        parts = [f"{r['method']} {_signed(r['rel']['overall'])}" for r in others]
        out.append(f"- Overall test WER against no adaptation: {ft['method']} {ft['rel']['overall']:+.1f}%"
                   + (", " + ", ".join(parts) if parts else "") + ". Fine-tuning and EWC train on audio of "
                   "held-out speakers (the adapt split); continued training and oversampling re-use training audio "
                   "the baseline has already fitted. " + baseline_fit(fisher))
        ewc = [r for r in mit["rows"] if r.get("ewc_lambda") is not None]
        if ewc:
            better_t = [r for r in ewc if (r.get("vs_reference") or {}).get("targeted") is not None
                        and r["vs_reference"]["targeted"] < 0]
            sig_t = [r for r in better_t if r["vs_reference"]["ci_targeted"] and r["vs_reference"]["ci_targeted"][1] < 0]
            less_f = [r for r in ewc if (r.get("vs_reference") or {}).get("other") is not None
                      and r["vs_reference"]["other"] < 0]
            sig_f = [r for r in less_f if r["vs_reference"]["ci_other"] and r["vs_reference"]["ci_other"][1] < 0]
            kept = [r for r in ewc if r["rel"]["other"] is not None and r["rel"]["other"] <= 1.0]
            improved = [r for r in ewc if r["rel"]["targeted"] is not None and r["rel"]["targeted"] < 0]
            names = lambda rs: ", ".join(f"lambda={r['ewc_lambda']:g}" for r in rs) or "none"  # noqa: E731
            out += [
                f"- EWC improves the targeted regions over no adaptation for: {names(improved)}; keeps the other "
                f"regions within +1% of no adaptation for: {names(kept)}.",
                f"- Against plain fine-tuning, EWC has a lower targeted WER for: {names(better_t)} (interval excluding "
                f"0: {names(sig_t)}), and a lower other-region WER (forgets less) for: {names(less_f)} (interval "
                f"excluding 0: {names(sig_f)}).",
            ]
    return out


def verdict(ci: Optional[list]) -> str:
    """Whether an improvement holds, from the 95% paired speaker-bootstrap interval of a relative WER change."""
    side = interval_side(ci)
    if side is None:
        return "undecided (no interval)"
    if side == "below":
        return "holds (interval below 0)"
    if side == "above":
        return "does not hold: worse (interval above 0)"
    return "undecided at this size (interval includes 0)"


# a cohort with fewer test speakers than this is too small to judge (as serac.fairness.cohort_stats marks it): its
# speaker-bootstrap interval resamples one or two speakers and looks narrower than what it says
MIN_SPEAKERS_TO_JUDGE = 3


def discovered_mitigation(tables: Dict[str, dict], target_key: str) -> list:
    """Every discovery's bottom/top gap on test (the cohorts bottom and top on dev) before and after the paper's
    mitigations, with the paired speaker-bootstrap interval of the dev-bottom cohort's relative WER change and the
    verdict it gives (tables: compare_methods mitigation --targets-from-discovery JSONs, by discovery method); a
    bottom cohort with fewer than MIN_SPEAKERS_TO_JUDGE test speakers gets no verdict."""
    out = ["| discovery (cohort key) | system | dev-bottom cohort: test WER % | dev-top cohort: test WER % | gap % | "
           "bottom cohort: rel % [95% interval] | lower bottom-cohort WER? |", "|---|---|---:|---:|---:|---|---|"]
    rows = 0
    order = ("geo", "geodemo", "auto")  # as section 1
    for name, t in sorted(tables.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0])):
        d = t["discovery"]
        n_bottom = t.get("targeted_speakers")  # the test speakers of the dev-bottom cohort (compare_methods)
        # the automatic discovery's embedding (every discovery's params hold the option, only this one uses it)
        method = f"auto ({d['embedding']})" if d["method"] == "auto" and d.get("embedding") else d["method"]
        label = f"{method} (`{t['key']}`{', targeted' if t['key'] == target_key else ''})"
        for r in t["rows"]:
            is_base = r["method"] == t["baseline"]
            if not is_base and not r["method"].startswith(DHERAM_MITIGATIONS):
                continue
            rows += not is_base
            rr = r.get("rel") or {}
            judged = (f"too small to judge ({n_bottom} test speaker{'s' if n_bottom != 1 else ''})"
                      if n_bottom is not None and n_bottom < MIN_SPEAKERS_TO_JUDGE else verdict(r.get('ci_targeted')))
            out.append(f"| {label} | {r['method']} | {fmt(r['regions'].get(d['bottom']), 2)} (`{d['bottom']}`) | "
                       f"{fmt(r['regions'].get(d['top']), 2)} (`{d['top']}`) | {fmt(r.get('bottom_top_gap'), 1)} | "
                       + ("- | - |" if is_base else f"{_signed(rr.get('targeted'))}{_ci(r.get('ci_targeted'))} | "
                                                   f"{judged} |"))
    if not rows:
        out += ["", "No mitigation of the paper's (oversampling, cohort embedding) was decoded in this run: stages 5-6 "
                "with `--variants oversample`, then 9."]
    return out


def _signed(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:+.1f}%"


def _ci(ci: Optional[list]) -> str:
    return "" if not ci else f" [{ci[0]:+.1f}, {ci[1]:+.1f}]"


def last_epoch_line(log: Path) -> str:
    lines = [line for line in log.read_text().splitlines() if re.search(r"\] epoch \d+: train loss", line)]
    return lines[-1].split("] ", 1)[1] if lines else ""


def arw_training(arw_exp: Path, config: Path, fisher: dict) -> list:
    """What ARW was trained with, and how its training ended next to the baseline's."""
    import torch

    cfg = yaml.safe_load((arw_exp / "config.yaml").read_text()) if (arw_exp / "config.yaml").is_file() else {}
    a = cfg.get("arw") or yaml.safe_load(config.read_text()).get("arw", {})
    ckpts = sorted(arw_exp.glob("epoch-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    out = [f"- ARW: `{config}` = the baseline's config (`base:`: model, loss, SpecAugment, optimiser, data, seed) "
           f"plus an adversary on {', '.join(a.get('inputs', []))} (hidden {a.get('hidden_dim')}, lr "
           f"{a.get('lr')}, learner only for the first {a.get('warmup_steps')} steps, then an adversary step every "
           f"{a.get('adversary_every')} step(s), floor {a.get('floor')}: every weight >= "
           f"{float(a.get('floor', 1)) / (1 + float(a.get('floor', 1))):.2f}). No cohort label reaches it. Not tuned: "
           f"one setting, as written in the config."]
    if ckpts:
        last = torch.load(ckpts[-1], map_location="cpu", weights_only=False)
        base = torch.load(fisher["settings"]["checkpoints"][-1][0], map_location="cpu", weights_only=False)

        def fit(c):
            tr, va = c.get("train_stats") or {}, c.get("valid") or {}
            return (f"train loss {tr['loss'] / tr['frames']:.3f}, dev loss {va['loss']:.3f} per frame"
                    if tr.get("frames") and va.get("loss") is not None else "-")
        out.append(f"- Trained from scratch (random initialisation, not from theta*) on the baseline's training set "
                   f"for {last.get('epoch')} epochs, {last.get('batch_idx_train')} steps, one process; decoded as the "
                   f"baseline (greedy search, the same epochs averaged). Last epoch: ARW {fit(last)}; baseline "
                   f"{fit(base)}.")
    log = arw_exp / "log" / "train.log"
    if log.is_file():
        m = re.search(r"arw weights[^,;)]*", last_epoch_line(log))
        if m:
            out.append(f"- Learner weights over the last epoch's steps: {m.group(0).replace('arw weights ', '')}.")
    return out


def training_dirs(mit: dict, baseline_exp: str) -> Dict[str, Path]:
    """The exp dirs of every system in the test table (``<exp>/decode/<set>/recogs-*.txt``; the baseline's is the
    asr recipe's, whichever recipe decoded it), for the git revisions they were trained at."""
    dirs = {Path(rec).parents[2].name: Path(rec).parents[2] for r in mit["rows"] if r["method"] != mit["baseline"]
            for rec in r.get("recogs") or []}
    return {"baseline": Path(baseline_exp), **dirs}


def lambda_choice(dev: Optional[dict], mit: dict) -> list:
    """EWC's lambda chosen on dev (lowest dev WER, mean over seeds; ties: the larger lambda), read on test."""
    ewc_dev = [r for r in (dev or {}).get("rows", []) if r.get("ewc_lambda") is not None]
    if not any(r.get("ewc_lambda") is not None for r in mit["rows"]):
        return []  # no EWC variant in this run (--variants): nothing to choose
    if not ewc_dev:
        return ["- EWC's lambda: no dev decode of the EWC runs in this run (stage 6 decodes dev), so none is chosen; "
                "the test table shows the whole sweep, which is not a choice."]
    best = min(ewc_dev, key=lambda r: (round(r["overall"], 6), -r["ewc_lambda"]))
    lams = sorted(r["ewc_lambda"] for r in ewc_dev)
    by_lambda = sorted(ewc_dev, key=lambda r: r["ewc_lambda"])
    sweep = ", ".join(f"{r['ewc_lambda']:g}: {r['overall']:.2f}%" for r in by_lambda)
    edge = (" It is the edge of the sweep: a wider sweep might choose further out."
            if best["ewc_lambda"] in (lams[0], lams[-1]) else "")
    out = [f"- EWC's lambda, chosen on **dev** (lowest dev WER, mean over seeds): **{best['ewc_lambda']:g}** "
           f"(dev WER by lambda: {sweep}).{edge}"]
    t = next((r for r in mit["rows"] if r.get("ewc_lambda") == best["ewc_lambda"]), None)
    if t is None:
        return out + [f"- No test decode of lambda={best['ewc_lambda']:g}."]
    vs = t.get("vs_reference") or {}
    out.append(f"- On test, EWC lambda={best['ewc_lambda']:g} against no adaptation: overall "
               f"{_signed(t['rel']['overall'])}{_ci(t.get('ci_overall'))}, targeted regions {_signed(t['rel']['targeted'])}"
               f"{_ci(t.get('ci_targeted'))} ({verdict(t.get('ci_targeted'))}), other regions "
               f"{_signed(t['rel']['other'])}{_ci(t.get('ci_other'))}, cross-region variance "
               f"{_signed(t['rel'].get('var'))}; against plain fine-tuning: targeted {_signed(vs.get('targeted'))}"
               f"{_ci(vs.get('ci_targeted'))}, other regions {_signed(vs.get('other'))}{_ci(vs.get('ci_other'))}. "
               f"The paper: {PAPER_EWC}")
    return out


def partial_reading(mit: dict) -> list:
    """Encoder-only and prediction-network-only fine-tuning against no adaptation and against full fine-tuning."""
    out = []
    for r in mit["rows"]:
        if not r["method"].startswith("fine-tuning, "):
            continue
        vs = r.get("vs_reference") or {}
        out.append(f"- {r['method']}: against no adaptation, targeted {_signed(r['rel']['targeted'])}"
                   f"{_ci(r.get('ci_targeted'))} ({verdict(r.get('ci_targeted'))}), other {_signed(r['rel']['other'])}"
                   f"{_ci(r.get('ci_other'))}, overall {_signed(r['rel']['overall'])}{_ci(r.get('ci_overall'))}; "
                   f"against full fine-tuning, targeted {_signed(vs.get('targeted'))}{_ci(vs.get('ci_targeted'))}, "
                   f"other {_signed(vs.get('other'))}{_ci(vs.get('ci_other'))}.")
    return out


def arw_reading(name: str, mit: dict, by_key: dict, dev: Optional[dict]) -> list:
    """ARW against the baseline, judged from the paired speaker-bootstrap intervals (choices made on dev)."""
    def row(t):
        return next((r for r in t["rows"] if r["method"] == name), None)

    out = []
    r = row(mit)
    if r is None:
        return out
    if dev is not None and row(dev) is not None:
        d = row(dev)
        out.append(f"- {name} against the baseline, overall WER on **dev**: {_signed(d['rel']['overall'])}"
                   f"{_ci(d.get('ci_overall'))}: {verdict(d.get('ci_overall'))}.")
    out.append(f"- Overall WER on test: {r['overall']:.2f}% vs {next(x for x in mit['rows'] if x['method'] == mit['baseline'])['overall']:.2f}% "
               f"({_signed(r['rel']['overall'])}{_ci(r.get('ci_overall'))}): {verdict(r.get('ci_overall'))}.")
    tables = [(mit["key"], mit)] + sorted(by_key.items())
    lines = []
    for key, t in tables:
        x = row(t)
        base = next(b for b in t["rows"] if b["method"] == t["baseline"])
        if x is None:
            continue
        lines.append(f"  - `{key}`: the baseline's worst on dev {', '.join(f'`{c}`' for c in t['targets'])}: "
                     f"{_signed(x['rel']['targeted'])}{_ci(x.get('ci_targeted'))}, {verdict(x.get('ci_targeted'))}; "
                     f"the other cohorts {_signed(x['rel']['other'])}{_ci(x.get('ci_other'))}; bottom/top gap "
                     f"{x['gap']:.1f}% (baseline {base['gap']:.1f}%), variance {x['var']:.2f} (baseline "
                     f"{base['var']:.2f})" if x.get("gap") is not None and base.get("gap") is not None else
                     f"  - `{key}`: targeted {_signed(x['rel']['targeted'])}{_ci(x.get('ci_targeted'))}, "
                     f"{verdict(x.get('ci_targeted'))}")
    out.append(f"- Does {name} lower the WER of the cohort that was worst for the baseline (chosen on dev), on test? "
               "Per attribute (relative change, 95% paired speaker-bootstrap interval; gap and variance have no "
               "interval):")
    out += lines
    return out


def discovery_change(disc: Path, attr_cuts: list) -> list:
    """How the automatic cohorts of the speaker embeddings differ from those of another embedding (fbank-stats):
    their agreement with the known speaker attributes (adjusted Rand index over the dev and test speakers)."""
    from sklearn.metrics import adjusted_rand_score

    from collections import Counter, defaultdict

    from serac.fairness.cohort_metrics import load_cut_attributes

    counts = defaultdict(lambda: defaultdict(Counter))  # speaker -> key -> value counts (condition is per utterance)
    for path in attr_cuts:
        for cut_id, a in load_cut_attributes(path).items():
            for k, v in a.items():
                counts[str(a.get("speaker", cut_id))][k][str(v)] += 1
    attrs = {s: {k: c.most_common(1)[0][0] for k, c in per.items()} for s, per in counts.items()}
    dirs = [disc / "auto"] + sorted(p for p in disc.glob("auto-*") if (p / "summary.json").is_file())
    if len(dirs) < 2:
        return []

    def cmap(d):
        rows = [line.split("\t") for line in (d / "cohort-map.tsv").read_text().splitlines()
                if line and not line.startswith("#")]
        return {r[0]: r[1] for r in rows[1:]}

    maps = {d: cmap(d) for d in dirs}
    names = {d: json.loads((d / "summary.json").read_text())["params"]["embedding"] for d in dirs}
    spk = sorted(s for s in attrs if all(s in m for m in maps.values()))
    keys = [k for k in ("accent", "gender", "age_band", "condition", "region") if all(k in attrs[s] for s in spk)]
    lines = ["| embedding | " + " | ".join(f"ARI with {k}" for k in keys) + " | largest cohort (speakers) |",
             "|---|" + "---:|" * len(keys) + "---|"]
    for d in dirs:
        labels = [maps[d][s] for s in spk]
        sizes = sorted(((labels.count(c), c) for c in set(labels)), reverse=True)
        lines.append(f"| {names[d]} | " + " | ".join(f"{adjusted_rand_score([str(attrs[s][k]) for s in spk], labels):.3f}"
                                                 for k in keys) + f" | `{sizes[0][1]}` ({sizes[0][0]} of {len(spk)}) |")
    ari = adjusted_rand_score([maps[dirs[0]][s] for s in spk], [maps[dirs[1]][s] for s in spk])
    gaps = []
    for d in dirs:
        sm = json.loads((d / "summary.json").read_text())
        gaps.append(f"{names[d]}: dev gap {sm['fit']['relative_gap']:.1f}%, test dev-ranked gap "
                    f"{(sm.get('eval') or {}).get('relative_gap') or float('nan'):.1f}%, bottom cohort "
                    f"{sm['fit']['bottom_speaker_share']:.1f}% of the dev speakers")
    return [f"How the automatic cohorts changed with the embedding: adjusted Rand index (ARI; 0 = chance, 1 = the "
            f"same partition) of each k-means partition with the speakers' known attributes (condition: a speaker's "
            f"most frequent recording condition), over the {len(spk)} "
            f"dev and test speakers (attributes are never seen by the clustering); the {names[dirs[0]]} and "
            f"{names[dirs[1]]} partitions agree with each other at ARI {ari:.3f}. Disparity of each: "
            + "; ".join(gaps) + ".", "", *lines, ""]


def speaker_model_line(path: Path) -> str:
    summary = path.parent / "train-summary.json"
    if not summary.is_file():
        return f"Speaker-embedding model: `{path}`."
    t = json.loads(summary.read_text())
    return (f"serac's speaker-embedding model `{path}`: small ECAPA-TDNN ({t['num_parameters']} parameters, "
            f"AM-softmax + pairwise term, no reweighting), {t['steps']} steps on the {t['num_speakers']} training "
            f"speakers of the asr corpus ({t['num_utterances']} utterances; no dev or test speaker), "
            f"{t['train_seconds']:.0f} s; final loss {t['curve'][-1]['loss']:.3f}.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("asr-dir", "baseline", "discovery", "sets", "fisher", "finetune-config", "mitigation",
                 "mitigation-json", "seeds", "timing", "command", "out", "by-key", "dev", "arw-exp",
                 "arw-config", "arw-name", "speaker-model", "attr-cuts"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--discovered", help="dir of the compare_methods tables of every discovery's cohorts (stage 9)")
    p.add_argument("--missing", default="", help="fine-tuning runs without a test decode (left out of the tables)")
    args = p.parse_args()
    disc = Path(args.discovery)
    sets = json.loads(Path(args.sets).read_text())
    fisher = json.loads(Path(args.fisher).read_text())
    ft = yaml.safe_load(Path(args.finetune_config).read_text())
    auto = json.loads((disc / "auto" / "summary.json").read_text())
    region = json.loads((disc / "region" / "summary.json").read_text())
    mit = json.loads(Path(args.mitigation_json).read_text())
    seeds = args.seeds.split()
    comparison = json.loads((disc / "comparison.json").read_text())
    by_key = {p.stem: json.loads(p.read_text()) for p in sorted(Path(args.by_key).glob("*.json"))}
    dev = json.loads(Path(args.dev).read_text()) if Path(args.dev).is_file() else None
    auto_emb = auto["params"].get("embedding")

    out = [
        "# synth_assistant / fairness: cohort discovery, EWC and adversarial reweighting (ARW)",
        "",
        f"Written by stage 9 of `run.sh` from the files of the run on {time.strftime('%Y-%m-%d %H:%M')} "
        f"({os.cpu_count()} CPUs, {platform.machine()}); "
        + provenance(training_dirs(mit, args.baseline.split()[0])) + " Reproduce with:",
        "",
        "```bash",
        "(cd egs/synth_assistant/asr && ./run.sh)   # the baseline",
        args.command,
        "```",
        "",
        f"Baseline: `{args.baseline}` of the asr recipe (streaming LSTM transducer), greedy search. "
        f"Baseline WER: dev {region['fit']['overall_wer']:.2f}%, test {region['eval']['overall_wer']:.2f}%.",
        "",
        "## 1. Cohort discovery (Dheram et al., Interspeech 2022)",
        "",
        "Each method is fitted on the baseline's **dev** decode and applied, unchanged, to **test** (different "
        "speakers): the tree by its lon/lat thresholds, the geodemographic partition by the zip's attribute, "
        "k-means by the nearest centroid. *Gap* = (WER of the bottom cohort - WER of the top cohort) / WER of the "
        "top cohort; *bottom share* = the bottom cohort's share of speakers. *Dev-ranked* test columns keep the "
        "bottom/top cohorts chosen on dev (does the disparity generalise?); *re-ranked* columns rank the cohorts by "
        "their test WER (optimistic with small cohorts). The census division is a given label, shown as a reference.",
        "",
        (Path(disc) / "comparison.md").read_text().rstrip(),
        "",
        *([speaker_model_line(Path(args.speaker_model)), ""] if auto_emb == "serac" else []),
        *discovery_change(disc, args.attr_cuts.split(",")),
        f"Speaker embedding of the automatic method: `{auto['params'].get('embedding')}` "
        f"({auto['params'].get('max_utts_per_speaker') or 'all'} utterances per speaker), k-means k="
        f"{auto['params'].get('num_clusters')}, seed {auto['params'].get('seed')}, n_init "
        f"{auto['params'].get('n_init')}.",
        "",
        f"Paper: {PAPER_DISCOVERY}",
        "",
    ]
    for m in ["geo", "geodemo", "auto"] + sorted(p.name for p in disc.glob("auto-*") if (p / "summary.md").is_file()):
        text = (disc / m / "summary.md").read_text().replace("### ", "#### ").rstrip()
        if m.startswith("auto"):
            emb = json.loads((disc / m / "summary.json").read_text())["params"]["embedding"]
            text = text.replace("#### auto:", f"#### auto ({emb}):", 1)
        out += [text, ""]
    geo = json.loads((disc / "geo" / "model.json").read_text())
    out += ["Geographic tree (fitted on dev; `lon <= t` goes left):", "", "```"]

    def walk(node, indent=0):
        pad = "  " * indent
        if "split" in node:
            out.append(f"{pad}{node['id']}: {node['split']['text']}")
            walk(node["left"], indent + 1)
            walk(node["right"], indent + 1)
        else:
            out.append(f"{pad}{node['id']}: leaf, {node['speakers']} spk, WER {node['wer']:.2f}%  [{node['bounds']}]")

    walk(geo["tree"])
    out += ["```", ""]

    out += [
        ("## 2. Mitigation: EWC for the worst regions (Trinh et al., Interspeech 2022), and ARW"
         if sets["key"] == "region" else f"## 2. Mitigation for the worst `{sets['key']}` cohorts on dev: EWC (Trinh "
                                         f"et al., Interspeech 2022), oversampling (Dheram et al., Interspeech 2022), "
                                         f"and ARW"),
        "",
        f"Targets: the {sets['num_targets']} `{sets['key']}` cohorts with the highest baseline **dev** WER: "
        + ", ".join(f"`{r['cohort']}` ({r['wer']:.2f}%)" for r in sets["dev_ranking"][: sets["num_targets"]])
        + " (dev ranking: " + ", ".join(f"{r['cohort']} {r['wer']:.1f}" for r in sets["dev_ranking"]) + ").",
        "",
        f"- adapt pool: {sets['sets']['adapt_pool']['cuts']} utterances ({sets['sets']['adapt_pool']['seconds']:.0f} s)"
        f" of {len(sets['adapt_speakers'])} held-out speakers of the targeted regions (adapt split);",
        "- fine-tuning, encoder only / prediction network only: plain fine-tuning on the adapt pool with the rest of the "
        "model frozen for the whole run (`train.init_freeze_modules`: the decoder, joiner and the auxiliary heads / "
        "the encoder, joiner, the acoustic auxiliary heads), the comparison the EWC paper makes between adapting "
        "the two parts;",
        f"- continued training: a random {sets['sets']['continue']['cuts']}-utterance subset of all training data of the"
        f" same duration ({sets['sets']['continue']['seconds']:.0f} s);",
        f"- oversampling: the training set with the {sets['train_target_speakers']} targeted-region training speakers' "
        f"cuts repeated x{sets['oversample_factor']} ({sets['sets']['oversample_full']['cuts']} cuts, "
        f"{sets['sets']['oversample_full']['target_share_pct']:.1f}% targeted), then a random subset of the same "
        f"duration ({sets['sets']['oversample']['cuts']} cuts, {sets['sets']['oversample']['target_share_pct']:.1f}% "
        f"targeted);",
        f"- every variant starts from theta* (the averaged baseline) and trains {ft['train']['num_epochs']} epochs "
        f"with the same settings: AdamW at a constant {ft['optim']['lr']:g}, batches of {ft['data']['max_duration']:g}"
        f" s, SpecAugment as the baseline, validation on dev; the number of steps is in the table; each variant is "
        f"trained {len(seeds)} times (seeds {', '.join(seeds)}: batch order, dropout, SpecAugment) and its numbers "
        f"are the mean over the {len(seeds)} decodes;",
        f"- EWC: loss + (lambda/2) sum_i F_i (theta_i - theta*_i)^2 added to the per-frame loss; F = per-utterance "
        f"empirical Fisher of the per-frame loss on {fisher['stats']['num_utts']} training utterances "
        f"({fisher['settings']['num_batches']} batches of {fisher['settings']['max_duration']:g} s; "
        f"{fisher['stats']['seconds']:.0f} s to estimate), sum F = {fisher['stats']['fisher_sum']:.3g}, "
        f"mean {fisher['stats']['fisher_mean']:.3g}, max {fisher['stats']['fisher_max']:.3g}. *Fisher dist.* = "
        f"0.5 sum_i F_i (theta_i - theta*_i)^2 of the final model (the penalty for lambda = 1).",
        "",
        *arw_training(Path(args.arw_exp), Path(args.arw_config), fisher),
        f"- **{args.arw_name} is not a fine-tuning variant**: it is a second baseline, trained like the first from "
        f"scratch on all training data, with no targeted cohorts; compare it with *no adaptation*. Its steps count "
        f"its own training (the fine-tuning rows count only the fine-tuning steps); it has no Fisher distance (it "
        f"never started at theta*).",
        "",
        *penalty_scale(mit),
        "",
        *([f"**Not in the tables: fine-tuning runs without a decode in this run ({args.missing}); run "
             f"stages 5 and 6, then 9.**", ""] if args.missing.strip() else []),
        "Test set (no region or speaker of it was used for any choice):",
        "",
        Path(args.mitigation).read_text().rstrip(),
        "",
        f"Paper: {PAPER_EWC}",
        "",
    ]
    discovered = {p.stem: json.loads(p.read_text()) for p in sorted(Path(args.discovered).glob("*.json"))} \
        if args.discovered else {}
    if discovered:
        out += [
            "### The discovered cohorts before and after mitigation (Dheram et al., Interspeech 2022)",
            "",
            f"Every discovery of section 1 (fitted on dev), read on test for the baseline and the paper's two "
            f"mitigations, as far as this run trained them: oversampling the targeted cohorts' training speakers, and "
            f"a cohort embedding input (`model.cohort_embedding` of the target key's cohorts, fine-tuned on the "
            f"continued-training data, variant `cohortemb`). Targeted in this run: the {sets['num_targets']} `{sets['key']}` cohort(s) worst "
            f"on dev ({', '.join(f'`{x}`' for x in sets['targets'])}). *Gap* = (test WER of the discovery's "
            f"dev-bottom cohort - that of its dev-top cohort) / the dev-top's; the interval is the 95% paired "
            f"speaker-bootstrap interval of the dev-bottom cohort's relative WER change against no adaptation (over "
            f"its test speakers), and the verdict on whether the mitigation lowers that cohort's WER comes from it. "
            f"Trained systems: mean over {len(seeds)} seeds.",
            "",
            *discovered_mitigation(discovered, sets["key"]),
            "",
            f"The paper (Dheram et al. 2022, production data): {PAPER_MITIGATION}.",
            "",
        ]
    out += [
        "## 3. Every system by attribute, ARW included",
        "",
        "The same table for the other speaker attributes and the discovered cohorts (maps of section 1): the "
        "*targeted* cohort is the one with the baseline's highest **dev** WER for that attribute (chosen on dev, "
        "scored on test); *gap* = (max - min) / min of the per-cohort test WERs. Cohorts with few speakers are "
        "noisy: see the per-cohort speaker counts in the baseline's cohort tables (`exp/discovery/baseline-cohorts-*`).",
        "",
    ]
    for key, t in sorted(by_key.items()):
        out += [f"### `{key}`", "", (Path(args.by_key) / f"{key}.md").read_text().rstrip(), ""]
    if dev is not None:
        out += ["### Dev: every system (the set every choice is made on)", "",
                (Path(args.dev).with_suffix(".md")).read_text().rstrip(), ""]
    out += [
        "## Reading the numbers (computed from the tables above)",
        "",
        *reading(region, comparison, mit, fisher),
        *lambda_choice(dev, mit),
        *partial_reading(mit),
        *arw_reading(args.arw_name, mit, by_key, dev),
        "",
        "## Run time",
        "",
        "Wall time of the last run of each stage (2 shared CPU cores unless stated above):",
        "",
        *timing_section(Path(args.timing)),
        "",
    ]
    atomic_write_text(args.out, "\n".join(out) + "\n")


if __name__ == "__main__":
    main()
