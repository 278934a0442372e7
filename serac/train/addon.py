"""The interface between the training loop and its optional add-ons (EWC, distillation, per-utterance reweighting).

An add-on is a peer of the trainer: a module under serac/train/ with a class implementing :class:`TrainingAddon`
and a ``from_config`` builder listed in ``serac.train.trainer.TRAINING_ADDONS``. The trainer calls the hooks below
at fixed points of every step; adding an add-on never edits the loop itself. Every hook has a neutral default, so an
add-on implements only what it changes:

=====================  ==============================================================================================
hook                   called
=====================  ==============================================================================================
``utterance_weights``  after the forward pass, training only: per-utterance weights (B,) of the transducer (and CTC)
                       losses, e.g. adversarial reweighting; None keeps the plain sum
``loss_terms``         after the forward pass, training and validation: extra terms summed over the batch (already
                       weighted), added to the loss and reported under their names (``loss_names``) per frame
``penalty``            after the batch loss was divided by its frames, training only: a term on the per-frame scale
                       (EWC's penalty on the parameters)
``after_step``         after the optimizer step (skipped steps excluded): an add-on's own update, e.g. an
                       adversary's optimizer step on the same batch
``epoch_summary``      in the epoch line (training only): a short text, e.g. the epoch's weight range; "" for none
``state_dict``         at every checkpoint; ``load_state_dict`` on resume (an adversary and its optimizer)
=====================  ==============================================================================================
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch


@dataclass
class AddonSetup:
    """What a builder ``from_config(cfg, setup) -> Optional[TrainingAddon]`` may use: the model being trained (not
    wrapped in DDP), the ``--init-from`` checkpoint (or None), the tokenizer, the feature dimension and the device."""

    model: torch.nn.Module
    init_from: Optional[str]
    tokenizer: Any
    num_features: int
    device: torch.device


@dataclass
class StepContext:
    """What an add-on sees of one batch: the model (unwrapped from DDP), the features as the model got them (after
    SpecAugment in training), their lengths, the model's output dict (``encoder_out``, ``encoder_lens``,
    per-utterance ``simple_loss`` / ``pruned_loss`` when weights were asked for, ...), the lhotse batch (cuts in
    ``batch["supervisions"]["cut"]``), the training step and whether it is a training step."""

    model: torch.nn.Module
    feats: torch.Tensor
    feat_lens: torch.Tensor
    out: Dict[str, torch.Tensor]
    batch: Dict[str, Any]
    step: int
    train: bool
    #: (B,) per-utterance training losses and their weights, when an add-on reweights (else None)
    utterance_losses: Optional[torch.Tensor] = None
    utterance_weights: Optional[torch.Tensor] = None


class TrainingAddon:
    """Base class of the trainer's add-ons; every hook is neutral by default."""

    #: the config section that switches it on (for messages)
    name: str = ""
    #: the stats keys of the terms ``loss_terms`` returns (shown per frame in the epoch line and tensorboard)
    loss_names: Tuple[str, ...] = ()
    #: True if ``utterance_weights`` may return weights: the model then returns per-utterance losses
    reweights: bool = False

    def utterance_weights(self, ctx: StepContext, losses: torch.Tensor) -> Optional[torch.Tensor]:
        """(B,) weights of the per-utterance training losses ``losses`` (B,), or None."""
        return None

    def loss_terms(self, ctx: StepContext) -> Dict[str, torch.Tensor]:
        """{name: scalar tensor summed over the batch}, added to the batch loss."""
        return {}

    def penalty(self, model: torch.nn.Module) -> Optional[torch.Tensor]:
        """A scalar added to the per-frame training loss, or None."""
        return None

    def after_step(self, ctx: StepContext) -> None:
        """Called after each optimizer step of the model."""

    def epoch_summary(self) -> str:
        """Text appended to the epoch line (what the add-on did over the epoch), or ""."""
        return ""

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state:
            raise ValueError(f"add-on {self.name!r} has no state to restore, but the checkpoint holds some")
