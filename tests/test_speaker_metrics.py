"""Speaker-verification metrics and trial lists: EER/minDCF equal a brute-force threshold sweep, trial lists are
balanced by gender and accent, bad input names the item."""
from __future__ import annotations

import numpy as np
import pytest

from serac.speaker.metrics import (compute_eer, compute_min_dcf, eer_gap, eer_std, score_trials, sv_report)
from serac.speaker.trials import (make_trials, read_trials, select_balanced_speakers, trial_counts, write_trials)


def brute_force(scores, labels, p_target=0.05, c_miss=1.0, c_fa=1.0):
    """Independent reference: loop over every candidate threshold (accept when score >= t)."""
    s, y = list(map(float, scores)), list(map(bool, labels))
    n_t, n_n = sum(y), len(y) - sum(y)
    best_eer, best_dcf = 2.0, float("inf")
    for t in sorted(set(s)) + [float("inf")]:
        miss = sum(1 for v, tg in zip(s, y) if tg and v < t) / n_t
        fa = sum(1 for v, tg in zip(s, y) if not tg and v >= t) / n_n
        best_eer = min(best_eer, max(miss, fa))
        best_dcf = min(best_dcf, c_miss * miss * p_target + c_fa * fa * (1 - p_target))
    return best_eer, best_dcf / min(c_miss * p_target, c_fa * (1 - p_target))


@pytest.mark.parametrize("seed", range(8))
def test_eer_min_dcf_equal_brute_force_sweep(seed):
    rng = np.random.default_rng(seed)
    n_t, n_n = int(rng.integers(3, 40)), int(rng.integers(3, 80))
    scores = np.concatenate([rng.normal(1.0, 1.0, n_t), rng.normal(0.0, 1.0, n_n)])
    if seed % 2:  # ties between and within classes
        scores = np.round(scores, 1)
    labels = np.array([True] * n_t + [False] * n_n)
    perm = rng.permutation(len(scores))
    scores, labels = scores[perm], labels[perm]
    for p_target, c_miss in ((0.05, 1.0), (0.01, 1.0), (0.01, 10.0)):
        ref_eer, ref_dcf = brute_force(scores, labels, p_target, c_miss)
        assert compute_eer(scores, labels)[0] == pytest.approx(ref_eer, abs=1e-12)
        assert compute_min_dcf(scores, labels, p_target=p_target, c_miss=c_miss)[0] == pytest.approx(ref_dcf,
                                                                                                     abs=1e-12)


def test_eer_fixture_values():
    # separable: 0; fully inverted: 1; a hand-checked middle case
    assert compute_eer([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0])[0] == 0.0
    assert compute_eer([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0])[0] == 1.0
    # targets 0.9 0.6 0.3, non-targets 0.7 0.2 0.1: at 0.3 miss 0 and fa 1/3 (the first threshold reaching it)
    eer, thr = compute_eer([0.9, 0.6, 0.3, 0.7, 0.2, 0.1], [1, 1, 1, 0, 0, 0])
    assert eer == pytest.approx(1 / 3) and thr == 0.3
    # minDCF of the trivial reject-all system is 1.0 (normalised)
    assert compute_min_dcf([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0])[0] == pytest.approx(1.0)


def test_empty_or_one_sided_trials_raise():
    with pytest.raises(ValueError, match="empty trial list"):
        compute_eer([], [])
    with pytest.raises(ValueError, match="no non-target"):
        compute_eer([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="gender=female: no target"):
        sv_report([0.1, 0.2, 0.3], [1, 0, 0], {"gender": ["male", "female", "male"]})


def test_report_gap_and_std():
    scores = [0.9, 0.1, 0.8, 0.2, 0.3, 0.7, 0.4, 0.6]
    labels = [1, 0, 1, 0, 1, 0, 1, 0]
    gender = ["f", "f", "f", "f", "m", "m", "m", "m"]
    rep = sv_report(scores, labels, {"gender": gender})
    assert rep["by"]["gender"]["cohorts"]["f"]["eer"] == 0.0
    assert rep["by"]["gender"]["cohorts"]["m"]["eer"] == 1.0
    assert rep["by"]["gender"]["eer_gap"] == 1.0 and rep["by"]["gender"]["eer_std"] == 0.5
    res = {"a": score_trials([1, 0], [1, 0]), "b": score_trials([0, 1], [1, 0])}
    assert eer_gap(res) == 1.0 and eer_std(res) == 0.5


def _population(n_per_cell=(3, 2, 4, 5), utts=4):
    """Speakers over 2 accents x 2 genders with unequal cell sizes."""
    attrs, utterances = {}, {}
    cells = [("us", "female"), ("us", "male"), ("scot", "female"), ("scot", "male")]
    for (accent, gender), n in zip(cells, n_per_cell):
        for i in range(n):
            spk = f"{accent}-{gender}-{i}"
            attrs[spk] = {"accent": accent, "gender": gender, "region": "x"}
            utterances[spk] = [f"{spk}-u{j}" for j in range(utts)]
    return attrs, utterances


def test_trials_balanced_by_gender_and_accent(tmp_path):
    attrs, utterances = _population()
    speakers = select_balanced_speakers(attrs, keys=("accent", "gender"), seed=3)
    assert len(speakers) == 2 * 4  # 4 per accent (us has 5 speakers, 3 f + 2 m), 4 per gender
    trials = make_trials(utterances, attrs, speakers, num_target_per_speaker=5, num_nontarget_per_speaker=7,
                         attribute_keys=("gender", "accent"), seed=1)
    for key in ("gender", "accent"):
        counts = trial_counts(trials, key)
        assert len(counts) == 2 and len(set(counts.values())) == 1, counts  # every cohort: same (target, non)
        assert list(counts.values())[0] == (4 * 5, 4 * 7)
    for t in trials:
        assert t.target == (t.enrol_speaker == t.test_speaker)
        assert t.enrol.startswith(t.enrol_speaker) and t.test.startswith(t.test_speaker)
        assert attrs[t.test_speaker]["gender"] == attrs[t.enrol_speaker]["gender"]  # same-gender impostors
        assert t.attributes["gender"] == attrs[t.enrol_speaker]["gender"]
    assert len({(t.enrol, t.test) for t in trials if t.target}) == 8 * 5  # no repeated target pair
    # one speaker with only 2 utterances (1 pair): all get 1 target trial, unless counts may differ
    short = {**utterances, speakers[0]: utterances[speakers[0]][:2]}
    assert sum(t.target for t in make_trials(short, attrs, speakers, 5, 7, seed=1)) == 8
    assert sum(t.target for t in make_trials(short, attrs, speakers, 5, 7, seed=1,
                                             equal_target_counts=False)) == 7 * 5 + 1
    write_trials(trials, tmp_path / "trials.tsv")
    assert read_trials(tmp_path / "trials.tsv") == trials
    # the same seed gives the same list
    assert make_trials(utterances, attrs, speakers, 5, 7, attribute_keys=("gender", "accent"), seed=1) == trials


def test_balance_compensates_an_empty_cell():
    # us has no man: the men come from scot, and both genders still get 3 speakers each
    attrs, _ = _population(n_per_cell=(3, 0, 1, 4))
    speakers = select_balanced_speakers(attrs, seed=0)
    genders = [attrs[s]["gender"] for s in speakers]
    accents = [attrs[s]["accent"] for s in speakers]
    assert genders.count("female") == genders.count("male") == 3 - 0  # n = 3 per accent, 6 speakers
    assert accents.count("us") == accents.count("scot") == 3


def test_trials_bad_input_names_the_item(tmp_path):
    attrs, utterances = _population()
    utterances["us-male-1"] = ["us-male-1-u0"]
    with pytest.raises(ValueError, match="speaker us-male-1 has 1 utterance"):
        make_trials(utterances, attrs)
    # three accents of one speaker each: 1 per accent makes 3 speakers, which two genders cannot share equally
    attrs = {"a": {"accent": "us", "gender": "f"}, "b": {"accent": "scot", "gender": "m"},
             "c": {"accent": "rp", "gender": "m"}}
    with pytest.raises(ValueError, match=r"cannot select .* per accent with 2 gender values .*rp: m=1; scot: m=1"):
        select_balanced_speakers(attrs)
    (tmp_path / "empty.tsv").write_text("label\tenrol\ttest\tenrol_speaker\ttest_speaker\n")
    with pytest.raises(ValueError, match="empty.tsv: empty trial list"):
        read_trials(tmp_path / "empty.tsv")
    with pytest.raises(ValueError, match="refusing to write an empty trial list"):
        write_trials([], tmp_path / "x.tsv")
