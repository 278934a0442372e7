"""Per-cohort WER: hand-computed numbers, bootstrap, cohort maps, CLI end to end."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from serac.fairness.cohort_metrics import (
    apply_cohort_maps,
    cohort_keys_available,
    cohort_wer,
    load_cohort_map,
    load_cut_attributes,
    read_cohort_tsv,
    score_utterances,
    speaker_wer,
    write_cohort_report,
)
from serac.scoring.wer import Result, store_transcripts

REPO = Path(__file__).resolve().parent.parent

# Five speakers, three accents, two genders.  Errors per cut (sclite alignment) in comments.
SPEAKERS = {
    #      gender accent age_band state  lat     lon
    "s1": ("f", "us", "18-30", "CA", 37.77, -122.42),
    "s2": ("m", "us", "31-50", "CA", 34.05, -118.24),
    "s3": ("f", "uk", "18-30", "NY", 40.71, -74.01),
    "s4": ("m", "uk", "51+", "NY", 42.65, -73.75),
    "s5": ("m", "in", "31-50", "TX", 29.76, -95.37),
}
RESULTS: List[Result] = [
    ("c1", "a b c d".split(), "a b x d".split()),  # s1: 1 sub / 4
    ("c2", "one two three four five six".split(), "one two three four five six".split()),  # s1: 0 / 6
    ("c3", "the cat sat on mat".split(), "cat sat on the mat".split()),  # s2: 1 del + 1 ins / 5
    ("c4", "p q r s t".split(), "p q r s t".split()),  # s3: 0 / 5
    ("c5", "p q r s t".split(), "p q r s u".split()),  # s3: 1 sub / 5
    ("c6", "a b c d e f g h i j".split(), "a x c y e f g h".split()),  # s4: 2 sub + 2 del / 10
    ("c7", "k l m n o p q r".split(), "k l m n".split()),  # s5: 4 del / 8
    ("c8", "yes no".split(), "yes".split()),  # s5: 1 del / 2
]
CUT_SPEAKER = {"c1": "s1", "c2": "s1", "c3": "s2", "c4": "s3", "c5": "s3", "c6": "s4", "c7": "s5", "c8": "s5"}


def fixture_attrs() -> Dict[str, Dict[str, Any]]:
    attrs = {}
    for cut_id, speaker in CUT_SPEAKER.items():
        gender, accent, age_band, state, lat, lon = SPEAKERS[speaker]
        attrs[cut_id] = {"speaker": speaker, "gender": gender, "accent": accent, "age_band": age_band,
                         "state": state, "lat": lat, "lon": lon}
    return attrs


def write_fixture_cuts(path: Path) -> None:
    """A tiny lhotse cuts manifest (dummy recordings, no audio) carrying the attributes."""
    from lhotse import AudioSource, CutSet, MonoCut, Recording, SupervisionSegment

    cuts = []
    refs = {cut_id: ref for cut_id, ref, _ in RESULTS}
    for cut_id, speaker in CUT_SPEAKER.items():
        gender, accent, age_band, state, lat, lon = SPEAKERS[speaker]
        recording = Recording(id=f"rec-{cut_id}", sources=[AudioSource(type="file", channels=[0],
                                                                        source=f"/nonexistent/{cut_id}.wav")],
                              sampling_rate=16000, num_samples=16000, duration=1.0)
        supervision = SupervisionSegment(
            id=cut_id, recording_id=recording.id, start=0.0, duration=1.0, text=" ".join(refs[cut_id]),
            language="English", speaker=speaker, gender=gender,
            custom={"accent": accent, "age_band": age_band, "state": state, "lat": lat, "lon": lon},
        )
        cuts.append(MonoCut(id=cut_id, start=0.0, duration=1.0, channel=0, supervisions=[supervision],
                            recording=recording))
    CutSet.from_cuts(cuts).to_file(path)


# ---------------------------------------------------------------------------------------------
# hand-computed numbers
# ---------------------------------------------------------------------------------------------


def test_per_utterance_errors_are_as_commented() -> None:
    scored = score_utterances(RESULTS)
    assert {c: (u.ins, u.dels, u.subs, u.num_words) for c, u in scored.items()} == {
        "c1": (0, 0, 1, 4), "c2": (0, 0, 0, 6), "c3": (1, 1, 0, 5), "c4": (0, 0, 0, 5),
        "c5": (0, 0, 1, 5), "c6": (0, 2, 2, 10), "c7": (0, 4, 0, 8), "c8": (0, 1, 0, 2),
    }


def test_accent_cohorts_hand_computed() -> None:
    report = cohort_wer(RESULTS, fixture_attrs(), "accent", n_bootstrap=200, seed=0)
    # us: s1 1/10 + s2 2/5 -> 3/15; uk: s3 1/10 + s4 4/10 -> 5/20; in: s5 5/10
    assert [c.cohort for c in report.cohorts] == ["us", "uk", "in"]  # by WER ascending
    us, uk, india = (report.cohort(n) for n in ("us", "uk", "in"))
    assert (us.num_speakers, us.num_utts, us.num_words, us.errors, us.ins, us.dels, us.subs) == (2, 3, 15, 3, 1, 1, 1)
    assert (uk.num_speakers, uk.num_utts, uk.num_words, uk.errors, uk.ins, uk.dels, uk.subs) == (2, 3, 20, 5, 0, 2, 3)
    assert (india.num_speakers, india.num_utts, india.num_words, india.errors) == (1, 2, 10, 5)
    assert us.wer == pytest.approx(20.0) and uk.wer == pytest.approx(25.0) and india.wer == pytest.approx(50.0)

    assert report.overall_wer == pytest.approx(100 * 13 / 45)
    assert (report.overall_words, report.overall_errors, report.num_utts, report.num_speakers) == (45, 13, 8, 5)
    assert report.mean_wer == pytest.approx(95 / 3)
    assert report.min_wer == pytest.approx(20.0) and report.max_wer == pytest.approx(50.0)
    assert report.var_wer == pytest.approx(4650 / 27)  # population variance of 20, 25, 50
    assert report.std_wer == pytest.approx((4650 / 27) ** 0.5)
    assert (report.top_cohort, report.bottom_cohort) == ("us", "in")
    assert report.relative_gap == pytest.approx(150.0)  # (50 - 20) / 20
    assert report.bottom_speaker_share == pytest.approx(20.0)  # 1 of 5 speakers
    assert report.bottom_utt_share == pytest.approx(25.0)  # 2 of 8 utterances


def test_gender_cohorts_hand_computed() -> None:
    report = cohort_wer(RESULTS, fixture_attrs(), "gender", n_bootstrap=0)
    f, m = report.cohort("f"), report.cohort("m")
    assert f.wer == pytest.approx(10.0) and m.wer == pytest.approx(44.0)  # 2/20 and 11/25
    assert f.ci_low is None and f.ci_high is None  # no bootstrap requested
    assert report.relative_gap == pytest.approx(340.0)
    assert report.bottom_speaker_share == pytest.approx(60.0)
    assert report.bottom_utt_share == pytest.approx(50.0)
    assert report.var_wer == pytest.approx(289.0)  # ((44 - 10) / 2) ** 2


def test_bootstrap_interval_two_speaker_cohort() -> None:
    report = cohort_wer(RESULTS, fixture_attrs(), "accent", n_bootstrap=1000, seed=3)
    # resampling {s1: 1/10, s2: 2/5} gives 10% (s1 s1), 20% (mixed) or 40% (s2 s2)
    us = report.cohort("us")
    assert us.ci_low == pytest.approx(10.0) and us.ci_high == pytest.approx(40.0)
    india = report.cohort("in")  # a single speaker: no spread at all
    assert india.ci_low == pytest.approx(50.0) and india.ci_high == pytest.approx(50.0)
    for c in report.cohorts:
        assert c.ci_low <= c.wer <= c.ci_high


def _many_speaker_results(num_speakers: int = 40):
    results, attrs = [], {}
    for s in range(num_speakers):
        for u in range(3):
            cut_id = f"spk{s:02d}-u{u}"
            ref = [f"w{i}" for i in range(5 + (s + u) % 4)]
            hyp = list(ref)
            for i in range((s * 7 + u * 3) % 4):  # 0..3 substitutions, varying by speaker
                hyp[i] = "zz"
            results.append((cut_id, ref, hyp))
            attrs[cut_id] = {"speaker": f"spk{s:02d}", "group": "a" if s % 2 else "b"}
    return results, attrs


def test_bootstrap_reproducible_with_seed() -> None:
    results, attrs = _many_speaker_results()
    scored = score_utterances(results)
    first = cohort_wer(scored, attrs, "group", n_bootstrap=300, seed=11)
    again = cohort_wer(scored, attrs, "group", n_bootstrap=300, seed=11)
    other = cohort_wer(scored, attrs, "group", n_bootstrap=300, seed=12)
    assert [(c.ci_low, c.ci_high) for c in first.cohorts] == [(c.ci_low, c.ci_high) for c in again.cohorts]
    assert [(c.ci_low, c.ci_high) for c in first.cohorts] != [(c.ci_low, c.ci_high) for c in other.cohorts]
    for c in first.cohorts:
        assert c.ci_low < c.wer < c.ci_high
    # a cohort's interval does not depend on which other cohorts are scored alongside it
    only_a = {k: v for k, v in attrs.items() if v["group"] == "a"}
    alone = cohort_wer({k: v for k, v in scored.items() if k in only_a}, only_a, "group", n_bootstrap=300, seed=11)
    assert (alone.cohort("a").ci_low, alone.cohort("a").ci_high) == (first.cohort("a").ci_low,
                                                                      first.cohort("a").ci_high)


# ---------------------------------------------------------------------------------------------
# errors and warnings
# ---------------------------------------------------------------------------------------------


def test_missing_attribute_names_cut_and_key() -> None:
    attrs = fixture_attrs()
    del attrs["c6"]["accent"]
    with pytest.raises(ValueError, match=r"cut 'c6' has no attribute 'accent'"):
        cohort_wer(RESULTS, attrs, "accent", n_bootstrap=0)


def test_decoded_cut_missing_from_manifest() -> None:
    attrs = fixture_attrs()
    del attrs["c7"]
    with pytest.raises(ValueError, match=r"'c7'"):
        cohort_wer(RESULTS, attrs, "accent", n_bootstrap=0)


def test_cohort_without_reference_words_is_excluded_with_warning(caplog) -> None:
    attrs = fixture_attrs()
    attrs["c9"] = dict(attrs["c1"], accent="silent")
    results = RESULTS + [("c9", [], ["uh"])]
    with caplog.at_level(logging.WARNING):
        report = cohort_wer(results, attrs, "accent", n_bootstrap=0)
    assert report.excluded_cohorts == ["silent"]
    assert [c.cohort for c in report.cohorts] == ["us", "uk", "in"]
    assert "no reference words" in caplog.text
    assert report.overall_errors == 14  # the insertion still counts in the overall WER


def test_many_distinct_values_warns(caplog) -> None:
    results = [(f"u{i}", ["a", "b"], ["a", "b"]) for i in range(60)]
    attrs = {f"u{i}": {"speaker": f"s{i}", "lat": 30.0 + i / 10} for i in range(60)}
    with caplog.at_level(logging.WARNING):
        cohort_wer(results, attrs, "lat", n_bootstrap=0)
    assert "60 distinct values" in caplog.text
    assert cohort_keys_available(attrs, attrs) == []


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_bootstrap"):
        cohort_wer(RESULTS, fixture_attrs(), "accent", n_bootstrap=-1)
    with pytest.raises(ValueError, match="confidence"):
        cohort_wer(RESULTS, fixture_attrs(), "accent", confidence=95)
    with pytest.raises(ValueError, match="duplicate cut id 'c1'"):
        cohort_wer(RESULTS + [RESULTS[0]], fixture_attrs(), "accent")


# ---------------------------------------------------------------------------------------------
# cohort maps
# ---------------------------------------------------------------------------------------------


def test_cohort_map_adds_and_overrides(tmp_path: Path) -> None:
    auto = tmp_path / "auto.tsv"
    auto.write_text("speaker\tauto_cohort\ns1\tA\ns3\tA\ns2\tB\ns4\tB\ns5\tB\n")
    moved = tmp_path / "accent.tsv"
    moved.write_text("# s5 re-labelled by hand\ncut_id\taccent\nc7\tuk\nc8\tuk\n")
    maps = [load_cohort_map(auto), load_cohort_map(moved)]
    assert (maps[0].by, maps[0].key) == ("speaker", "auto_cohort")
    assert (maps[1].by, maps[1].key) == ("cut_id", "accent")
    attrs = apply_cohort_maps(fixture_attrs(), maps)

    auto_report = cohort_wer(RESULTS, attrs, "auto_cohort", n_bootstrap=0)
    assert auto_report.cohort("A").wer == pytest.approx(10.0)  # same speakers as gender f
    assert auto_report.cohort("B").wer == pytest.approx(44.0)

    accent = cohort_wer(RESULTS, attrs, "accent", n_bootstrap=0)
    assert [c.cohort for c in accent.cohorts] == ["us", "uk"]
    assert accent.cohort("uk").wer == pytest.approx(100 * 10 / 30)
    assert accent.cohort("uk").num_speakers == 3
    assert fixture_attrs()["c7"]["accent"] == "in"  # the input is not modified


def test_cohort_map_partial_coverage_error(tmp_path: Path) -> None:
    path = tmp_path / "partial.tsv"
    path.write_text("speaker\tauto_cohort\ns1\tA\n")
    attrs = apply_cohort_maps(fixture_attrs(), [load_cohort_map(path)])
    with pytest.raises(ValueError, match="cut 'c3' has no attribute 'auto_cohort'"):
        cohort_wer(RESULTS, attrs, "auto_cohort", n_bootstrap=0)


@pytest.mark.parametrize(
    "text, message",
    [
        ("spk\tauto\ns1\tA\n", "header"),
        ("speaker\tauto\ns1\tA\tB\n", "bad.tsv:2"),
        ("speaker\tauto\ns1\tA\ns1\tB\n", "appears twice"),
        ("speaker\tauto\n", "no rows"),
    ],
)
def test_cohort_map_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_cohort_map(path)


# ---------------------------------------------------------------------------------------------
# lhotse manifests, writers, CLI
# ---------------------------------------------------------------------------------------------


def test_load_cut_attributes_from_lhotse_manifest(tmp_path: Path) -> None:
    cuts = tmp_path / "cuts.jsonl.gz"
    write_fixture_cuts(cuts)
    attrs = load_cut_attributes(cuts)
    expected = fixture_attrs()
    for values in expected.values():
        values["language"] = "English"
    assert attrs == expected
    assert cohort_keys_available(attrs, attrs) == ["accent", "age_band", "gender", "state"]


def test_writers(tmp_path: Path) -> None:
    report = cohort_wer(RESULTS, fixture_attrs(), "accent", n_bootstrap=100, seed=0)
    paths = write_cohort_report(report, tmp_path)
    rows = read_cohort_tsv(paths["tsv"])
    assert list(rows[0].keys()) == ["cohort", "num_speakers", "num_utts", "num_words", "wer", "ins", "del",
                                    "sub", "ci_low", "ci_high", "too_small"]
    assert [(r["cohort"], r["wer"], r["num_words"]) for r in rows] == [("us", "20.00", "15"), ("uk", "25.00", "20"),
                                                                       ("in", "50.00", "10")]
    summary = json.loads(paths["json"].read_text())
    assert summary["summary"]["relative_gap"] == pytest.approx(150.0)
    assert summary["summary"]["variance_ddof"] == 0
    assert summary["bootstrap"]["resampling_unit"] == "speaker"
    assert [c["cohort"] for c in summary["cohorts"]] == ["us", "uk", "in"]
    markdown = paths["md"].read_text()
    assert "| us | 2 | 3 | 15 | 20.00 |" in markdown
    assert "bottom `in` vs top `us`: 150.0%" in markdown


def test_cohorts_with_few_speakers_are_too_small_to_judge(tmp_path: Path, caplog) -> None:
    """A one-speaker cohort's speaker bootstrap is a zero-width interval that looks precise: the tables say the
    cohort is too small to judge instead (below --min-speakers, default 3), and the summary lists it."""
    with caplog.at_level(logging.WARNING):
        report = cohort_wer(RESULTS, fixture_attrs(), "accent", n_bootstrap=100, seed=0, min_speakers=2)
    assert "too small to judge: in (1)" in caplog.text
    assert [(c.cohort, c.too_small) for c in report.cohorts] == [("us", False), ("uk", False), ("in", True)]
    assert report.cohort("in").ci_low == report.cohort("in").ci_high  # what made it look precise
    paths = write_cohort_report(report, tmp_path)
    assert {r["cohort"]: r["too_small"] for r in read_cohort_tsv(paths["tsv"])} == {"us": "0", "uk": "0", "in": "1"}
    summary = json.loads(paths["json"].read_text())["summary"]
    assert summary["too_small_cohorts"] == ["in"] and summary["min_speakers"] == 2
    markdown = paths["md"].read_text()
    assert "| in | 1 | 2 | 10 | 50.00 | too small to judge (1 speaker) |" in markdown
    assert "[50.00, 50.00]" not in markdown
    assert "bottom `in` vs top `us`: 150.0% (`in` too small to judge)" in markdown
    assert "too small to judge (fewer than 2 speakers): in" in markdown
    # the default (3) marks every accent here; 1 marks none
    assert all(c.too_small for c in cohort_wer(RESULTS, fixture_attrs(), "accent", n_bootstrap=0).cohorts)
    assert not any(c.too_small for c in cohort_wer(RESULTS, fixture_attrs(), "accent", n_bootstrap=0,
                                                   min_speakers=1).cohorts)
    with pytest.raises(ValueError, match="min_speakers"):
        cohort_wer(RESULTS, fixture_attrs(), "accent", min_speakers=0)


def test_all_cohorts_tie_is_no_gap(tmp_path: Path) -> None:
    """Equal WERs are not reported as 'bottom X vs top X: gap 0.0%' with one cohort as both best and worst."""
    tie = [(cut_id, ["a", "b"], ["a", "x"]) for cut_id in CUT_SPEAKER]  # 50% WER for every cut
    report = cohort_wer(tie, fixture_attrs(), "gender", n_bootstrap=0, min_speakers=1)
    assert report.all_tie and report.top_cohort != report.bottom_cohort
    markdown = write_cohort_report(report, tmp_path)["md"].read_text()
    assert "no gap: all 2 cohorts tie at 50.00% WER" in markdown and "relative gap" not in markdown
    one = cohort_wer(tie, {c: {**a, "corpus": "x"} for c, a in fixture_attrs().items()}, "corpus", n_bootstrap=0)
    assert "one cohort (`x`): no gap to report" in write_cohort_report(one, tmp_path)["md"].read_text()


def test_speaker_wer_points() -> None:
    points = speaker_wer(RESULTS, fixture_attrs(), region_key="state")
    assert [(p.speaker, p.num_words, p.errors) for p in points] == [
        ("s1", 10, 1), ("s2", 5, 2), ("s3", 10, 1), ("s4", 10, 4), ("s5", 10, 5)]
    assert points[1].wer == pytest.approx(40.0)
    assert (points[4].lat, points[4].lon, points[4].region) == (29.76, -95.37, "TX")


def _check_cli_outputs(out_dir: Path, keys: List[str]) -> None:
    for key in keys:
        for name in (f"cohort-wer-{key}.tsv", f"cohort-summary-{key}.json", f"cohort-wer-{key}.md",
                     f"cohort-wer-{key}.png"):
            assert (out_dir / name).is_file() and (out_dir / name).stat().st_size > 0, name
    for name in ("speaker-wer.tsv", "speaker-wer-map.png"):
        assert (out_dir / name).stat().st_size > 0, name
    assert (out_dir / f"cohort-wer-{keys[0]}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out_dir.glob(".tmp*"))


def test_cli_end_to_end(tmp_path: Path) -> None:
    cuts = tmp_path / "cuts.jsonl.gz"
    write_fixture_cuts(cuts)
    recogs = tmp_path / "recogs-test-greedy_search.txt"
    store_transcripts(recogs, RESULTS)
    cohort_map = tmp_path / "auto.tsv"
    cohort_map.write_text("speaker\tauto_cohort\ns1\tA\ns3\tA\ns2\tB\ns4\tB\ns5\tB\n")
    out_dir = tmp_path / "cohorts"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "serac.bin.score_cohorts", "--recogs", str(recogs), "--cuts", str(cuts),
         "--keys", "accent,gender,age_band,state,auto_cohort", "--cohort-map", str(cohort_map),
         "--out-dir", str(out_dir), "--n-bootstrap", "100", "--seed", "0"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "accent" in proc.stdout and "150.0" in proc.stdout  # the summary table
    _check_cli_outputs(out_dir, ["accent", "gender", "age_band", "state", "auto_cohort"])
    assert json.loads((out_dir / "cohort-summary-auto_cohort.json").read_text())["summary"]["bottom_cohort"] == "B"

    # a key no cut has: a one-line error naming the cut and the key, exit status 1
    from entry_points import run_entry_point

    assert run_entry_point("score_cohorts", ["--recogs", str(recogs), "--cuts", str(cuts), "--keys", "dialect",
                                             "--out-dir", str(tmp_path / "bad"), "--no-plots"]) == 1


def test_cli_default_keys(tmp_path: Path) -> None:
    from entry_points import run_entry_point

    cuts = tmp_path / "cuts.jsonl.gz"
    write_fixture_cuts(cuts)
    recogs = tmp_path / "recogs.txt"
    store_transcripts(recogs, RESULTS)
    assert run_entry_point("score_cohorts", ["--recogs", str(recogs), "--cuts", str(cuts), "--out-dir",
                                             str(tmp_path / "out"), "--n-bootstrap", "50"]) == 0
    _check_cli_outputs(tmp_path / "out", ["accent", "age_band", "gender", "state"])


@pytest.mark.skipif(not (REPO / "utils" / "parse_options.sh").is_file(), reason="utils/parse_options.sh not there yet")
def test_shell_step(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "path.sh").write_text(
        f"export PYTHONPATH={REPO}${{PYTHONPATH:+:$PYTHONPATH}}\nexport PATH={Path(sys.executable).parent}:$PATH\n"
    )
    (recipe / "utils").symlink_to(REPO / "utils")
    (recipe / "steps").symlink_to(REPO / "steps")
    write_fixture_cuts(recipe / "cuts.jsonl.gz")
    store_transcripts(recipe / "recogs.txt", RESULTS)
    proc = subprocess.run(
        ["bash", "steps/score_cohorts.sh", "--keys", "accent,gender", "--n-bootstrap", "50",
         "recogs.txt", "cuts.jsonl.gz", "out"],
        cwd=recipe, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (recipe / "out" / "cohort-wer-accent.tsv").is_file()
    assert (recipe / "out" / "log" / "score_cohorts.log").is_file()
    usage = subprocess.run(["bash", "steps/score_cohorts.sh", "only-one-arg"], cwd=recipe, capture_output=True,
                           text=True, timeout=60)
    assert usage.returncode != 0 and "Usage" in usage.stderr
