"""egs/librispeech/asr end to end on a TINY corpus laid out exactly like LibriSpeech (parts / speaker / chapter /
<spk>-<chapter>-<utt>.flac + <spk>-<chapter>.trans.txt), built from yesno recordings: lhotse's librispeech
recipe, fbank with speed perturbation of the training part, the combined train/dev sets, BPE, a shrunken LSTM
trained one epoch on CPU through --train-opts, offline and streaming decoding of test-clean and test-other, and
the results table. Also: a missing corpus stops stage 0 with a message naming the parts."""
from __future__ import annotations

import csv
import subprocess

import pytest

from recipe_utils import SHARED_DATA, recipe_copy, recipe_env, run_recipe, summary_wer

YESNO = SHARED_DATA / "yesno"
# part -> speakers -> utterances per speaker (one chapter each); speaker ids differ across parts like LibriSpeech's
PARTS = {"train-clean-100": {"19": 4, "26": 4}, "dev-clean": {"84": 2}, "test-clean": {"121": 2},
         "test-other": {"1688": 2}}
TINY_TRAIN = ("--set model.encoder.hidden_dim=32 --set model.encoder.num_layers=1 --set model.encoder.output_dim=32 "
              "--set model.decoder_dim=32 --set model.joiner_dim=32 --set data.max_duration=100 "
              "--set data.num_buckets=2 --set data.num_workers=0 --set data.spec_augment=null")


def make_tiny_librispeech(root, parts=PARTS):
    """LibriSpeech/<part>/<spk>/<chapter>/ with FLAC audio (8 kHz yesno; the recipe resamples to 16 kHz); ``parts``:
    part -> speaker -> utterances (one chapter each)."""
    import soundfile as sf

    with open(YESNO / "utterances.tsv") as f:
        utts = list(csv.DictReader(f, delimiter="\t"))
    corpus = root / "LibriSpeech"
    i = 0
    for part, speakers in parts.items():
        for spk, n in speakers.items():
            chapter = f"{int(spk) * 10 + 7}"
            d = corpus / part / spk / chapter
            d.mkdir(parents=True)
            lines = []
            for k in range(n):
                utt = utts[i]
                i += 1
                audio, sr = sf.read(YESNO / utt["path"], dtype="int16")
                uid = f"{spk}-{chapter}-{k:04d}"
                sf.write(d / f"{uid}.flac", audio, sr, format="FLAC")
                lines.append(f"{uid} {utt['text']}\n")
            (d / f"{spk}-{chapter}.trans.txt").write_text("".join(lines))
    return corpus


@pytest.mark.skipif(not (YESNO / "waves_yesno").is_dir(), reason=f"{YESNO} not present")
def test_librispeech_recipe_tiny(tmp_path):
    corpus = make_tiny_librispeech(tmp_path / "corpus")
    recipe = recipe_copy("librispeech/asr", tmp_path / "librispeech")

    # no corpus where it is said to be, no --download: stage 0 names what is missing and how to get it
    missing = subprocess.run(["bash", "./run.sh", "--corpus-dir", str(tmp_path / "nowhere"), "--stop-stage", "0"],
                             cwd=recipe, env=recipe_env(), capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0
    assert "parts not found" in missing.stderr and "train-other-500" in missing.stderr
    assert "--download true" in missing.stderr

    args = ["--corpus-dir", str(corpus), "--train-parts", "train-clean-100", "--dev-parts", "dev-clean",
            "--test-sets", "test-clean test-other", "--fbank-jobs", "1", "--vocab-size", "12", "--models", "lstm",
            "--gpus-per-node", "0", "--train-threads", "1", "--num-epochs", "1", "--avg", "1", "--decode-nj", "1",
            "--train-opts", TINY_TRAIN]
    proc = run_recipe(recipe, *args, timeout=600)
    for n in range(6):
        assert f"Stage {n}:" in proc.stdout
    from lhotse import load_manifest

    train = load_manifest(recipe / "data/fbank/librispeech_cuts_train.jsonl.gz")
    assert len(train) == 3 * 8  # speed perturbation 0.9 and 1.1 of the training part
    assert len(load_manifest(recipe / "data/fbank/librispeech_cuts_dev.jsonl.gz")) == 2
    cfg = (recipe / "exp/lstm/config.yaml").read_text()
    assert "hidden_dim: 32" in cfg and "num_features: 80" in cfg
    for s in ("test-clean", "test-other"):
        dec = recipe / "exp/lstm/decode" / s
        for suffix in ("greedy_search-epoch-1-avg-1", "modified_beam_search-epoch-1-avg-1-beam-4",
                       "streaming_greedy_search-chunk-160ms-epoch-1-avg-1"):
            assert summary_wer(dec / f"wer-summary-{s}-{suffix}.txt") >= 0.0
    results = (recipe / "RESULTS.md").read_text()
    assert "| `lstm` |" in results and "test-other beam" in results and "streaming test-clean (160 ms)" in results
    assert "`conv_rnnt` is not among the compared models" in results

    again = run_recipe(recipe, *args, "--stop-stage", "3", timeout=300)
    assert "exists, skipping" in again.stdout
    assert "nothing to do" in (recipe / "exp/lstm/log/train.log").read_text()
