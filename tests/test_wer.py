"""WER scoring: counts against NIST sclite, icefall file formats, hand-computed cases."""
from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from serac.scoring.wer import (
    align,
    error_counts,
    load_transcripts,
    store_transcripts,
    trn_utterance_id,
    wer_stats,
    write_error_stats,
    write_trn,
    write_wer_summary,
)

FIXTURES = Path(__file__).parent / "fixtures"
SCLITE_FIXTURE = FIXTURES / "recogs-sclite-check.txt"

_sctk_install_tried = False


def _sctk() -> str:
    """Path of NIST's sctk; installs the Debian package once when root; skips (fails on CI)."""
    global _sctk_install_tried
    found = shutil.which("sctk")
    if found is None and not _sctk_install_tried and hasattr(os, "geteuid") and os.geteuid() == 0 \
            and shutil.which("apt-get"):
        _sctk_install_tried = True
        subprocess.run(["apt-get", "install", "-y", "sctk"], capture_output=True, timeout=300)
        found = shutil.which("sctk")
    if found is None:
        reason = "NIST sctk (sclite) is not installed: apt-get install sctk"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def _sclite_totals(tmp_path: Path, results) -> Dict[str, float]:
    """Run sclite on ``results`` and return its Sum row: raw counts (rsum) and Err% (sum)."""
    sctk = _sctk()
    ref, hyp = tmp_path / "ref.trn", tmp_path / "hyp.trn"
    write_trn(ref, results, "ref")
    write_trn(hyp, results, "hyp")
    # -s: case-sensitive, as our scoring is
    base = [sctk, "sclite", "-r", str(ref), "trn", "-h", str(hyp), "trn", "-i", "rm", "-s"]
    raw = subprocess.run(base + ["-o", "rsum", "stdout"], capture_output=True, text=True, check=True).stdout
    pct = subprocess.run(base + ["-o", "sum", "stdout"], capture_output=True, text=True, check=True).stdout

    def sum_row(text: str, label: str) -> List[float]:
        for line in text.splitlines():
            cells = [c.strip() for c in line.split("|")]
            if len(cells) > 3 and cells[1].startswith(label):
                return [float(x) for x in (cells[2] + " " + cells[3]).split()]
        raise AssertionError(f"no {label} row in sclite output:\n{text}")

    # columns: #Snt #Wrd Corr Sub Del Ins Err S.Err
    snt, wrd, corr, sub, dele, ins, err, _ = sum_row(raw, "Sum")
    err_pct = sum_row(pct, "Sum/Avg")[6]
    return {"utts": snt, "words": wrd, "corr": corr, "sub": sub, "del": dele, "ins": ins, "errs": err,
            "wer_1dp": err_pct}


def test_counts_match_sclite_on_fixture(tmp_path: Path) -> None:
    results = load_transcripts(SCLITE_FIXTURE)
    ours = wer_stats(results)
    theirs = _sclite_totals(tmp_path, results)
    assert ours["ins"] > 0 and ours["del"] > 0 and ours["sub"] > 0  # the fixture exercises all three
    for name in ("utts", "words", "sub", "del", "ins", "errs"):
        assert ours[name] == theirs[name], name
    assert round(ours["wer"], 1) == theirs["wer_1dp"]


def test_alignment_matches_sclite_per_utterance_on_random_pairs(tmp_path: Path) -> None:
    # small vocabulary -> many equal-cost alignments: this checks sclite's tie-breaking too
    rng = random.Random(7)
    vocab = list("abcd")
    results = [
        (f"u{i:03d}", [rng.choice(vocab) for _ in range(rng.randint(1, 8))],
         [rng.choice(vocab) for _ in range(rng.randint(0, 8))])
        for i in range(300)
    ]
    sctk = _sctk()
    write_trn(tmp_path / "ref.trn", results, "ref")
    write_trn(tmp_path / "hyp.trn", results, "hyp")
    pra = subprocess.run(
        [sctk, "sclite", "-r", str(tmp_path / "ref.trn"), "trn", "-h", str(tmp_path / "hyp.trn"), "trn",
         "-i", "rm", "-s", "-o", "pra", "stdout"],
        capture_output=True, text=True, check=True,
    ).stdout
    sclite_counts: Dict[str, Tuple[int, int, int]] = {}
    utt = None
    for line in pra.splitlines():
        m = re.match(r"id: (\(\S+\))", line)
        if m:
            utt = m.group(1)
        m = re.match(r"Scores: \(#C #S #D #I\) (\d+) (\d+) (\d+) (\d+)", line)
        if m:
            _, s, d, i = (int(x) for x in m.groups())
            sclite_counts[utt] = (i, d, s)
    assert len(sclite_counts) == len(results)
    for cut_id, ref, hyp in results:
        assert error_counts(ref, hyp) == sclite_counts[trn_utterance_id(cut_id)], (ref, hyp)


def test_hand_computed_alignments() -> None:
    assert align(["a", "b", "c"], ["a", "x", "c", "d"]) == [("a", "a"), ("b", "x"), ("c", "c"), (None, "d")]
    assert error_counts(["a", "b", "c"], ["a", "x", "c", "d"]) == (1, 0, 1)
    assert error_counts(["the", "cat", "sat"], ["cat", "sat", "on"]) == (1, 1, 0)
    assert error_counts(["a", "b"], []) == (0, 2, 0)
    assert error_counts([], ["a"]) == (1, 0, 0)
    assert error_counts([], []) == (0, 0, 0)
    # sclite costs (ins 3, del 3, sub 4): a swap is a deletion + an insertion, not two substitutions
    assert error_counts(["a", "b"], ["b", "a"]) == (1, 1, 0)
    assert align(["a", "b"], ["b", "a"]) == [("a", None), ("b", "b"), (None, "a")]


def test_wer_stats_totals() -> None:
    results = [("u1", ["a", "b", "c", "d"], ["a", "x", "c"]), ("u2", ["e", "f"], ["e", "f", "g"])]
    stats = wer_stats(results)
    assert stats == {"wer": 50.0, "ins": 1, "del": 1, "sub": 1, "errs": 3, "words": 6, "utts": 2}


def test_recogs_round_trip(tmp_path: Path) -> None:
    results = [
        ("b-2", ["it's", "a", "test"], ["its", "a", "test"]),
        ("a-1", ["quote'd", 'dou"ble'], []),
        ("c:3", ["x"], ["x", "y"]),
    ]
    path = tmp_path / "recogs-test.txt"
    store_transcripts(path, results)
    lines = path.read_text().splitlines()
    assert lines[0] == "a-1:\tref=[\"quote'd\", 'dou\"ble']"
    assert lines[1] == "a-1:\thyp=[]"
    assert load_transcripts(path) == sorted(results)
    assert not list(tmp_path.glob("*.tmp*"))


def test_load_transcripts_reads_icefall_extras_and_strings(tmp_path: Path) -> None:
    path = tmp_path / "recogs.txt"
    path.write_text(
        "u1:\tref=['a', 'b']\nu1:\thyp=['a']\nu1:\ttimestamp_hyp=[0.120]\n\nu2:\tref='c d'\nu2:\thyp='c'\n"
    )
    assert load_transcripts(path) == [("u1", ["a", "b"], ["a"]), ("u2", ["c", "d"], ["c"])]


@pytest.mark.parametrize(
    "text, message",
    [
        ("u1 ref=['a']\n", "recogs.txt:1"),
        ("u1:\tref=['a'\nu1:\thyp=['a']\n", "recogs.txt:1"),
        ("u1:\tref=['a']\nu1:\thyp=[1]\n", "recogs.txt:2"),
        ("u1:\tref=['a']\nu1:\thyp=['a']\nu1:\tref=['b']\n", "duplicate"),
        ("u1:\tref=['a']\n", "no hyp"),
        ("", "no ref"),
    ],
)
def test_load_transcripts_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "recogs.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_transcripts(path)


def test_errs_file_layout(tmp_path: Path) -> None:
    results = [
        ("u2", ["the", "cat", "sat"], ["cat", "sat", "on"]),
        ("u1", ["a", "b", "c", "d"], ["x", "y", "c", "d"]),
        ("u3", ["a", "b"], ["a", "b"]),
    ]
    path = tmp_path / "errs-test.txt"
    stats = write_error_stats(path, "test-greedy_search", results)
    assert stats == {"wer": pytest.approx(100 * 4 / 9), "ins": 1, "del": 1, "sub": 2, "errs": 4, "words": 9,
                     "utts": 3}
    lines = path.read_text().splitlines()
    assert lines[0] == "%WER = 44.44"
    assert lines[1] == "Errors: 1 insertions, 1 deletions, 2 substitutions, over 9 reference words (6 correct)"
    assert lines[2].startswith("Search below for sections starting with PER-UTT DETAILS:, SUBSTITUTIONS:")
    start = lines.index("PER-UTT DETAILS: corr or (ref->hyp)  ")
    # sorted by cut id; adjacent errors are merged into one bracket, as icefall does
    assert lines[start + 1: start + 4] == [
        "u1:\t(a b->x y) c d",
        "u2:\t(the->*) cat sat (*->on)",
        "u3:\ta b",
    ]
    subs = lines[lines.index("SUBSTITUTIONS: count ref -> hyp") + 1:]
    assert subs[:2] == ["1   b -> y", "1   a -> x"]
    assert lines[lines.index("DELETIONS: count ref") + 1] == "1   the"
    assert lines[lines.index("INSERTIONS: count hyp") + 1] == "1   on"
    per_word = lines[lines.index("PER-WORD STATS: word  corr tot_errs count_in_ref count_in_hyp") + 1:]
    assert "the   0 1 1 0" in per_word
    assert "cat   1 0 1 1" in per_word


def test_errs_file_refuses_empty_and_duplicates(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        write_error_stats(tmp_path / "errs.txt", "test", [])
    with pytest.raises(ValueError, match="'u1'"):
        write_error_stats(tmp_path / "errs.txt", "test", [("u1", ["a"], ["a"]), ("u1", ["b"], ["b"])])
    with pytest.raises(ValueError, match="no words"):
        write_error_stats(tmp_path / "errs.txt", "test", [("u1", [], ["a"])])
    with pytest.raises(TypeError, match="list of words"):
        wer_stats([("u1", "a b", "a b")])
    assert not (tmp_path / "errs.txt").exists()


def test_wer_summary_sorted_ascending(tmp_path: Path) -> None:
    path = tmp_path / "wer-summary-test.txt"
    write_wer_summary(path, {"modified_beam_search_4": 9.5, "greedy_search": 10.25, "fast_beam_search": 9.876})
    assert path.read_text().splitlines() == [
        "settings\tWER",
        "modified_beam_search_4\t9.50",
        "fast_beam_search\t9.88",
        "greedy_search\t10.25",
    ]


def test_trn_ids_are_safe_for_sclite(tmp_path: Path) -> None:
    results = [("rec 1(a)-0", ["a", "b"], []), ("u2", ["c"], ["c"])]
    path = tmp_path / "hyp.trn"
    write_trn(path, results, "hyp", speakers={"rec 1(a)-0": "spk-1"})
    assert path.read_text().splitlines() == ["(spk_1-rec_1_a_-0)", "c (spk-u2)"]
    with pytest.raises(ValueError, match="which"):
        write_trn(path, results, "both")


def test_pick_decode_prints_the_best_setting_and_its_recorded_options(tmp_path, capsys):
    """The LM grid's winner is repeated on test with the options its decode recorded, not ones parsed back out
    of the suffix; a missing stats file is a clear error naming it."""
    import json

    from entry_points import run_entry_point

    grid = {"beam-8-lm-0.6-bp-1": (20.5, {"lm_scale": 0.6, "blank_penalty": 1.0}),
            "beam-8-lm-0.8": (19.25, {"lm_scale": 0.8}),
            "beam-8-lm-1-bp-2.5": (19.75, {"lm_scale": 1.0, "blank_penalty": 2.5})}
    for suffix, (wer, stats) in grid.items():
        (tmp_path / f"wer-summary-dev-{suffix}.txt").write_text(f"settings\tWER\n{suffix}\t{wer}\n")
        (tmp_path / f"stats-dev-{suffix}.json").write_text(json.dumps(stats))
    argv = ["--decode-dir", str(tmp_path), "--set-name", "dev", "--pattern", "beam-8-lm-*",
            "--out", str(tmp_path / "grid.tsv")]
    assert run_entry_point("pick_decode", argv) == 0
    assert capsys.readouterr().out == "beam-8-lm-0.8\n"
    assert (tmp_path / "grid.tsv").read_text().splitlines()[1:] == [
        "beam-8-lm-0.8\t19.25", "beam-8-lm-1-bp-2.5\t19.75", "beam-8-lm-0.6-bp-1\t20.50"]
    assert run_entry_point("pick_decode", argv + ["--with-options"]) == 0
    assert capsys.readouterr().out == "beam-8-lm-0.8 --lm-scale 0.8 --blank-penalty 0\n"
    (tmp_path / "wer-summary-dev-beam-8-lm-0.5.txt").write_text("settings\tWER\nx\t10.0\n")  # no stats JSON
    assert run_entry_point("pick_decode", argv + ["--with-options"]) == 1
    assert "stats-dev-beam-8-lm-0.5.json" in capsys.readouterr().err
