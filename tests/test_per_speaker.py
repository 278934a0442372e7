"""Per-speaker WER (serac.scoring.per_speaker) against NIST sclite's per-speaker rows (rsum raw counts, sum
percentages) on the trn files serac writes; hand-computed cases where sclite is not installed."""
from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

from serac.scoring.per_speaker import per_speaker_rows, speaker_counts, write_per_speaker_table
from serac.scoring.wer import write_trn

WORDS = ["yes", "no", "maybe", "a", "b"]


def random_results(seed: int, n: int = 40):
    rng = random.Random(seed)
    results, speakers = [], {}
    for i in range(n):
        ref = [rng.choice(WORDS) for _ in range(rng.randint(0, 8))]
        hyp = list(ref)
        for _ in range(rng.randint(0, 3)):
            op = rng.choice("sid")
            if op == "s" and hyp:
                hyp[rng.randrange(len(hyp))] = rng.choice(WORDS)
            elif op == "i":
                hyp.insert(rng.randint(0, len(hyp)), rng.choice(WORDS))
            elif op == "d" and hyp:
                del hyp[rng.randrange(len(hyp))]
        cut_id = f"utt{i:03d}"
        results.append((cut_id, ref, hyp))
        speakers[cut_id] = f"spk{rng.randint(1, 5)}"
    return results, speakers


def test_hand_counted_case(tmp_path: Path) -> None:
    results = [("u1", "a b c".split(), "a c c d".split()), ("u2", "x y".split(), "x y".split()),
               ("u3", "hello world".split(), ["hello"])]
    speakers = {"u1": "s1", "u2": "s1", "u3": "s2"}
    counts = write_per_speaker_table(tmp_path / "spk.tsv", results, speakers)
    assert (counts["s1"].utts, counts["s1"].words, counts["s1"].corr, counts["s1"].sub, counts["s1"].ins) == (2, 5, 4, 1, 1)
    assert counts["s1"].wer == pytest.approx(40.0) and counts["s1"].sent_err == pytest.approx(50.0)
    lines = (tmp_path / "spk.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["speaker", "utts", "words", "corr", "sub", "del", "ins", "err", "wer", "sent_err"]
    assert lines[-1].split("\t") == ["Sum", "3", "7", "5", "1", "1", "1", "3", "42.86", "66.67"]


def test_unknown_cut_is_an_error() -> None:
    with pytest.raises(KeyError, match="cut u9 of the results is not in the cuts"):
        speaker_counts([("u9", ["a"], ["a"])], {"u1": "s1"})


def _sclite_rows(text: str) -> Dict[str, List[str]]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 4 and cells[1] and cells[1] not in ("SPKR", "Mean", "S.D.", "Median"):
            rows[cells[1]] = (cells[2] + " " + cells[3]).split()
    return rows


@pytest.mark.parametrize("seed", [0, 1])
def test_rows_match_sclite(tmp_path: Path, seed: int) -> None:
    sctk = shutil.which("sctk")
    if sctk is None:
        pytest.skip("NIST sctk (sclite) is not installed (tests/run.sh installs it): apt-get install sctk")
    results, speakers = random_results(seed)
    write_trn(tmp_path / "ref.trn", results, "ref", speakers)
    write_trn(tmp_path / "hyp.trn", results, "hyp", speakers)
    base = [sctk, "sclite", "-r", str(tmp_path / "ref.trn"), "trn", "-h", str(tmp_path / "hyp.trn"), "trn",
            "-i", "rm", "-s"]
    raw = _sclite_rows(subprocess.run(base + ["-o", "rsum", "stdout"], capture_output=True, text=True,
                                      check=True).stdout)
    pct = _sclite_rows(subprocess.run(base + ["-o", "sum", "stdout"], capture_output=True, text=True,
                                      check=True).stdout)
    ours = {r[0]: r for r in per_speaker_rows(speaker_counts(results, speakers))}
    assert set(ours) - {"Sum"} == set(raw) - {"Sum"}
    for speaker, row in ours.items():
        # sclite: #Snt #Wrd Corr Sub Del Ins Err S.Err (S.Err counted in rsum, a percentage in sum)
        snt, wrd, corr, sub, dele, ins, err, serr = (float(x.rstrip("*")) for x in raw[speaker])
        assert [int(x) for x in row[1:8]] == [snt, wrd, corr, sub, dele, ins, err], speaker
        assert round(float(row[9]) * int(row[1]) / 100) == serr, speaker
        key = "Sum/Avg" if speaker == "Sum" else speaker
        if int(row[2]):
            assert float(row[8]) == pytest.approx(float(pct[key][6]), abs=0.051), speaker  # sclite prints 1 decimal
