"""Experiment configs: YAML files plus ``--set key.sub=value`` overrides from the command line.

A config may start from another one with a top-level ``base:`` key (a path relative to the config's own
directory), so variants of a recipe's main config state only what differs::

    # egs/synth_assistant/asr/conf/compare/conformer.yaml
    base: ../lstm.yaml
    model:
      encoder: {name: conformer, dim: 144, num_layers: 6}

Resolution order: :data:`DEFAULTS`, then the chain of bases (the farthest first), then the file, then the
``--set`` overrides. An encoder section naming another encoder replaces the inherited one instead of
merging into it (see :func:`deep_update`).

Usage::

    from serac.config import load_config
    cfg = load_config("conf/compare/conformer.yaml", ["optim.lr=1e-3"])
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import yaml

# Defaults every config starts from; a recipe's YAML only says what differs.
DEFAULTS: Dict[str, Any] = {
    "model": {
        "encoder": {"name": "lstm"},
        "decoder_dim": 256,
        "joiner_dim": 256,
        "context_size": 2,
    },
    # rnnt_type "modified": one symbol per frame, matching greedy and modified beam search. With "regular" a
    # small model learns to stack repeated words into one frame, which one-symbol-per-frame search then drops
    # (measured on yesno: 22% WER regular vs 0% modified on the training set).
    # ctc_warmup_steps: train with the CTC loss alone for this many steps before the transducer losses start
    # (needs ctc_scale > 0). A transducer trained from scratch on a corpus whose first words are predictable
    # learns to emit the likeliest first token at frame 0, before any speech, and never learns to recognise
    # first words (measured on the synth corpus: every test hypothesis began with the same token). The warm-up
    # alone did not stop it (measured); ctc_align_margin does: with an integer m, a token may not be emitted more
    # than m encoder frames before its first frame in the CTC head's Viterbi alignment (alignment-restricted
    # RNN-T, left side only; serac/transducer/loss.py). null: unrestricted. But a causal CTC head learns the same
    # habit (measured: its greedy output put the commonest first piece on frame 0 of every utterance), so its
    # alignment cannot place first tokens. onset_margin (integer m) bounds every emission to at most m encoder
    # frames before the speech onset found by an energy detector on the features: during the leading silence
    # nothing may be emitted, so first words have to be heard.
    # ctc_start_step: the CTC term (ctc_scale) joins the training loss from this step on (0: from the start). On
    # yesno the CTC head held a conv2d-front-end model on its early loss plateau for up to 59 epochs; started at
    # step 300 every seed left the plateau by epoch 19, though no more seeds passed the test bar (one in 24 failed
    # either way; docs/transducer-training.md, sixth session).
    # delay_penalty (k2's, Kang et al. 2022): every emission at encoder frame t gets delay_penalty * ((T-1)/2 - t)
    # added to its log-prob in training (both losses; validation losses are unpenalised), which rewards early
    # emission; 0: off.
    "loss": {"rnnt_type": "modified", "prune_range": 5, "lm_scale": 0.25, "am_scale": 0.0, "simple_loss_scale": 0.5, "warm_step": 500,
             "ctc_scale": 0.0, "ctc_warmup_steps": 0, "ctc_start_step": 0, "ctc_align_margin": None, "onset_margin": None,
             "delay_penalty": 0.0, "word_margin": None},
    "optim": {"lr": 2.0e-3, "weight_decay": 1.0e-6, "warmup_steps": 200, "lr_batches": 2000, "lr_epochs": 6,
              "grad_clip": 5.0},
    "data": {"max_duration": 200.0, "num_buckets": 10, "num_workers": 0, "spec_augment": None, "noise_floor": None},
    # max_skipped_*: a run stops (no checkpoint) when that many steps in a row, or more than that share of the last
    # skip_window steps, were skipped for a non-finite loss or gradient (serac/train/trainer.py SkipMonitor)
    # init_modules (with --init-from): {destination module: source module} taken from another model's checkpoint,
    # e.g. {encoder.mixture: encoder} for STS from a single-talker model; the rest keeps its fresh initialisation
    # (serac/train/partial_init.py). Empty: --init-from loads the whole model (fine-tuning). init_freeze_modules
    # (module names) get no update for the first init_freeze_steps steps.
    # compile: the encoder's training forward through torch.compile (inductor; on CPU needs a C++ compiler):
    # measured slower than eager for ContextNet and the Conformer since their linear layers run in oneDNN (compiled
    # code calls MKL's; docs/encoders.md "Third pass", "Eighth pass"); single-process runs only; results equal eager
    # to float rounding, not bit for bit.
    "train": {"num_epochs": 10, "seed": 42, "log_interval": 20, "keep_last_epochs": 30, "num_threads": 0,
              "max_skipped_in_a_row": 20, "max_skipped_fraction": 0.5, "skip_window": 50, "init_modules": {},
              "init_freeze_modules": [], "init_freeze_steps": 0, "compile": False},
    # Elastic weight consolidation (serac/train/ewc.py), off unless `fisher` is set: fine-tuning adds
    # (lambda/2) * sum_i F_i (theta_i - theta*_i)^2 to the per-frame loss, theta* = the --init-from checkpoint.
    "ewc": {"fisher": None, "lambda": 0.0},
    # Knowledge distillation (off unless `teacher` is set): a frozen teacher checkpoint (its own config.yaml's
    # model, eval mode) encodes the same features; `weight` x the mean squared difference of the encoder outputs
    # (averaged over the output dimension, summed over valid frames) is added to the loss. The teacher's encoder
    # must have the student's output dimension and frame rate. Used by the amortized recipe to fine-tune the
    # skipping model towards the dense reference (serac's addition, not the paper's: docs/encoders.md).
    "distill": {"teacher": None, "weight": 0.0},
    # Adversarial reweighting (serac/train/arw_addon.py, Lahoti et al. 2020), off unless `enabled`: an adversary
    # (one hidden layer of `hidden_dim`, 0: linear) maps each utterance's `inputs` (features: pooled fbank mean/std;
    # encoder: pooled detached encoder-output mean/std; label_length: log(1 + tokens); never cohort labels) to a
    # weight, normalised per batch to mean 1 and at least floor / (1 + floor); the transducer minimises the weighted
    # per-utterance loss, the adversary (its own Adam, `lr`, `weight_decay`) maximises it. Unit weights and a frozen
    # adversary for the first `warmup_steps` steps; then the adversary steps every `adversary_every` steps.
    # Separator-transducer-segmenter (serac/multitalker/training.py), read only for a model with a `separator`
    # section: turn_tokens wraps each turn in <sot> ... <eot> (false: the MT-RNN-T baseline); fastemit_lambda
    # (FastEmit) and eot_penalty (log-prob per encoder frame of <eot> later than eot_tolerance_frames past the
    # reference turn end) are off at 0.
    # start_margin_frames m: no token of a turn may be emitted more than m encoder frames before the turn's
    # reference start (null: unrestricted; the multi-talker loss.onset_margin).
    # activity_scale w: the speech-activity multi-task term (needs model.separator.activity_head; 0: off).
    "sts": {"turn_tokens": True, "fastemit_lambda": 0.0, "eot_penalty": 0.0, "eot_tolerance_frames": 0,
            "start_margin_frames": None, "activity_scale": 0.0},
    "arw": {"enabled": False, "inputs": ["features"], "hidden_dim": 32, "lr": 1.0e-3, "weight_decay": 0.0,
            "warmup_steps": 1000, "adversary_every": 1, "floor": 1.0},
}


def deep_merge(base: Dict[str, Any], new: Dict[str, Any],
               replaces: Optional[Callable[[str, Dict[str, Any], Dict[str, Any]], bool]] = None) -> Dict[str, Any]:
    """``base`` updated recursively with ``new`` (neither is modified): the one config merge of serac (experiment
    configs here, the synthetic corpus config in serac.data.synth.config). ``replaces(key, old, new)`` True makes a
    mapping in ``new`` replace the one in ``base`` instead of merging into it."""
    out = copy.deepcopy(base)
    for k, v in (new or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = copy.deepcopy(v) if replaces and replaces(k, out[k], v) else deep_merge(out[k], v, replaces)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _names_another_encoder(key: str, old: Dict[str, Any], new: Dict[str, Any]) -> bool:
    return key == "encoder" and new.get("name", old.get("name")) != old.get("name")


def deep_update(base: Dict[str, Any], new: Dict[str, Any]) -> Dict[str, Any]:
    """:func:`deep_merge` for experiment configs: an encoder section naming another encoder replaces the default
    one instead of merging into it."""
    return deep_merge(base, new, _names_another_encoder)


def apply_override(cfg: Dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ValueError(f"override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        # YAML 1.1 reads "1e-3" as a string; a user means the number
        try:
            value = float(value)
        except ValueError:
            pass
    node = cfg
    parts = key.split(".")
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value


def _read_config_file(path: Path, chain: Tuple[Path, ...] = ()) -> Dict[str, Any]:
    """One YAML config with its ``base:`` chain merged in (bases first), without DEFAULTS."""
    if not path.is_file():
        raise FileNotFoundError(f"config {path} not found" + (f" (the base of {chain[-1]})" if chain else ""))
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise ValueError(f"{path}: circular base: {cycle}")
    with open(path) as f:
        user = yaml.safe_load(f) or {}
    if not isinstance(user, dict):
        raise ValueError(f"{path}: top level must be a mapping")
    unknown = set(user) - set(DEFAULTS) - {"base"}
    if unknown:
        raise ValueError(f"{path}: unknown sections {sorted(unknown)}; known: {sorted(DEFAULTS)} and 'base'")
    base = user.pop("base", None)
    if base is None:
        return user
    if not isinstance(base, str) or not base:
        raise ValueError(f"{path}: 'base' must be a path to another config, got {base!r}")
    # relative to the file that names it (not the working directory), so a recipe can be run from anywhere
    return deep_update(_read_config_file(path.parent / base, (*chain, resolved)), user)


def load_config(path: str | Path | None, overrides: Iterable[str] = ()) -> Dict[str, Any]:
    """DEFAULTS, updated by the YAML at ``path`` (and its ``base:`` chain), then by ``section.key=value``
    overrides."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        cfg = deep_update(cfg, _read_config_file(Path(path)))
    for item in overrides:
        apply_override(cfg, item)
    return cfg


def dump_config(cfg: Dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
