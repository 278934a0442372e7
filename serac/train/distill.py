"""Knowledge distillation from a frozen teacher's encoder output, a training add-on (serac/train/addon.py).

The ``distill`` config section ({teacher: checkpoint, weight: float}; off while ``teacher`` is unset): the teacher
(the checkpoint's own model config and weights, eval mode, no gradients) encodes the same features as the student,
and ``weight`` x :func:`distill_loss` is added to the batch loss in training and validation (stats
``distill_loss``). Used by the amortized recipe to fine-tune the skipping model towards the dense reference.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import torch

from serac.data.tokenizer import Tokenizer
from serac.train.addon import AddonSetup, StepContext, TrainingAddon
from serac.checkpoint import load_checkpoint
from serac.transducer.model import build_model


def load_teacher(path: str, num_features: int, tokenizer: Tokenizer, student, device: torch.device):
    """The frozen distillation teacher: the checkpoint's own model config and weights, eval mode, no grads.
    Its encoder must match the student's output dimension and frame rate (the outputs are compared frame by
    frame)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"distill.teacher {path}: no such checkpoint")
    ckpt = load_checkpoint(path)
    if "config" not in ckpt:
        raise ValueError(f"distill.teacher {path}: the checkpoint holds no model config (not written by serac)")
    teacher = build_model(ckpt["config"]["model"], num_features=num_features, vocab_size=tokenizer.vocab_size,
                          blank_id=tokenizer.blank_id)
    teacher.load_state_dict(ckpt["model"])
    for what in ("output_dim", "subsampling_factor"):
        t, st = getattr(teacher.encoder, what, None), getattr(student.encoder, what, None)
        if t != st:
            raise ValueError(f"distill.teacher {path}: its encoder's {what} is {t}, the student's {st}")
    teacher.requires_grad_(False)
    logging.info(f"distilling from {path} (weight on the encoder-output MSE: see distill.weight)")
    return teacher.to(device).eval()


def distill_loss(encoder_out: torch.Tensor, enc_lens: torch.Tensor, teacher, feats: torch.Tensor,
                 x_lens: torch.Tensor) -> torch.Tensor:
    """Sum over valid frames of the mean squared difference between the student's and the teacher's encoder
    outputs (the teacher runs without gradient on the same features)."""
    with torch.no_grad():
        target, t_lens = teacher.encode(feats, x_lens)
    if not torch.equal(t_lens.to(enc_lens.device), enc_lens) or target.size(1) != encoder_out.size(1):
        raise ValueError(f"distillation: teacher frames {t_lens.tolist()} != student frames {enc_lens.tolist()}")
    valid = torch.arange(encoder_out.size(1), device=enc_lens.device)[None, :] < enc_lens[:, None]
    return ((encoder_out - target.to(encoder_out.dtype)) ** 2).mean(-1)[valid].sum()


class DistillAddon(TrainingAddon):
    """``distill.weight`` x :func:`distill_loss` as the loss term ``distill_loss``."""

    name = "distill"
    loss_names = ("distill_loss",)

    def __init__(self, teacher: torch.nn.Module, weight: float) -> None:
        self.teacher, self.weight = teacher, weight

    def loss_terms(self, ctx: StepContext) -> Dict[str, torch.Tensor]:
        kd = self.weight * distill_loss(ctx.out["encoder_out"], ctx.out["encoder_lens"], self.teacher, ctx.feats,
                                        ctx.feat_lens)
        return {"distill_loss": kd}

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], setup: AddonSetup) -> Optional["DistillAddon"]:
        dc = cfg.get("distill") or {}
        if not dc.get("teacher"):
            return None
        teacher = load_teacher(dc["teacher"], setup.num_features, setup.tokenizer, setup.model, setup.device)
        return cls(teacher, float(dc["weight"]))
