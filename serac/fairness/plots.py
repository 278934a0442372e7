"""Figures for per-cohort scoring: cohort WER bars and a speaker WER map.

Figures are drawn with matplotlib's object API on an Agg canvas, so nothing here needs a
display or changes the process-wide pyplot backend.  No map tiles or shapefiles are
downloaded: the map is a lon/lat scatter over the outline of the contiguous-US bounding box.

Usage::

    from serac.fairness.plots import plot_cohort_bars, plot_wer_map
    plot_cohort_bars(report, "cohorts/cohort-wer-accent.png")
    plot_wer_map(speaker_points, "cohorts/speaker-wer-map.png")
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from serac.fairness.cohort_metrics import CohortReport
from serac.utils import atomic_path

PathLike = Union[str, Path]

# Contiguous United States, (lon_min, lon_max, lat_min, lat_max); a frame of reference only
CONTIGUOUS_US_BOUNDS = (-124.8, -66.9, 24.4, 49.4)


def _save(fig: Figure, path: PathLike, dpi: int = 120) -> None:
    path = Path(path)
    FigureCanvasAgg(fig)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")


def plot_cohort_bars(report: CohortReport, path: PathLike, title: Optional[str] = None) -> None:
    """Bar per cohort (sorted by WER) with its bootstrap interval, and the overall WER as a
    dashed line; the bottom cohort's bar is highlighted."""
    cohorts = sorted(report.cohorts, key=lambda c: (c.wer, c.cohort))
    names = [c.cohort for c in cohorts]
    wers = np.array([c.wer for c in cohorts])
    positions = np.arange(len(cohorts))
    width = max(4.0, min(16.0, 1.0 + 0.55 * len(cohorts)))
    fig = Figure(figsize=(width, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    colours = ["#c0392b" if c.cohort == report.bottom_cohort else "#4c72b0" for c in cohorts]
    has_ci = all(c.ci_low is not None and c.ci_high is not None for c in cohorts)
    yerr = None
    if has_ci:
        low = np.array([c.ci_low for c in cohorts])
        high = np.array([c.ci_high for c in cohorts])
        # a percentile interval need not contain the point estimate; never draw negative bars
        yerr = np.vstack([np.clip(wers - low, 0, None), np.clip(high - wers, 0, None)])
    ax.bar(positions, wers, color=colours, yerr=yerr, capsize=3, ecolor="#333333")
    ax.axhline(report.overall_wer, color="#555555", linestyle="--", linewidth=1,
               label=f"overall {report.overall_wer:.2f}%")
    ax.set_xticks(positions)
    ax.set_xticklabels(names, rotation=30 if len(names) > 5 else 0, ha="right" if len(names) > 5 else "center")
    ax.set_ylabel("WER (%)")
    ax.set_xlabel(report.key)
    level = f"{round(report.confidence * 100):g}%"
    subtitle = f"{level} speaker-bootstrap CI" if has_ci else "no bootstrap"
    ax.set_title(title or f"WER by {report.key} ({subtitle})")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", frameon=False)
    for x, c in zip(positions, cohorts):
        ax.annotate(f"{c.num_speakers} spk", (x, 0), xytext=(0, 2), textcoords="offset points",
                    ha="center", va="bottom", fontsize=7, color="white")
    _save(fig, path)


def _point_fields(point: Any) -> Dict[str, Any]:
    if is_dataclass(point):
        return asdict(point)
    if isinstance(point, Mapping):
        return dict(point)
    raise TypeError(f"a map point is a dataclass or a mapping with lon/lat/wer/num_words, got {type(point)}")


def plot_wer_map(
    points: Sequence[Any],
    path: PathLike,
    title: Optional[str] = None,
    label_regions: bool = True,
) -> None:
    """Speakers (or region centroids) at their lon/lat, coloured by WER, sized by words.

    ``points`` are :class:`~serac.fairness.cohort_metrics.SpeakerPoint` objects or mappings with
    ``lon``, ``lat``, ``wer``, ``num_words`` and optionally ``region`` (or ``label``).  Points
    without a location or a WER are skipped.  With ``label_regions``, each region's name is
    written at the centroid of its points.
    """
    rows = [_point_fields(p) for p in points]
    rows = [r for r in rows if r.get("lon") is not None and r.get("lat") is not None and r.get("wer") is not None]
    if not rows:
        raise ValueError("plot_wer_map: no point has lon, lat and wer")
    lon = np.array([float(r["lon"]) for r in rows])
    lat = np.array([float(r["lat"]) for r in rows])
    wer = np.array([float(r["wer"]) for r in rows])
    words = np.array([float(r.get("num_words") or 1) for r in rows])
    # marker area grows with the evidence behind each WER, within readable bounds
    sizes = 20 + 180 * np.sqrt(words / words.max())

    fig = Figure(figsize=(9, 5.5))
    ax = fig.add_subplot(1, 1, 1)
    lon_min, lon_max, lat_min, lat_max = CONTIGUOUS_US_BOUNDS
    ax.add_patch(Rectangle((lon_min, lat_min), lon_max - lon_min, lat_max - lat_min, fill=True,
                           facecolor="#f4f4f4", edgecolor="#999999", linestyle="--", linewidth=0.8, zorder=0))
    scatter = ax.scatter(lon, lat, c=wer, s=sizes, cmap="viridis_r", edgecolors="black", linewidths=0.4,
                         alpha=0.85, zorder=2)
    colourbar = fig.colorbar(scatter, ax=ax, shrink=0.8)
    colourbar.set_label("WER (%)")

    if label_regions:
        by_region: Dict[str, List[Tuple[float, float]]] = defaultdict(list)
        for r, x, y in zip(rows, lon, lat):
            region = r.get("region") or r.get("label")
            if region is not None:
                by_region[str(region)].append((x, y))
        for region, coords in sorted(by_region.items()):
            cx, cy = np.mean(coords, axis=0)
            ax.annotate(region, (cx, cy), xytext=(4, 4), textcoords="offset points", fontsize=7,
                        color="#222222", zorder=3)

    # frame both the US box and every point (speakers outside it must stay visible)
    x_low, x_high = min(lon_min, lon.min()), max(lon_max, lon.max())
    y_low, y_high = min(lat_min, lat.min()), max(lat_max, lat.max())
    ax.set_xlim(x_low - 2, x_high + 2)
    ax.set_ylim(y_low - 2, y_high + 2)
    ax.set_aspect(1.25)  # ~1/cos(37 deg): keeps the US from looking stretched without a projection
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(title or f"WER per speaker ({len(rows)} speakers; marker size ~ words)")
    _save(fig, path)
