"""Multi-talker metrics (serac/multitalker/metrics.py) on fixtures with known answers, and against meeteval."""
from __future__ import annotations

import numpy as np
import pytest

from serac.fairness.cohort_metrics import bootstrap_wer_interval
from serac.multitalker.metrics import (EmittedTurn, HypSegment, channel_hypotheses, match_turns, multitalker_wer,
                                       paired_speaker_bootstrap_difference, speaker_bootstrap_interval,
                                       speaker_errors, turn_counting_accuracy, turn_latency)
from serac.multitalker.simulate import Turn

pytest.importorskip("meeteval")

# c1: speaker A's second turn came out on channel 1 with B's turn: ORC-WER forgives it, cpWER does not
REFS = {"c1": [Turn("1", "A", "a b", 0.0, 1.0), Turn("2", "B", "e f", 0.5, 2.0), Turn("3", "A", "c d", 2.5, 3.0)],
        "c2": [Turn("4", "C", "x y", 0.0, 1.0)]}
HYPS = {"c1": [HypSegment("0", "a b", 0.0, 1.0), HypSegment("1", "e f", 0.5, 2.0),
               HypSegment("1", "c d", 2.5, 3.0)],
        "c2": []}  # nothing emitted: two deletions


def test_cpwer_and_orcwer_known_answers():
    cp = multitalker_wer(REFS, HYPS, "cpwer")
    assert cp.per_conversation == {"c1": (4, 6), "c2": (2, 2)}   # A: 2 deletions, B: 2 insertions
    assert (cp.errors, cp.length, cp.insertions, cp.deletions) == (6, 8, 2, 4)
    assert cp.wer == pytest.approx(75.0)
    orc = multitalker_wer(REFS, HYPS, "orcwer")
    assert orc.per_conversation == {"c1": (0, 6), "c2": (2, 2)}
    assert orc.wer == pytest.approx(25.0)
    with pytest.raises(ValueError, match="metric must be"):
        multitalker_wer(REFS, HYPS, "wer")
    with pytest.raises(ValueError, match=r"conversations without a hypothesis: \['c2'\]"):
        multitalker_wer(REFS, {"c1": HYPS["c1"]})


def _random_conversations(seed: int, n: int):
    rng = np.random.default_rng(seed)
    vocab = list("abcdefgh")
    refs, hyps = {}, {}
    for c in range(n):
        turns, t = [], 0.0
        for k in range(int(rng.integers(1, 6))):
            words = " ".join(rng.choice(vocab, size=int(rng.integers(1, 5))))
            turns.append(Turn(f"c{c}-{k}", f"S{int(rng.integers(3))}", words, t, t + 1.0))
            t += float(rng.uniform(0.3, 1.5))
        segs = []
        for turn in turns:
            words = [w if rng.random() > 0.2 else str(rng.choice(vocab)) for w in turn.text.split()]
            if rng.random() < 0.2:
                words = words[1:]
            if rng.random() < 0.2:
                words.append(str(rng.choice(vocab)))
            segs.append(HypSegment(str(int(rng.integers(2))), " ".join(words), turn.start, turn.end))
        refs[f"conv{c}"], hyps[f"conv{c}"] = turns, segs
    return refs, hyps


def test_our_wrapper_equals_meeteval_per_conversation():
    """Independently of our SegLST route: meeteval's plain-string cpWER / ORC-WER on the same conversations."""
    from meeteval.wer.wer.cp import cp_word_error_rate
    from meeteval.wer.wer.orc import orc_word_error_rate

    refs, hyps = _random_conversations(7, 25)
    cp = multitalker_wer(refs, hyps, "cpwer")
    orc = multitalker_wer(refs, hyps, "orcwer")
    for cid in refs:
        turns = sorted(refs[cid], key=lambda t: t.start)
        by_spk = {}
        for t in turns:
            by_spk.setdefault(t.speaker, []).append(t.text)
        by_stream = {}
        for h in sorted(hyps[cid], key=lambda h: h.start):
            if h.words:
                by_stream.setdefault(h.stream, []).append(h.words)
        hyp_streams = [" ".join(v) for _, v in sorted(by_stream.items())] or [""]
        expected_cp = cp_word_error_rate([" ".join(v) for _, v in sorted(by_spk.items())], hyp_streams)
        expected_orc = orc_word_error_rate([t.text for t in turns], hyp_streams)
        assert cp.per_conversation[cid] == (expected_cp.errors, expected_cp.length), cid
        assert orc.per_conversation[cid] == (expected_orc.errors, expected_orc.length), cid
    assert cp.errors >= orc.errors > 0   # ORC's free turn placement can only lower the errors


def test_turn_counting_accuracy():
    assert turn_counting_accuracy(REFS, {"c1": 3, "c2": 2}) == pytest.approx(50.0)
    assert turn_counting_accuracy(REFS, {"c1": 3, "c2": 1}) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="no emitted turn count for conversations"):
        turn_counting_accuracy(REFS, {"c1": 3})


def test_latency_median_and_p90_known_answers():
    # ten turns, <sot> 10..100 ms and <eot> 100..1000 ms late, listed in a shuffled order
    refs = {"c": [Turn(f"t{k}", "A", "w", 10.0 * k, 10.0 * k + 2.0) for k in range(10)]}
    hyps = {"c": [EmittedTurn(10.0 * k + 0.01 * (k + 1), 10.0 * k + 2.0 + 0.1 * (k + 1))
                  for k in (3, 1, 4, 0, 9, 2, 6, 5, 8, 7)]}
    lat = turn_latency(refs, hyps)
    s = lat.summary()
    assert (s["matched_turns"], s["ref_turns"]) == (10, 10)
    assert s["start_median_ms"] == pytest.approx(55.0) and s["start_p90_ms"] == pytest.approx(91.0)
    assert s["end_median_ms"] == pytest.approx(550.0) and s["end_p90_ms"] == pytest.approx(910.0)


def test_latency_matching_skips_far_and_missing_boundaries():
    ref = [Turn("a", "A", "w", 0.0, 1.0), Turn("b", "B", "w", 0.8, 2.0), Turn("c", "A", "w", 9.0, 10.0)]
    hyp = [EmittedTurn(0.9, 2.3),      # b: start +100 ms, end +300 ms
           EmittedTurn(None, 0.8),     # a: no <sot>; end -200 ms (emitted early)
           EmittedTurn(20.0, 21.0)]    # nothing within 2 s: unmatched; c stays unmatched
    assert sorted(match_turns(ref, hyp)) == [(0, 1), (1, 0)]
    lat = turn_latency({"c": ref}, {"c": hyp})
    assert lat.num_matched == 2 and lat.num_ref_turns == 3
    assert lat.start_ms == pytest.approx([100.0])
    assert sorted(lat.end_ms) == pytest.approx([-200.0, 300.0])


def test_speaker_bootstrap_reuses_serac_bootstrap_and_pairs_systems():
    refs, hyps = _random_conversations(3, 30)
    cp = multitalker_wer(refs, hyps, "cpwer")
    by_spk = speaker_errors(refs, cp.per_conversation)
    assert sum(e for e, _ in by_spk.values()) == pytest.approx(cp.errors)
    assert sum(n for _, n in by_spk.values()) == cp.length
    low, high = speaker_bootstrap_interval(by_spk, n_bootstrap=500, seed=1)
    errors = np.array([e for e, _ in by_spk.values()])
    words = np.array([n for _, n in by_spk.values()], dtype=float)
    assert (low, high) == bootstrap_wer_interval(errors, words, 500, np.random.default_rng(1))
    assert low <= cp.wer <= high
    assert paired_speaker_bootstrap_difference(by_spk, by_spk, 200) == (0.0, 0.0)
    orc_spk = speaker_errors(refs, multitalker_wer(refs, hyps, "orcwer").per_conversation)
    d_low, d_high = paired_speaker_bootstrap_difference(by_spk, orc_spk, 500, seed=1)
    assert 0.0 <= d_low <= d_high   # cpWER >= ORC-WER for every speaker resample


def test_channel_hypotheses_turn_decoded_channels_into_scoring_inputs(tmp_path):
    from serac.data.tokenizer import Tokenizer, prepare_word_lang
    from serac.multitalker.targets import TURN_TOKENS

    prepare_word_lang(["a b c d e f"], tmp_path, extra_symbols=TURN_TOKENS)
    tok = Tokenizer(tmp_path)
    ids = tok.token2id
    ch0 = ([ids["<sot>"], ids["a"], ids["b"], ids["<eot>"]], [0.1, 0.3, 0.6, 1.1])
    ch1 = ([ids["<sot>"], ids["e"], ids["f"], ids["<eot>"], ids["c"], ids["d"]], [0.6, 0.9, 1.5, 2.2, 2.7, 2.9])
    segments, emitted = channel_hypotheses([ch0, ch1], tok)
    assert segments == [HypSegment("0", "a b", 0.1, 1.1), HypSegment("1", "e f", 0.6, 2.2),
                        HypSegment("1", "c d", 2.7, 2.9)]   # no <sot>/<eot> emitted: its words' times
    assert emitted == [EmittedTurn(0.1, 1.1), EmittedTurn(0.6, 2.2), EmittedTurn(None, None)]
    refs = {"c1": REFS["c1"]}
    assert multitalker_wer(refs, {"c1": segments}, "orcwer").errors == 0
    assert turn_counting_accuracy(refs, {"c1": len(emitted)}) == 100.0
    lat = turn_latency(refs, {"c1": emitted})
    assert lat.num_matched == 2 and lat.end_ms == pytest.approx([100.0, 200.0])
