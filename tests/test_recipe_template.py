"""egs/TEMPLATE/asr end to end on tiny corpora made here from the yesno recordings, with made-up speakers and a
custom supervision field: 8 kHz from a folder of audio + <split>.tsv tables (--corpus-dir), 16 kHz from lhotse
manifests (--manifest-dir). A few epochs of a tiny model: the stages, the feature choice and the per-cohort
tables are asserted, not a WER. Plus the manifest checks and the folder importer's errors, without training."""
from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import pytest

from recipe_utils import ROOT, SHARED_DATA, recipe_copy, run_recipe

YESNO = SHARED_DATA / "yesno" / "waves_yesno"
TEMPLATE_LOCAL = ROOT / "egs" / "TEMPLATE" / "asr" / "local"
needs_yesno = pytest.mark.skipif(not YESNO.is_dir(), reason=f"{YESNO} not present")
SPEAKERS = ("ann", "bob", "cyd", "dee")
DIALECT = {"ann": "north", "bob": "north", "cyd": "south", "dee": "south"}   # the custom cohort field
# a few epochs of a tiny model, so each corpus runs in about a minute; valid = test to skip a dev split
FAST = ("--num-epochs", "3", "--avg", "1", "--num-threads", "1", "--n-bootstrap", "20", "--valid-set", "test",
        "--cohort-keys", "speaker,dialect", "--train-opts",
        "--set model.encoder.hidden_dim=32 --set model.encoder.output_dim=32 --set model.decoder_dim=32 "
        "--set model.joiner_dim=32 --set train.progress_bar=false")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, TEMPLATE_LOCAL / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _utterances():
    """(wav, text, speaker, split): 40 training and 12 test utterances of the yesno corpus, speakers dealt round."""
    wavs = sorted(YESNO.glob("*.wav"))[:52]
    for i, wav in enumerate(wavs):
        text = " ".join("YES" if w == "1" else "NO" for w in wav.stem.split("_"))
        yield wav, text, SPEAKERS[i % len(SPEAKERS)], "train" if i < 40 else "test"


def _write_tsv_corpus(corpus: Path) -> None:
    corpus.mkdir()
    rows = {"train": [], "test": []}
    for wav, text, spk, split in _utterances():
        rows[split].append(f"{wav}\t{text}\t{spk}\t{DIALECT[spk]}")
    for split, lines in rows.items():
        (corpus / f"{split}.tsv").write_text("audio\ttext\tspeaker\tdialect\n" + "\n".join(lines) + "\n")


def _write_16k_manifests(manifest_dir: Path, audio_dir: Path) -> None:
    """lhotse manifests of the yesno audio resampled to 16 kHz, the dialect as a custom supervision field."""
    import numpy as np
    import soundfile as sf
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
    from scipy.signal import resample_poly

    audio_dir.mkdir()
    manifest_dir.mkdir()
    recs = {"train": [], "test": []}
    sups = {"train": [], "test": []}
    for wav, text, spk, split in _utterances():
        samples, rate = sf.read(wav, dtype="float32")
        assert rate == 8000
        out = audio_dir / wav.name
        sf.write(out, resample_poly(samples, 2, 1).astype(np.float32), 16000)
        rec = Recording.from_file(out, recording_id=wav.stem)
        recs[split].append(rec)
        sups[split].append(SupervisionSegment(id=wav.stem, recording_id=wav.stem, start=0.0, duration=rec.duration,
                                              text=text, speaker=spk, custom={"dialect": DIALECT[spk]}))
    for split in recs:
        RecordingSet.from_recordings(recs[split]).to_file(manifest_dir / f"tiny_recordings_{split}.jsonl.gz")
        SupervisionSet.from_segments(sups[split]).to_file(manifest_dir / f"tiny_supervisions_{split}.jsonl.gz")


def _assert_cohort_tables(recipe: Path, proc) -> None:
    for n in range(7):
        assert f"Stage {n}:" in proc.stdout
    dec = recipe / "exp/lstm/decode/test"
    summaries = sorted(dec.glob("wer-summary-test-*.txt"))
    assert [p.name.split("-")[3] for p in summaries] == ["greedy_search", "modified_beam_search"], summaries
    for method in ("greedy_search", "modified_beam_search"):
        cohort_dirs = list(dec.glob(f"cohorts-{method}-*"))
        assert len(cohort_dirs) == 1, cohort_dirs
        for key, cohorts in (("dialect", {"north", "south"}), ("speaker", set(SPEAKERS))):
            rows = (cohort_dirs[0] / f"cohort-wer-{key}.tsv").read_text().splitlines()
            header = rows[0].split("\t")
            assert header[:5] == ["cohort", "num_speakers", "num_utts", "num_words", "wer"], header
            assert {r.split("\t")[0] for r in rows[1:]} == cohorts
            assert sum(int(r.split("\t")[2]) for r in rows[1:]) == 12   # every test utterance in one cohort


@needs_yesno
def test_template_8khz_corpus_dir_with_custom_cohort(tmp_path):
    corpus = tmp_path / "corpus"
    _write_tsv_corpus(corpus)
    recipe = recipe_copy("TEMPLATE/asr", tmp_path / "recipe")
    proc = run_recipe(recipe, "--corpus-dir", str(corpus), "--prefix", "tiny", *FAST)
    assert "fbank: 23 mel bins at 8000 Hz (the training audio is at 8000 Hz)" in proc.stdout
    sups = [json.loads(line) for line in gzip.open(recipe / "data/manifests/tiny_supervisions_test.jsonl.gz", "rt")]
    assert {s["custom"]["dialect"] for s in sups} == {"north", "south"} and sups[0]["speaker"] in SPEAKERS
    _assert_cohort_tables(recipe, proc)


@needs_yesno
def test_template_16khz_manifests_with_custom_cohort(tmp_path):
    manifests = tmp_path / "manifests"
    _write_16k_manifests(manifests, tmp_path / "audio16k")
    recipe = recipe_copy("TEMPLATE/asr", tmp_path / "recipe")
    proc = run_recipe(recipe, "--manifest-dir", str(manifests), "--prefix", "tiny", *FAST)
    assert "fbank: 80 mel bins at 16000 Hz (the training audio is at 16000 Hz)" in proc.stdout
    _assert_cohort_tables(recipe, proc)


def test_template_refuses_missing_inputs(tmp_path):
    recipe = recipe_copy("TEMPLATE/asr", tmp_path / "recipe")
    missing = tmp_path / "no-such-corpus"
    proc = run_recipe(recipe, "--corpus-dir", str(missing), check=False)
    assert proc.returncode != 0 and f"{missing}: no such directory" in proc.stderr
    proc = run_recipe(recipe, check=False)
    assert proc.returncode != 0 and "--corpus-dir DIR | --manifest-dir DIR" in proc.stderr


def test_check_manifests_names_the_missing_file_and_cohort_key(tmp_path, capsys):
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
    from lhotse.audio import AudioSource

    check = _load("check_manifests")
    rec = Recording(id="r1", sources=[AudioSource(type="file", channels=[0], source="/x.wav")], sampling_rate=8000,
                    num_samples=8000, duration=1.0)
    RecordingSet.from_recordings([rec]).to_file(tmp_path / "c_recordings_train.jsonl.gz")
    SupervisionSet.from_segments([SupervisionSegment(id="s1", recording_id="r1", start=0, duration=1, text="YES",
                                                     speaker="a", custom={"accent": "x"})]).to_file(
        tmp_path / "c_supervisions_train.jsonl.gz")
    # the test split is missing: the error names the file and the naming convention
    assert check.main(["--manifest-dir", str(tmp_path), "--prefix", "c", "--splits", "train,test"]) == 1
    err = capsys.readouterr().err
    assert "c_recordings_test.jsonl.gz: no recordings manifest" in err
    assert "<prefix>_{recordings,supervisions}_<split>.jsonl.gz" in err
    # a cohort key no supervision carries
    assert check.main(["--manifest-dir", str(tmp_path), "--prefix", "c", "--splits", "train",
                       "--score-splits", "train", "--cohort-keys", "accent,region"]) == 1
    assert "cohort key(s) ['region']" in capsys.readouterr().err
    # custom fields are cohort attributes; 8 kHz audio gets 23 bins even when resampled up to 16 kHz
    assert check.main(["--manifest-dir", str(tmp_path), "--prefix", "c", "--splits", "train",
                       "--score-splits", "train", "--cohort-keys", "accent,speaker", "--sampling-rate", "16000"]) == 0
    out = capsys.readouterr()
    assert out.out.split() == ["16000", "23", "8000"]
    assert "accent (1 values)" in out.err and "hold only the floor" in out.err


@needs_yesno
def test_prepare_manifests_names_the_bad_line(tmp_path, capsys):
    prepare = _load("prepare_manifests")
    wav = sorted(YESNO.glob("*.wav"))[0]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    table = corpus / "train.tsv"
    args = ["--corpus-dir", str(corpus), "--prefix", "c", "--out-dir", str(tmp_path / "m")]
    for body, error in ((f"{wav}\tYES\n{tmp_path}/gone.wav\tNO\n", "train.tsv:3: audio file"),
                        (f"{wav}\t \n", "train.tsv:2: empty transcript"),
                        (f"{wav}\tYES\n{wav}\tNO\n", "train.tsv:3: id '0_0_0_0_1_1_1_1' already used on line 2")):
        table.write_text("audio\ttext\n" + body)
        assert prepare.main(args) == 1
        assert error in capsys.readouterr().err
    table.write_text(f"audio\ttext\tspeaker\taccent\n{wav}\tNO NO\tann\tnorth\n")
    assert prepare.main(args) == 0
    sup = json.loads(gzip.open(tmp_path / "m/c_supervisions_train.jsonl.gz", "rt").readline())
    assert (sup["speaker"], sup["custom"], sup["text"]) == ("ann", {"accent": "north"}, "NO NO")
    assert not list((tmp_path / "m").glob(".tmp*"))
