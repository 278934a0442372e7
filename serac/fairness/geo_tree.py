"""Geographic clustering tree (Trinh et al. / Dheram et al., Interspeech 2022): recursive binary splits of
speakers on a longitude or latitude threshold, each split chosen to maximise the WER difference of its sides.

Growth is best-first: at every step each leaf's best admissible split is computed, and the leaf whose best
split has the largest WER difference is split, until ``max_leaves`` leaves exist or no leaf has an admissible
split. A split of a node is admissible when both sides keep at least ``min_speakers`` speakers and
``min_words`` reference words, and the WER difference is more than ``min_gain`` (percentage points; with the
default 0, splits that change nothing are never made).

Split criterion: for a feature f in (lon, lat) and a threshold t halfway between two consecutive distinct
speaker values, left = speakers with f <= t, right = the rest; score = |WER(left) - WER(right)|, each side's
WER pooled over its utterances (errors / words). Ties: lon before lat, then the lower threshold.

The tree is applied to new speakers by their coordinates, so regions fitted on dev label test, adapt and train
speakers alike. Leaves are named by their path: ``g`` is the root, ``g0`` its left (<=) child, ``g1`` its right
child, ``g01`` the right child of ``g0``, ...

Usage::

    tree = grow_geo_tree(records.values(), max_leaves=8, min_speakers=3, min_words=100)
    tree.assign(lon=-104.99, lat=39.74)   # -> 'g10'
    json.dump(tree.to_dict(), f)           # thresholds, per-node WER, readable leaf descriptions
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from serac.fairness.discovery import SpeakerRecord

FEATURES = ("lon", "lat")
PathLike = Union[str, Path]


@dataclass
class GeoPoint:
    speaker: str
    lon: float
    lat: float
    errors: int
    words: int

    def value(self, feature: str) -> float:
        return self.lon if feature == "lon" else self.lat


@dataclass
class Split:
    feature: str
    threshold: float
    wer_left: float
    wer_right: float
    speakers_left: int
    speakers_right: int
    words_left: int
    words_right: int

    @property
    def gain(self) -> float:
        return abs(self.wer_left - self.wer_right)


@dataclass
class GeoNode:
    id: str
    speakers: List[str]
    errors: int
    words: int
    depth: int = 0
    split: Optional[Split] = None
    left: Optional["GeoNode"] = None
    right: Optional["GeoNode"] = None
    order: Optional[int] = None  # when this node was split (0 = first)

    @property
    def is_leaf(self) -> bool:
        return self.left is None

    @property
    def wer(self) -> Optional[float]:
        return 100.0 * self.errors / self.words if self.words else None


def best_split(points: Sequence[GeoPoint], min_speakers: int = 1, min_words: int = 1,
               min_gain: float = 0.0) -> Optional[Split]:
    """The admissible split of ``points`` with the largest |WER(left) - WER(right)|, or None."""
    min_speakers, min_words = max(1, int(min_speakers)), max(1, int(min_words))
    best: Optional[Split] = None
    n = len(points)
    if n < 2 * min_speakers:
        return None
    for feature in FEATURES:
        pts = sorted(points, key=lambda p: (p.value(feature), p.speaker))
        values = np.array([p.value(feature) for p in pts])
        err = np.cumsum([p.errors for p in pts])
        wrd = np.cumsum([p.words for p in pts])
        tot_e, tot_w = int(err[-1]), int(wrd[-1])
        for i in range(n - 1):  # left = pts[: i + 1]
            if values[i] == values[i + 1]:
                continue  # a threshold cannot separate equal coordinates
            n_left, n_right = i + 1, n - i - 1
            w_left, w_right = int(wrd[i]), tot_w - int(wrd[i])
            if n_left < min_speakers or n_right < min_speakers or w_left < min_words or w_right < min_words:
                continue
            e_left = int(err[i])
            wer_left = 100.0 * e_left / w_left
            wer_right = 100.0 * (tot_e - e_left) / w_right
            cand = Split(feature, float((values[i] + values[i + 1]) / 2.0), wer_left, wer_right,
                         n_left, n_right, w_left, w_right)
            if cand.gain <= min_gain:
                continue  # a split must change the WER by more than min_gain (0: by anything)
            # strict '>' keeps the first best: lon before lat, lower threshold first
            if best is None or cand.gain > best.gain + 1e-12:
                best = cand
    return best


class GeoTree:
    def __init__(self, root: GeoNode, params: Dict[str, Any]) -> None:
        self.root = root
        self.params = params

    # -- structure ------------------------------------------------------------------------------
    def nodes(self) -> List[GeoNode]:
        out, stack = [], [self.root]
        while stack:
            node = stack.pop()
            out.append(node)
            if not node.is_leaf:
                stack.extend([node.right, node.left])
        return out

    def leaves(self) -> List[GeoNode]:
        return sorted((n for n in self.nodes() if n.is_leaf), key=lambda n: n.id)

    def path(self, leaf_id: str) -> List[Tuple[GeoNode, bool]]:
        """(ancestor, went_left) pairs from the root to ``leaf_id``."""
        out, node = [], self.root
        for bit in leaf_id[1:]:
            out.append((node, bit == "0"))
            node = node.left if bit == "0" else node.right
        return out

    def describe(self, leaf_id: str) -> str:
        """Readable bounds of a leaf, e.g. ``lon <= -98.62 and lat > 38.10`` (``all`` for a single-leaf tree)."""
        bounds: Dict[Tuple[str, str], float] = {}
        for node, went_left in self.path(leaf_id):
            f, t = node.split.feature, node.split.threshold
            if went_left:
                bounds[(f, "<=")] = min(t, bounds.get((f, "<="), math.inf))
            else:
                bounds[(f, ">")] = max(t, bounds.get((f, ">"), -math.inf))
        parts = [f"{f} {op} {t:.2f}" for (f, op), t in sorted(bounds.items())]
        return " and ".join(parts) if parts else "all"

    def box(self, leaf_id: str) -> Dict[str, Tuple[float, float]]:
        """(low, high) per feature of a leaf (infinite where unbounded)."""
        box = {"lon": [-math.inf, math.inf], "lat": [-math.inf, math.inf]}
        for node, went_left in self.path(leaf_id):
            f, t = node.split.feature, node.split.threshold
            if went_left:
                box[f][1] = min(box[f][1], t)
            else:
                box[f][0] = max(box[f][0], t)
        return {k: (v[0], v[1]) for k, v in box.items()}

    # -- application ----------------------------------------------------------------------------
    def assign(self, lon: float, lat: float) -> str:
        node = self.root
        while not node.is_leaf:
            value = lon if node.split.feature == "lon" else lat
            node = node.left if value <= node.split.threshold else node.right
        return node.id

    def assign_speakers(self, speaker_attrs: Dict[str, Dict[str, Any]]) -> Dict[str, str]:
        """``{speaker: leaf id}`` for every speaker with numeric ``lon`` and ``lat``."""
        out = {}
        for speaker, a in speaker_attrs.items():
            try:
                lon, lat = float(a["lon"]), float(a["lat"])
            except (KeyError, TypeError, ValueError):
                continue
            out[speaker] = self.assign(lon, lat)
        return out

    # -- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        def node_dict(n: GeoNode) -> Dict[str, Any]:
            d: Dict[str, Any] = {"id": n.id, "speakers": len(n.speakers), "words": n.words, "errors": n.errors,
                                 "wer": None if n.wer is None else round(n.wer, 4)}
            if n.is_leaf:
                d["region"] = n.id
                d["bounds"] = self.describe(n.id)
            else:
                s = n.split
                hemis = ("west", "east") if s.feature == "lon" else ("south", "north")
                d["split"] = {"feature": s.feature, "threshold": round(s.threshold, 6),
                              "text": f"{s.feature} <= {s.threshold:.2f} ({hemis[0]}: {s.wer_left:.2f}% WER, "
                                      f"{s.speakers_left} spk) | > {s.threshold:.2f} ({hemis[1]}: "
                                      f"{s.wer_right:.2f}% WER, {s.speakers_right} spk)",
                              "wer_left": round(s.wer_left, 4), "wer_right": round(s.wer_right, 4),
                              "wer_difference": round(s.gain, 4), "order": n.order}
                d["left"], d["right"] = node_dict(n.left), node_dict(n.right)
            return d

        return {"params": self.params, "num_leaves": len(self.leaves()),
                "leaves": {leaf.id: self.describe(leaf.id) for leaf in self.leaves()}, "tree": node_dict(self.root)}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "GeoTree":
        def build(nd: Dict[str, Any], depth: int) -> GeoNode:
            node = GeoNode(nd["id"], [], int(nd.get("errors", 0)), int(nd.get("words", 0)), depth)
            if "split" in nd:
                s = nd["split"]
                node.split = Split(s["feature"], float(s["threshold"]), s.get("wer_left", 0.0),
                                   s.get("wer_right", 0.0), 0, 0, 0, 0)
                node.order = s.get("order")
                node.left, node.right = build(nd["left"], depth + 1), build(nd["right"], depth + 1)
            return node

        return cls(build(d["tree"], 0), d.get("params", {}))


def geo_points(records: Iterable[SpeakerRecord]) -> List[GeoPoint]:
    pts = []
    for r in records:
        try:
            lon, lat = float(r.attrs["lon"]), float(r.attrs["lat"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"speaker {r.speaker!r} has no single numeric lon/lat") from None
        pts.append(GeoPoint(r.speaker, lon, lat, r.errors, r.words))
    return pts


def grow_geo_tree(records: Iterable[Union[SpeakerRecord, GeoPoint]], max_leaves: int = 8, min_speakers: int = 3,
                  min_words: int = 100, min_gain: float = 0.0) -> GeoTree:
    """Best-first growth of the geographic tree (see the module docstring)."""
    if max_leaves < 1:
        raise ValueError(f"max_leaves must be >= 1, got {max_leaves}")
    items = list(records)
    points = [p if isinstance(p, GeoPoint) else None for p in items]
    if any(p is None for p in points):
        points = geo_points(items)  # type: ignore[arg-type]
    if not points:
        raise ValueError("no speakers to grow a tree on")
    by_speaker = {p.speaker: p for p in points}
    root = GeoNode("g", sorted(by_speaker), sum(p.errors for p in points), sum(p.words for p in points))
    params = {"max_leaves": max_leaves, "min_speakers": min_speakers, "min_words": min_words, "min_gain": min_gain,
              "criterion": "abs WER difference (percentage points), pooled WER per side", "growth": "best-first"}
    leaves = [root]
    cache: Dict[str, Optional[Split]] = {}
    n_splits = 0
    while len(leaves) < max_leaves:
        best_leaf, best = None, None
        for leaf in sorted(leaves, key=lambda n: n.id):
            if leaf.id not in cache:
                cache[leaf.id] = best_split([by_speaker[s] for s in leaf.speakers], min_speakers, min_words, min_gain)
            cand = cache[leaf.id]
            if cand is not None and (best is None or cand.gain > best.gain + 1e-12):
                best_leaf, best = leaf, cand
        if best_leaf is None:
            break
        left_spk = [s for s in best_leaf.speakers if by_speaker[s].value(best.feature) <= best.threshold]
        right_spk = [s for s in best_leaf.speakers if by_speaker[s].value(best.feature) > best.threshold]

        def child(suffix: str, spk: List[str]) -> GeoNode:
            return GeoNode(best_leaf.id + suffix, spk, sum(by_speaker[s].errors for s in spk),
                           sum(by_speaker[s].words for s in spk), best_leaf.depth + 1)

        best_leaf.split, best_leaf.order = best, n_splits
        best_leaf.left, best_leaf.right = child("0", left_spk), child("1", right_spk)
        n_splits += 1
        leaves.remove(best_leaf)
        leaves.extend([best_leaf.left, best_leaf.right])
    return GeoTree(root, params)


def plot_geo_tree(tree: GeoTree, points: Sequence[Dict[str, Any]], path: PathLike, title: Optional[str] = None,
                  region_wer: Optional[Dict[str, float]] = None) -> None:
    """Leaf rectangles (shaded by the region's WER) with each speaker at its lon/lat (coloured by its WER).

    ``points``: mappings with lon, lat, wer, num_words; ``region_wer``: {leaf id: WER} for the shading
    (default: the WERs the tree was fitted with)."""
    import matplotlib
    from matplotlib import colors
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from serac.fairness.plots import CONTIGUOUS_US_BOUNDS
    from serac.utils import atomic_path

    rows = [p for p in points if p.get("lon") is not None and p.get("wer") is not None]
    lon_min, lon_max, lat_min, lat_max = CONTIGUOUS_US_BOUNDS
    if rows:
        lon_min = min(lon_min, min(float(r["lon"]) for r in rows)) - 1
        lon_max = max(lon_max, max(float(r["lon"]) for r in rows)) + 1
        lat_min = min(lat_min, min(float(r["lat"]) for r in rows)) - 1
        lat_max = max(lat_max, max(float(r["lat"]) for r in rows)) + 1
    leaves = tree.leaves()
    wers = region_wer if region_wer is not None else {n.id: n.wer for n in leaves}
    vals = [w for w in list(wers.values()) + [float(r["wer"]) for r in rows] if w is not None]
    norm = colors.Normalize(vmin=min(vals, default=0.0), vmax=max(vals, default=1.0))
    cmap = matplotlib.colormaps["viridis_r"]
    fig = Figure(figsize=(10, 6))
    ax = fig.add_subplot(1, 1, 1)
    for leaf in leaves:
        box = tree.box(leaf.id)
        x0, x1 = max(box["lon"][0], lon_min), min(box["lon"][1], lon_max)
        y0, y1 = max(box["lat"][0], lat_min), min(box["lat"][1], lat_max)
        w = wers.get(leaf.id)
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=cmap(norm(w)) if w is not None else "#eeeeee",
                               alpha=0.35, edgecolor="#333333", linewidth=1.0, zorder=0))
        label = f"{leaf.id}\n{w:.1f}%" if w is not None else f"{leaf.id}\n-"
        ax.annotate(label, ((x0 + x1) / 2, (y0 + y1) / 2), ha="center", va="center", fontsize=8, zorder=3)
    if rows:
        words = np.array([float(r.get("num_words") or 1) for r in rows])
        sc = ax.scatter([float(r["lon"]) for r in rows], [float(r["lat"]) for r in rows],
                        c=[float(r["wer"]) for r in rows], cmap=cmap, norm=norm,
                        s=15 + 120 * np.sqrt(words / words.max()), edgecolors="black", linewidths=0.4, zorder=2)
        fig.colorbar(sc, ax=ax, shrink=0.8).set_label("WER (%)")
    ax.set_xlim(lon_min, lon_max)
    ax.set_ylim(lat_min, lat_max)
    ax.set_aspect(1.25)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(title or f"geographic tree: {len(leaves)} regions (shade: region WER; dots: speakers)")
    FigureCanvasAgg(fig)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")
