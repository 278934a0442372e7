"""Checkpoints: atomic save, resume, and averaging at decode time."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from serac.utils import atomic_path


def save_checkpoint(path: str | Path, **state: Any) -> None:
    """Write a checkpoint atomically: a run killed mid-write keeps the previous file intact."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise RuntimeError(f"cannot read checkpoint {path} (truncated or corrupt?): {e}") from e


def last_epoch(exp_dir: str | Path) -> int:
    """The highest N with ``epoch-N.pt`` in exp_dir, or 0."""
    epochs = [int(m.group(1)) for p in Path(exp_dir).glob("epoch-*.pt")
              if (m := re.fullmatch(r"epoch-(\d+)\.pt", p.name))]
    return max(epochs, default=0)


def epoch_checkpoints(exp_dir: str | Path, epoch: int, avg: int) -> List[Path]:
    if avg < 1 or epoch < avg:
        raise ValueError(f"--epoch {epoch} --avg {avg}: need 1 <= avg <= epoch")
    paths = [Path(exp_dir) / f"epoch-{e}.pt" for e in range(epoch - avg + 1, epoch + 1)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoints missing for averaging: {missing}")
    return paths


def average_checkpoints(paths: List[Path]) -> Dict[str, torch.Tensor]:
    """Element-wise mean of the models in ``paths`` (integer buffers are taken from the last one)."""
    avg: Optional[Dict[str, torch.Tensor]] = None
    state: Dict[str, torch.Tensor] = {}
    for p in paths:
        state = load_checkpoint(p)["model"]
        if avg is None:
            avg = {k: v.clone().double() if v.is_floating_point() else v.clone() for k, v in state.items()}
        else:
            for k, v in state.items():
                avg[k] = avg[k] + v.double() if v.is_floating_point() else v.clone()
    assert avg is not None
    logging.info(f"averaged {len(paths)} checkpoints: {[p.name for p in paths]}")
    # dtypes from the last checkpoint, still in `state`
    return {k: (v / len(paths)).to(state[k].dtype) if state[k].is_floating_point() else v for k, v in avg.items()}
