#!/usr/bin/env python3
"""Write RESULTS.md of the fairness recipe from the files of a run (stage 7; never typed by hand).

Usage: local/write_results.py --asr-dir ../asr --baseline "exp/lstm epoch 12 avg 4" --discovery exp/discovery \
         --sets data/sets/targets.json --fisher exp/ewc/fisher.json --finetune-config exp/ewc/finetune.yaml \
         --mitigation exp/mitigation.md --timing exp/timing.tsv --command "./run.sh" --out RESULTS.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import yaml

from serac.utils import atomic_write_text, git_revision

PAPER_DISCOVERY = ("Dheram et al. 2022 (production data): geodemographic 41.7% gap / 0.8% bottom share, "
                   "automatic 65.0% / 10.0%.")
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
        parts = [f"{r['method']} {r['rel']['overall']:+.1f}%" for r in others]
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("asr-dir", "baseline", "discovery", "sets", "fisher", "finetune-config", "mitigation",
                 "mitigation-json", "seeds", "timing", "command", "out"):
        p.add_argument(f"--{name}", required=True)
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

    out = [
        "# synth_assistant / fairness: cohort discovery and EWC for regional disparities",
        "",
        f"Written by stage 7 of `run.sh` from the files of the run on {time.strftime('%Y-%m-%d %H:%M')} "
        f"(git {git_revision()}, {os.cpu_count()} CPUs, {platform.machine()}). Reproduce with:",
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
        f"Speaker embedding of the automatic method: `{auto['params'].get('embedding')}` "
        f"({auto['params'].get('max_utts_per_speaker') or 'all'} utterances per speaker), k-means k="
        f"{auto['params'].get('num_clusters')}, seed {auto['params'].get('seed')}, n_init "
        f"{auto['params'].get('n_init')}.",
        "",
        f"Paper: {PAPER_DISCOVERY}",
        "",
    ]
    for m in ("geo", "geodemo", "auto"):
        out += [(disc / m / "summary.md").read_text().replace("### ", "#### ").rstrip(), ""]
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
        "## 2. Mitigation: EWC for the worst regions (Trinh et al., Interspeech 2022)",
        "",
        f"Targets: the {sets['num_targets']} `{sets['key']}` cohorts with the highest baseline **dev** WER: "
        + ", ".join(f"`{r['cohort']}` ({r['wer']:.2f}%)" for r in sets["dev_ranking"][: sets["num_targets"]])
        + " (dev ranking: " + ", ".join(f"{r['cohort']} {r['wer']:.1f}" for r in sets["dev_ranking"]) + ").",
        "",
        f"- adapt pool: {sets['sets']['adapt_pool']['cuts']} utterances ({sets['sets']['adapt_pool']['seconds']:.0f} s)"
        f" of {len(sets['adapt_speakers'])} held-out speakers of the targeted regions (adapt split);",
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
        *penalty_scale(mit),
        "",
        "Test set (no region or speaker of it was used for any choice):",
        "",
        Path(args.mitigation).read_text().rstrip(),
        "",
        f"Paper: {PAPER_EWC}",
        "",
        "## Reading the numbers (computed from the tables above)",
        "",
        *reading(region, comparison, mit, fisher),
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
