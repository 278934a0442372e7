"""The one training loop for every model variant.

Config from YAML + ``--set`` overrides, DDP when launched by torchrun (env:// rendezvous; gloo on CPU, nccl on
GPU), atomic ``epoch-N.pt`` checkpoints, exact resume with ``--start-epoch`` (default: after the last checkpoint;
the checkpoint holds every random generator's state), one live training per experiment directory (a lock),
tensorboard logs, a log line every ``train.log_interval`` steps (a tqdm bar too on a terminal), transcripts of
both sets checked before the first step, and the resolved config plus the environment logged at start-up. Only
rank 0 writes logs, tensorboard and checkpoints.

Divergence is caught, not saved: a step whose loss or gradient is not finite is skipped (counted, its cuts
logged); too many skipped steps (``train.max_skipped_in_a_row``, or more than ``train.max_skipped_fraction`` of
the last ``train.skip_window``), a non-finite validation loss, or a non-finite parameter at save time stop the
run with an error, and no checkpoint of a diverged model is written.

Optional loss terms come from add-ons (serac/train/addon.py: EWC, distillation, ...), listed in TRAINING_ADDONS.
A model config with a ``separator`` section builds the two-channel STS model (serac.transducer.model.build_model):
its batches are conversations, its targets and loss terms come from serac/multitalker/training.py.

Structure: :class:`Trainer` sets up and resumes (``__init__``, :meth:`Trainer.resume`), :meth:`Trainer.fit` runs
the epochs (:meth:`Trainer.train_one_epoch` -> :meth:`Trainer.train_step`), :func:`validate`, :meth:`Trainer.save`.
The validation loss is reported only; it never chooses a checkpoint (decoding picks ``--epoch``/``--avg``).
"""
from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import random
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
import yaml
from lhotse.dataset import SpecAugment
from torch.nn.parallel import DistributedDataParallel

from serac.config import dump_config
from serac.data.augment import raise_noise_floor
from serac.data.dataset import check_cuts, eval_dataloader, load_cuts, train_dataloader
from serac.data.tokenizer import Tokenizer
from serac.multitalker.training import (check_sts_config, conversation_problem_check, num_output_channels,
                                        sts_batch_inputs)
from serac.train.addon import AddonSetup, StepContext, TrainingAddon
from serac.train.arw_addon import ARWAddon
from serac.train.compile import compile_for_training
from serac.checkpoint import last_epoch, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from serac.train.distill import DistillAddon
from serac.train.ewc import EWCAddon
from serac.train.exp_lock import ExperimentLock
from serac.train.partial_init import init_modules_from_state, parameters_under
from serac.train.transcripts import check_transcripts
from serac.transducer.loss import backend_name, batch_segments, loss_scales, speech_onset
from serac.transducer.model import build_model, count_parameters
from serac.utils import atomic_write_text, environment_info, retain_freed_memory, setup_logging


class EdenLR:
    """icefall's Eden schedule with a linear warm-up: the rate decays with both the step and the epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, lr_batches: float, lr_epochs: float, warmup_steps: int):
        self.optimizer = optimizer
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.lr_batches, self.lr_epochs, self.warmup_steps = lr_batches, lr_epochs, warmup_steps
        self.step_count, self.epoch = 0, 0

    def factor(self) -> float:
        s, e = self.step_count, self.epoch
        f = ((s**2 + self.lr_batches**2) / self.lr_batches**2) ** -0.25
        f *= ((e**2 + self.lr_epochs**2) / self.lr_epochs**2) ** -0.25
        if self.warmup_steps > 0 and s < self.warmup_steps:
            f *= 0.1 + 0.9 * s / self.warmup_steps
        return f

    def apply(self) -> None:
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * self.factor()

    def step_batch(self) -> None:
        self.step_count += 1
        self.apply()

    def step_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.apply()

    def state_dict(self) -> Dict[str, Any]:
        return {"step_count": self.step_count, "epoch": self.epoch, "base_lrs": self.base_lrs}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.step_count, self.epoch, self.base_lrs = state["step_count"], state["epoch"], state["base_lrs"]
        self.apply()


def feature_stats(cuts, max_cuts: int) -> tuple:
    """Mean and std of the features of the first ``max_cuts`` cuts (sorted by id, so every rank agrees)."""
    total, total_sq, count = None, None, 0
    ids = sorted(c.id for c in cuts)[:max_cuts]
    wanted = set(ids)
    for cut in cuts:
        if cut.id not in wanted:
            continue
        feats = torch.from_numpy(cut.load_features()).double()
        total = feats.sum(0) if total is None else total + feats.sum(0)
        total_sq = (feats**2).sum(0) if total_sq is None else total_sq + (feats**2).sum(0)
        count += feats.size(0)
    if count == 0:
        raise ValueError("no features to estimate normalisation statistics from")
    mean = total / count
    std = (total_sq / count - mean**2).clamp(min=0).sqrt()
    return mean.float(), std.float()


def setup_distributed() -> tuple:
    """(world_size, rank, local_rank); initialises the process group when torchrun started us."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return world_size, rank, local_rank


# loss terms only some models or configs have: validated, reported per frame, shown in the epoch line (add-ons
# add their own loss_names)
MODEL_LOSSES = ("ctc_loss", "aux_loss", "activity_loss")
# the add-ons the trainer builds from the config, in this order (serac/train/addon.py): each builder returns None
# when its config section leaves it off. A new add-on adds a module under serac/train/ and its builder here.
TRAINING_ADDONS: Tuple[Callable[[Dict[str, Any], AddonSetup], Optional[TrainingAddon]], ...] = (
    EWCAddon.from_config, DistillAddon.from_config, ARWAddon.from_config)


def compute_loss(model, batch: Dict[str, Any], tokenizer: Tokenizer, cfg: Dict[str, Any], step: int,
                 device: torch.device, train: bool, spec_augment=None,
                 addons: Sequence[TrainingAddon] = ()) -> tuple:
    """Returns (loss to back-propagate (sum over the batch), stats dict of summed values): see
    :func:`loss_in_context`."""
    loss, stats, _ = loss_in_context(model, batch, tokenizer, cfg, step, device, train, spec_augment, addons)
    return loss, stats


def loss_in_context(model, batch: Dict[str, Any], tokenizer: Tokenizer, cfg: Dict[str, Any], step: int,
                    device: torch.device, train: bool, spec_augment=None,
                    addons: Sequence[TrainingAddon] = ()) -> Tuple[torch.Tensor, Dict[str, float], StepContext]:
    """Returns (loss to back-propagate (sum over the batch), stats dict of summed values, what the add-ons saw
    of the batch). ``spec_augment`` (a callable on (B, T, F) features, training only) is applied here rather than
    in the data loader, after the speech onsets for ``loss.onset_margin`` and the speech segments for
    ``loss.word_margin`` were found on the clean features (masks and time warping would move them), and after the
    ``data.noise_floor`` augmentation (serac/data/augment.py), which would hide them too. ``addons``: their
    per-utterance weights (training only) and extra loss terms (stats under their ``loss_names``) enter here
    (serac/train/addon.py)."""
    feats = batch["inputs"].to(device)
    sup = batch["supervisions"]
    px_hook = activity_term = None
    if num_output_channels(model) > 1:
        # a multi-talker (STS) model: one row per conversation in, one target per channel out
        x_lens, y, px_hook, num_utts, activity_term = sts_batch_inputs(batch, tokenizer, cfg, model)
        x_lens = x_lens.to(device)
    else:
        # K2SpeechRecognitionDataset gives one supervision per cut in cut order; lengths in feature frames
        x_lens = sup["num_frames"].to(device)
        y = [tokenizer.encode(t) for t in sup["text"]]
        num_utts = len(y)
    lc = cfg["loss"]
    onset = segments = None
    if train and lc.get("word_margin") is not None:
        segments = batch_segments(feats, x_lens)  # on the clean features: noise and SpecAugment would move them
    noise = cfg["data"].get("noise_floor") if train else None
    if train and lc.get("onset_margin") is not None and (spec_augment is not None or noise):
        onset = speech_onset(feats, x_lens)  # likewise (only loss.onset_margin reads it)
    if noise:
        feats = raise_noise_floor(feats, x_lens, float(noise["prob"]), float(noise["low"]), float(noise["high"]))
    if train and spec_augment is not None:
        feats = spec_augment(feats)
    ctc_scale = float(lc.get("ctc_scale", 0.0))
    # CTC-only warm-up: the transducer losses start once the encoder has learned to align (see DEFAULTS)
    ctc_warmup = int(lc.get("ctc_warmup_steps", 0)) if train else 0
    if ctc_warmup > 0 and ctc_scale <= 0:
        raise ValueError("loss.ctc_warmup_steps > 0 needs loss.ctc_scale > 0 and model.ctc_head: true")
    # a CTC term that starts late (loss.ctc_start_step); validation losses always include it
    ctc_start = int(lc.get("ctc_start_step", 0) or 0)
    if ctc_start > 0 and ctc_warmup > 0:
        raise ValueError("loss.ctc_start_step and loss.ctc_warmup_steps cannot both be set: the first trains "
                         "without the CTC term, the second with it alone")
    if train and step < ctc_start:
        ctc_scale = 0.0
    warming = step < ctc_warmup
    inner = getattr(model, "module", model)
    encoder = getattr(inner, "encoder", None)
    if train and hasattr(encoder, "set_train_step"):  # an encoder with its own schedule (amortized gate warm-up)
        encoder.set_train_step(step)
    reweighting = [a for a in addons if a.reweights] if train else []
    cohorts = {}
    if getattr(inner, "cohort_key", None) is not None:  # a cohort embedding: each utterance's cohort id
        cohorts = {"cohorts": inner.cohort_ids(batch["supervisions"]["cut"]).to(feats.device)}
    out = model(feats, x_lens, y, prune_range=lc["prune_range"], lm_scale=lc["lm_scale"], am_scale=lc["am_scale"],
                rnnt_type=lc.get("rnnt_type", "modified"), transducer=not warming,
                ctc_align_margin=lc.get("ctc_align_margin"), onset_margin=lc.get("onset_margin"), onset=onset,
                delay_penalty=float(lc.get("delay_penalty") or 0.0) if train else 0.0,
                word_margin=lc.get("word_margin"), segments=segments, px_hook=px_hook, **cohorts,
                **({"reduction": "none"} if reweighting else {}))
    if warming:
        simple_scale = pruned_scale = 0.0
    else:
        simple_scale, pruned_scale = loss_scales(step - ctc_warmup, lc["simple_loss_scale"],
                                                 lc["warm_step"] if train else 0)
    if ctc_scale > 0 and "ctc_loss" not in out:
        raise ValueError("loss.ctc_scale > 0 needs model.ctc_head: true")
    ctx = StepContext(model=getattr(model, "module", model), feats=feats, feat_lens=x_lens, out=out, batch=batch,
                      step=step, train=train)
    weights = None
    if reweighting:
        utt_loss = simple_scale * out["simple_loss"] + pruned_scale * out["pruned_loss"]
        if ctc_scale > 0:
            utt_loss = utt_loss + ctc_scale * out["ctc_loss"]
        weights = torch.ones_like(utt_loss)
        for addon in reweighting:
            w = addon.utterance_weights(ctx, utt_loss.detach())
            if w is not None:
                weights = weights * w.to(weights)
        ctx.utterance_losses, ctx.utterance_weights = utt_loss.detach(), weights.detach()
        # the stats and the loss below are the weighted sums; the model's sums are kept in the output
        out = {**out, **{k: (weights * out[k]).sum() for k in ("simple_loss", "pruned_loss", "ctc_loss") if k in out}}
    loss = simple_scale * out["simple_loss"] + pruned_scale * out["pruned_loss"]
    frames = out["num_frames"].float()
    stats = {"simple_loss": out["simple_loss"].detach().item(), "pruned_loss": out["pruned_loss"].detach().item(),
             "frames": frames.item(), "utts": num_utts}
    if ctc_scale > 0:
        loss = loss + ctc_scale * out["ctc_loss"]
        stats["ctc_loss"] = out["ctc_loss"].detach().item()
    if activity_term is not None:
        # STS's speech-activity multi-task term (sts.activity_scale, already weighted; a sum like the others)
        activity = activity_term(out)
        loss = loss + activity
        stats["activity_loss"] = activity.detach().item()
    if "aux_loss" in out:
        # an encoder's auxiliary term (e.g. the compute-cost term) is a per-frame mean: scale to the batch sum
        loss = loss + out["aux_loss"] * frames
        stats["aux_loss"] = out["aux_loss"].detach().item() * frames.item()
    stats["loss"] = (simple_scale * stats["simple_loss"] + pruned_scale * stats["pruned_loss"]
                     + stats.get("aux_loss", 0.0) + ctc_scale * stats.get("ctc_loss", 0.0)
                     + stats.get("activity_loss", 0.0))
    for addon in addons:
        for name, term in addon.loss_terms(ctx).items():
            loss = loss + term
            stats[name] = term.detach().item()
            stats["loss"] += stats[name]
    return loss, stats, ctx


def _reduce(stats: Dict[str, float], world_size: int) -> Dict[str, float]:
    if world_size == 1:
        return stats
    keys = sorted(stats)
    t = torch.tensor([stats[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist()))


@torch.no_grad()
def validate(model, loader, tokenizer, cfg, device, world_size: int,
             addons: Sequence[TrainingAddon] = ()) -> Dict[str, float]:
    """Per-frame validation losses (``loss``, ``simple_loss``, ``pruned_loss`` and the optional terms) and
    ``frames``: reported in the epoch line and stored in the checkpoint; never used to choose a checkpoint."""
    model.eval()
    tot: Dict[str, float] = {}
    for batch in loader:
        _, stats = compute_loss(model, batch, tokenizer, cfg, step=10**9, device=device, train=False, addons=addons)
        for k, v in stats.items():
            tot[k] = tot.get(k, 0.0) + v
    model.train()
    tot = _reduce(tot, world_size)
    frames = max(tot.get("frames", 0.0), 1.0)
    out = {"loss": tot.get("loss", 0.0) / frames, "simple_loss": tot.get("simple_loss", 0.0) / frames,
           "pruned_loss": tot.get("pruned_loss", 0.0) / frames, "frames": tot.get("frames", 0.0)}
    for k in (*MODEL_LOSSES, *(n for a in addons for n in a.loss_names)):  # only where the model / config has them
        if k in tot:
            out[k] = tot[k] / frames
    return out


class TrainingDiverged(RuntimeError):
    """Too many skipped steps, or a non-finite validation loss: the run stops before writing a checkpoint."""


def last_checkpoint_note(exp_dir: Path) -> str:
    last = last_epoch(exp_dir)
    return f"the last one in {exp_dir} is epoch-{last}.pt" if last else f"{exp_dir} has none"


class SkipMonitor:
    """Counts the steps skipped for a non-finite loss or gradient and stops the run (:class:`TrainingDiverged`)
    when ``max_in_a_row`` consecutive steps, or more than ``max_fraction`` of the last ``window`` steps, were
    skipped: a run that skips most of its updates has diverged, and going on would only hide it."""

    def __init__(self, max_in_a_row: int, max_fraction: float, window: int, total: int = 0) -> None:
        self.max_in_a_row, self.max_fraction, self.window = max_in_a_row, max_fraction, window
        self.total, self.in_a_row = total, 0
        self.recent: Deque[bool] = deque(maxlen=window)

    def ok(self) -> None:
        self.in_a_row = 0
        self.recent.append(False)

    def skipped(self, step: int, why: str, cut_ids: List[str], exp_dir: Path) -> None:
        self.total += 1
        self.in_a_row += 1
        self.recent.append(True)
        logging.warning(f"non-finite {why} at step {step} (cuts {', '.join(cut_ids[:5])}"
                        f"{', ...' if len(cut_ids) > 5 else ''}); update skipped ({self.total} so far)")
        in_window = sum(self.recent)
        if self.in_a_row >= self.max_in_a_row or in_window > self.max_fraction * self.window:
            raise TrainingDiverged(
                f"training diverged: {self.in_a_row} steps in a row and {in_window} of the last {len(self.recent)} "
                f"skipped for a non-finite loss or gradient (limits: train.max_skipped_in_a_row "
                f"{self.max_in_a_row}, train.max_skipped_fraction {self.max_fraction} of train.skip_window "
                f"{self.window}); the last one at step {step}. No checkpoint was written for this epoch "
                f"({last_checkpoint_note(exp_dir)}). Lower optim.lr (a likely cause) or check the cuts named in the "
                f"log.")


class Trainer:
    """One training run: ``Trainer(args, cfg)`` sets everything up and resumes (model, optimizer, scheduler,
    add-ons, random state from the last checkpoint); :meth:`fit` runs the remaining epochs."""

    def __init__(self, args, cfg: Dict[str, Any]) -> None:
        self.args, self.cfg = args, cfg
        self.world_size, self.rank, local_rank = setup_distributed()
        self.exp_dir = exp_dir = Path(args.exp_dir)
        rank = self.rank
        setup_logging(exp_dir / "log" / f"train-{time.strftime('%Y-%m-%d-%H-%M-%S')}.log" if rank == 0 else None,
                      rank)
        self.tc = tc = cfg["train"]
        if tc.get("num_threads"):
            torch.set_num_threads(int(tc["num_threads"]))
        if retain_freed_memory():  # no page faults for every step's activations (SERAC_MALLOC=default: off)
            logging.info("glibc malloc keeps freed memory for reuse (serac.utils.retain_freed_memory)")
        if tc.get("compile") and self.world_size > 1:
            # not verified here (DDP's bucketing over a compiled encoder): refuse rather than train an unchecked path
            raise ValueError(f"train.compile: true is only supported in single-process training; this run has "
                             f"world_size {self.world_size} (torchrun). Set train.compile: false")
        self.device = device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
        self.seed = seed = int(tc["seed"])
        random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)

        self.tokenizer = tokenizer = Tokenizer(args.lang_dir)
        train_cuts = load_cuts(args.train_cuts)
        first = next(iter(train_cuts))
        num_features = first.num_features
        if num_features is None:
            raise ValueError(f"{args.train_cuts}: cut {first.id} has no features; run the fbank stage")
        self.model = model = build_model(cfg["model"], num_features=num_features, vocab_size=tokenizer.vocab_size,
                                         blank_id=tokenizer.blank_id).to(device)
        factor, rnnt_type = int(model.encoder.subsampling_factor), cfg["loss"].get("rnnt_type", "modified")
        log_dir = exp_dir / "log" if rank == 0 else None
        checks: Dict[str, Any] = {}
        if num_output_channels(model) > 1:
            # STS: conversations with per-channel targets (serac/multitalker/training.py)
            check_sts_config(cfg)
            checks["problem"] = conversation_problem_check(tokenizer, cfg, num_output_channels(model))
        self.train_cuts = check_cuts(check_transcripts(train_cuts, args.train_cuts, "train", tokenizer, factor,
                                                       rnnt_type, log_dir, **checks),
                                     args.train_cuts, cfg["data"]["max_duration"])
        self.valid_cuts = check_transcripts(load_cuts(args.valid_cuts), args.valid_cuts, "valid", tokenizer, factor,
                                            rnnt_type, log_dir, **checks)

        self.num_epochs = int(tc["num_epochs"])
        self.start_epoch = args.start_epoch if args.start_epoch > 0 else last_epoch(exp_dir) + 1
        oc = cfg["optim"]
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=oc["lr"], weight_decay=oc["weight_decay"])
        self.scheduler = EdenLR(self.optimizer, oc["lr_batches"], oc["lr_epochs"], oc["warmup_steps"])
        self.batch_idx_train = 0
        resumed = self.resume(num_features)
        self.skips = SkipMonitor(int(tc.get("max_skipped_in_a_row", 20)), float(tc.get("max_skipped_fraction", 0.5)),
                                 int(tc.get("skip_window", 50)), total=(resumed or {}).get("num_nonfinite", 0))

        # modules taken from another model (train.init_modules) may be kept frozen for the first steps, while the
        # freshly initialised ones learn to use them: gradients through fresh modules would otherwise wreck them
        freeze = tc.get("init_freeze_modules") or []
        self.freeze_steps = int(tc.get("init_freeze_steps") or 0)
        if freeze and self.freeze_steps <= 0:
            raise ValueError(f"train.init_freeze_modules {list(freeze)} needs train.init_freeze_steps > 0")
        self.frozen = parameters_under(model, freeze) if self.freeze_steps > 0 else []
        if self.frozen and self.batch_idx_train < self.freeze_steps:
            logging.info(f"{', '.join(freeze)} ({sum(p.numel() for p in self.frozen)} parameters) frozen until "
                         f"step {self.freeze_steps}")

        setup = AddonSetup(model=model, init_from=getattr(args, "init_from", None), tokenizer=tokenizer,
                           num_features=num_features, device=device)
        self.addons: List[TrainingAddon] = [a for build in TRAINING_ADDONS if (a := build(cfg, setup)) is not None]
        self.loss_names = (*MODEL_LOSSES, *(n for a in self.addons for n in a.loss_names))
        if resumed is not None:
            states = resumed.get("addons", {})
            for addon in self.addons:
                addon.load_state_dict(states.get(addon.name, {}))

        if rank == 0:
            info = environment_info()
            info.update({"world_size": self.world_size, "device": str(device), "rnnt_backend": backend_name,
                         "num_params": count_parameters(model),
                         "encoder_params": count_parameters(model.encoder), "vocab_size": tokenizer.vocab_size,
                         "num_features": num_features})
            resolved = {**cfg, "paths": {k: str(v) for k, v in vars(args).items() if k not in ("set",)}, "env": info}
            logging.info("resolved config and environment:\n" + dump_config(resolved))
            previous = (yaml.safe_load((exp_dir / "config.yaml").read_text()) or {}).get("env", {}) \
                if resumed is not None and (exp_dir / "config.yaml").is_file() else {}
            if self.start_epoch <= self.num_epochs or not previous:
                # the revisions every epoch was trained at (a resumed run adds its own); a rerun with nothing left
                # to train keeps the record of the runs that trained (RESULTS.md writers read it)
                revisions = [r for r in previous.get("git_revisions") or [previous.get("git_revision")] if r]
                if info["git_revision"] not in revisions[-1:]:
                    revisions.append(info["git_revision"])
                info["git_revisions"] = revisions
                atomic_write_text(exp_dir / "config.yaml", dump_config(resolved))
        if self.start_epoch > self.num_epochs:
            return

        if tc.get("compile"):
            # after resume: compiling reads the parameters at each call, so loaded weights are used as they are
            compile_for_training(model.encoder)
            logging.info("train.compile: the encoder's training forward is compiled on the first batch "
                         "(minutes on a small CPU; docs/encoders.md)")
        self.ddp_model = model
        if self.world_size > 1:
            self.ddp_model = DistributedDataParallel(
                model, device_ids=[local_rank] if device.type == "cuda" else None,
                find_unused_parameters=bool(tc.get("find_unused_parameters", False)))
        self.tb = None
        if rank == 0 and tc.get("tensorboard", True):
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(exp_dir / "tensorboard"))

        dc = cfg["data"]
        wsr = {"world_size": self.world_size, "rank": rank} if self.world_size > 1 else {}
        # the sampler reshuffles from (seed, epoch) at every epoch (set_epoch below): it needs no saved state
        self.train_dl = train_dataloader(self.train_cuts, dc["max_duration"], dc["num_buckets"], shuffle=True,
                                         seed=seed, num_workers=dc["num_workers"], **wsr)
        self.spec_augment = SpecAugment(**dc["spec_augment"]) if dc.get("spec_augment") else None
        self.valid_dl = eval_dataloader(self.valid_cuts, dc["max_duration"], **wsr)
        if resumed is not None:
            self.restore_random_state(resumed)

    def resume(self, num_features: int) -> Optional[Dict[str, Any]]:
        """Load the model, optimizer and scheduler of ``epoch-(start_epoch - 1).pt`` and return that checkpoint; or
        initialise the model from ``--init-from``, or its feature statistics from the training data."""
        model, exp_dir, tc = self.model, self.exp_dir, self.tc
        if self.start_epoch > 1:
            path = exp_dir / f"epoch-{self.start_epoch - 1}.pt"
            ckpt = load_checkpoint(path)
            model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            self.batch_idx_train = ckpt["batch_idx_train"]
            logging.info(f"resumed from {path} (step {self.batch_idx_train})")
            return ckpt
        init_from = getattr(self.args, "init_from", None)
        init_modules = tc.get("init_modules") or {}
        if init_from and not init_modules:
            model.load_state_dict(load_checkpoint(init_from)["model"])
            logging.info(f"initialised the model from {init_from}")
            return None
        mean, std = feature_stats(self.train_cuts, int(tc.get("stats_num_cuts", 500)))
        model.set_feature_stats(mean.to(self.device), std.to(self.device))
        if init_modules:
            # some modules from another model (e.g. a single-talker encoder for the STS mixture encoder)
            if not init_from:
                raise ValueError(f"train.init_modules {dict(init_modules)} needs --init-from (the checkpoint)")
            init_lang_dir = getattr(self.args, "init_lang_dir", None)
            tokens = {} if not init_lang_dir else {"source_tokens": Tokenizer(init_lang_dir).id2token,
                                                   "target_tokens": self.tokenizer.id2token}
            report = init_modules_from_state(model, load_checkpoint(init_from)["model"], init_modules,
                                             source=str(init_from), **tokens)
            logging.info(f"initialised {', '.join(init_modules)} from {init_from}"
                         f"{f' (tokens by symbol from {init_lang_dir})' if init_lang_dir else ''}: "
                         f"{report.summary()}")
        return None

    def restore_random_state(self, ckpt: Dict[str, Any]) -> None:
        """The random streams where the checkpoint left them (the last thing set-up does, so nothing in it draws
        from them afterwards): a resumed run is then the uninterrupted one, bit for bit."""
        states = ckpt.get("rng")
        if not states:
            logging.warning("the checkpoint holds no random state (written by an older serac): the resumed run "
                            "continues with fresh random streams")
        elif len(states) != self.world_size:
            logging.warning(f"the checkpoint holds the random state of {len(states)} processes, this run has "
                            f"{self.world_size}: every process continues with fresh random streams")
        else:
            set_rng_state(states[self.rank])

    def gather_random_state(self) -> List[Dict[str, Any]]:
        """Every rank's random state, in rank order (collective under DDP)."""
        state = rng_state()
        if self.world_size == 1:
            return [state]
        states: List[Any] = [None] * self.world_size
        dist.all_gather_object(states, state)
        return states

    def fit(self, on_epoch_end: Optional[Callable] = None) -> Dict[str, Any]:
        """Train epochs start_epoch..num_epochs: train, validate, checkpoint."""
        if self.start_epoch > self.num_epochs:
            logging.info(f"nothing to do: epoch-{self.num_epochs}.pt exists in {self.exp_dir}")
            return {"start_epoch": self.start_epoch, "num_epochs": self.num_epochs}
        with _frozen_gc():
            return self._fit(on_epoch_end)

    def _fit(self, on_epoch_end: Optional[Callable]) -> Dict[str, Any]:
        result: Dict[str, Any] = {"valid": []}
        for epoch in range(self.start_epoch, self.num_epochs + 1):
            t0 = time.time()
            tot = _reduce(self.train_one_epoch(epoch), self.world_size)
            elapsed = time.time() - t0
            valid = validate(self.ddp_model, self.valid_dl, self.tokenizer, self.cfg, self.device, self.world_size,
                             self.addons)
            self.log_epoch(epoch, tot, valid, elapsed)
            if not math.isfinite(valid["loss"]):
                raise TrainingDiverged(
                    f"epoch {epoch}: the validation loss is {valid['loss']} (simple {valid['simple_loss']}, pruned "
                    f"{valid['pruned_loss']}): the model diverged; epoch-{epoch}.pt is not written "
                    f"({last_checkpoint_note(self.exp_dir)}). Lower optim.lr (a likely cause).")
            rng_states = self.gather_random_state()
            if self.rank == 0:
                self.save(epoch, valid, {**tot, "elapsed_s": elapsed}, rng_states)
            result["valid"].append(valid)
            if on_epoch_end is not None:
                on_epoch_end(epoch, valid)
            if self.world_size > 1:
                dist.barrier()
        if self.tb is not None:
            self.tb.close()
        result["num_nonfinite"] = self.skips.total
        return result

    def train_one_epoch(self, epoch: int) -> Dict[str, float]:
        """One pass over the training data; returns this rank's summed stats."""
        tc = self.tc
        self.scheduler.step_epoch(epoch - 1)
        self.train_dl.sampler.set_epoch(epoch)
        self.ddp_model.train()
        tot = {"loss": 0.0, "frames": 0.0, "utts": 0.0, "audio_s": 0.0}
        batches: Iterable = self.train_dl
        bar = None
        if self.rank == 0 and tc.get("progress_bar", True) and sys.stderr.isatty():
            # an interactive terminal gets a bar as well; logs (not a terminal) only the periodic lines
            from tqdm import tqdm

            batches = bar = tqdm(self.train_dl, desc=f"epoch {epoch}", mininterval=5.0, dynamic_ncols=True)
        for batch_idx, batch in enumerate(batches):
            stats, grad_norm = self.train_step(batch)
            for k in ("loss", "frames", "utts"):
                tot[k] += stats[k]
            if "aux_loss" in stats:
                tot["aux_loss"] = tot.get("aux_loss", 0.0) + stats["aux_loss"]
            # a cut once, however many supervisions it has (a conversation has one per turn)
            tot["audio_s"] += float(sum({c.id: c.duration for c in batch["supervisions"]["cut"]}.values()))
            if self.rank == 0 and self.batch_idx_train % tc["log_interval"] == 0:
                self.log_batch(epoch, batch_idx, stats, tot, grad_norm, bar)
        return tot

    def train_step(self, batch: Dict[str, Any]) -> Tuple[Dict[str, float], float]:
        """Forward, backward and update on one batch; a non-finite loss or gradient skips the update (counted, the
        cuts logged). Returns (the batch's stats, the gradient norm before clipping)."""
        model, optimizer = self.model, self.optimizer
        step = self.batch_idx_train
        cut_ids = [c.id for c in batch["supervisions"]["cut"]]
        loss, stats, ctx = loss_in_context(self.ddp_model, batch, self.tokenizer, self.cfg, step, self.device,
                                           train=True, spec_augment=self.spec_augment, addons=self.addons)
        skipped = None
        if not math.isfinite(loss.item()):
            # skip the update but keep DDP ranks in step: back-propagate a zero through every parameter
            skipped = "loss"
            loss = sum(p.sum() * 0.0 for p in model.parameters())
            stats = {"loss": 0.0, "frames": 0.0, "utts": 0}
        optimizer.zero_grad(set_to_none=True)
        per_frame_loss = loss / max(stats["frames"], 1.0)
        if stats["frames"] > 0:
            for addon in self.addons:
                # e.g. EWC: (lambda/2) sum_i F_i (theta_i - theta*_i)^2 on the per-frame scale (the Fisher is
                # estimated from per-frame utterance losses, so both terms share one scale)
                penalty = addon.penalty(model)
                if penalty is not None:
                    per_frame_loss = per_frame_loss + penalty
        per_frame_loss.backward()
        if step < self.freeze_steps:
            for p in self.frozen:
                p.grad = None  # no update (AdamW skips a parameter without a gradient), nor in the clipping norm
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg["optim"]["grad_clip"])
        # the gradient norm is the same on every rank (gradients are all-reduced), so all ranks skip together;
        # a loss skipped on one rank of several still steps on the others' gradients
        if skipped is None and not bool(torch.isfinite(grad_norm)):
            skipped = "gradient"
            stats = {"loss": 0.0, "frames": 0.0, "utts": 0}
        if skipped == "gradient" or (skipped == "loss" and self.world_size == 1):
            optimizer.zero_grad(set_to_none=True)
        else:
            optimizer.step()
            if skipped is None:
                for addon in self.addons:
                    addon.after_step(ctx)
        self.scheduler.step_batch()
        self.batch_idx_train += 1
        if skipped is None:
            self.skips.ok()
        else:
            self.skips.skipped(step, skipped, cut_ids, self.exp_dir)
        return stats, float(grad_norm)

    def log_batch(self, epoch: int, batch_idx: int, stats: Dict[str, float], tot: Dict[str, float],
                  grad_norm: float, bar=None) -> None:
        """Every ``train.log_interval`` steps: one log line (icefall style) and the tensorboard scalars."""
        step, lr = self.batch_idx_train, self.optimizer.param_groups[0]["lr"]
        per_frame = stats["loss"] / max(stats["frames"], 1.0)
        avg = tot["loss"] / max(tot["frames"], 1.0)
        logging.info(f"Epoch {epoch}, batch {batch_idx}, step {step}, loss {per_frame:.4f}, epoch average {avg:.4f}"
                     f" over {tot['frames']:.0f} frames, lr {lr:.3e}, grad norm {grad_norm:.3g}, skipped "
                     f"{self.skips.total}")
        if bar is not None:
            bar.set_postfix(loss=f"{per_frame:.3f}", avg=f"{avg:.3f}")
        if self.tb is not None:
            self.tb.add_scalar("train/loss", per_frame, step)
            self.tb.add_scalar("train/lr", lr, step)
            self.tb.add_scalar("train/grad_norm", grad_norm, step)
            if "aux_loss" in stats:
                self.tb.add_scalar("train/aux_loss", stats["aux_loss"] / max(stats["frames"], 1.0), step)

    def log_epoch(self, epoch: int, tot: Dict[str, float], valid: Dict[str, float], elapsed: float) -> None:
        if self.rank != 0:
            return
        # the auxiliary terms are shown per frame: for the amortized encoder, aux = cost_weight x expected
        # fraction of encoder FLOPs executed, the number to watch while tuning the cost weight
        extra = "".join(f", {k.replace('_loss', '')} {valid[k]:.4f}" for k in self.loss_names if k in valid)
        if "aux_loss" in tot:
            extra += f"; train aux {tot['aux_loss'] / max(tot['frames'], 1):.4f}"
        extra += "".join(f"; {text}" for a in self.addons if (text := a.epoch_summary()))
        logging.info(
            f"epoch {epoch}: train loss {tot['loss'] / max(tot['frames'], 1):.4f}, valid loss {valid['loss']:.4f} "
            f"(simple {valid['simple_loss']:.4f}, pruned {valid['pruned_loss']:.4f}{extra}), {elapsed:.0f}s, "
            f"{tot['audio_s'] / max(elapsed, 1e-9):.1f}s audio/s, step {self.batch_idx_train}, "
            f"lr {self.optimizer.param_groups[0]['lr']:.2e}, non-finite skipped {self.skips.total}")
        if self.tb is not None:
            self.tb.add_scalar("valid/loss", valid["loss"], self.batch_idx_train)
            self.tb.add_scalar("train/epoch_loss", tot["loss"] / max(tot["frames"], 1), self.batch_idx_train)

    def save(self, epoch: int, valid: Dict[str, float], train_stats: Dict[str, float],
             rng_states: List[Dict[str, Any]]) -> None:
        """``epoch-N.pt`` (atomic, refused if the model is not finite) and the rotation of old checkpoints."""
        save_checkpoint(self.exp_dir / f"epoch-{epoch}.pt", model=self.model.state_dict(),
                        optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(), epoch=epoch,
                        batch_idx_train=self.batch_idx_train, num_nonfinite=self.skips.total, valid=valid,
                        config=self.cfg, train_stats=train_stats, rng=rng_states,
                        addons={a.name: a.state_dict() for a in self.addons})
        keep = int(self.tc.get("keep_last_epochs", 0))
        if keep > 0 and epoch - keep >= 1:
            (self.exp_dir / f"epoch-{epoch - keep}.pt").unlink(missing_ok=True)


@contextlib.contextmanager
def _frozen_gc():
    """Python's cyclic garbage collector skips the objects that exist when training starts (the model, the cut
    manifests, torch's and lhotse's modules: ~170,000 before any manifest): each full collection traversed them all
    (~70 ms for the Conformer's process, one every ~25 steps; in proportion to the objects, so seconds with a
    LibriSpeech-sized manifest in memory). Objects created during training are collected as before; the frozen
    ones are handed back to the collector when training ends (tests run several trainings in one process)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def train(args, cfg: Dict[str, Any], on_epoch_end: Optional[Callable] = None) -> Dict[str, Any]:
    """Train according to ``cfg`` with the paths in ``args`` (see serac/bin/train.py); refuses an experiment
    directory that another live training holds (serac/train/exp_lock.py)."""
    rank = int(os.environ.get("RANK", "0"))
    lock = ExperimentLock(args.exp_dir) if rank == 0 else contextlib.nullcontext()
    with lock:
        return Trainer(args, cfg).fit(on_epoch_end)
