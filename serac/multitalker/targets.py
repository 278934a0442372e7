"""MT-RNN-T / STS training targets: a conversation's turns on two output channels, wrapped in turn tokens.

Channel assignment (MT-RNN-T, Sklyar et al. 2021; used unchanged by STS): the turns, sorted by start time (then
end time, then id), are taken one by one, and each goes to the **lowest-numbered channel that is free** at its
start -- free meaning the channel's last turn has ended at or before this turn's start. So a turn that overlaps
the turn on channel 0 goes to channel 1, and channel 0 is used whenever it can be. Channels are not speakers: a
speaker's turns may land on either channel, and a three-speaker conversation is fine as long as no more than two
turns overlap at any instant.

A turn that finds every channel busy (three talkers at once, with two channels) has no correct target: the
assignment raises :class:`TooManyTalkersError` naming the conversation and the turns involved; nothing is dropped
or merged silently. (The simulator never makes such conversations; real meetings can, and their recipe must
filter or split them explicitly.)

With ``turn_tokens`` each turn on a channel becomes ``<sot> w1 .. wn <eot>``; without them (the MT-RNN-T
baseline) the channel's words are simply concatenated.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

from serac.data.tokenizer import Tokenizer
from serac.multitalker.simulate import Turn

SOT = "<sot>"
EOT = "<eot>"
TURN_TOKENS = (SOT, EOT)


class TooManyTalkersError(ValueError):
    """More turns overlap at one instant than there are output channels."""


def assign_channels(turns: Sequence[Turn], conversation_id: str, num_channels: int = 2) -> List[int]:
    """The output channel of each turn (same order as ``turns``), by the rule in the module docstring."""
    order = sorted(range(len(turns)), key=lambda i: (turns[i].start, turns[i].end, turns[i].id))
    busy: List[Optional[int]] = [None] * num_channels   # index of the turn each channel holds last
    channels: List[int] = [-1] * len(turns)
    for i in order:
        turn = turns[i]
        if turn.end < turn.start:
            raise ValueError(f"conversation {conversation_id}: turn {turn.id} ends ({turn.end}) before it starts "
                             f"({turn.start})")
        free = [c for c, j in enumerate(busy) if j is None or turns[j].end <= turn.start]
        if not free:
            held = ", ".join(f"{turns[j].id} ({turns[j].start:.3f}-{turns[j].end:.3f} s)" for j in busy if j is not None)
            raise TooManyTalkersError(
                f"conversation {conversation_id}: turn {turn.id} ({turn.start:.3f}-{turn.end:.3f} s) overlaps "
                f"{held}: more than {num_channels} talkers at once, which {num_channels} output channels cannot "
                f"represent; filter or split this conversation")
        channels[i] = free[0]
        busy[free[0]] = i
    return channels


def turn_token_ids(tokenizer: Tokenizer) -> Tuple[int, int]:
    """(``<sot>`` id, ``<eot>`` id) of a lang dir prepared with the turn tokens."""
    missing = [t for t in TURN_TOKENS if t not in tokenizer.token2id]
    if missing:
        raise KeyError(f"{tokenizer.lang_dir}/tokens.txt lacks {missing}: prepare the lang dir with "
                       f"steps/prepare_lang.sh --extra-symbols \"{SOT} {EOT}\"")
    return tokenizer.token2id[SOT], tokenizer.token2id[EOT]


@dataclass
class ChannelTarget:
    """One output channel's target token sequence, and where the turn tokens sit in it.

    ``sot_index[k]`` / ``eot_index[k]``: positions in ``tokens`` of turn k's ``<sot>`` / ``<eot>`` (empty without
    turn tokens); ``turn_start_s[k]`` / ``turn_end_s[k]``: the reference start / end of turn k (seconds), which the
    end-of-turn latency penalty and the latency metrics compare emissions with."""

    tokens: List[int] = field(default_factory=list)
    turn_ids: List[str] = field(default_factory=list)
    turn_start_s: List[float] = field(default_factory=list)
    turn_end_s: List[float] = field(default_factory=list)
    sot_index: List[int] = field(default_factory=list)
    eot_index: List[int] = field(default_factory=list)
    token_turn: List[int] = field(default_factory=list)   #: the turn (index k) each token belongs to


def channel_targets(turns: Sequence[Turn], tokenizer: Tokenizer, conversation_id: str, num_channels: int = 2,
                    turn_tokens: bool = True) -> List[ChannelTarget]:
    """The ``num_channels`` target sequences of one conversation (module docstring)."""
    sot_id, eot_id = turn_token_ids(tokenizer) if turn_tokens else (None, None)
    channels = assign_channels(turns, conversation_id, num_channels)
    targets = [ChannelTarget() for _ in range(num_channels)]
    order = sorted(range(len(turns)), key=lambda i: (turns[i].start, turns[i].end, turns[i].id))
    for i in order:
        turn, target = turns[i], targets[channels[i]]
        target.turn_ids.append(turn.id)
        target.turn_start_s.append(turn.start)
        target.turn_end_s.append(turn.end)
        k = len(target.turn_ids) - 1
        if turn_tokens:
            target.sot_index.append(len(target.tokens))
            target.tokens.append(sot_id)
        target.tokens.extend(tokenizer.encode(turn.text))
        if turn_tokens:
            target.eot_index.append(len(target.tokens))
            target.tokens.append(eot_id)
        target.token_turn.extend([k] * (len(target.tokens) - len(target.token_turn)))
    return targets


@dataclass
class HypTurn:
    """A turn read back from one channel's emitted tokens: its word tokens and their emission times, and when
    ``<sot>`` / ``<eot>`` were emitted (seconds; ``None`` where the token was not emitted)."""

    channel: int
    token_ids: List[int]
    sot_s: Optional[float]
    eot_s: Optional[float]
    token_times_s: List[float] = field(default_factory=list)


def split_turns(token_ids: Sequence[int], times_s: Sequence[float], sot_id: int, eot_id: int,
                channel: int = 0) -> List[HypTurn]:
    """Cut one channel's emitted tokens (with their emission times) into turns.

    A turn opens at ``<sot>``, or at a word emitted while no turn is open (a missed ``<sot>``: ``sot_s`` None);
    it closes at ``<eot>``, or at a ``<sot>`` while it is open (a missed ``<eot>``), or at the end of the stream
    (``eot_s`` None). An ``<eot>`` with no open turn is ignored (there is no turn to end)."""
    if len(token_ids) != len(times_s):
        raise ValueError(f"{len(token_ids)} tokens but {len(times_s)} emission times")
    turns: List[HypTurn] = []
    current: Optional[HypTurn] = None
    for tok, t in zip(token_ids, times_s):
        if tok == sot_id:
            if current is not None:
                turns.append(current)
            current = HypTurn(channel, [], float(t), None)
        elif tok == eot_id:
            if current is not None:
                current.eot_s = float(t)
                turns.append(current)
                current = None
        else:
            if current is None:
                current = HypTurn(channel, [], None, None)
            current.token_ids.append(int(tok))
            current.token_times_s.append(float(t))
    if current is not None:
        turns.append(current)
    return turns
