"""Checkpoints: atomic save (never of a non-finite model), the random state for exact resume, and averaging at
decode time."""
from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import torch

from serac.utils import atomic_path


def nonfinite_tensors(state: Mapping[str, Any]) -> List[str]:
    """Names of the floating-point tensors of a state dict that hold a NaN or an infinity."""
    return [name for name, t in state.items()
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())]


def save_checkpoint(path: str | Path, **state: Any) -> None:
    """Write a checkpoint atomically: a run killed mid-write keeps the previous file intact. A ``model`` state
    with non-finite values is refused (ValueError naming the tensors): a diverged run must not leave a checkpoint
    that decoding, averaging or a resume would take for a model."""
    bad = nonfinite_tensors(state.get("model") or {})
    if bad:
        raise ValueError(f"refusing to write {path}: {len(bad)} tensors of the model are not finite "
                         f"({', '.join(bad[:8])}{', ...' if len(bad) > 8 else ''})")
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def rng_state() -> Dict[str, Any]:
    """The states of every random generator training draws from (python, numpy, torch CPU and CUDA): saved in
    each checkpoint so a resumed run continues the very same random streams (dropout, SpecAugment, gates)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
