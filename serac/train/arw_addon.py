"""Adversarial reweighting (ARW) of transducer training, a training add-on (serac/train/addon.py).

The ``arw`` config section (off unless ``enabled``) plays the min-max game of :mod:`serac.train.arw` (Lahoti et al.
2020) on the per-utterance training loss ``l_i = simple_scale * simple_i + pruned_scale * pruned_i (+ ctc_scale *
ctc_i)``: an :class:`~serac.train.arw.Adversary` maps utterance-level inputs to weights ``lambda_i`` (mean 1 over
the batch, at least ``floor / (1 + floor)``); the transducer minimises ``sum_i lambda_i l_i`` (the trainer's
``utterance_weights`` hook, weights detached), then the adversary takes one gradient *ascent* step on the same
weighted loss of the same forward pass, the losses detached (the ``after_step`` hook), with its own Adam optimizer.
For the first ``warmup_steps`` training steps the weights are 1 and the adversary is frozen; after that it updates
on every ``adversary_every``-th step.

The adversary sees only what :func:`adversary_inputs` builds from tensors (never the batch, so never a cut's
speaker, region, accent or any other cohort field), chosen by ``inputs``:

- ``features``: the mean and standard deviation over the valid frames of the input features (after SpecAugment
  when it is on: the features the model was trained on), 2 x num_features values;
- ``encoder``: the same pooling of the encoder output, detached (2 x the encoder's output_dim);
- ``label_length``: log(1 + the number of tokens of the transcript).

The adversary, its optimizer and the schedule are kept in every checkpoint (resume is exact); it is initialised
from its own seeded generator (``train.seed``), so switching ARW on does not move the model's random streams.
The epoch line reports the learner weights' min / mean / max over the epoch's steps after warm-up.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, Mapping, Optional, Sequence

import torch

from serac.train.addon import AddonSetup, StepContext, TrainingAddon
from serac.train.arw import Adversary, AdversarialReweighting

ADVERSARY_INPUTS = ("features", "encoder", "label_length")


def pooled_mean_std(x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """(B, T, D) padded sequences -> (B, 2D): the mean and standard deviation over each one's ``lens`` frames."""
    valid = (torch.arange(x.size(1), device=x.device)[None, :] < lens.to(x.device)[:, None]).to(x.dtype)
    count = valid.sum(1, keepdim=True).clamp_min(1.0)
    mean = (x * valid[..., None]).sum(1) / count
    var = (((x - mean[:, None, :]) ** 2) * valid[..., None]).sum(1) / count
    return torch.cat([mean, var.clamp_min(0.0).sqrt()], dim=-1)


def adversary_inputs(inputs: Sequence[str], feats: torch.Tensor, feat_lens: torch.Tensor,
                     encoder_out: Optional[torch.Tensor] = None, encoder_lens: Optional[torch.Tensor] = None,
                     label_lens: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The adversary's (B, input_dim) inputs, detached; built from tensors only, so no cohort label can reach it."""
    parts = []
    for name in inputs:
        if name == "features":
            parts.append(pooled_mean_std(feats.detach().float(), feat_lens))
        elif name == "encoder":
            if encoder_out is None or encoder_lens is None:
                raise ValueError("arw.inputs 'encoder' needs the model's encoder output")
            parts.append(pooled_mean_std(encoder_out.detach().float(), encoder_lens))
        elif name == "label_length":
            if label_lens is None:
                raise ValueError("arw.inputs 'label_length' needs the label lengths")
            parts.append(torch.log1p(label_lens.detach().float().to(feats.device))[:, None])
        else:
            raise ValueError(f"arw.inputs: unknown input {name!r}; known: {', '.join(ADVERSARY_INPUTS)}")
    return torch.cat(parts, dim=-1)


def adversary_input_dim(inputs: Sequence[str], num_features: int, encoder_dim: int) -> int:
    dims = {"features": 2 * num_features, "encoder": 2 * encoder_dim, "label_length": 1}
    unknown = [n for n in inputs if n not in dims]
    if unknown or not inputs:
        raise ValueError(f"arw.inputs must be a non-empty list of {', '.join(ADVERSARY_INPUTS)}; got {list(inputs)}")
    if len(set(inputs)) != len(inputs):
        raise ValueError(f"arw.inputs lists an input twice: {list(inputs)}")
    return sum(dims[n] for n in inputs)


class ARWAddon(TrainingAddon):
    """Per-utterance weights from an adversary that maximises the weighted transducer loss (module docstring)."""

    name = "arw"
    reweights = True

    def __init__(self, game: AdversarialReweighting, inputs: Sequence[str], tokenizer: Any = None) -> None:
        self.game, self.inputs, self.tokenizer = game, tuple(inputs), tokenizer
        self._adv_input: Optional[torch.Tensor] = None
        self._reset_weight_stats()

    def _reset_weight_stats(self) -> None:
        self.weight_min, self.weight_max, self.weight_sum, self.weight_count = float("inf"), float("-inf"), 0.0, 0

    def step_inputs(self, ctx: StepContext) -> torch.Tensor:
        label_lens = None
        if "label_length" in self.inputs:
            texts = ctx.batch["supervisions"]["text"]
            label_lens = torch.tensor([len(self.tokenizer.encode(t)) for t in texts])
        return adversary_inputs(self.inputs, ctx.feats, ctx.feat_lens, ctx.out.get("encoder_out"),
                                ctx.out.get("encoder_lens"), label_lens)

    def utterance_weights(self, ctx: StepContext, losses: torch.Tensor) -> Optional[torch.Tensor]:
        x = self.step_inputs(ctx).to(next(self.game.adversary.parameters()).device)
        self._adv_input = x
        weights = self.game.learner_weights(x, ctx.step)
        if self.game.active(ctx.step):
            self.weight_min = min(self.weight_min, float(weights.min()))
            self.weight_max = max(self.weight_max, float(weights.max()))
            self.weight_sum += float(weights.sum())
            self.weight_count += weights.numel()
        return weights

    def after_step(self, ctx: StepContext) -> None:
        if self._adv_input is None or ctx.utterance_losses is None:
            return
        self.game.adversary_step(self._adv_input, ctx.utterance_losses.float(), ctx.step)
        self._adv_input = None

    def epoch_summary(self) -> str:
        if self.weight_count == 0:
            text = "arw weights: warm-up"
        else:
            text = (f"arw weights min {self.weight_min:.3f} mean {self.weight_sum / self.weight_count:.3f} "
                    f"max {self.weight_max:.3f}")
        self._reset_weight_stats()
        return text

    def state_dict(self) -> Dict[str, Any]:
        return {**self.game.state_dict(), "inputs": list(self.inputs)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if not state:
            raise ValueError("arw is on, but the checkpoint holds no adversary (trained without arw?): start a new "
                             "experiment directory, or switch arw off")
        if list(state.get("inputs", [])) != list(self.inputs):
            raise ValueError(f"arw.inputs {list(self.inputs)} differ from the checkpoint's {state.get('inputs')}")
        self.game.load_state_dict(state)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], setup: AddonSetup) -> Optional["ARWAddon"]:
        ac = cfg.get("arw") or {}
        if not ac.get("enabled"):
            return None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise NotImplementedError("arw with several training processes (DDP) is not implemented: the adversaries "
                                      "of the ranks would drift apart; train with one process")
        inputs = list(ac.get("inputs") or [])
        encoder_dim = int(getattr(setup.model.encoder, "output_dim", 0) or 0)
        if "encoder" in inputs and encoder_dim <= 0:
            raise ValueError(f"arw.inputs 'encoder': the {type(setup.model.encoder).__name__} has no output_dim")
        input_dim = adversary_input_dim(inputs, setup.num_features, encoder_dim)
        # its own generator: the model's random streams are the same with and without ARW
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg.get("train", {}).get("seed", 0)))
            adversary = Adversary(input_dim, hidden_dim=int(ac.get("hidden_dim", 32)), floor=float(ac["floor"]))
        game = AdversarialReweighting(adversary.to(setup.device), lr=float(ac["lr"]),
                                      warmup_steps=int(ac["warmup_steps"]),
                                      adversary_every=int(ac["adversary_every"]),
                                      weight_decay=float(ac.get("weight_decay", 0.0)))
        logging.info(f"adversarial reweighting: adversary on {inputs} ({input_dim} inputs), lr {ac['lr']}, from "
                     f"step {ac['warmup_steps']}, every {ac['adversary_every']} step(s), floor {ac['floor']}")
        return cls(game, inputs, setup.tokenizer)
