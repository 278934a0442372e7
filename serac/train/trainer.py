"""The one training loop for every model variant.

Config from YAML + ``--set`` overrides, DDP when launched by torchrun (env:// rendezvous; gloo on CPU, nccl on
GPU), atomic ``epoch-N.pt`` checkpoints, resume with ``--start-epoch`` (default: after the last checkpoint),
tensorboard logs, a tqdm progress bar, non-finite losses skipped and counted, and the resolved config plus the
environment logged at start-up. Only rank 0 writes logs, tensorboard and checkpoints.
"""
from __future__ import annotations

import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch
import torch.distributed as dist
from lhotse.dataset import SpecAugment
from torch.nn.parallel import DistributedDataParallel

from serac.config import dump_config
from serac.data.dataset import check_cuts, eval_dataloader, load_cuts, train_dataloader
from serac.data.tokenizer import Tokenizer
from serac.train.checkpoint import last_epoch, load_checkpoint, save_checkpoint
from serac.transducer.loss import backend_name, loss_scales, speech_onset
from serac.transducer.model import build_model, count_parameters
from serac.utils import atomic_write_text, environment_info, setup_logging


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


# loss terms only some models or configs have: validated, reported per frame, shown in the epoch line
OPTIONAL_LOSSES = ("ctc_loss", "aux_loss", "distill_loss")


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


def compute_loss(model, batch: Dict[str, Any], tokenizer: Tokenizer, cfg: Dict[str, Any], step: int,
                 device: torch.device, train: bool, spec_augment=None, teacher=None) -> tuple:
    """Returns (loss to back-propagate (sum over the batch), stats dict of summed values). ``spec_augment``
    (a callable on (B, T, F) features, training only) is applied here rather than in the data loader, after the
    speech onsets for ``loss.onset_margin`` were found on the clean features (masks and time warping would
    move them). ``teacher``: adds ``distill.weight`` x :func:`distill_loss` (stats ``distill_loss``, weighted)."""
    feats = batch["inputs"].to(device)
    sup = batch["supervisions"]
    # K2SpeechRecognitionDataset gives one supervision per cut in cut order; lengths in feature frames
    x_lens = sup["num_frames"].to(device)
    onset = None
    if train and spec_augment is not None:
        onset = speech_onset(feats, x_lens)
        feats = spec_augment(feats)
    y = [tokenizer.encode(t) for t in sup["text"]]
    lc = cfg["loss"]
    ctc_scale = float(lc.get("ctc_scale", 0.0))
    # CTC-only warm-up: the transducer losses start once the encoder has learned to align (see DEFAULTS)
    ctc_warmup = int(lc.get("ctc_warmup_steps", 0)) if train else 0
    if ctc_warmup > 0 and ctc_scale <= 0:
        raise ValueError("loss.ctc_warmup_steps > 0 needs loss.ctc_scale > 0 and model.ctc_head: true")
    warming = step < ctc_warmup
    out = model(feats, x_lens, y, prune_range=lc["prune_range"], lm_scale=lc["lm_scale"], am_scale=lc["am_scale"],
                rnnt_type=lc.get("rnnt_type", "modified"), transducer=not warming,
                ctc_align_margin=lc.get("ctc_align_margin"), onset_margin=lc.get("onset_margin"), onset=onset)
    if warming:
        simple_scale = pruned_scale = 0.0
    else:
        simple_scale, pruned_scale = loss_scales(step - ctc_warmup, lc["simple_loss_scale"],
                                                 lc["warm_step"] if train else 0)
    loss = simple_scale * out["simple_loss"] + pruned_scale * out["pruned_loss"]
    frames = out["num_frames"].float()
    stats = {"simple_loss": out["simple_loss"].detach().item(), "pruned_loss": out["pruned_loss"].detach().item(),
             "frames": frames.item(), "utts": len(y)}
    if ctc_scale > 0:
        if "ctc_loss" not in out:
            raise ValueError("loss.ctc_scale > 0 needs model.ctc_head: true")
        loss = loss + ctc_scale * out["ctc_loss"]
        stats["ctc_loss"] = out["ctc_loss"].detach().item()
    if "aux_loss" in out:
        # an encoder's auxiliary term (e.g. the compute-cost term) is a per-frame mean: scale to the batch sum
        loss = loss + out["aux_loss"] * frames
        stats["aux_loss"] = out["aux_loss"].detach().item() * frames.item()
    if teacher is not None:
        kd = float(cfg["distill"]["weight"]) * distill_loss(out["encoder_out"], out["encoder_lens"], teacher, feats,
                                                            x_lens)
        loss = loss + kd
        stats["distill_loss"] = kd.detach().item()
    stats["loss"] = (simple_scale * stats["simple_loss"] + pruned_scale * stats["pruned_loss"]
                     + stats.get("aux_loss", 0.0) + ctc_scale * stats.get("ctc_loss", 0.0)
                     + stats.get("distill_loss", 0.0))
    return loss, stats


def _reduce(stats: Dict[str, float], world_size: int) -> Dict[str, float]:
    if world_size == 1:
        return stats
    keys = sorted(stats)
    t = torch.tensor([stats[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist()))


@torch.no_grad()
def validate(model, loader, tokenizer, cfg, device, world_size: int, teacher=None) -> Dict[str, float]:
    model.eval()
    tot: Dict[str, float] = {}
    for batch in loader:
        _, stats = compute_loss(model, batch, tokenizer, cfg, step=10**9, device=device, train=False,
                                teacher=teacher)
        for k, v in stats.items():
            tot[k] = tot.get(k, 0.0) + v
    model.train()
    tot = _reduce(tot, world_size)
    frames = max(tot.get("frames", 0.0), 1.0)
    out = {"loss": tot.get("loss", 0.0) / frames, "simple_loss": tot.get("simple_loss", 0.0) / frames,
           "pruned_loss": tot.get("pruned_loss", 0.0) / frames, "frames": tot.get("frames", 0.0)}
    for k in OPTIONAL_LOSSES:  # only where the model / config has them
        if k in tot:
            out[k] = tot[k] / frames
    return out


def train(args, cfg: Dict[str, Any], on_epoch_end: Optional[Callable] = None) -> Dict[str, Any]:
    """Train according to ``cfg`` with the paths in ``args`` (see serac/bin/train.py)."""
    world_size, rank, local_rank = setup_distributed()
    exp_dir = Path(args.exp_dir)
    if rank == 0:
        exp_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(exp_dir / "log" / f"train-{time.strftime('%Y-%m-%d-%H-%M-%S')}.log" if rank == 0 else None, rank)
    tc = cfg["train"]
    if tc.get("num_threads"):
        torch.set_num_threads(int(tc["num_threads"]))
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    seed = int(tc["seed"])
    random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)

    tokenizer = Tokenizer(args.lang_dir)
    train_cuts = check_cuts(load_cuts(args.train_cuts), args.train_cuts, cfg["data"]["max_duration"])
    valid_cuts = load_cuts(args.valid_cuts)
    first = next(iter(train_cuts))
    num_features = first.num_features
    if num_features is None:
        raise ValueError(f"{args.train_cuts}: cut {first.id} has no features; run the fbank stage")
    model = build_model(cfg["model"], num_features=num_features, vocab_size=tokenizer.vocab_size,
                        blank_id=tokenizer.blank_id).to(device)

    num_epochs = int(tc["num_epochs"])
    start_epoch = args.start_epoch if args.start_epoch > 0 else last_epoch(exp_dir) + 1
    oc = cfg["optim"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=oc["lr"], weight_decay=oc["weight_decay"])
    scheduler = EdenLR(optimizer, oc["lr_batches"], oc["lr_epochs"], oc["warmup_steps"])
    batch_idx_train, num_nonfinite = 0, 0
    if start_epoch > 1:
        ckpt = load_checkpoint(exp_dir / f"epoch-{start_epoch - 1}.pt")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        batch_idx_train = ckpt["batch_idx_train"]
        num_nonfinite = ckpt.get("num_nonfinite", 0)
        logging.info(f"resumed from {exp_dir}/epoch-{start_epoch - 1}.pt (step {batch_idx_train})")
    elif getattr(args, "init_from", None):
        ckpt = load_checkpoint(args.init_from)
        model.load_state_dict(ckpt["model"])
        logging.info(f"initialised the model from {args.init_from}")
    else:
        mean, std = feature_stats(train_cuts, int(tc.get("stats_num_cuts", 500)))
        model.set_feature_stats(mean.to(device), std.to(device))

    # EWC (optional `ewc` section; serac/fairness/ewc.py): penalty towards theta* = the --init-from parameters
    ewc_penalty = None
    if (cfg.get("ewc") or {}).get("fisher"):
        from serac.fairness.ewc import EWCPenalty

        ewc_penalty = EWCPenalty.from_config(cfg["ewc"], getattr(args, "init_from", None), model, device)
    teacher = None
    if (cfg.get("distill") or {}).get("teacher"):
        teacher = load_teacher(cfg["distill"]["teacher"], num_features, tokenizer, model, device)

    if rank == 0:
        info = environment_info()
        info.update({"world_size": world_size, "device": str(device), "rnnt_backend": backend_name,
                     "num_params": count_parameters(model),
                     "encoder_params": count_parameters(model.encoder), "vocab_size": tokenizer.vocab_size,
                     "num_features": num_features})
        resolved = {**cfg, "paths": {k: str(v) for k, v in vars(args).items() if k not in ("set",)}, "env": info}
        atomic_write_text(exp_dir / "config.yaml", dump_config(resolved))
        logging.info("resolved config and environment:\n" + dump_config(resolved))
    if start_epoch > num_epochs:
        logging.info(f"nothing to do: epoch-{num_epochs}.pt exists in {exp_dir}")
        return {"start_epoch": start_epoch, "num_epochs": num_epochs}

    ddp_model = model
    if world_size > 1:
        ddp_model = DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None,
                                            find_unused_parameters=bool(tc.get("find_unused_parameters", False)))
    tb = None
    if rank == 0 and tc.get("tensorboard", True):
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(log_dir=str(exp_dir / "tensorboard"))

    dc = cfg["data"]
    wsr = {"world_size": world_size, "rank": rank} if world_size > 1 else {}
    train_dl = train_dataloader(train_cuts, dc["max_duration"], dc["num_buckets"], shuffle=True, seed=seed,
                                num_workers=dc["num_workers"], **wsr)
    spec_augment = SpecAugment(**dc["spec_augment"]) if dc.get("spec_augment") else None
    valid_dl = eval_dataloader(valid_cuts, dc["max_duration"], **wsr)
    result: Dict[str, Any] = {"valid": []}
    from tqdm import tqdm

    for epoch in range(start_epoch, num_epochs + 1):
        scheduler.step_epoch(epoch - 1)
        train_dl.sampler.set_epoch(epoch)
        ddp_model.train()
        t0, tot = time.time(), {"loss": 0.0, "frames": 0.0, "utts": 0.0, "audio_s": 0.0}
        bar = tqdm(train_dl, desc=f"epoch {epoch}", disable=rank != 0 or not tc.get("progress_bar", True),
                   mininterval=5.0, dynamic_ncols=True)
        for batch in bar:
            loss, stats = compute_loss(ddp_model, batch, tokenizer, cfg, batch_idx_train, device, train=True,
                                       spec_augment=spec_augment, teacher=teacher)
            if not math.isfinite(loss.item()):
                # skip the update but keep DDP ranks in step: back-propagate a zero through every parameter
                num_nonfinite += 1
                logging.warning(f"non-finite loss at step {batch_idx_train} (cuts "
                                f"{[c.id for c in batch['supervisions']['cut']][:5]}...); skipped "
                                f"({num_nonfinite} so far)")
                loss = sum(p.sum() * 0.0 for p in model.parameters())
                stats = {"loss": 0.0, "frames": 0.0, "utts": 0}
            optimizer.zero_grad(set_to_none=True)
            per_frame_loss = loss / max(stats["frames"], 1.0)
            if ewc_penalty is not None and stats["frames"] > 0:
                # EWC: (lambda/2) sum_i F_i (theta_i - theta*_i)^2, added to the per-frame loss (the Fisher is
                # estimated from per-frame utterance losses, so both terms share one scale)
                per_frame_loss = per_frame_loss + ewc_penalty(model)
            per_frame_loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), oc["grad_clip"])
            optimizer.step()
            scheduler.step_batch()
            batch_idx_train += 1
            tot["loss"] += stats["loss"]
            tot["frames"] += stats["frames"]
            tot["utts"] += stats["utts"]
            if "aux_loss" in stats:
                tot["aux_loss"] = tot.get("aux_loss", 0.0) + stats["aux_loss"]
            tot["audio_s"] += float(sum(c.duration for c in batch["supervisions"]["cut"]))
            if rank == 0 and batch_idx_train % tc["log_interval"] == 0:
                per_frame = stats["loss"] / max(stats["frames"], 1.0)
                bar.set_postfix(loss=f"{per_frame:.3f}", avg=f"{tot['loss'] / max(tot['frames'], 1):.3f}")
                if tb is not None:
                    tb.add_scalar("train/loss", per_frame, batch_idx_train)
                    tb.add_scalar("train/lr", optimizer.param_groups[0]["lr"], batch_idx_train)
                    tb.add_scalar("train/grad_norm", float(grad_norm), batch_idx_train)
                    if "aux_loss" in stats:
                        tb.add_scalar("train/aux_loss", stats["aux_loss"] / max(stats["frames"], 1.0),
                                      batch_idx_train)
        elapsed = time.time() - t0
        tot = _reduce(tot, world_size)
        valid = validate(ddp_model, valid_dl, tokenizer, cfg, device, world_size, teacher)
        if rank == 0:
            # the auxiliary terms are shown per frame: for the amortized encoder, aux = cost_weight x expected
            # fraction of encoder FLOPs executed, the number to watch while tuning the cost weight
            extra = "".join(f", {k.replace('_loss', '')} {valid[k]:.4f}"
                            for k in OPTIONAL_LOSSES if k in valid)
            if "aux_loss" in tot:
                extra += f"; train aux {tot['aux_loss'] / max(tot['frames'], 1):.4f}"
            logging.info(
                f"epoch {epoch}: train loss {tot['loss'] / max(tot['frames'], 1):.4f}, valid loss {valid['loss']:.4f} "
                f"(simple {valid['simple_loss']:.4f}, pruned {valid['pruned_loss']:.4f}{extra}), {elapsed:.0f}s, "
                f"{tot['audio_s'] / max(elapsed, 1e-9):.1f}s audio/s, step {batch_idx_train}, "
                f"lr {optimizer.param_groups[0]['lr']:.2e}, non-finite skipped {num_nonfinite}")
            if tb is not None:
                tb.add_scalar("valid/loss", valid["loss"], batch_idx_train)
                tb.add_scalar("train/epoch_loss", tot["loss"] / max(tot["frames"], 1), batch_idx_train)
            save_checkpoint(exp_dir / f"epoch-{epoch}.pt", model=model.state_dict(), optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict(), epoch=epoch, batch_idx_train=batch_idx_train,
                            num_nonfinite=num_nonfinite, valid=valid, config=cfg,
                            train_stats={**tot, "elapsed_s": elapsed})
            keep = int(tc.get("keep_last_epochs", 0))
            if keep > 0 and epoch - keep >= 1:
                (exp_dir / f"epoch-{epoch - keep}.pt").unlink(missing_ok=True)
        result["valid"].append(valid)
        if on_epoch_end is not None:
            on_epoch_end(epoch, valid)
        if world_size > 1:
            dist.barrier()
    if tb is not None:
        tb.close()
    result["num_nonfinite"] = num_nonfinite
    return result
