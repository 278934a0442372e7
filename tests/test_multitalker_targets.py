"""STS / MT-RNN-T targets: channel assignment and <sot>/<eot> placement on hand-made turns; turn-token lang dirs."""
from __future__ import annotations

import random

import pytest

from serac.data.tokenizer import Tokenizer, prepare_bpe_lang, prepare_word_lang
from serac.multitalker.simulate import Turn
from serac.multitalker.targets import (EOT, SOT, TURN_TOKENS, TooManyTalkersError, assign_channels, channel_targets,
                                       split_turns, turn_token_ids)

# a: 0-2; b overlaps a; c starts after both (lowest channel: 0); d overlaps c; e starts exactly when c ends
# (touching is not overlapping: channel 0 is free again) while d still runs on channel 1
TURNS = [
    Turn("a", "spk1", "HELLO THERE", 0.0, 2.0),
    Turn("b", "spk2", "HI", 1.5, 3.0),
    Turn("c", "spk1", "HOW ARE YOU", 3.2, 4.0),
    Turn("d", "spk2", "FINE THANKS", 3.5, 5.0),
    Turn("e", "spk3", "ME TOO", 4.0, 6.0),
]


@pytest.fixture(scope="module")
def word_lang(tmp_path_factory):
    lang = tmp_path_factory.mktemp("lang_word")
    prepare_word_lang([t.text for t in TURNS], lang, extra_symbols=TURN_TOKENS)
    return Tokenizer(lang)


def test_overlapping_turns_go_to_different_channels_and_channel_0_first():
    assert assign_channels(TURNS, "conv1") == [0, 1, 0, 1, 0]


def test_assignment_does_not_depend_on_input_order():
    shuffled = TURNS[:]
    random.Random(0).shuffle(shuffled)
    channels = dict(zip((t.id for t in shuffled), assign_channels(shuffled, "conv1")))
    assert channels == {"a": 0, "b": 1, "c": 0, "d": 1, "e": 0}


def test_three_way_overlap_is_a_clear_error():
    turns = TURNS[:2] + [Turn("x", "spk3", "OOPS", 1.8, 2.5)]  # a, b and x all active at 1.8-2.0
    with pytest.raises(TooManyTalkersError, match=r"conversation conv7: turn x \(1.800-2.500 s\) overlaps a "
                                                  r"\(0.000-2.000 s\), b \(1.500-3.000 s\): more than 2 talkers"):
        assign_channels(turns, "conv7")
    # with three channels the same turns have a target
    assert assign_channels(turns, "conv7", num_channels=3) == [0, 1, 2]


def test_sot_eot_wrap_each_turn_on_its_channel(word_lang):
    ch0, ch1 = channel_targets(TURNS, word_lang, "conv1")
    assert word_lang.decode(ch0.tokens) == "<sot> HELLO THERE <eot> <sot> HOW ARE YOU <eot> <sot> ME TOO <eot>"
    assert word_lang.decode(ch1.tokens) == "<sot> HI <eot> <sot> FINE THANKS <eot>"
    sot, eot = turn_token_ids(word_lang)
    assert [ch0.tokens[i] for i in ch0.sot_index] == [sot] * 3 and [ch0.tokens[i] for i in ch0.eot_index] == [eot] * 3
    assert ch0.eot_index == [3, 8, 12] and ch1.sot_index == [0, 3]
    assert ch0.turn_ids == ["a", "c", "e"] and ch0.turn_end_s == [2.0, 4.0, 6.0]
    assert ch1.turn_start_s == [1.5, 3.5]


def test_without_turn_tokens_the_channel_words_are_concatenated(word_lang):
    ch0, ch1 = channel_targets(TURNS, word_lang, "conv1", turn_tokens=False)
    assert word_lang.decode(ch0.tokens) == "HELLO THERE HOW ARE YOU ME TOO"
    assert word_lang.decode(ch1.tokens) == "HI FINE THANKS"
    assert ch0.eot_index == [] and ch0.turn_end_s == [2.0, 4.0, 6.0]


def test_bpe_lang_with_turn_tokens_keeps_the_layout_and_adds_units(tmp_path):
    texts = ["HELLO THERE HOW ARE YOU", "FINE THANKS ME TOO", "HI THERE"] * 20
    plain, turns = tmp_path / "plain", tmp_path / "turns"
    prepare_bpe_lang(texts, plain, vocab_size=30)
    prepare_bpe_lang(texts, turns, vocab_size=30, extra_symbols=TURN_TOKENS)
    tok_plain, tok = Tokenizer(plain), Tokenizer(turns)
    assert tok_plain.id2token[:3] == tok.id2token[:3] == ["<blk>", "<sos/eos>", "<unk>"]
    assert SOT not in tok_plain.token2id
    with pytest.raises(KeyError, match="--extra-symbols"):
        turn_token_ids(tok_plain)
    sot, eot = turn_token_ids(tok)
    assert tok.encode(SOT) [-1:] == [sot] and tok.sp.id_to_piece(eot) == EOT
    ch0, ch1 = channel_targets(TURNS[:2], tok, "conv2")
    assert ch0.tokens[0] == sot and ch0.tokens[-1] == eot and tok.decode(ch0.tokens[1:-1]) == "HELLO THERE"
    assert tok.decode(ch1.tokens[1:-1]) == "HI"


def test_word_lang_without_extras_is_unchanged(tmp_path):
    prepare_word_lang(["B A", "C"], tmp_path)
    assert (tmp_path / "tokens.txt").read_text() == "<blk> 0\nA 1\nB 2\nC 3\n<unk> 4\n"


def test_split_turns_reads_turns_back_from_emissions():
    sot, eot = 1, 2
    tokens = [sot, 5, 6, eot, 7, sot, 8, sot, 9, eot, eot, 10]
    times = [0.1, 0.2, 0.3, 0.5, 0.9, 1.0, 1.1, 1.3, 1.4, 1.6, 1.7, 2.0]
    turns = split_turns(tokens, times, sot, eot, channel=1)
    assert [(t.token_ids, t.sot_s, t.eot_s) for t in turns] == [
        ([5, 6], 0.1, 0.5),     # complete
        ([7], None, None),      # a word outside any turn opens one (missed <sot>), closed by the next <sot>
        ([8], 1.0, None),       # missed <eot>: closed by the next <sot>
        ([9], 1.3, 1.6),        # the extra <eot> at 1.7 ends nothing
        ([10], None, None),     # open at the end of the stream
    ]
    assert all(t.channel == 1 for t in turns)
