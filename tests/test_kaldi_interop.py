"""Interop with other toolkits: a Kaldi data dir (wav.scp, text, utt2spk) imported with utils/kaldi_data_dir.sh
runs the yesno recipe on from its fbank stage; serac's manifests export back to the same Kaldi files; the lhotse
CLI reads serac's cuts (`lhotse cut describe`)."""
from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pytest

from recipe_utils import SHARED_DATA, recipe_copy, recipe_env, run_recipe

YESNO = SHARED_DATA / "yesno" / "waves_yesno"
pytestmark = pytest.mark.skipif(not YESNO.is_dir(), reason=f"{YESNO} not present")


def kaldi_dir(path: Path, wavs) -> Path:
    path.mkdir(parents=True)
    ids = [f"spk{i % 2}_{w.stem}" for i, w in enumerate(wavs)]  # Kaldi: utterance ids start with the speaker
    (path / "wav.scp").write_text("".join(f"{u} {w}\n" for u, w in zip(ids, wavs)))
    (path / "text").write_text("".join(f"{u} {' '.join('YES' if c == '1' else 'NO' for c in w.stem[::2])}\n"
                                       for u, w in zip(ids, wavs)))
    (path / "utt2spk").write_text("".join(f"{u} {u.split('_')[0]}\n" for u in ids))
    return path


def run(recipe: Path, *cmd: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), cwd=recipe, env=recipe_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def read_jsonl(path: Path):
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


def test_kaldi_data_dir_in_recipe_and_back_out(tmp_path):
    recipe = recipe_copy("yesno/asr", tmp_path / "yesno")
    wavs = sorted(YESNO.glob("*.wav"))
    dirs = {"train": kaldi_dir(tmp_path / "kaldi/train", wavs[:6]), "test": kaldi_dir(tmp_path / "kaldi/test", wavs[6:9])}
    for split, d in dirs.items():
        run(recipe, "bash", "utils/kaldi_data_dir.sh", "--sampling-rate", "8000", "import", str(d), "data/manifests",
            "yesno", split)
    sups = read_jsonl(recipe / "data/manifests/yesno_supervisions_train.jsonl.gz")
    assert len(sups) == 6 and sups[0]["speaker"] == "spk0" and sups[0]["text"].split()[0] in ("YES", "NO")
    recs = read_jsonl(recipe / "data/manifests/yesno_recordings_train.jsonl.gz")
    assert all(r["sampling_rate"] == 8000 and r["duration"] > 1.0 for r in recs)
    again = run(recipe, "bash", "utils/kaldi_data_dir.sh", "import", str(dirs["train"]), "data/manifests", "yesno",
                "train")
    assert "exist, skipping" in again.stdout

    # the recipe goes on from the manifests: fbank and lang
    proc = run_recipe(recipe, "--stage", "2", "--stop-stage", "3")
    assert "Stage 2:" in proc.stdout and (recipe / "data/fbank/yesno_cuts_train.jsonl.gz").is_file()
    assert (recipe / "data/lang_word/tokens.txt").read_text().split()[::2] == ["<blk>", "NO", "YES", "<unk>"]

    # the lhotse CLI reads serac's cuts
    described = run(recipe, "bash", "-c", ". ./path.sh && lhotse cut describe data/fbank/yesno_cuts_train.jsonl.gz")
    assert "Cuts count:" in described.stdout and "6" in described.stdout.split("Cuts count:")[1].split("\n")[0]

    # and the manifests go back out to a Kaldi data dir with the same utterances
    run(recipe, "bash", "utils/kaldi_data_dir.sh", "export", "data/manifests", "yesno", "test", "kaldi_out")
    for name in ("text", "utt2spk"):
        assert sorted((recipe / "kaldi_out" / name).read_text().splitlines()) == \
            sorted((dirs["test"] / name).read_text().splitlines()), name
    exported = dict(line.split(maxsplit=1) for line in (recipe / "kaldi_out/wav.scp").read_text().splitlines())
    original = dict(line.split(maxsplit=1) for line in (dirs["test"] / "wav.scp").read_text().splitlines())
    assert set(exported) == set(original)


def test_import_without_text_names_the_file(tmp_path):
    recipe = recipe_copy("yesno/asr", tmp_path / "yesno")
    d = kaldi_dir(tmp_path / "kaldi/train", sorted(YESNO.glob("*.wav"))[:2])
    (d / "text").unlink()
    proc = subprocess.run(["bash", "utils/kaldi_data_dir.sh", "import", str(d), "data/manifests", "yesno", "train"],
                          cwd=recipe, env=recipe_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and f"{d}/text not found" in proc.stderr
