"""egs/voxceleb/sv end to end on a tiny copy laid out like the real VoxCeleb1 (wav/id*/<video>/*.wav, vox1_meta.csv,
veri_test2.txt): lhotse's VoxCeleb recipe prepares it offline, the trial list is scored by gender and nationality."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from recipe_utils import recipe_copy, run_recipe

TINY_CONFIG = """\
model: {channels: 16, mfa_channels: 32, attention_channels: 8, se_channels: 8, embedding_dim: 16}
train: {steps: 4, speakers_per_batch: 2, crop_frames: 50, log_interval: 2, lr_warmup_steps: 2}
arw: {warmup_steps: 2, kmeans_every: 2, num_clusters: 2}
"""
# id, gender, nationality, set
SPEAKERS = [("id10001", "m", "USA", "dev"), ("id10002", "f", "UK", "dev"), ("id10003", "f", "USA", "dev"),
            ("id10270", "m", "USA", "test"), ("id10271", "f", "UK", "test"), ("id10272", "m", "India", "test"),
            ("id10273", "f", "USA", "test")]


def make_tiny_voxceleb1(root):
    rng = np.random.default_rng(0)
    for spk, _, _, _ in SPEAKERS:
        f0 = rng.uniform(90, 250)
        for v, video in enumerate(("aaaaaaaaaaa", "bbbbbbbbbbb")):
            for u in (1, 2):
                t = np.arange(int(16000 * rng.uniform(0.8, 1.2))) / 16000
                x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.05 * rng.normal(size=t.size)
                path = root / "wav" / spk / video / f"{u:05d}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, x.astype(np.float32), 16000)
    with open(root / "vox1_meta.csv", "w") as f:
        f.write("VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n")
        for spk, g, nat, split in SPEAKERS:
            f.write(f"{spk}\tName_{spk}\t{g}\t{nat}\t{split}\n")
    test = [s for s in SPEAKERS if s[3] == "test"]
    lines = []
    for spk, *_ in test:
        lines.append(f"1 {spk}/aaaaaaaaaaa/00001.wav {spk}/bbbbbbbbbbb/00002.wav")
        lines.append(f"1 {spk}/aaaaaaaaaaa/00002.wav {spk}/bbbbbbbbbbb/00001.wav")
        for other, *_ in test:
            if other != spk:
                lines.append(f"0 {spk}/aaaaaaaaaaa/00001.wav {other}/aaaaaaaaaaa/00001.wav")
    (root / "veri_test2.txt").write_text("\n".join(lines) + "\n")


def test_voxceleb_sv_recipe_tiny(tmp_path):
    corpus = tmp_path / "VoxCeleb1"
    make_tiny_voxceleb1(corpus)
    recipe = recipe_copy("voxceleb/sv", tmp_path / "sv")
    (recipe / "conf" / "tiny.yaml").write_text(TINY_CONFIG)
    proc = run_recipe(recipe, "--corpus-dir", str(corpus), "--train-config", "conf/tiny.yaml", "--variants", "pw")
    for n in range(6):
        assert f"Stage {n}:" in proc.stdout
    trials = (recipe / "data/trials/vox1-o.tsv").read_text().splitlines()
    assert trials[0].split("\t") == ["label", "enrol", "test", "enrol_speaker", "test_speaker", "gender",
                                     "nationality", "nationality_group"]
    assert len(trials) == 1 + 4 * 2 + 4 * 3
    assert "1\tid10271-aaaaaaaaaaa-00001\tid10271-bbbbbbbbbbb-00002\tid10271\tid10271\tf\tUK\tUK" in trials
    for m in ("none", "pw"):
        rep = json.loads((recipe / f"exp/{m}/score/vox1-o/metrics.json").read_text())
        assert rep["overall"]["num_target"] == 8 and rep["overall"]["num_nontarget"] == 12
        assert set(rep["by"]["nationality_group"]["cohorts"]) == {"USA", "UK", "other"}
        assert set(rep["by"]["gender"]["cohorts"]) == {"f", "m"}
    results = (recipe / "RESULTS.md").read_text()
    assert "voxceleb / sv" in results and "ARW: pairwise weights" in results


def test_voxceleb_prepare_names_a_bad_corpus(tmp_path):
    recipe = recipe_copy("voxceleb/sv", tmp_path / "sv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AssertionError, match="empty/wav not found: --voxceleb1 must be laid out like VoxCeleb1"):
        run_recipe(recipe, "--corpus-dir", str(tmp_path / "empty"), "--stop-stage", "0")
