"""Report files of per-cohort and per-speaker WER: ``cohort-wer-<key>.tsv``, ``cohort-summary-<key>.json``,
``cohort-wer-<key>.md`` and ``speaker-wer.tsv``. Numbers are written by :func:`serac.utils.format_number` (the
one formatter: missing values are ``-``)."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Dict, List, Sequence

from serac.fairness.cohort_stats import CohortReport, SpeakerPoint
from serac.fairness.cohorts import PathLike
from serac.utils import MISSING, atomic_write_text
from serac.utils import format_number as _fmt

def write_speaker_tsv(points: Sequence[SpeakerPoint], path: PathLike) -> None:
    """``speaker-wer.tsv``: speaker, num_utts, num_words, errors, wer, lon, lat, region."""
    lines = ["speaker\tnum_utts\tnum_words\terrors\twer\tlon\tlat\tregion"]
    for p in points:
        lines.append(
            "\t".join(
                [
                    _clean_cell(p.speaker),
                    str(p.num_utts),
                    str(p.num_words),
                    str(p.errors),
                    _fmt(p.wer),
                    _fmt(p.lon, 4),
                    _fmt(p.lat, 4),
                    _clean_cell(p.region) if p.region is not None else MISSING,
                ]
            )
        )
    atomic_write_text(path, "\n".join(lines) + "\n")


COHORT_TSV_COLUMNS = ("cohort", "num_speakers", "num_utts", "num_words", "wer", "ins", "del", "sub", "ci_low", "ci_high",
                      "too_small")


def interval_cell(ci_low: str, ci_high: str, num_speakers: int, too_small: bool) -> str:
    """The interval column of a Markdown table: ``[low, high]``, or why it does not say much."""
    if too_small:
        return f"too small to judge ({num_speakers} speaker{'s' if int(num_speakers) != 1 else ''})"
    return MISSING if ci_low == MISSING else f"[{ci_low}, {ci_high}]"


def gap_sentence(report: CohortReport) -> str:
    """The disparity line: bottom vs top cohort and their relative gap, or that there is none to report."""
    if len(report.cohorts) == 1:
        return f"- one cohort (`{report.top_cohort}`): no gap to report"
    if report.all_tie:
        return f"- no gap: all {len(report.cohorts)} cohorts tie at {report.min_wer:.2f}% WER"
    gap = "undefined (top cohort at 0% WER)" if report.relative_gap is None else f"{report.relative_gap:.1f}%"
    small = [c for c in (report.bottom_cohort, report.top_cohort) if c in report.too_small_cohorts]
    note = f" ({', '.join(f'`{c}`' for c in small)} too small to judge)" if small else ""
    return f"- relative gap, bottom `{report.bottom_cohort}` vs top `{report.top_cohort}`: {gap}{note}"


def _clean_cell(text: str) -> str:
    # a tab or newline inside a cohort name would shift the columns of the table
    return re.sub(r"[\t\r\n|]", " ", text)


def safe_key_name(key: str) -> str:
    """``key`` made safe for a file name (``cohort-wer-<key>.tsv``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def write_cohort_tsv(report: CohortReport, path: PathLike) -> None:
    """``cohort-wer-<key>.tsv``; WER and interval in percent with 2 decimals, ``-`` if absent; ``too_small`` 1
    for a cohort with fewer speakers than the report's ``min_speakers``."""
    lines = ["\t".join(COHORT_TSV_COLUMNS)]
    for c in report.cohorts:
        lines.append(
            "\t".join(
                [
                    _clean_cell(c.cohort),
                    str(c.num_speakers),
                    str(c.num_utts),
                    str(c.num_words),
                    _fmt(c.wer),
                    str(c.ins),
                    str(c.dels),
                    str(c.subs),
                    _fmt(c.ci_low),
                    _fmt(c.ci_high),
                    "1" if c.too_small else "0",
                ]
            )
        )
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_cohort_tsv(path: PathLike) -> List[Dict[str, str]]:
    """Rows of a ``cohort-wer-<key>.tsv`` as dicts of strings (for RESULTS.md writers)."""
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def write_cohort_json(report: CohortReport, path: PathLike) -> None:
    """``cohort-summary-<key>.json``: everything in the report, machine-readable."""
    atomic_write_text(path, json.dumps(report.to_dict(), indent=2, sort_keys=False) + "\n")


def cohort_markdown(report: CohortReport) -> str:
    """Markdown table of the cohorts followed by the disparity summary."""
    level = f"{round(report.confidence * 100):g}%"
    lines = [
        f"### WER by `{report.key}` (overall {report.overall_wer:.2f}%, "
        f"{report.num_utts} utts, {report.num_speakers} speakers)",
        "",
        f"| cohort | speakers | utts | words | WER % | {level} CI | ins | del | sub |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in report.cohorts:
        interval = interval_cell(_fmt(c.ci_low), _fmt(c.ci_high), c.num_speakers, c.too_small)
        lines.append(
            f"| {_clean_cell(c.cohort)} | {c.num_speakers} | {c.num_utts} | {c.num_words} | "
            f"{c.wer:.2f} | {interval} | {c.ins} | {c.dels} | {c.subs} |"
        )
    lines += [
        "",
        f"- cohort WERs: mean {report.mean_wer:.2f}, min {report.min_wer:.2f}, max {report.max_wer:.2f}, "
        f"std {report.std_wer:.2f} (population, ddof=0)",
        gap_sentence(report),
        f"- bottom cohort share: {report.bottom_speaker_share:.1f}% of speakers, "
        f"{report.bottom_utt_share:.1f}% of utterances",
    ]
    if report.n_bootstrap > 0:
        lines.append(
            f"- intervals: percentile bootstrap over speakers, {report.n_bootstrap} resamples, seed {report.seed}"
        )
    if report.too_small_cohorts:
        lines.append(f"- too small to judge (fewer than {report.min_speakers} speakers): "
                     f"{', '.join(report.too_small_cohorts)}")
    if report.excluded_cohorts:
        lines.append(f"- left out (no reference words): {', '.join(report.excluded_cohorts)}")
    return "\n".join(lines) + "\n"


def write_cohort_markdown(report: CohortReport, path: PathLike) -> None:
    """``cohort-wer-<key>.md``, ready to paste into RESULTS.md."""
    atomic_write_text(path, cohort_markdown(report))


def write_cohort_report(report: CohortReport, out_dir: PathLike) -> Dict[str, Path]:
    """Write the tsv, json and md files of ``report`` into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = safe_key_name(report.key)
    paths = {
        "tsv": out_dir / f"cohort-wer-{name}.tsv",
        "json": out_dir / f"cohort-summary-{name}.json",
        "md": out_dir / f"cohort-wer-{name}.md",
    }
    write_cohort_tsv(report, paths["tsv"])
    write_cohort_json(report, paths["json"])
    write_cohort_markdown(report, paths["md"])
    return paths
