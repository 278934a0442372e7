"""serac/scoring/power.py and serac.bin.decidable_size: the paired speaker-bootstrap interval of a relative WER
difference shrinks as 1/sqrt(speakers), the size search lands where the interval reaches the target, and
mismatched decodes are refused by name."""
from __future__ import annotations

import numpy as np
import pytest

from serac.scoring.power import (half_width, interval_side, paired_speaker_errors, relative_difference_interval,
                                 speakers_for_half_width)


def synthetic_pair(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    b = rng.poisson(8.0, n).astype(float) + 1
    a = np.maximum(0, b * 1.1 + rng.normal(0, 2.0, n))  # about +10% relative, speaker-correlated
    return a, b


def test_interval_contains_the_difference_and_shrinks_with_speakers():
    a, b = synthetic_pair()
    point = 100 * (a.sum() / b.sum() - 1)
    lo, hi = relative_difference_interval(a, b, len(a), n_bootstrap=2000)
    assert lo < point < hi
    w1 = half_width((lo, hi))
    w4 = half_width(relative_difference_interval(a, b, 4 * len(a), n_bootstrap=2000))
    assert w4 == pytest.approx(w1 / 2, rel=0.2)  # 1/sqrt(n)
    # identical systems: exactly no difference on every resample
    assert relative_difference_interval(b, b, 30) == (0.0, 0.0)


def test_size_search_reaches_the_target_and_agrees_with_the_sqrt_law():
    a, b = synthetic_pair()
    need = speakers_for_half_width(a, b, target=2.0, n_bootstrap=1000)
    n = int(need["speakers"])
    assert need["half_width"] <= 2.0
    assert half_width(relative_difference_interval(a, b, int(n * 0.8), n_bootstrap=1000)) > 2.0
    assert need["guess"] == pytest.approx(n, rel=0.3)
    with pytest.raises(ValueError, match="no errors"):
        relative_difference_interval(a, np.zeros_like(b), 10)


def test_paired_speaker_errors_checks_the_decodes():
    spk = {"u1": "s1", "u2": "s1", "u3": "s2"}
    a = [("u1", ["a", "b"], ["a"]), ("u2", ["c"], ["c"]), ("u3", ["d", "e"], ["x", "y"])]
    b = [("u1", ["a", "b"], ["a", "b"]), ("u2", ["c"], ["z"]), ("u3", ["d", "e"], ["d", "e"])]
    ea, eb, words, names = paired_speaker_errors(a, b, spk)
    assert names == ["s1", "s2"] and ea.tolist() == [1, 2] and eb.tolist() == [1, 0] and words.tolist() == [3, 2]
    with pytest.raises(ValueError, match="u3"):
        paired_speaker_errors(a, b[:2], spk)
    with pytest.raises(ValueError, match="cut u2: the two decodes have different references"):
        paired_speaker_errors(a, [b[0], ("u2", ["q"], ["q"]), b[2]], spk)


def test_cli_prints_the_table(tmp_path):
    import subprocess
    import sys

    from lhotse import CutSet, MonoCut, SupervisionSegment

    from serac.scoring.wer import store_transcripts

    cuts, ra, rb = [], [], []
    rng = np.random.default_rng(1)
    for s in range(8):
        for u in range(3):
            cid = f"s{s}-u{u}"
            cuts.append(MonoCut(cid, 0, 1.0, 0, supervisions=[SupervisionSegment(cid, cid, 0, 1.0, speaker=f"s{s}")]))
            ref = ["w"] * 6
            ra.append((cid, ref, ["w"] * int(rng.integers(3, 6))))
            rb.append((cid, ref, ["w"] * int(rng.integers(2, 6))))
    CutSet.from_cuts(cuts).to_file(tmp_path / "cuts.jsonl.gz")
    store_transcripts(tmp_path / "a.txt", ra)
    store_transcripts(tmp_path / "b.txt", rb)
    out = subprocess.run([sys.executable, "-m", "serac.bin.decidable_size", "--a", str(tmp_path / "a.txt"), "--b",
                          str(tmp_path / "b.txt"), "--cuts", str(tmp_path / "cuts.jsonl.gz"), "--target", "20",
                          "--n-bootstrap", "200", "--json", str(tmp_path / "p.json")],
                         check=True, capture_output=True, text=True).stdout
    assert "8 speakers, 3.0 utterances each" in out and "| 16 | 48 |" in out and "needs about" in out
    assert (tmp_path / "p.json").is_file()


def test_interval_side_reads_the_bound_strictly_and_refuses_nothing():
    assert interval_side((-3.0, -0.1)) == "below" and interval_side((0.1, 2.0)) == "above"
    assert interval_side((-1.0, 1.0)) == "contains"
    assert interval_side((-1.0, 0.0)) == "contains" and interval_side((0.0, 1.0)) == "contains"  # an end on the bound
    assert interval_side((4.0, 4.9), 5.0) == "below" and interval_side((5.5, 9.0), 5.0) == "above"
    assert interval_side((-1.0, 0.0), upper_inclusive=True) == "below"  # "<= bound" claims
    assert interval_side(None) is None and interval_side([]) is None
    assert interval_side((float("nan"), 1.0)) is None
