"""The fairness recipe's ARW stage and its option checks (egs/synth_assistant/fairness/run.sh), in a private copy:
stage 7 trains the ARW system from scratch on a tiny corpus with a tiny config; bad options fail before any work."""
from __future__ import annotations

import json
import os

import pytest
import torch

from recipe_utils import recipe_copy, run_recipe
from trainer_utils import write_feature_cuts

TINY_ARW = """# a tiny transducer (the tests' trainer) with ARW on; everything else from serac's defaults
model:
  encoder: {hidden_dim: 12, num_layers: 1, output_dim: 10, subsampling_factor: 2, dropout: 0.0}
  decoder_dim: 8
  joiner_dim: 8
data: {max_duration: 2.0, num_buckets: 2}
optim: {warmup_steps: 0, lr: 0.01}
loss: {warm_step: 0}
train: {tensorboard: false, progress_bar: false}
arw:
  enabled: true
  inputs: [features, encoder, label_length]
  hidden_dim: 8
  lr: 0.05
  weight_decay: 0.0
  warmup_steps: 0
  adversary_every: 1
  floor: 1.0
"""


@pytest.fixture
def recipe(tmp_path):
    return recipe_copy("synth_assistant/fairness", tmp_path / "fairness")


def test_fairness_recipe_rejects_bad_options(recipe):
    for args, message in (
        (["--embedding", "mfcc"], "--embedding mfcc: choose serac, resemblyzer, fbank-stats or auto"),
        (["--arw-config", "conf/nope.yaml"], "--arw-config conf/nope.yaml: no such file"),
        (["--arw-config", "conf/finetune.yaml"], "--arw-config conf/finetune.yaml has no arw: section"),
        (["--speaker-model", "exp/nope.pt", "--stage", "1"], "--speaker-model exp/nope.pt: no such file"),
        (["--target-key", "accent"], "--target-key accent: choose region, geo_region, geodemo or auto_cohort"),
        (["--variants", "finetune ewc-5"], "--variants: unknown variant ewc-5 (choose from: finetune"),
    ):
        proc = run_recipe(recipe, *args, check=False, timeout=120)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr[-2000:])
    assert not (recipe / "exp" / "arw").exists()
    # a missing --speaker-model does not matter to embeddings that do not use it (stage 1 fails later here: no data)
    proc = run_recipe(recipe, "--speaker-model", "exp/nope.pt", "--embedding", "fbank-stats", "--compare-embeddings",
                      "", "--stage", "1", "--stop-stage", "1", check=False, timeout=120)
    assert "Stage 1: cohort discovery" in proc.stdout and "--speaker-model" not in proc.stderr, proc.stderr[-2000:]
    # the default stop stage includes the ARW stages and the tables (a plain ./run.sh runs everything)
    proc = run_recipe(recipe, "--stage", "9", check=False, timeout=120)
    assert "Stage 9: mitigation and ARW tables" in proc.stdout and "no stage would run" not in proc.stderr


def test_fairness_recipe_arw_stage_trains_from_scratch(recipe, tmp_path):
    from serac.data.tokenizer import prepare_word_lang
    from serac.transducer.loss import backend

    if backend is None:
        pytest.skip("no RNN-T backend")
    asr = tmp_path / "asr"
    prepare_word_lang(["YES NO"], asr / "data" / "lang_bpe_64")
    fbank = recipe / "data" / "fbank"
    fbank.mkdir(parents=True)
    write_feature_cuts(fbank / "synth_cuts_train.jsonl.gz", tmp_path / "ftr", 8, 0)
    write_feature_cuts(fbank / "synth_cuts_dev.jsonl.gz", tmp_path / "fdv", 2, 1)
    (recipe / "conf" / "tiny-arw.yaml").write_text(TINY_ARW)
    args = ["--asr-dir", str(asr), "--arw-config", "conf/tiny-arw.yaml", "--baseline-epoch", "2", "--baseline-avg", "1",
            "--stage", "7", "--stop-stage", "7"]
    proc = run_recipe(recipe, *args, timeout=300)
    assert "Stage 7: ARW" in proc.stdout and "Stage 8" not in proc.stdout
    exp = recipe / "exp" / "arw"
    ckpt = torch.load(exp / "epoch-2.pt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 2 and ckpt["config"]["arw"]["enabled"] is True
    assert ckpt["config"]["train"]["num_epochs"] == 2  # --baseline-epoch: as many epochs as the baseline
    assert ckpt["addons"]["arw"]["inputs"] == ["features", "encoder", "label_length"]
    log = (exp / "log" / "train.log").read_text()
    assert "initialised the model from" not in log  # from scratch, not from theta*
    assert "arw weights min" in log
    timing = (recipe / "exp" / "timing.tsv").read_text().splitlines()
    assert timing[-1].split("\t")[:2] == ["7", "arw-train"]
    # a re-run skips the finished training
    before = (exp / "epoch-2.pt").stat().st_mtime_ns
    run_recipe(recipe, *args, timeout=300)
    assert (exp / "epoch-2.pt").stat().st_mtime_ns == before
    assert json.loads(json.dumps(ckpt["config"]["arw"]))["floor"] == 1.0


def test_fairness_recipe_targets_the_discovered_bottom_cohort(recipe, tmp_path):
    """--target-key auto_cohort: stage 3 ranks the automatic cohorts on dev with stage 1's cohort map, targets the
    bottom one (one target by default) and oversamples its training speakers, into its own data/sets-auto_cohort."""
    from test_fairness_mitigation import _adapt_fixture

    paths = _adapt_fixture(tmp_path)
    fbank = recipe / "data" / "fbank"
    fbank.mkdir(parents=True)
    for split in ("dev", "adapt", "train"):
        (fbank / f"synth_cuts_{split}.jsonl.gz").symlink_to(paths[split])
    (fbank / "synth_cuts_test.jsonl.gz").symlink_to(paths["dev"])  # labelled for the cohort-embedding variant
    decode = recipe / "exp" / "baseline" / "decode" / "dev"
    decode.mkdir(parents=True)
    (decode / "recogs-dev-greedy_search-epoch-15-avg-5.txt").symlink_to(paths["recogs"])
    args = ["--asr-dir", str(tmp_path / "asr"), "--target-key", "auto_cohort", "--oversample-factor", "3",
            "--stage", "3", "--stop-stage", "3"]
    proc = run_recipe(recipe, *args, check=False, timeout=120)  # before stage 1: no map
    assert proc.returncode == 1 and "no cohort map exp/discovery/auto/cohort-map.tsv (run stage 1)" in proc.stderr
    (recipe / "exp" / "discovery" / "auto").mkdir(parents=True)
    (recipe / "exp" / "discovery" / "auto" / "cohort-map.tsv").write_text(paths["map"].read_text())
    proc = run_recipe(recipe, *args, timeout=120)
    assert "Stage 3: the 1 worst auto_cohort cohorts on dev" in proc.stdout
    sets = recipe / "data" / "sets-auto_cohort"
    meta = json.loads((sets / "targets.json").read_text())
    assert meta["targets"] == ["auto1"] and meta["cohort_map"] == "exp/discovery/auto/cohort-map.tsv"
    assert meta["sets"]["oversample_full"]["cuts"] == 12 + 2 * 2 * 2  # t1, t2's 2 cuts each, twice more
    assert not (recipe / "data" / "sets").exists()  # the region sets are another target key's
    # a newer map (stage 1 rerun) redoes the sets; an unchanged one does not
    proc = run_recipe(recipe, *args, timeout=120)
    assert "targets.json is up to date" in proc.stdout
    later = (sets / "targets.json").stat().st_mtime + 10
    os.utime(recipe / "exp" / "discovery" / "auto" / "cohort-map.tsv", (later, later))
    proc = run_recipe(recipe, *args, timeout=120)
    assert "targets.json is up to date" not in proc.stdout
    # the cohort-embedding variant: the continued-training set, dev and test labelled with the map's cohorts, and
    # a fine-tuning config with the embedding of every cohort of the map
    proc = run_recipe(recipe, *args, "--variants", "oversample cohortemb", timeout=120)
    cfg = (sets / "cohortemb.yaml").read_text()
    assert "key: auto_cohort" in cfg and "base: ../../exp/ewc/finetune.yaml" in cfg
    from lhotse import load_manifest

    for name in ("continue_labelled", "dev_labelled", "test_labelled"):
        labelled = load_manifest(sets / f"{name}.jsonl.gz")
        assert len(labelled) and all(c.supervisions[0].custom["auto_cohort"] in cfg for c in labelled)
