#!/usr/bin/env python3
"""Per-cohort WER tables and plots for one decode.

Usage::

    python -m serac.bin.score_cohorts \\
        --recogs exp/x/decode/test/recogs-test-greedy_search-epoch-5-avg-2.txt \\
        --cuts data/fbank/synth_cuts_test.jsonl.gz \\
        --keys accent,gender,age_band,state \\
        --out-dir exp/x/decode/test/cohorts

    # add a discovered cohort (TSV with header "speaker<TAB>auto_cohort"), score it too
    python -m serac.bin.score_cohorts --recogs RECOGS --cuts CUTS \\
        --cohort-map exp/cohorts/auto_cohort.tsv --keys accent,auto_cohort --out-dir OUT

For each key it writes ``cohort-wer-<key>.{tsv,md,png}`` and ``cohort-summary-<key>.json``;
``speaker-wer.tsv`` always, and ``speaker-wer-map.png`` when the cuts carry ``lat``/``lon``.
Without ``--keys`` every categorical (non-float) attribute set on all decoded cuts with 2..50
distinct values is scored.
Definitions of every number: see serac/fairness/cohort_metrics.py.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional

from serac.fairness.cohort_metrics import (
    MAX_SENSIBLE_COHORTS,
    CohortReport,
    apply_cohort_maps,
    cohort_keys_available,
    cohort_wer,
    load_cohort_map,
    load_cut_attributes,
    safe_key_name,
    score_utterances,
    speaker_wer,
    write_cohort_report,
    write_speaker_tsv,
)

from serac.utils import format_number

logger = logging.getLogger("score_cohorts")

# attribute used to label regions on the speaker map, first one present wins
REGION_KEYS = ("region", "state")


def add_io_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recogs", type=Path, required=True, help="icefall recogs file of the decode")
    parser.add_argument("--cuts", type=Path, required=True,
                        help="lhotse cuts manifest (.jsonl.gz) the decode was run on; its supervisions carry the attributes")
    parser.add_argument("--out-dir", type=Path, required=True, help="where the tables and plots go")


def add_cohort_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keys", type=str, default="",
                        help="comma-separated cohort attributes, e.g. accent,gender; empty: every "
                             f"attribute with 2..{MAX_SENSIBLE_COHORTS} values")
    parser.add_argument("--cohort-map", type=Path, action="append", default=[],
                        help="TSV 'speaker|cut_id<TAB>key' adding/overriding an attribute; repeatable")


def add_bootstrap_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-bootstrap", type=int, default=1000, help="speaker resamples per cohort; 0 = no interval")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--confidence", type=float, default=0.95, help="interval coverage")
    parser.add_argument("--min-speakers", type=int, default=3,
                        help="cohorts with fewer speakers are marked too small to judge in the tables")
    parser.add_argument("--no-plots", action="store_true", help="write the tables only")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_io_arguments(parser)
    add_cohort_arguments(parser)
    add_bootstrap_arguments(parser)
    return parser


def summary_table(reports: List[CohortReport]) -> str:
    """One line per key: the numbers a reader looks at first."""
    header = f"{'key':<14} {'cohorts':>7} {'overall':>8} {'min':>7} {'max':>7} {'std':>6} {'gap%':>7}  bottom (spk%/utt%)"
    lines = [header, "-" * len(header)]
    for r in reports:
        gap = "tie" if r.all_tie else format_number(r.relative_gap, 1)
        lines.append(
            f"{r.key:<14} {len(r.cohorts):>7d} {r.overall_wer:>8.2f} {r.min_wer:>7.2f} {r.max_wer:>7.2f} "
            f"{r.std_wer:>6.2f} {gap:>7}  {r.bottom_cohort} ({r.bottom_speaker_share:.0f}/{r.bottom_utt_share:.0f})"
        )
    return "\n".join(lines)


def score_cohorts(args: argparse.Namespace) -> List[CohortReport]:
    """Everything the CLI does, callable from Python with a namespace from :func:`get_parser`."""
    params: Dict[str, object] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    logger.info(f"params: {params}")
    scored = score_utterances(args.recogs)
    attrs = load_cut_attributes(args.cuts)
    if args.cohort_map:
        attrs = apply_cohort_maps(attrs, [load_cohort_map(p) for p in args.cohort_map])

    keys = [k.strip() for k in args.keys.split(",") if k.strip()]
    if not keys:
        decoded_in_manifest = [c for c in scored if c in attrs]
        keys = cohort_keys_available(attrs, decoded_in_manifest)
        if not keys:
            raise ValueError(f"{args.cuts}: no attribute with 2..{MAX_SENSIBLE_COHORTS} values on every "
                             f"decoded cut; pass --keys or a --cohort-map")
        logger.info(f"no --keys given; scoring {','.join(keys)}")

    args.out_dir.mkdir(parents=True, exist_ok=True)
    reports = []
    for key in keys:
        report = cohort_wer(scored, attrs, key, n_bootstrap=args.n_bootstrap, seed=args.seed,
                            confidence=args.confidence, min_speakers=args.min_speakers)
        paths = write_cohort_report(report, args.out_dir)
        if not args.no_plots:
            from serac.fairness.plots import plot_cohort_bars

            png = args.out_dir / f"cohort-wer-{safe_key_name(key)}.png"
            plot_cohort_bars(report, png)
            paths["png"] = png
        logger.info(f"{key}: wrote {', '.join(str(p) for p in paths.values())}")
        reports.append(report)

    region_key: Optional[str] = next((k for k in REGION_KEYS if any(k in a for a in attrs.values())), None)
    points = speaker_wer(scored, attrs, region_key=region_key)
    write_speaker_tsv(points, args.out_dir / "speaker-wer.tsv")
    located = [p for p in points if p.lon is not None and p.wer is not None]
    if located and not args.no_plots:
        from serac.fairness.plots import plot_wer_map

        if len(located) < len(points):
            logger.warning(f"{len(points) - len(located)} speaker(s) without lat/lon (or words) left off the map")
        plot_wer_map(located, args.out_dir / "speaker-wer-map.png")
        logger.info(f"wrote {args.out_dir / 'speaker-wer-map.png'}")
    return reports


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s")
    args = get_parser().parse_args(argv)
    try:
        reports = score_cohorts(args)
    except (ValueError, FileNotFoundError, KeyError) as e:
        # user errors (bad file, missing attribute): one readable line, not a traceback
        logger.error(str(e))
        return 1
    print(summary_table(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
