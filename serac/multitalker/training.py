"""What the trainer needs to train an STS / MT-RNN-T model (a Transducer whose encoder gives ``C`` channel rows per
conversation, serac/multitalker/model.py) on conversation cuts: the batch's conversations and their lengths, the
per-channel targets, the loss hook of the switched-on terms, the transcript check, and the options that do not
apply.

The ``sts`` section of an experiment config (every key optional)::

    sts:
      turn_tokens: true        # wrap each turn in <sot> ... <eot> (false: the MT-RNN-T baseline, words only)
      fastemit_lambda: 0.01    # FastEmit (0: off)
      eot_penalty: 0.1         # end-of-turn latency penalty per encoder frame past the reference end (0: off)
      eot_tolerance_frames: 2
      start_margin_frames: 2   # no token of a turn more than 2 encoder frames before the turn's start (null: off)
      activity_scale: 0.0      # speech-activity multi-task term (needs model.separator.activity_head; 0: off)

A conversation cut has one supervision per turn; lhotse's K2SpeechRecognitionDataset gives one entry per
supervision (``sequence_idx`` says which batch row it belongs to), so the conversations, and their lengths (the
whole cut's feature frames, not a supervision's), are read back from the rows here.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from serac.multitalker.model import (TurnLossConfig, flatten_channel_targets, turn_px_hook, turn_start_earliest,
                                     weighted_activity_loss)
from serac.multitalker.simulate import conversation_turns
from serac.multitalker.targets import ChannelTarget, TooManyTalkersError, channel_targets, turn_token_ids

#: loss / training options of the single-talker trainer that an STS model cannot take, and why
UNSUPPORTED = {
    ("loss", "onset_margin"): "its speech onsets are per conversation, the loss rows per channel (a channel's "
                              "first turn can start long after the mixture's onset)",
    ("loss", "word_margin"): "its speech segments are the mixture's, the loss rows per channel",
    ("arw", "enabled"): "adversarial reweighting weights utterances, an STS batch has two loss rows per conversation",
    ("distill", "teacher"): "distillation compares encoder outputs of one row per utterance",
}


def num_output_channels(model: torch.nn.Module) -> int:
    """Rows per input utterance the model's encoder gives (1 for a single-talker transducer); DDP unwrapped."""
    core = getattr(model, "module", model)
    return int(getattr(core.encoder, "num_output_channels", 1))


def sts_settings(cfg: Mapping[str, Any]) -> Tuple[TurnLossConfig, bool]:
    """(the loss terms, whether targets carry turn tokens) from the config's ``sts`` section (module docstring)."""
    section = dict(cfg.get("sts") or {})
    turn_tokens = bool(section.pop("turn_tokens", True))
    known = {f.name for f in fields(TurnLossConfig)}
    unknown = set(section) - known
    if unknown:
        raise ValueError(f"sts: unknown options {sorted(unknown)}; known: {sorted(known | {'turn_tokens'})}")
    return TurnLossConfig(**section), turn_tokens


def check_sts_config(cfg: Mapping[str, Any]) -> None:
    """Refuse, with the reason, what the config switches on that an STS model cannot take (:data:`UNSUPPORTED`)."""
    for (section, key), why in UNSUPPORTED.items():
        value = (cfg.get(section) or {}).get(key)
        if value not in (None, False, 0):
            raise ValueError(f"{section}.{key} ({value}) does not apply to an STS model: {why}. Set it to "
                             f"{'null' if key != 'enabled' else 'false'} in the config.")
    loss_config, _ = sts_settings(cfg)
    separator = (cfg.get("model") or {}).get("separator") or {}
    if loss_config.activity_scale > 0 and not separator.get("activity_head"):
        raise ValueError(f"sts.activity_scale ({loss_config.activity_scale}) needs an activity head: set "
                         f"model.separator.activity_head: true")


def batch_conversations(batch: Dict[str, Any]) -> Tuple[List[Any], torch.Tensor]:
    """The batch's cuts in row order of ``batch["inputs"]`` and their lengths in feature frames."""
    sup = batch["supervisions"]
    rows: Dict[int, Any] = {}
    for i, cut in zip(sup["sequence_idx"].tolist(), sup["cut"]):
        rows.setdefault(int(i), cut)
    num = batch["inputs"].size(0)
    if sorted(rows) != list(range(num)):
        raise ValueError(f"batch of {num} rows, but supervisions for rows {sorted(rows)}: every conversation needs "
                         f"at least one turn")
    cuts = [rows[i] for i in range(num)]
    return cuts, torch.tensor([int(c.num_frames) for c in cuts], dtype=torch.int64)


def conversation_targets(cut, tokenizer, num_channels: int, turn_tokens: bool) -> List[ChannelTarget]:
    return channel_targets(conversation_turns(cut), tokenizer, cut.id, num_channels, turn_tokens)


def sts_batch_inputs(batch: Dict[str, Any], tokenizer, cfg: Mapping[str, Any], model: torch.nn.Module
                     ) -> Tuple[torch.Tensor, List[List[int]], Optional[Callable], int, Optional[Callable]]:
    """(feature lengths per conversation, token lists per channel row ``b * C + c``, the ``px_hook`` of the
    switched-on terms or None, number of conversations, and the speech-activity term or None: a function of the
    model's forward output giving ``activity_scale`` x the summed per-frame cross-entropy) of one batch."""
    core = getattr(model, "module", model)
    channels = num_output_channels(core)
    loss_config, turn_tokens = sts_settings(cfg)
    cuts, x_lens = batch_conversations(batch)
    targets = [conversation_targets(c, tokenizer, channels, turn_tokens) for c in cuts]
    frame_shift = float(cuts[0].frame_shift)
    factor = int(core.encoder.subsampling_factor)
    tokens, end_frame = flatten_channel_targets(targets, frame_shift, factor)
    earliest = None
    if loss_config.start_margin_frames is not None:
        # the encoder's frames, conservatively (one fewer than x_lens // factor): only a feasibility bound
        earliest = turn_start_earliest(targets, frame_shift, factor, loss_config.start_margin_frames,
                                       (x_lens // factor - 1).clamp(min=1))
    activity_term = None
    if loss_config.activity_scale > 0:
        def activity_term(out: Dict[str, torch.Tensor]) -> torch.Tensor:
            return weighted_activity_loss(loss_config, core.encoder, out, targets, frame_shift, factor)
    return x_lens, tokens, turn_px_hook(loss_config, end_frame, earliest), len(cuts), activity_term


def conversation_problem(cut, tokenizer, subsampling_factor: int, one_symbol_per_frame: bool, num_channels: int,
                         turn_tokens: bool) -> Optional[Tuple[str, str]]:
    """(kind, details) of why the STS loss cannot score conversation ``cut``, or None (the conversation
    counterpart of :func:`serac.train.transcripts.transcript_problem`)."""
    if not cut.supervisions:
        return "no supervision", "the conversation has no turn"
    if any(not (s.text or "").strip() for s in cut.supervisions):
        return "empty transcript", "a turn has an empty transcript"
    try:
        targets = conversation_targets(cut, tokenizer, num_channels, turn_tokens)
    except TooManyTalkersError as e:
        return "too many talkers", str(e)
    except KeyError as e:
        return "unknown token", str(e.args[0]) if e.args else "a token not in tokens.txt"
    if one_symbol_per_frame and cut.num_frames is not None:
        encoder_frames = int(cut.num_frames) // subsampling_factor
        longest = max(len(t.tokens) for t in targets)
        if longest > encoder_frames:
            return "more tokens than encoder frames", (f"a channel has {longest} tokens > {encoder_frames} encoder "
                                                       f"frames; the one-symbol-per-frame transducer needs T >= S")
    return None


def conversation_problem_check(tokenizer, cfg: Mapping[str, Any], num_channels: int) -> Callable:
    """The per-cut check :func:`serac.train.transcripts.check_transcripts` takes for an STS model."""
    _, turn_tokens = sts_settings(cfg)
    if turn_tokens:
        turn_token_ids(tokenizer)  # a lang dir without <sot>/<eot> is an error before any cut is read

    def problem(cut, tok, subsampling_factor: int, one_symbol_per_frame: bool):
        return conversation_problem(cut, tok, subsampling_factor, one_symbol_per_frame, num_channels, turn_tokens)

    return problem


def channel_reference_words(targets: Sequence[ChannelTarget], cut) -> List[str]:
    """Each channel's reference words (turn texts in channel order, no turn tokens), as the targets assign turns."""
    text = {s.id: (s.text or "") for s in cut.supervisions}
    return [" ".join(text[t] for t in target.turn_ids).strip() for target in targets]
