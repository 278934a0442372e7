#!/usr/bin/env python3
"""Discover cohorts with high WER (Dheram et al., Interspeech 2022): fit on one decode (dev), evaluate on
another (test), write a cohort map for steps/score_cohorts.sh.

Usage:
  # geographic clustering tree on lon/lat (also labels adapt and train speakers by their coordinates)
  python -m serac.bin.discover_cohorts --method geo --max-leaves 8 --min-speakers 3 --min-words 100 \
      --fit-recogs exp/lstm/decode/dev/recogs-dev-greedy_search-epoch-12-avg-4.txt --fit-cuts data/fbank/synth_cuts_dev.jsonl.gz \
      --eval-recogs exp/lstm/decode/test/recogs-test-greedy_search-epoch-12-avg-4.txt --eval-cuts data/fbank/synth_cuts_test.jsonl.gz \
      --label-cuts data/fbank/synth_cuts_adapt.jsonl.gz --out-dir exp/discovery/geo
  # geodemographic value-vs-rest partition of zip codes
  python -m serac.bin.discover_cohorts --method geodemo ... --out-dir exp/discovery/geodemo
  # automatic: speaker embeddings + k-means (no labels)
  python -m serac.bin.discover_cohorts --method auto --embedding serac --speaker-model exp/speaker/model.pt \
      --num-clusters 6 ... --out-dir exp/discovery/auto        # or --embedding resemblyzer | fbank-stats
  # reference row: an existing attribute (e.g. the census division) scored the same way
  python -m serac.bin.discover_cohorts --method given --given-key region ... --out-dir exp/discovery/region

Writes to --out-dir:
  cohort-map.tsv   speaker<TAB><key> for every speaker of the fit, eval and --label-cuts sets
  model.json       the fitted method: tree with thresholds / partition / centroids
  summary.json     disparity on the fit set and on the eval set (dev-ranked and re-ranked), see serac/fairness/discovery.py
  summary.md       the same, readable
  map-fit.png, map-eval.png (geo), embeddings/*.npz (auto: cached speaker embeddings, keyed by the
                   extractor's cache_tag: for serac's model the checkpoint's SHA-1)
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from serac.fairness.cohort_metrics import load_cut_attributes
from serac.fairness.discovery import disparity, speaker_attributes, speaker_records, write_cohort_map
from serac.utils import format_number as fmt
from serac.utils import atomic_write_text, setup_logging

DEFAULT_KEYS = {"geo": "geo_region", "geodemo": "geodemo", "auto": "auto_cohort", "given": None}
DESCRIPTIONS = {
    "geo": "geographic clustering tree (lon/lat thresholds maximising the WER difference)",
    "geodemo": "geodemographic (zip codes by a majority demographic attribute, value vs rest)",
    "auto": "automatic (speaker embeddings + k-means, no labels)",
    "given": "given labels (an existing attribute, no discovery: a reference row)",
}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", choices=sorted(DEFAULT_KEYS), required=True)
    p.add_argument("--fit-recogs", required=True, help="recogs file of the decode to fit on (dev)")
    p.add_argument("--fit-cuts", required=True, help="cuts manifest of that decode (attributes)")
    p.add_argument("--eval-recogs", help="recogs file to evaluate on (test)")
    p.add_argument("--eval-cuts", help="cuts manifest of the evaluation decode")
    p.add_argument("--label-cuts", action="append", default=[],
                   help="more manifests whose speakers get a label in cohort-map.tsv (repeatable)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--key", help="cohort attribute name in the map (default: geo_region / geodemo / auto_cohort)")
    g = p.add_argument_group("geo / geodemo")
    g.add_argument("--max-leaves", type=int, default=8, help="geo: most regions")
    g.add_argument("--min-speakers", type=int, default=3, help="smallest cohort, in speakers (fit set)")
    g.add_argument("--min-words", type=int, default=100, help="smallest cohort, in reference words (fit set)")
    g.add_argument("--min-gain", type=float, default=0.0, help="geo: a split must change the WER by more than this (points)")
    g.add_argument("--attributes", default="", help="geodemo: comma-separated attributes (default: all demo_*)")
    p.add_argument("--given-key", default="region", help="given: the speaker attribute used as cohorts")
    g = p.add_argument_group("auto")
    g.add_argument("--embedding", default="auto",
                   help="serac | resemblyzer | fbank-stats | auto (serac with --speaker-model, else resemblyzer if "
                        "installed, else fbank-stats); see serac/speaker/embeddings.py")
    g.add_argument("--speaker-model", default=None,
                   help="serac's speaker-embedding checkpoint (model.pt of serac.bin.train_sv) for --embedding serac")
    g.add_argument("--num-clusters", type=int, default=6)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--n-init", type=int, default=10)
    g.add_argument("--max-utts-per-speaker", type=int, default=0, help="0: all of a speaker's utterances")
    g.add_argument("--num-threads", type=int, default=1)
    return p


def _points(records, assignment) -> List[Dict[str, Any]]:
    return [{"lon": r.attrs.get("lon"), "lat": r.attrs.get("lat"), "wer": r.wer, "num_words": r.words,
             "region": assignment.get(s)} for s, r in records.items() if r.wer is not None]


def _embeddings(args, extractor, cuts_path: str, speakers: List[str], out_dir: Path) -> np.ndarray:
    from lhotse import load_manifest_lazy

    from serac.speaker.embeddings import speaker_embeddings

    cache = out_dir / "embeddings" / (f"{extractor.cache_tag}-max{args.max_utts_per_speaker}-seed{args.seed}-"
                                      f"{Path(cuts_path).name.split('.')[0]}.npz")
    if cache.is_file():
        data = np.load(cache, allow_pickle=False)
        have = dict(zip(data["speakers"].tolist(), data["vectors"]))
        if all(s in have for s in speakers):
            logging.info(f"embeddings from {cache}")
            return np.stack([have[s] for s in speakers])
    t0 = time.time()
    names, vectors = speaker_embeddings(load_manifest_lazy(cuts_path), extractor, args.max_utts_per_speaker,
                                        args.seed, speakers=speakers)
    logging.info(f"embedded {len(names)} speakers of {cuts_path} with {extractor.name} in {time.time() - t0:.0f}s")
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(".tmp." + cache.name)
    np.savez(tmp, speakers=np.array(names), vectors=vectors)
    tmp.replace(cache)
    have = dict(zip(names, vectors))
    missing = [s for s in speakers if s not in have]
    if missing:
        raise ValueError(f"{cuts_path}: no audio for speakers {missing[:5]}")
    return np.stack([have[s] for s in speakers])


def summary_markdown(summary: Dict[str, Any]) -> str:
    lines = [f"### {summary['method']}: {summary['description']}", ""]
    for name, d in (("fit", summary["fit"]), ("eval (fit-ranked)", summary.get("eval")),
                    ("eval (re-ranked)", summary.get("eval_own"))):
        if not d:
            continue
        lines.append(f"- {name}: {d['num_cohorts']} cohorts over {d['num_speakers']} speakers, bottom `{d['bottom']}` "
                     f"{fmt(d.get('bottom_wer'), 2)}% vs top `{d['top']}` {fmt(d.get('top_wer'), 2)}%: relative gap "
                     f"{fmt(d.get('relative_gap'), 1)}%, bottom share {fmt(d.get('bottom_speaker_share'), 1)}% of speakers")
    lines += ["", "| cohort | fit speakers | fit WER % | eval speakers | eval WER % |", "|---|---:|---:|---:|---:|"]
    ev = {c["cohort"]: c for c in (summary.get("eval") or {}).get("cohorts", [])}
    for c in summary["fit"]["cohorts"]:
        e = ev.get(c["cohort"], {})
        lines.append(f"| {c['cohort']} | {c['speakers']} | {fmt(c['wer'], 2)} | {e.get('speakers', 0)} | "
                     f"{fmt(e.get('wer'), 2)} |")
    return "\n".join(lines) + "\n"


def discover(args: argparse.Namespace) -> Dict[str, Any]:
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = args.key or DEFAULT_KEYS[args.method] or args.given_key
    fit_attrs = load_cut_attributes(args.fit_cuts)
    fit = speaker_records(args.fit_recogs, fit_attrs)
    ev = None
    if args.eval_recogs:
        if not args.eval_cuts:
            raise ValueError("--eval-recogs needs --eval-cuts")
        ev = speaker_records(args.eval_recogs, load_cut_attributes(args.eval_cuts))
    label_attrs: Dict[str, Dict[str, Any]] = {}
    for path in args.label_cuts:
        label_attrs.update(speaker_attributes(load_cut_attributes(path)))
    params = {k: v for k, v in vars(args).items()}
    model: Dict[str, Any] = {"method": args.method, "key": key}

    if args.method == "geo":
        from serac.fairness.geo_tree import grow_geo_tree, plot_geo_tree

        tree = grow_geo_tree(fit.values(), max_leaves=args.max_leaves, min_speakers=args.min_speakers,
                             min_words=args.min_words, min_gain=args.min_gain)
        model.update(tree.to_dict())
        everyone = {s: r.attrs for s, r in fit.items()}
        if ev:
            everyone.update({s: r.attrs for s, r in ev.items()})
        everyone.update(label_attrs)
        assignment = tree.assign_speakers(everyone)
        logging.info(f"geo tree: {len(tree.leaves())} leaves: " +
                     "; ".join(f"{k}: {v}" for k, v in model["leaves"].items()))
    elif args.method == "geodemo":
        from serac.fairness.geodemographic import assign_speakers, candidate_partitions

        attributes = [a for a in args.attributes.split(",") if a] or None
        cands = candidate_partitions(list(fit.values()), attributes, args.min_speakers, args.min_words)
        if not cands:
            raise ValueError("no admissible demographic partition")
        best = cands[0]
        model.update({"partition": best.to_dict(), "candidates": [c.to_dict() for c in cands]})
        everyone = {s: r.attrs for s, r in fit.items()}
        if ev:
            everyone.update({s: r.attrs for s, r in ev.items()})
        everyone.update(label_attrs)
        assignment = assign_speakers(best, everyone)
        logging.info(f"geodemographic: {best.label_in} ({best.wer_in:.2f}%, {best.speakers_in} spk) vs rest "
                     f"({best.wer_out:.2f}%, {best.speakers_out} spk); {len(cands)} candidates")
    elif args.method == "given":
        everyone = {s: r.attrs for s, r in fit.items()}
        if ev:
            everyone.update({s: r.attrs for s, r in ev.items()})
        everyone.update(label_attrs)
        assignment = {s: str(a[args.given_key]) for s, a in everyone.items() if args.given_key in a}
        model["given_key"] = args.given_key
    else:
        import torch

        from serac.fairness.auto_cohorts import fit_auto_cohorts
        from serac.speaker.embeddings import get_extractor

        torch.set_num_threads(args.num_threads)
        if args.speaker_model and args.embedding not in ("serac", "auto"):
            raise ValueError(f"--speaker-model is for --embedding serac (or auto), not {args.embedding}")
        extractor = get_extractor(args.embedding, checkpoint=args.speaker_model)
        fit_speakers = list(fit)
        x_fit = _embeddings(args, extractor, args.fit_cuts, fit_speakers, out_dir)
        auto = fit_auto_cohorts(fit_speakers, x_fit, fit, args.num_clusters, args.seed, args.n_init,
                                standardize=not extractor.unit_norm)
        auto.params["embedding"] = extractor.name
        model.update(auto.to_dict())
        assignment = auto.assign(fit_speakers, x_fit)
        if ev:
            ev_speakers = list(ev)
            assignment.update(auto.assign(ev_speakers, _embeddings(args, extractor, args.eval_cuts, ev_speakers,
                                                                  out_dir)))
        for path in args.label_cuts:
            spk = sorted(speaker_attributes(load_cut_attributes(path)))
            assignment.update(auto.assign(spk, _embeddings(args, extractor, path, spk, out_dir)))
        params["embedding"] = extractor.name
        if extractor.name == "serac":
            params["speaker_model_sha1"] = auto.params["speaker_model_sha1"] = extractor.checkpoint_sha1
            auto.params["speaker_model"] = extractor.checkpoint

    fit_summary = disparity(assignment, fit)
    summary: Dict[str, Any] = {"method": args.method, "key": key, "description": DESCRIPTIONS[args.method],
                               "params": params, "fit": fit_summary}
    if ev:
        order = fit_summary["order"]
        summary["eval"] = disparity(assignment, ev, ranking=order)
        summary["eval_own"] = disparity(assignment, ev)
    atomic_write_text(out_dir / "model.json", json.dumps(model, indent=2) + "\n")
    write_cohort_map(assignment, key, out_dir / "cohort-map.tsv",
                     comment=f"{DESCRIPTIONS[args.method]}; fitted on {args.fit_recogs}")
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out_dir / "summary.md", summary_markdown(summary))
    if args.method == "geo":
        plot_geo_tree(tree, _points(fit, assignment), out_dir / "map-fit.png",
                      title=f"geographic tree fitted on {Path(args.fit_recogs).name}")
        if ev:
            region_wer = {c["cohort"]: c["wer"] for c in summary["eval"]["cohorts"]}
            plot_geo_tree(tree, _points(ev, assignment), out_dir / "map-eval.png", region_wer=region_wer,
                          title=f"geographic tree applied to {Path(args.eval_recogs).name}")
    return summary


def main(argv: Optional[List[str]] = None) -> int:
    setup_logging()
    args = get_parser().parse_args(argv)
    logging.info(f"params: {vars(args)}")
    try:
        summary = discover(args)
    except (ValueError, FileNotFoundError, ImportError) as e:
        logging.error(str(e))
        return 1
    print(summary_markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
