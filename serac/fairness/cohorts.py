"""Cohort attributes: what each cut of a lhotse manifest says about its speaker (``speaker``, ``gender``,
``language`` and every ``custom`` supervision field: accent, age_band, state, region, lat/lon, ...), cohort maps
(TSVs from a cohort-discovery method that add or override an attribute per speaker or cut), and which attributes
make sensible cohort keys. Statistics over cohorts: :mod:`serac.fairness.cohort_stats`."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

PathLike = Union[str, Path]
logger = logging.getLogger(__name__)

# cut id -> attribute name -> value
CutAttributes = Dict[str, Dict[str, Any]]

# More distinct values than this and a key is probably continuous (lat, lon, snr): one cohort
# per value says nothing about fairness, so we warn.
MAX_SENSIBLE_COHORTS = 50

# Supervision fields that are cohort attributes when set; everything in `custom` is too.
SUPERVISION_ATTRIBUTE_FIELDS = ("speaker", "gender", "language")

_SCALAR_TYPES = (str, int, float, bool)


# ---------------------------------------------------------------------------------------------
# attributes
# ---------------------------------------------------------------------------------------------


def cut_attributes(cut: Any) -> Dict[str, Any]:
    """Cohort attributes of one lhotse cut: its first supervision's ``speaker``, ``gender``,
    ``language`` and every ``custom`` key, over the cut's own ``custom`` (the supervision wins
    on a clash).  Unset (None) and non-scalar values (arrays, nested dicts) are left out."""
    attrs: Dict[str, Any] = {}
    cut_custom = getattr(cut, "custom", None) or {}
    for name, value in cut_custom.items():
        if isinstance(value, _SCALAR_TYPES):
            attrs[name] = value
    supervisions = getattr(cut, "supervisions", None) or []
    if supervisions:
        sup = supervisions[0]
        for name, value in (sup.custom or {}).items():
            if isinstance(value, _SCALAR_TYPES):
                attrs[name] = value
        for name in SUPERVISION_ATTRIBUTE_FIELDS:
            value = getattr(sup, name, None)
            if value is not None:
                attrs[name] = value
    return attrs


def load_cut_attributes(cuts_path: PathLike) -> CutAttributes:
    """``{cut_id: {attribute: value}}`` for every cut of a lhotse cuts manifest (read lazily)."""
    from lhotse import CutSet  # lhotse is slow to import; only the callers that read cuts pay

    cuts_path = Path(cuts_path)
    if not cuts_path.is_file():
        raise FileNotFoundError(f"cuts manifest not found: {cuts_path}")
    return attributes_of_cuts(CutSet.from_jsonl_lazy(cuts_path), cuts_path)


def attributes_of_cuts(cuts: Iterable[Any], source: PathLike) -> CutAttributes:
    """``{cut_id: {attribute: value}}`` for cuts already read (a caller that needs the cuts too reads the
    manifest once); ``source`` names them in errors (a duplicate cut id, no cuts)."""
    attrs: CutAttributes = {}
    for cut in cuts:
        if cut.id in attrs:
            raise ValueError(f"{source}: duplicate cut id {cut.id!r}")
        attrs[cut.id] = cut_attributes(cut)
    if not attrs:
        raise ValueError(f"{source}: no cuts in the manifest")
    return attrs


@dataclass
class CohortMap:
    """Cohort labels from a TSV produced by a cohort-discovery method.

    The header's first column is ``speaker`` or ``cut_id`` (what the rows are keyed by); every
    further column is an attribute added to, or overriding, the cuts' attributes.
    """

    path: Path
    by: str
    columns: List[str]
    values: Dict[str, Dict[str, str]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The (first) cohort attribute this map provides, e.g. ``auto_cohort``."""
        return self.columns[0]


def load_cohort_map(path: PathLike) -> CohortMap:
    """Read a cohort map TSV (``speaker\\tauto_cohort`` header, then one row per speaker).

    Blank lines and lines starting with ``#`` are skipped.  Errors name the file and line.
    """
    path = Path(path)
    header: Optional[List[str]] = None
    cohort_map: Optional[CohortMap] = None
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            where = f"{path}:{line_no}"
            if header is None:
                header = fields
                if len(header) < 2 or header[0] not in ("speaker", "cut_id"):
                    raise ValueError(
                        f"{where}: a cohort map starts with a header 'speaker<TAB>key' or "
                        f"'cut_id<TAB>key', got {line!r}"
                    )
                if any(not name for name in header[1:]) or len(set(header)) != len(header):
                    raise ValueError(f"{where}: empty or repeated column name in header {line!r}")
                cohort_map = CohortMap(path=path, by=header[0], columns=header[1:])
                continue
            assert cohort_map is not None
            if len(fields) != len(header):
                raise ValueError(f"{where}: expected {len(header)} tab-separated fields, got {len(fields)}")
            ident = fields[0]
            if ident in cohort_map.values:
                raise ValueError(f"{where}: {cohort_map.by} {ident!r} appears twice")
            cohort_map.values[ident] = dict(zip(cohort_map.columns, fields[1:]))
    if cohort_map is None:
        raise ValueError(f"{path}: empty cohort map (no header)")
    if not cohort_map.values:
        raise ValueError(f"{path}: cohort map has a header but no rows")
    return cohort_map


def apply_cohort_maps(attrs: Mapping[str, Mapping[str, Any]], cohort_maps: Sequence[CohortMap]) -> CutAttributes:
    """A copy of ``attrs`` with the maps' columns added/overridden (later maps win).

    A speaker-keyed map labels every cut of that speaker.  Cuts the map does not cover keep
    what they had; if the key is then missing, :func:`cohort_wer` says so, naming the cut.
    """
    merged: CutAttributes = {cut_id: dict(values) for cut_id, values in attrs.items()}
    for cohort_map in cohort_maps:
        used = set()
        for cut_id, values in merged.items():
            ident = values.get("speaker") if cohort_map.by == "speaker" else cut_id
            if ident is not None:
                ident = str(ident)
            if ident is not None and ident in cohort_map.values:
                values.update(cohort_map.values[ident])
                used.add(ident)
        unused = len(cohort_map.values) - len(used)
        if unused:
            logger.warning(
                f"{cohort_map.path}: {unused} of {len(cohort_map.values)} {cohort_map.by} ids match no cut"
            )
    return merged


def cohort_keys_available(attrs: Mapping[str, Mapping[str, Any]], cut_ids: Iterable[str]) -> List[str]:
    """Attributes that make sensible cohort keys for ``cut_ids``: set on every cut, categorical
    (no float values: lat, lon, snr are measurements, not groups), with 2..MAX_SENSIBLE_COHORTS
    distinct values, and not ``speaker`` (one cohort per speaker is per-speaker WER, which the
    CLI writes separately)."""
    cut_ids = list(cut_ids)
    if not cut_ids:
        return []
    common = None
    for cut_id in cut_ids:
        names = set((attrs.get(cut_id) or {}).keys())
        common = names if common is None else common & names
    keys = []
    for name in sorted(common or ()):
        if name == "speaker":
            continue
        if any(isinstance(attrs[c][name], float) for c in cut_ids):
            continue
        distinct = {str(attrs[c][name]) for c in cut_ids}
        if 2 <= len(distinct) <= MAX_SENSIBLE_COHORTS:
            keys.append(name)
    return keys
