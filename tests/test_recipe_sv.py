"""A tiny end-to-end run of egs/synth_assistant/sv: every stage, a tiny corpus, a tiny model, a few steps of each
variant (baseline and the three ARW variants), real-voice evaluation on four alphanumeric speakers (mixed sample
rates and stereo); asserts the files and tables, not the quality."""
from __future__ import annotations

import csv
import json
import shutil

import pytest

from recipe_utils import SHARED_DATA, recipe_copy, run_recipe

TINY_CONFIG = """\
model: {channels: 16, mfa_channels: 32, attention_channels: 8, se_channels: 8, embedding_dim: 16}
train: {steps: 6, speakers_per_batch: 4, crop_frames: 50, log_interval: 2, lr_warmup_steps: 2}
arw: {warmup_steps: 2, kmeans_every: 2, num_clusters: 3}
"""
GEN_OPTS = ("--dev-speakers 4 --test-speakers 6 --min-test-speakers-per-accent 0 --adapt-speakers-per-region 1")
ARGS = ["--num-speakers", "8", "--utts-per-speaker", "3", "--eval-utts-per-speaker", "3", "--gen-opts", GEN_OPTS,
        "--train-config", "conf/tiny.yaml", "--num-target", "2", "--num-nontarget", "3", "--reference", ""]


def tiny_alphanumeric(dest):
    """Four speakers of the real alphanumeric corpus (their metadata rows and flac files)."""
    src = SHARED_DATA / "alphanumeric"
    with open(src / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    import soundfile as sf

    # speakers whose recordings are stereo or not 44.1 kHz first, so resampling and down-mixing are exercised
    def odd(speaker):
        infos = [sf.info(str(p)) for p in src.glob(f"audio/*/{speaker}.flac")]
        return not any(i.channels == 2 or i.samplerate not in (44100,) for i in infos), speaker

    speakers = sorted({r["Response_ID"] for r in rows}, key=odd)
    keep = set()
    for gender in ("Female", "Male"):
        keep |= set([s for s in speakers if any(r["Gender"] == gender for r in rows if r["Response_ID"] == s)][:2])
    (dest / "audio").mkdir(parents=True)
    with open(dest / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            if r["Response_ID"] in keep:
                w.writerow(r)
                kind = r["file_name"].split("/")[1]
                audio = src / "audio" / kind / f"{r['Response_ID']}.flac"
                if audio.is_file():
                    (dest / "audio" / kind).mkdir(exist_ok=True)
                    shutil.copy(audio, dest / "audio" / kind / audio.name)
    return keep


@pytest.mark.skipif(not (SHARED_DATA / "alphanumeric" / "metadata.csv").is_file(), reason="no alphanumeric corpus")
def test_sv_recipe_tiny_end_to_end(tmp_path):
    recipe = recipe_copy("synth_assistant/sv", tmp_path / "sv")
    (recipe / "conf" / "tiny.yaml").write_text(TINY_CONFIG)
    keep = tiny_alphanumeric(tmp_path / "alnum")
    proc = run_recipe(recipe, *ARGS, "--alnum-dir", str(tmp_path / "alnum"))
    for n in range(7):
        assert f"Stage {n}:" in proc.stdout
    models = ["none", "aps", "pl", "pw"]
    for m in models:
        summary = json.loads((recipe / f"exp/{m}/train-summary.json").read_text())
        assert summary["variant"] == m and summary["steps"] == 6
        assert (recipe / f"exp/{m}/model.pt").is_file()
        for s in ("synth", "alnum"):
            rep = json.loads((recipe / f"exp/{m}/score/{s}/metrics.json").read_text())
            assert 0.0 <= rep["overall"]["eer"] <= 1.0 and rep["p_target"] == 0.05
            assert "gender" in rep["by"]
        if m != "none":  # the adversary's weights were recorded per training cohort
            assert summary["mean_weight_by_cohort"]
    synth = json.loads((recipe / "exp/none/score/synth/metrics.json").read_text())
    assert "accent" in synth["by"]
    alnum = json.loads((recipe / "exp/pw/score/alnum/metrics.json").read_text())
    assert "native_group" in alnum["by"]
    # the real recordings were down-mixed and resampled to 16 kHz mono
    import soundfile as sf

    wavs = sorted((recipe / "data/alnum/wav").glob("*.wav"))
    assert len(wavs) >= 3 * len(keep) - 1
    assert {(sf.info(str(w)).samplerate, sf.info(str(w)).channels) for w in wavs} == {(16000, 1)}
    results = (recipe / "RESULTS.md").read_text()
    for title in ("Synthetic held-out speakers", "Real voices: alphanumeric", "Side by side with the paper",
                  "ARW: pairwise weights", "| EER (%) | 1.17 | 1.08 | -7.7% |"):
        assert title in results
    timing = (recipe / "exp/timing.tsv").read_text()
    assert "train-pw\t" in timing and "alnum\t" in timing

    # re-running skips finished work (generation, features, training, embeddings)
    again = run_recipe(recipe, *ARGS, "--alnum-dir", str(tmp_path / "alnum"))
    out = again.stdout + again.stderr
    assert "exist in data/manifests; skipping" in out
    for m in models:
        assert "model.pt exists; skipping" in (recipe / f"exp/{m}/log/train.log").read_text()
