"""What every decoding job starts with: the cuts (checked for features) and the model averaged over epochs."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

import torch

from serac.data.dataset import load_cuts
from serac.data.tokenizer import Tokenizer
from serac.checkpoint import average_checkpoints, epoch_checkpoints, load_checkpoint
from serac.transducer.model import Transducer, build_model
from serac.utils import retain_freed_memory


def load_model(exp_dir: Path, lang_dir: Path, epoch: int, avg: int, num_features: int
               ) -> Tuple[Transducer, Tokenizer, Dict[str, Any]]:
    """The model of ``exp_dir`` averaged over epochs ``epoch-avg+1 .. epoch`` (eval mode), its tokenizer and the
    training config of its last checkpoint."""
    tokenizer = Tokenizer(lang_dir)
    paths = epoch_checkpoints(Path(exp_dir), epoch, avg)
    last = load_checkpoint(paths[-1])
    cfg = last["config"]
    model = build_model(cfg["model"], num_features=num_features, vocab_size=tokenizer.vocab_size,
                        blank_id=tokenizer.blank_id)
    model.load_state_dict(average_checkpoints(paths) if avg > 1 else last["model"])
    return model.eval(), tokenizer, cfg


def open_cuts(cuts_path: str) -> Tuple[Any, Any]:
    """The cuts to decode and their first cut, checked to have features. Raises ValueError naming the file."""
    cuts = load_cuts(cuts_path)
    first = next(iter(cuts), None)
    if first is None:
        raise ValueError(f"{cuts_path}: no cuts")
    if first.num_features is None:
        raise ValueError(f"{cuts_path}: cut {first.id} has no features (did the fbank stage run?)")
    return cuts, first


def set_threads(num_threads: int) -> None:
    """The job's compute threads; also lets glibc keep freed memory (``serac.utils.retain_freed_memory``)."""
    torch.set_num_threads(num_threads)
    retain_freed_memory()
