"""The data stage on bad and unusual input (issue 14 defects 2 and 6, issue 21 items 2, 5, 6): segmented
recordings, truncated / mislabelled / NaN / stereo / missing audio, corrupt and duplicated manifests, half-written
feature stages. docs/faults.md lists the cases and these tests.

Run: PYTHONPATH=. python -m pytest tests/test_data_validation.py -q
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet, load_manifest

from serac.data.features import SplitCuts, load_split_cuts, make_fbank_extractor, write_fbank
from serac.data.validate import DataError, ValidationReport, empty_mel_bins, feature_plan_lines, validate_split

REPO = Path(__file__).resolve().parent.parent
WORDS = ["YES NO YES NO", "NO NO YES YES", "YES YES NO NO", "NO YES NO YES"]


def tone(seconds: float, rate: int, seed: int, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.01 * rng.standard_normal(t.size)
    return np.stack([x * (c + 1) / channels for c in range(channels)], axis=1) if channels > 1 else x


def write_corpus(root: Path, n: int = 12, rate: int = 8000, seconds: float = 1.0, prefix: str = "c",
                 split: str = "train", edit=None, subtype: str = "PCM_16") -> Path:
    """``n`` one-utterance recordings and their manifests; ``edit(audio_dir)`` changes the audio before the
    manifests are made from it (as a corpus prep script would). Returns the manifest dir."""
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sf.write(audio / f"u{i:02d}.wav", tone(seconds, rate, i), rate, subtype=subtype)
    if edit is not None:
        edit(audio)
    recs = [Recording.from_file(audio / f"u{i:02d}.wav", recording_id=f"spk{i % 3}-u{i:02d}") for i in range(n)]
    sups = [SupervisionSegment(id=r.id, recording_id=r.id, start=0, duration=r.duration, channel=0,
                               text=WORDS[i % len(WORDS)], speaker=f"spk{i % 3}") for i, r in enumerate(recs)]
    return save_manifests(root / "manifests", recs, sups, prefix, split)


def save_manifests(mdir: Path, recs, sups, prefix: str = "c", split: str = "train") -> Path:
    mdir.mkdir(parents=True, exist_ok=True)
    RecordingSet.from_recordings(recs).to_file(mdir / f"{prefix}_recordings_{split}.jsonl.gz")
    SupervisionSet.from_segments(sups).to_file(mdir / f"{prefix}_supervisions_{split}.jsonl.gz")
    return mdir


def rewrite_lines(path: Path, change) -> None:
    with gzip.open(path, "rt") as f:
        lines = [line for line in f if line.strip()]
    with gzip.open(path, "wt") as f:
        f.writelines(change(lines))


def validate(mdir: Path, max_skipped_fraction: float = 0.5) -> ValidationReport:
    return validate_split(mdir, "c", "train", max_skipped_fraction=max_skipped_fraction)


def fbank(cuts, out: Path, **kw):
    return write_fbank(cuts, out / "feats.lca", out / "cuts.jsonl.gz", num_mel_bins=23, sampling_rate=8000,
                       backend="lhotse", log_every_s=0, **kw)


# --- defect 2: segmented corpora ------------------------------------------------------------------------------

def test_segmented_recordings_make_one_cut_per_supervision(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "long.wav", tone(3.0, 8000, 1), 8000)
    sf.write(audio / "padded.wav", tone(2.0, 8000, 2), 8000)
    long, padded = Recording.from_file(audio / "long.wav"), Recording.from_file(audio / "padded.wav")
    sups = [SupervisionSegment("long-a", "long", 0.2, 1.0, channel=0, text="YES", speaker="s1"),
            SupervisionSegment("long-b", "long", 1.5, 1.2, channel=0, text="NO NO", speaker="s2"),
            SupervisionSegment("padded-a", "padded", 0.5, 1.0, channel=0, text="YES NO", speaker="s1")]
    mdir = save_manifests(tmp_path / "m", [long, padded], sups)
    report = validate(mdir)
    summary = fbank(load_split_cuts(mdir, "c", "train", report), tmp_path / "fb")
    cuts = load_manifest(tmp_path / "fb" / "cuts.jsonl.gz")
    # ids are the supervision ids (issue 21 item 5), not <recording>-<index>
    assert [c.id for c in cuts] == ["long-a", "long-b", "padded-a"] and summary.cuts == 3
    assert [round(c.duration, 3) for c in cuts] == [1.0, 1.2, 1.0]
    assert all(len(c.supervisions) == 1 and c.supervisions[0].start == 0 for c in cuts)
    assert [c.load_features().shape[0] for c in cuts] == [100, 120, 100]


def test_cut_ids_of_whole_recording_supervisions(tmp_path: Path) -> None:
    mdir = write_corpus(tmp_path, n=3)
    assert [c.id for c in SplitCuts(mdir, "c", "train")] == ["spk0-u00", "spk1-u01", "spk2-u02"]


def test_supervisions_out_of_recording_order(tmp_path: Path) -> None:
    mdir = write_corpus(tmp_path, n=4)
    path = mdir / "c_supervisions_train.jsonl.gz"
    rewrite_lines(path, lambda lines: lines[::-1])
    report = validate(mdir)
    assert not report.supervisions_in_recording_order
    cuts = list(SplitCuts(mdir, "c", "train", report))
    assert [c.id for c in cuts] == ["spk0-u00", "spk1-u01", "spk2-u02", "spk0-u03"]
    assert all(c.supervisions[0].recording_id == c.recording.id for c in cuts)


# --- defect 6: bad audio -------------------------------------------------------------------------------------

def test_truncated_wav_is_skipped_and_named(tmp_path: Path) -> None:
    def truncate(audio: Path) -> None:  # a copy cut short: the header still says 1 s
        data = (audio / "u03.wav").read_bytes()
        (audio / "u03.wav").write_bytes(data[: len(data) // 2])

    mdir = write_corpus(tmp_path, edit=truncate)
    report = validate(mdir)
    [(reason, items)] = report.skipped_recordings.items()
    assert "truncated" in reason and items[0][0] == "spk0-u03" and "u03.wav" in items[0][1]
    assert report.skipped_supervision_ids() == {"spk0-u03"} and report.recordings == 11
    assert any("SKIPPED 1 recording(s)" in line and "spk0-u03" in line for line in report.summary_lines())
    assert "spk0-u03" not in {c.id for c in SplitCuts(mdir, "c", "train", report)}


def test_audio_shorter_than_its_manifest_is_skipped(tmp_path: Path) -> None:
    mdir = write_corpus(tmp_path)
    sf.write(tmp_path / "audio" / "u05.wav", tone(0.5, 8000, 5), 8000)  # replaced after the manifests were made
    report = validate(mdir)
    [(reason, items)] = report.skipped_recordings.items()
    assert "the manifest says 8000 samples, the file holds 4000" in reason and items[0][0] == "spk2-u05"


def test_supervision_beyond_the_audio_is_skipped(tmp_path: Path) -> None:
    mdir = write_corpus(tmp_path)
    rewrite_lines(mdir / "c_supervisions_train.jsonl.gz",
                  lambda lines: [line.replace('"duration": 1.0', '"duration": 1.5', 1) if i == 2 else line
                                 for i, line in enumerate(lines)])
    report = validate(mdir)
    assert report.skipped_supervisions == {"outside its recording's audio": [["spk2-u02", "0.00s-1.50s of 1.00s"]]}
    assert report.supervisions == 11


def test_header_rate_disagreeing_with_manifest_is_skipped(tmp_path: Path) -> None:
    mdir = write_corpus(tmp_path)
    data, _ = sf.read(tmp_path / "audio" / "u04.wav", dtype="int16")
    sf.write(tmp_path / "audio" / "u04.wav", data, 16000)  # same samples, header now says 16 kHz
    report = validate(mdir)
    [reason] = report.skipped_recordings
    assert "the manifest says 8000 Hz, the file's header 16000 Hz" in reason


def test_wrong_header_rate_shows_as_speaking_rate_outlier(tmp_path: Path) -> None:
    # the manifest was made from the mislabelled file, so it agrees with it: only the speaking rate can tell
    def relabel(audio: Path) -> None:
        data, _ = sf.read(audio / "u07.wav", dtype="int16")
        sf.write(audio / "u07.wav", data, 16000)

    mdir = write_corpus(tmp_path, edit=relabel)
    report = validate(mdir)
    assert not report.skipped_recordings
    assert report.sampling_rates == {"8000": 11, "16000": 1}
    [(reason, items)] = report.warnings.items()
    assert "speaking rate" in reason and len(items) == 1 and items[0].startswith("spk1-u07 ")


def test_nan_samples_are_skipped_by_validation_and_named_by_extraction(tmp_path: Path) -> None:
    def poison(audio: Path) -> None:
        data = tone(1.0, 8000, 6).astype(np.float32)
        data[100:110] = np.nan
        sf.write(audio / "u06.wav", data, 8000, subtype="FLOAT")

    mdir = write_corpus(tmp_path, edit=poison)
    report = validate(mdir)
    assert report.skipped_recordings == {"10 NaN/inf samples": [["spk0-u06", str(tmp_path / "audio/u06.wav")]]}
    fbank(SplitCuts(mdir, "c", "train", report), tmp_path / "ok")
    assert len(load_manifest(tmp_path / "ok" / "cuts.jsonl.gz")) == 11
    # without the validation step the extraction stops naming the cut and its file, and leaves nothing behind
    out = tmp_path / "fb"
    with pytest.raises(DataError, match=r"cut spk0-u06 \(audio .*u06\.wav\): DataError: 10 NaN/inf audio samples"):
        fbank(SplitCuts(mdir, "c", "train"), out)
    assert not out.exists() or not any(out.iterdir())


def test_stereo_is_downmixed_and_counted(tmp_path: Path) -> None:
    def stereo(audio: Path) -> None:
        sf.write(audio / "u01.wav", tone(1.0, 8000, 1, channels=2), 8000)

    mdir = write_corpus(tmp_path, n=3, edit=stereo)
    report = validate(mdir)
    assert report.channels == {"1": 2, "2": 1}
    assert any("downmixed to mono" in line for line in report.summary_lines())
    summary = fbank(SplitCuts(mdir, "c", "train", report), tmp_path / "fb")
    assert summary.downmixed == 1
    cut = {c.id: c for c in load_manifest(tmp_path / "fb" / "cuts.jsonl.gz")}["spk1-u01"]
    assert cut.custom["downmixed_channels"] == 2
    samples, _ = sf.read(tmp_path / "audio" / "u01.wav", dtype="float32", always_2d=True)
    mono = samples.mean(axis=1, dtype=np.float64).astype(np.float32)[None]
    expected = make_fbank_extractor(23, 8000, "lhotse").extract(mono, 8000)
    np.testing.assert_allclose(cut.load_features(), expected, atol=0.05)  # lilcom-compressed


def test_missing_audio_is_reported_and_too_many_is_an_error(tmp_path: Path) -> None:
    mdir = write_corpus(tmp_path, n=20)
    (tmp_path / "audio" / "u08.wav").unlink()
    report = validate(mdir, max_skipped_fraction=0.1)
    assert report.skipped_recordings == {"audio file missing": [["spk2-u08", str(tmp_path / "audio/u08.wav")]]}
    assert "SKIPPED 1 recording(s): audio file missing: spk2-u08" in "\n".join(report.summary_lines())
    (tmp_path / "audio" / "u09.wav").unlink()
    (tmp_path / "audio" / "u10.wav").unlink()
    with pytest.raises(DataError, match="3 of 20 c train recordings would be skipped"):
        validate(mdir, max_skipped_fraction=0.1)


# --- defect 6: bad manifests ---------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncate", "garbage", "bad-json"])
def test_corrupt_manifest_is_named(tmp_path: Path, damage: str) -> None:
    mdir = write_corpus(tmp_path, n=200)
    path = mdir / "c_recordings_train.jsonl.gz"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(data[:20] + b"\x00garbage" * 50 + data[420:])
    else:
        rewrite_lines(path, lambda lines: lines[:3] + ['{"id": "x", \n'] + lines[3:])
    with pytest.raises(DataError, match=str(path)):
        validate(mdir)
    with pytest.raises(DataError, match=str(path)):
        list(SplitCuts(mdir, "c", "train"))


def test_duplicated_recording_line_is_deduplicated_conflicting_one_is_an_error(tmp_path: Path) -> None:
    mdir = write_corpus(tmp_path, n=4)
    recs, sups = mdir / "c_recordings_train.jsonl.gz", mdir / "c_supervisions_train.jsonl.gz"
    rewrite_lines(recs, lambda lines: lines + [lines[1]])
    rewrite_lines(sups, lambda lines: lines + [lines[1]])
    report = validate(mdir)
    assert report.duplicates == {"recording": 1, "supervision": 1} and report.supervisions == 4
    assert "DEDUPLICATED 1 repeated recording line(s)" in "\n".join(report.summary_lines())
    assert [c.id for c in SplitCuts(mdir, "c", "train", report)] == ["spk0-u00", "spk1-u01", "spk2-u02", "spk0-u03"]
    rewrite_lines(recs, lambda lines: lines[:-1] + [lines[-1].replace('"duration": 1.0', '"duration": 0.9')])
    with pytest.raises(DataError, match=f"{recs}:5: recording id spk1-u01 appears twice with different contents"):
        validate(mdir)


def test_supervision_of_unknown_recording_is_an_error(tmp_path: Path) -> None:
    mdir = write_corpus(tmp_path, n=3)
    sups = mdir / "c_supervisions_train.jsonl.gz"
    rewrite_lines(sups, lambda lines: lines + [lines[0].replace('"recording_id": "spk0-u00"',
                                                                '"recording_id": "nope"').replace("spk0-u00", "x")])
    with pytest.raises(DataError, match=f"{sups}:4: supervision x is of recording nope"):
        validate(mdir)


# --- features: atomic outputs, logging, resampling ------------------------------------------------------------

def test_failed_extraction_leaves_no_archive_and_names_the_file(tmp_path: Path) -> None:
    mdir = write_corpus(tmp_path, n=5)
    report = validate(mdir)
    (tmp_path / "audio" / "u03.wav").unlink()  # deleted after validation
    out = tmp_path / "fb"
    with pytest.raises(DataError, match=r"cut spk0-u03 \(audio .*u03\.wav\)"):
        fbank(SplitCuts(mdir, "c", "train", report), out)
    assert not out.exists() or list(out.iterdir()) == []


def test_parallel_extraction_matches_one_job(tmp_path: Path) -> None:
    mdir = write_corpus(tmp_path, n=6)
    fbank(SplitCuts(mdir, "c", "train"), tmp_path / "one")
    fbank(SplitCuts(mdir, "c", "train"), tmp_path / "two", num_jobs=2)
    assert (tmp_path / "one/feats.lca").read_bytes() == (tmp_path / "two/feats.lca").read_bytes()
    assert [c.id for c in load_manifest(tmp_path / "two/cuts.jsonl.gz")] == \
        [c.id for c in load_manifest(tmp_path / "one/cuts.jsonl.gz")]


def test_upsampling_is_announced_with_empty_bins() -> None:
    assert empty_mel_bins(16000, 16000, 80) == 0 and empty_mel_bins(8000, 16000, 80) == 19
    assert empty_mel_bins(8000, 16000, 23) < empty_mel_bins(8000, 16000, 80)
    report = ValidationReport(prefix="c", split="train", sampling_rates={"8000": 3, "16000": 2, "48000": 1})
    text = "\n".join(feature_plan_lines(report, 16000, 80))
    assert f"WARNING 3 recordings at 8000 Hz are UPSAMPLED to 16000 Hz: nothing above 4000 Hz, so " \
           f"{empty_mel_bins(8000, 16000, 80)} of the 80 mel bins hold only the floor" in text
    assert "2 recordings at 16000 Hz: fbank as is" in text and "1 recordings at 48000 Hz: resampled down" in text


def _recipe_dir(tmp_path: Path) -> Path:
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    for name in ("path.sh", "steps", "utils"):
        (recipe / name).symlink_to(REPO / name)
    return recipe


def _make_fbank(recipe: Path, mdir: Path, *opts: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "steps/make_fbank.sh", "--backend", "lhotse", "--num-mel-bins", "23",
                           "--sampling-rate", "16000", *opts, str(mdir), "c", "train", "data/fbank"],
                          cwd=recipe, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.skipif(not (REPO / ".venv" / ".serac-installed").exists(), reason="needs the installed .venv")
def test_make_fbank_validates_logs_and_repairs_half_written_stages(tmp_path: Path) -> None:
    mdir = write_corpus(tmp_path, n=12, rate=8000)
    (tmp_path / "audio" / "u02.wav").unlink()
    recipe = _recipe_dir(tmp_path)
    proc = _make_fbank(recipe, mdir, "--max-skipped-fraction", "0.1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the console names the skipped file and says what is done with the 8 kHz audio
    assert "SKIPPED 1 recording(s): audio file missing: spk2-u02" in proc.stdout
    assert "WARNING 11 recordings at 8000 Hz are UPSAMPLED to 16000 Hz" in proc.stdout
    assert "c train: 11 cuts, 11.0 s" in proc.stdout
    fb = recipe / "data/fbank"
    log = (fb / "log/fbank_c_train.log").read_text()
    assert "\r" not in log and "fbank: done, 11 cuts" in log  # plain log lines, no tqdm bar
    archive = (fb / "c_feats_train.lca").read_bytes()

    assert "is complete, skipping" in _make_fbank(recipe, mdir).stdout
    # a half-written stage (the archive written, the job killed before the rest) is recomputed
    (fb / ".done/c_train").unlink()
    (fb / "c_cuts_train.jsonl.gz").unlink()
    again = _make_fbank(recipe, mdir, "--max-skipped-fraction", "0.1")
    assert again.returncode == 0 and "skipping" not in again.stdout
    assert (fb / "c_feats_train.lca").read_bytes() == archive
    # other options over finished features: an error, not a silent reuse
    other = _make_fbank(recipe, mdir, "--num-mel-bins", "40")
    assert other.returncode == 1 and "was made with 'num_mel_bins=23" in other.stderr
    # a failing job: exit 1 with its error on the console, and no archive
    (fb / ".done/c_train").unlink()
    (tmp_path / "audio" / "u03.wav").write_bytes(b"RIFF")  # unreadable now
    shutil.rmtree(fb / "validate")
    bad = _make_fbank(recipe, mdir, "--max-skipped-fraction", "0.01")
    assert bad.returncode == 1 and "2 of 12 c train recordings would be skipped" in bad.stderr


def test_corpus_summary_shows_minutes_for_small_splits(tmp_path: Path) -> None:
    mdir = write_corpus(tmp_path, n=3, seconds=2.0)
    out = tmp_path / "summary.md"
    proc = subprocess.run([sys.executable, "-m", "serac.bin.corpus_summary", "--manifest-dir", str(mdir),
                           "--prefix", "c", "--splits", "train", "--keys", "speaker", "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "| train | 3 | 3 | 6.0 s | 12 |" in text and "0.00" not in text
    assert json.dumps(text)  # plain text


def test_corrupt_cuts_manifest_is_named_when_loaded(tmp_path: Path) -> None:
    from serac.data.dataset import load_cuts

    mdir = write_corpus(tmp_path, n=200)
    path = mdir / "c_recordings_train.jsonl.gz"  # any .jsonl.gz manifest will do
    load_cuts(path)
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(DataError, match=f"{path}: corrupt or truncated manifest"):
        load_cuts(path)
