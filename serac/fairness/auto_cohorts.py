"""Automatic cohorts (Dheram et al., Interspeech 2022): speaker embeddings clustered with k-means, no labels;
the clusters are then ranked by WER.

Fitting: optional per-dimension standardisation (mean/std of the fit speakers; used for extractors whose
vectors are not unit-length, e.g. fbank-stats), then sklearn ``KMeans(n_clusters=k, random_state=seed,
n_init=n_init)``. Clusters are named ``auto1`` .. ``autoK`` by decreasing WER on the fit set (``auto1`` is the
bottom cohort), so names are deterministic. New speakers are assigned to the nearest centroid.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from serac.fairness.discovery import SpeakerRecord, pooled_wer


@dataclass
class AutoCohorts:
    centroids: np.ndarray  # (k, d) in the standardised space
    mean: np.ndarray
    scale: np.ndarray
    names: List[str]  # names[i] = cohort name of centroid i
    params: Dict[str, Any]

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.scale

    def predict(self, x: np.ndarray) -> List[str]:
        z = self.transform(x)
        d = ((z[:, None, :] - self.centroids[None, :, :]) ** 2).sum(-1)
        return [self.names[i] for i in d.argmin(axis=1)]

    def assign(self, speakers: Sequence[str], x: np.ndarray) -> Dict[str, str]:
        return dict(zip(speakers, self.predict(x)))

    def to_dict(self) -> Dict[str, Any]:
        return {"params": self.params, "names": self.names, "centroids": self.centroids.tolist(),
                "mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "AutoCohorts":
        return cls(np.array(d["centroids"]), np.array(d["mean"]), np.array(d["scale"]), list(d["names"]),
                   d.get("params", {}))


def fit_auto_cohorts(speakers: Sequence[str], x: np.ndarray, records: Optional[Mapping[str, SpeakerRecord]],
                     num_clusters: int = 6, seed: int = 0, n_init: int = 10, standardize: bool = True
                     ) -> AutoCohorts:
    """k-means over the rows of ``x`` (one per speaker); clusters named by WER over ``records`` (worst first;
    by cluster size when no records are given)."""
    from sklearn.cluster import KMeans

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(speakers) != x.shape[0]:
        raise ValueError(f"need one embedding row per speaker: {len(speakers)} speakers, array {x.shape}")
    if not 1 <= num_clusters <= len(speakers):
        raise ValueError(f"num_clusters {num_clusters} must be in 1..{len(speakers)} (the number of speakers)")
    mean = x.mean(axis=0) if standardize else np.zeros(x.shape[1])
    scale = x.std(axis=0) if standardize else np.ones(x.shape[1])
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = (x - mean) / scale
    km = KMeans(n_clusters=num_clusters, random_state=seed, n_init=n_init).fit(z)
    labels = km.labels_
    keys = []
    for c in range(num_clusters):
        members = [s for s, lab in zip(speakers, labels) if lab == c]
        wer = pooled_wer(records[s] for s in members if s in records) if records is not None else None
        keys.append((-(wer if wer is not None else -1.0), -len(members), sorted(members)[0] if members else "", c))
    order = [k[-1] for k in sorted(keys)]
    names = [""] * num_clusters
    for rank, c in enumerate(order, start=1):
        names[c] = f"auto{rank}"
    params = {"num_clusters": num_clusters, "seed": seed, "n_init": n_init, "standardize": standardize,
              "inertia": float(km.inertia_)}
    return AutoCohorts(km.cluster_centers_.copy(), mean, scale, names, params)
