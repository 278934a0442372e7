"""serac.multitalker.sessions: long sessions cut into windows of whole turns (speech regions, window bounds in the
silences, long overlap chains kept whole, three-talker windows left out and named), and the scorer's rows by a
custom field of the cuts (score_multitalker --group-by, as egs/libricss/sts scores per recording condition)."""
from __future__ import annotations

import pytest
from lhotse import MonoCut, Recording, SupervisionSegment
from lhotse.audio import AudioSource

from serac.multitalker.sessions import session_windows, speech_regions, window_bounds


def session_cut(turns, duration=60.0):
    """A MonoCut over a (never read) recording with one supervision per (start, end, speaker)."""
    rec = Recording(id="sess", sources=[AudioSource(type="file", channels=[0], source="/nonexistent.wav")],
                    sampling_rate=16000, num_samples=int(duration * 16000), duration=duration)
    sups = [SupervisionSegment(id=f"sess-{i}", recording_id="sess", start=s, duration=e - s, speaker=spk,
                               text="YES NO") for i, (s, e, spk) in enumerate(turns)]
    return MonoCut(id="sess", start=0.0, duration=duration, channel=0, recording=rec, supervisions=sups)


def test_speech_regions_merge_overlapping_and_touching_turns():
    assert speech_regions([(5, 7), (0, 2), (1, 3), (3, 4), (10, 11)]) == [(0, 4), (5, 7), (10, 11)]


def test_window_bounds_group_regions_and_cut_in_the_silences():
    regions = [(1.0, 5.0), (6.0, 9.0), (20.0, 24.0), (30.0, 70.0)]
    bounds = window_bounds(regions, duration=80.0, max_window_s=10.0, margin_s=0.5)
    # regions 1 and 2 span 8 s <= 10 s: one window; then 20-24; then the 40 s region alone (kept whole)
    assert [(round(a, 3), round(b, 3), n) for a, b, n in bounds] == [(0.5, 9.5, 2), (19.5, 24.5, 1), (29.5, 70.5, 1)]
    # a silence shorter than two margins is split halfway: the windows never share audio
    tight = window_bounds([(1.0, 5.0), (5.4, 20.0)], duration=21.0, max_window_s=10.0, margin_s=0.5)
    assert tight[0][1] == pytest.approx(5.2) and tight[1][0] == pytest.approx(5.2)
    with pytest.raises(ValueError, match="max_window_s"):
        window_bounds(regions, 80.0, 0.0, 0.5)


def test_session_windows_keep_whole_turns_and_leave_out_three_talkers():
    turns = [(1.0, 4.0, "a"), (3.0, 6.0, "b"), (8.0, 10.0, "a"),          # window 0: two regions, 2 talkers at most
             (30.0, 36.0, "a"), (31.0, 35.0, "b"), (32.0, 34.0, "c")]     # window 1: three at once
    got = session_windows(session_cut(turns), max_window_s=15.0, margin_s=0.5)
    assert [w.id for w in got.windows] == ["sess-000"]
    w = got.windows[0]
    assert w.start == pytest.approx(0.5) and w.duration == pytest.approx(10.0)
    assert [(round(s.start, 3), round(s.end, 3)) for s in w.supervisions] == [(0.5, 3.5), (2.5, 5.5), (7.5, 9.5)]
    assert got.dropped == ["sess-001: 3 talkers at once (the model has 2 channels)"]
    long = session_windows(session_cut([(1.0, 20.0, "a"), (19.0, 40.0, "b")]), max_window_s=15.0)
    assert len(long.windows) == 1 and long.long_windows == 1 and len(long.windows[0].supervisions) == 2


def test_score_rows_by_a_custom_field(tmp_path):
    pytest.importorskip("meeteval")
    from lhotse import load_manifest

    from sts_utils import TinyConversations

    from serac.data.tokenizer import Tokenizer
    from serac.multitalker.decode import ChannelHyp, ConversationHyp
    from serac.multitalker.scoring import ScoreOptions, score_decode, table_rows

    convs = TinyConversations(tmp_path, num_train=1, num_valid=3)
    cuts = list(load_manifest(convs.valid_cuts))
    hyps = {c.id: ConversationHyp(c.id, [ChannelHyp(), ChannelHyp()]) for c in cuts}
    tok = Tokenizer(convs.lang)
    with pytest.raises(ValueError, match=f"cut {cuts[0].id} has no custom field 'condition'"):
        score_decode(cuts, hyps, tok, ScoreOptions(n_bootstrap=20, group_by="condition"))
    labelled = [c.with_custom("condition", cond) for c, cond in zip(cuts, ("OV10", "0S", "OV10"))]
    result = score_decode(labelled, hyps, tok, ScoreOptions(n_bootstrap=20, group_by="condition"))
    assert {k: v["conversations"] for k, v in result["bins"].items()} == {"0S": 1, "OV10": 2}
    assert [r[0] for r in table_rows(result)] == ["all", "condition 0S", "condition OV10"]
