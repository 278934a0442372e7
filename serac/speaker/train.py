"""Training the speaker-embedding model, with or without adversarial reweighting (Jin et al., Interspeech 2022).

Learner objective (every variant; with all weights 1 they are the same number):

- an additive-margin softmax over the training speakers, per sample: ``c_i``;
- a pairwise metric term over the batch (P speakers x K utterances): every pair ``(i, j)`` of the batch has a
  logistic loss on its scaled cosine, ``l_ij = softplus(-y_ij * pair_scale * (cos_ij - pair_bias))`` with
  ``y_ij = +1`` for the same speaker and -1 otherwise; the term is the mean over positive pairs plus the mean
  over negative pairs (so the rare positives count as much as the negatives).

ARW variants (``arw.variant``; the adversary is :class:`serac.train.arw.Adversary`; its input is the utterance's
pooled fbank mean and std -- never a cohort label -- plus, for ``pl`` and ``pw``, the one-hot k-means cluster of the
sample's current embedding, the k-means refitted every ``kmeans_every`` steps on the latest embedding of every
training utterance seen):

- ``none``: the baseline, no reweighting.
- ``aps`` (accumulated pairwise similarity): each sample's pairwise terms are accumulated into a per-sample loss
  ``a_i`` = mean of ``l_ij`` over its positive partners + mean over its negative partners, and the sample-level
  loss ``c_i + pair_weight * a_i`` is reweighted by ``lambda_i``.
- ``pl`` (pseudo-labels): as ``aps``, with the k-means cluster of the embedding given to the adversary in place of
  the class label of Lahoti et al.'s adversary (metric learning has no per-sample class).
- ``pw`` (pairwise weighting): ``c_i`` is weighted by ``lambda_i`` and every pair term ``l_ij`` by
  ``lambda_i + lambda_j`` (halved in the mean; see :func:`serac.train.arw.weighted_pair_mean`); the adversary sees
  the k-means cluster.

Schedule: learner-only for ``arw.warmup_steps``, then on every batch a learner step (weights detached) followed by
an adversary ascent step on the same batch's detached losses (:class:`serac.train.arw.AdversarialReweighting`).
"""
from __future__ import annotations

import copy
import json
import logging
import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from serac.speaker.model import MODEL_DEFAULTS, MarginSoftmax, build_model
from serac.train.arw import Adversary, AdversarialReweighting, weighted_mean, weighted_pair_mean
from serac.utils import atomic_path

VARIANTS = ("none", "aps", "pl", "pw")

SV_DEFAULTS: Dict[str, Any] = {
    "model": copy.deepcopy(MODEL_DEFAULTS),
    "loss": {"kind": "am", "margin": 0.2, "scale": 30.0, "pair_weight": 1.0, "pair_scale": 10.0, "pair_bias": 0.5},
    "train": {"steps": 1500, "speakers_per_batch": 32, "utts_per_speaker": 2, "crop_frames": 200, "lr": 2e-3,
              "weight_decay": 2e-5, "lr_warmup_steps": 100, "final_lr_fraction": 0.05, "log_interval": 50,
              "seed": 0},
    "arw": {"variant": "none", "warmup_steps": 500, "adversary_lr": 1e-3, "adversary_hidden": 32, "floor": 1.0,
            "num_clusters": 8, "kmeans_every": 200},
}


def load_sv_config(path: Optional[str], overrides: Iterable[str] = ()) -> Dict[str, Any]:
    """SV_DEFAULTS, deep-updated with the YAML file ``path`` and ``key.sub=value`` overrides; unknown keys raise."""
    import yaml

    from serac.config import apply_override, deep_update

    cfg = copy.deepcopy(SV_DEFAULTS)
    if path:
        with open(path) as f:
            user = yaml.safe_load(f) or {}
        for section, values in user.items():
            if section not in SV_DEFAULTS:
                raise ValueError(f"{path}: unknown section {section!r}; known: {sorted(SV_DEFAULTS)}")
            unknown = set(values or {}) - set(SV_DEFAULTS[section])
            if unknown:
                raise ValueError(f"{path}: unknown {section} options {sorted(unknown)}")
        cfg = deep_update(cfg, user)
    for item in overrides:
        apply_override(cfg, item)
    if cfg["arw"]["variant"] not in VARIANTS:
        raise ValueError(f"unknown ARW variant {cfg['arw']['variant']!r}; choose from {VARIANTS}")
    return cfg


@dataclass
class Utterance:
    id: str
    speaker: str
    feats: np.ndarray  # (frames, bins), float16 to halve the memory
    attributes: Dict[str, str]


def supervision_attributes(sup) -> Dict[str, str]:
    """The cohort attributes a lhotse supervision carries (gender plus its custom fields, as strings)."""
    attrs = {k: str(v) for k, v in (sup.custom or {}).items() if isinstance(v, (str, int, float))}
    if sup.gender:
        attrs["gender"] = str(sup.gender)
    return attrs


def load_utterances(cuts_path: str | Path, min_frames: int = 1) -> List[Utterance]:
    """Every cut of a manifest with stored features, as in-memory utterances (speaker from the supervision)."""
    from lhotse import load_manifest_lazy

    utts = []
    for cut in load_manifest_lazy(cuts_path):
        if not cut.has_features:
            raise ValueError(f"{cuts_path}: cut {cut.id} has no features (run the fbank stage first)")
        if not cut.supervisions or not cut.supervisions[0].speaker:
            raise ValueError(f"{cuts_path}: cut {cut.id} has no speaker in its supervision")
        feats = cut.load_features()
        if feats.shape[0] < min_frames:
            logging.warning(f"{cuts_path}: skipping cut {cut.id} ({feats.shape[0]} frames < {min_frames})")
            continue
        sup = cut.supervisions[0]
        utts.append(Utterance(cut.id, sup.speaker, feats.astype(np.float16), supervision_attributes(sup)))
    if not utts:
        raise ValueError(f"{cuts_path}: no utterances")
    return utts


def random_crop(feats: np.ndarray, frames: int, rng: random.Random) -> np.ndarray:
    """A random window of ``frames`` frames; shorter utterances are repeated to fill it."""
    n = feats.shape[0]
    if n < frames:
        feats = np.concatenate([feats] * (frames // n + 1), axis=0)
        n = feats.shape[0]
    start = rng.randrange(n - frames + 1)
    return feats[start:start + frames]


def pooled_stats(feats: Tensor) -> Tensor:
    """(B, T, F) -> (B, 2F): per-utterance mean and std over frames (the adversary's view of the audio)."""
    return torch.cat([feats.mean(dim=1), feats.std(dim=1)], dim=1)


def pairwise_losses(emb: Tensor, labels: Tensor, pair_scale: float, pair_bias: float
                    ) -> Tuple[Tensor, Tensor, Tensor]:
    """(l (B, B) pair-loss matrix, positive-pair mask, negative-pair mask); diagonal excluded from both masks."""
    en = F.normalize(emb, dim=1)
    cos = en @ en.T
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    sign = same.float() * 2 - 1
    loss = F.softplus(-sign * pair_scale * (cos - pair_bias))
    return loss, same & ~eye, ~same


def accumulated_pair_losses(loss: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """a_i = mean over i's positive partners + mean over its negative partners (B,)."""
    return ((loss * pos).sum(1) / pos.sum(1).clamp_min(1)) + ((loss * neg).sum(1) / neg.sum(1).clamp_min(1))


def pair_term(loss: Tensor, pos: Tensor, neg: Tensor, weights: Tensor) -> Tensor:
    """Mean over positive pairs + mean over negative pairs (i < j), pair (i, j) weighted by w_i + w_j (halved)."""
    upper = torch.triu(torch.ones_like(pos), diagonal=1)
    total = loss.new_zeros(())
    for mask in (pos & upper, neg & upper):
        first, second = mask.nonzero(as_tuple=True)
        if len(first):
            total = total + weighted_pair_mean(loss[first, second], weights, first, second)
    return total


class KMeansLabeller:
    """Pseudo-labels from k-means over the latest embedding of every training utterance seen."""

    def __init__(self, num_clusters: int, seed: int = 0) -> None:
        self.num_clusters = num_clusters
        self.seed = seed
        self.bank: Dict[str, np.ndarray] = {}
        self.centroids: Optional[Tensor] = None

    def remember(self, ids: Sequence[str], emb: Tensor) -> None:
        for i, e in zip(ids, F.normalize(emb.detach(), dim=1).cpu().numpy()):
            self.bank[i] = e

    def refit(self) -> None:
        from sklearn.cluster import KMeans

        x = np.stack(list(self.bank.values()))
        k = min(self.num_clusters, len(x))
        km = KMeans(n_clusters=k, random_state=self.seed, n_init=3).fit(x)
        self.centroids = torch.tensor(km.cluster_centers_, dtype=torch.float32)

    def one_hot(self, emb: Tensor) -> Tensor:
        out = emb.new_zeros(emb.shape[0], self.num_clusters)
        if self.centroids is None:
            return out
        d = torch.cdist(F.normalize(emb.detach(), dim=1), self.centroids)
        return out.scatter(1, d.argmin(dim=1, keepdim=True), 1.0)


class SpeakerBatches:
    """Batches of P speakers x K utterances (random crops), speakers and utterances drawn without replacement
    while they last."""

    def __init__(self, utts: Sequence[Utterance], speakers_per_batch: int, utts_per_speaker: int, crop_frames: int,
                 seed: int) -> None:
        self.by_speaker: Dict[str, List[int]] = defaultdict(list)
        for i, u in enumerate(utts):
            self.by_speaker[u.speaker].append(i)
        few = sorted(s for s, v in self.by_speaker.items() if len(v) < utts_per_speaker)
        if few:
            logging.warning(f"{len(few)} speakers have fewer than {utts_per_speaker} utterances and are sampled "
                            f"with repetition (e.g. {few[0]})")
        if len(self.by_speaker) < speakers_per_batch:
            raise ValueError(f"{len(self.by_speaker)} training speakers, fewer than speakers_per_batch "
                             f"{speakers_per_batch}")
        self.utts = utts
        self.speakers = sorted(self.by_speaker)
        self.label = {s: i for i, s in enumerate(self.speakers)}
        self.p, self.k, self.crop = speakers_per_batch, utts_per_speaker, crop_frames
        self.rng = random.Random(seed)

    def next(self) -> Tuple[List[str], Tensor, Tensor, List[Utterance]]:
        chosen_utts: List[Utterance] = []
        for spk in self.rng.sample(self.speakers, self.p):
            pool = self.by_speaker[spk]
            idx = self.rng.sample(pool, self.k) if len(pool) >= self.k else [self.rng.choice(pool)
                                                                            for _ in range(self.k)]
            chosen_utts.extend(self.utts[i] for i in idx)
        feats = np.stack([random_crop(u.feats, self.crop, self.rng) for u in chosen_utts]).astype(np.float32)
        labels = torch.tensor([self.label[u.speaker] for u in chosen_utts])
        return [u.id for u in chosen_utts], torch.from_numpy(feats), labels, chosen_utts


def learning_rate(step: int, cfg: Dict[str, Any]) -> float:
    t = cfg["train"]
    if step < t["lr_warmup_steps"]:
        return t["lr"] * (step + 1) / t["lr_warmup_steps"]
    progress = (step - t["lr_warmup_steps"]) / max(1, t["steps"] - t["lr_warmup_steps"])
    floor = t["final_lr_fraction"]
    return t["lr"] * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train_speaker_model(cfg: Dict[str, Any], train_cuts: str | Path, exp_dir: str | Path,
                        cohort_keys: Sequence[str] = ("gender", "accent")) -> Path:
    """Train per ``cfg`` on the cuts (with features) and write ``exp_dir/model.pt`` atomically; returns its path.

    Also writes ``exp_dir/train-summary.json``: loss curve points, time, and for ARW the mean adversary weight per
    cohort value of the training speakers over the second half of the game (what the adversary up-weighted).
    """
    exp_dir = Path(exp_dir)
    t, a, lc = cfg["train"], cfg["arw"], cfg["loss"]
    torch.manual_seed(t["seed"])
    utts = load_utterances(train_cuts, min_frames=10)
    batches = SpeakerBatches(utts, t["speakers_per_batch"], t["utts_per_speaker"], t["crop_frames"], t["seed"])
    model = build_model(cfg["model"])
    if model.config["num_mel_bins"] != utts[0].feats.shape[1]:
        raise ValueError(f"{train_cuts}: features have {utts[0].feats.shape[1]} bins, the model expects "
                         f"{model.config['num_mel_bins']} (model.num_mel_bins)")
    head = MarginSoftmax(model.embedding_dim, len(batches.speakers), lc["kind"], lc["margin"], lc["scale"])
    params = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=t["lr"], weight_decay=t["weight_decay"])
    variant = a["variant"]
    num_bins = model.config["num_mel_bins"]
    clusters = KMeansLabeller(a["num_clusters"], t["seed"]) if variant in ("pl", "pw") else None
    arw = None
    if variant != "none":
        adv_dim = 2 * num_bins + (a["num_clusters"] if clusters else 0)
        arw = AdversarialReweighting(Adversary(adv_dim, a["adversary_hidden"], a["floor"]), lr=a["adversary_lr"],
                                     warmup_steps=a["warmup_steps"])
    logging.info(f"training {variant} on {len(utts)} utterances of {len(batches.speakers)} speakers, "
                 f"{sum(p.numel() for p in model.parameters())} model parameters, {t['steps']} steps")
    curve, weight_sums = [], defaultdict(lambda: [0.0, 0])
    start, running = time.time(), []
    model.train()
    for step in range(t["steps"]):
        for g in optimizer.param_groups:
            g["lr"] = learning_rate(step, cfg)
        ids, feats, labels, batch_utts = batches.next()
        emb = model(feats)
        cls = head(emb, labels)
        pl_mat, pos, neg = pairwise_losses(emb, labels, lc["pair_scale"], lc["pair_bias"])
        adv_in = None
        if arw is not None:
            adv_in = pooled_stats(feats)
            if clusters is not None:
                clusters.remember(ids, emb)
                if arw.active(step) and (clusters.centroids is None
                                         or (step - a["warmup_steps"]) % a["kmeans_every"] == 0):
                    clusters.refit()
                adv_in = torch.cat([adv_in, clusters.one_hot(emb)], dim=1)
            w = arw.learner_weights(adv_in, step)
        else:
            w = torch.ones(len(ids))
        if variant == "pw":
            loss = weighted_mean(cls, w) + lc["pair_weight"] * pair_term(pl_mat, pos, neg, w)
        else:
            per_sample = cls + lc["pair_weight"] * accumulated_pair_losses(pl_mat, pos, neg)
            loss = weighted_mean(per_sample, w)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        if arw is not None:
            cls_d, pl_d = cls.detach(), pl_mat.detach()
            if variant == "pw":
                arw.adversary_step(adv_in, None, step, objective=lambda wt: weighted_mean(cls_d, wt)
                                   + lc["pair_weight"] * pair_term(pl_d, pos, neg, wt))
            else:
                arw.adversary_step(adv_in, per_sample.detach(), step)
            if step >= a["warmup_steps"] + (t["steps"] - a["warmup_steps"]) // 2:
                for u, wi in zip(batch_utts, w.tolist()):
                    for key in cohort_keys:
                        acc = weight_sums[f"{key}={u.attributes.get(key, '')}"]
                        acc[0] += wi
                        acc[1] += 1
        running.append(float(loss.detach()))
        if (step + 1) % t["log_interval"] == 0 or step + 1 == t["steps"]:
            mean_loss = sum(running) / len(running)
            running = []
            curve.append({"step": step + 1, "loss": mean_loss})
            extra = f", weights {w.min():.2f}..{w.max():.2f}" if arw is not None and arw.active(step) else ""
            logging.info(f"step {step + 1}/{t['steps']} loss {mean_loss:.3f} lr {learning_rate(step, cfg):.2e}"
                         f"{extra} ({time.time() - start:.0f}s)")
    exp_dir.mkdir(parents=True, exist_ok=True)
    ckpt = {"model_config": model.config, "model": model.state_dict(), "config": cfg,
            "speakers": batches.speakers, "feature": {"num_mel_bins": num_bins, "sampling_rate": 16000}}
    if arw is not None:
        ckpt["arw"] = arw.state_dict()
    out = exp_dir / "model.pt"
    with atomic_path(out) as tmp:
        torch.save(ckpt, tmp)
    summary = {"variant": variant, "steps": t["steps"], "train_seconds": round(time.time() - start, 1),
               "num_speakers": len(batches.speakers), "num_utterances": len(utts),
               "num_parameters": sum(p.numel() for p in model.parameters()), "curve": curve,
               "mean_weight_by_cohort": {k: v[0] / v[1] for k, v in sorted(weight_sums.items()) if v[1]}}
    with atomic_path(exp_dir / "train-summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1) + "\n")
    return out
