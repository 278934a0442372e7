"""Training / decoding data loaders over lhotse cuts with precomputed features.

Batches come from lhotse's K2SpeechRecognitionDataset (features, supervisions with text, and the cuts) and
DynamicBucketingSampler, which shards by rank automatically under torch.distributed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import torch
from lhotse import CutSet, load_manifest_lazy
from lhotse.dataset import DynamicBucketingSampler, K2SpeechRecognitionDataset, SimpleCutSampler

from serac.data.validate import check_readable


def load_cuts(path: str | Path) -> CutSet:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cuts manifest {path} not found (did the fbank stage run?)")
    check_readable(path)  # a corrupt file is named here, not as a zlib error inside the sampler
    return load_manifest_lazy(path)


def check_cuts(cuts: CutSet, path: str | Path, max_duration: float) -> CutSet:
    """Drop, with a warning naming them, cuts that cannot be trained on: no supervision text, or longer
    than a whole batch (they would stall the sampler)."""
    import logging

    def ok(c) -> bool:
        if not c.supervisions or not (c.supervisions[0].text or "").strip():
            logging.warning(f"{path}: cut {c.id} has no supervision text; skipped")
            return False
        if c.duration > max_duration:
            logging.warning(f"{path}: cut {c.id} lasts {c.duration:.1f}s > max_duration {max_duration}; skipped")
            return False
        return True

    return cuts.filter(ok)


def train_dataloader(cuts: CutSet, max_duration: float, num_buckets: int = 10, shuffle: bool = True,
                     seed: int = 0, num_workers: int = 0, sampler_state: Optional[Dict[str, Any]] = None,
                     world_size: Optional[int] = None, rank: Optional[int] = None) -> torch.utils.data.DataLoader:
    # SpecAugment (data.spec_augment) is applied by the trainer, after the speech onsets are found
    dataset = K2SpeechRecognitionDataset(return_cuts=True)
    sampler = DynamicBucketingSampler(cuts, max_duration=max_duration, shuffle=shuffle, num_buckets=num_buckets,
                                      seed=seed, drop_last=False, world_size=world_size, rank=rank,
                                      buffer_size=max(2000, num_buckets * 200), shuffle_buffer_size=5000)
    if sampler_state is not None:
        sampler.load_state_dict(sampler_state)
    return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers,
                                       persistent_workers=False)


def eval_dataloader(cuts: CutSet, max_duration: float, num_workers: int = 0, world_size: Optional[int] = None,
                    rank: Optional[int] = None) -> torch.utils.data.DataLoader:
    dataset = K2SpeechRecognitionDataset(return_cuts=True)
    sampler = SimpleCutSampler(cuts, max_duration=max_duration, shuffle=False, world_size=world_size, rank=rank)
    return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers)
