"""Decoding an STS / MT-RNN-T model: the search is serac's (each channel row is an utterance); this module maps the
rows back to conversations and writes what the multi-talker scorer reads.

A model whose encoder has ``num_output_channels`` C > 1 returns C rows per conversation, row ``b * C + c`` being
channel ``c`` of batch item ``b``. :func:`conversation_hyps` turns the search's per-row tokens and emission frames
into one :class:`ConversationHyp` per cut. A token emitted at encoder frame t is given the emission time
``(t + 1) * subsampling_factor * frame_shift`` seconds: the end of the input that frame summarises (what a
streaming recogniser has heard when it can emit it; the encoder's look-ahead and the chunk wait are not added).

Files, next to the usual ones of serac.decode.results (the names from its ``result_path``):

* ``hyps-<set>-<suffix>.jsonl``: one line per conversation, sorted by id:
  ``{"id": cut id, "channels": [{"ids": [token ids], "tokens": [token strings], "times": [emission s]}, ...]}``;
  what ``serac.bin.score_multitalker`` scores (cpWER, ORC-WER, turn counting, latency).
* ``recogs`` / ``errs`` / ``wer-summary``: one "utterance" ``<cut>-ch<c>`` per channel, its reference being the turns
  the training targets put on that channel (serac.multitalker.targets) and its hypothesis the channel's words
  (turn tokens dropped): the **channel WER**, a diagnostic that charges a model for swapping channels. The
  multi-talker WERs are the scorer's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

from serac.multitalker.simulate import conversation_turns
from serac.multitalker.targets import TURN_TOKENS, assign_channels
from serac.scoring.wer import Result
from serac.utils import atomic_write_text


@dataclass
class ChannelHyp:
    """One output channel's emitted tokens and their emission times (s)."""

    ids: List[int] = field(default_factory=list)
    times: List[float] = field(default_factory=list)


@dataclass
class ConversationHyp:
    cut_id: str
    channels: List[ChannelHyp]


def emission_time_s(frame: int, subsampling_factor: int, frame_shift_s: float) -> float:
    """When a token emitted at encoder frame ``frame`` comes out (module docstring), rounded to 0.1 ms."""
    return round((frame + 1) * subsampling_factor * frame_shift_s, 4)


def conversation_hyps(cut_ids: Sequence[str], rows_tokens: Sequence[Sequence[int]],
                      rows_frames: Sequence[Sequence[int]], num_channels: int, subsampling_factor: int,
                      frame_shift_s: float) -> List[ConversationHyp]:
    """Rows ``b * C + c`` of the search (tokens and emission frames) as conversation ``cut_ids[b]``'s channel c."""
    if len(rows_tokens) != len(cut_ids) * num_channels or len(rows_frames) != len(rows_tokens):
        raise ValueError(f"{len(cut_ids)} conversations x {num_channels} channels, but {len(rows_tokens)} token rows "
                         f"and {len(rows_frames)} frame rows")
    out = []
    for b, cut_id in enumerate(cut_ids):
        channels = []
        for c in range(num_channels):
            r = b * num_channels + c
            if len(rows_tokens[r]) != len(rows_frames[r]):
                raise ValueError(f"{cut_id} channel {c}: {len(rows_tokens[r])} tokens, {len(rows_frames[r])} frames")
            channels.append(ChannelHyp([int(t) for t in rows_tokens[r]],
                                       [emission_time_s(int(f), subsampling_factor, frame_shift_s)
                                        for f in rows_frames[r]]))
        out.append(ConversationHyp(cut_id, channels))
    return out


def channel_reference_texts(cut, num_channels: int) -> List[str]:
    """Each channel's reference words as the training targets assign the turns (no turn tokens). One channel (a
    single-talker model decoding the mixture as one stream) gets every turn in start order, overlapping or not."""
    turns = conversation_turns(cut)
    # assign_channels refuses overlapping turns on one channel: right for targets, but a one-stream decode has
    # nowhere else to put them
    channels = [0] * len(turns) if num_channels == 1 else assign_channels(turns, cut.id, num_channels)
    texts: List[List[str]] = [[] for _ in range(num_channels)]
    for turn, c in zip(turns, channels):  # conversation_turns is in start order, as the assignment
        texts[c].append(turn.text)
    return [" ".join(t).strip() for t in texts]


def channel_results(cut, hyp: ConversationHyp, tokenizer) -> List[Result]:
    """The channel-WER results (module docstring) of one conversation."""
    turn_ids = {tokenizer.token2id[t] for t in TURN_TOKENS if t in tokenizer.token2id}
    refs = channel_reference_texts(cut, len(hyp.channels))
    return [(f"{cut.id}-ch{c}", refs[c].split(), tokenizer.decode([t for t in ch.ids if t not in turn_ids]).split())
            for c, ch in enumerate(hyp.channels)]


def write_hyps(path: Path, hyps: Iterable[ConversationHyp], tokenizer) -> None:
    lines = []
    for h in sorted(hyps, key=lambda h: h.cut_id):
        lines.append(json.dumps({"id": h.cut_id, "channels": [
            {"ids": ch.ids, "tokens": [tokenizer.id2token[i] for i in ch.ids], "times": ch.times}
            for ch in h.channels]}))
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def read_hyps(path: Path) -> Dict[str, ConversationHyp]:
    """``hyps-*.jsonl`` back as {cut id: ConversationHyp}; a repeated id is an error naming the file."""
    out: Dict[str, ConversationHyp] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        d = json.loads(line)
        if d["id"] in out:
            raise ValueError(f"{path}:{n}: conversation {d['id']} appears twice")
        out[d["id"]] = ConversationHyp(d["id"], [ChannelHyp([int(i) for i in ch["ids"]],
                                                            [float(t) for t in ch["times"]])
                                                 for ch in d["channels"]])
    return out


def merge_hyps(paths: Sequence[Path], out: Path, tokenizer=None) -> int:
    """Concatenate shard files into one sorted by id (lines unchanged); returns the number of conversations."""
    lines: List[Tuple[str, str]] = []
    for p in paths:
        for line in Path(p).read_text().splitlines():
            if line.strip():
                lines.append((json.loads(line)["id"], line))
    lines.sort()
    atomic_write_text(out, "".join(line + "\n" for _, line in lines))
    return len(lines)
