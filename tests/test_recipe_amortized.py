"""A tiny end-to-end run of egs/synth_assistant/amortized on the tiny corpus of tests/test_recipe_synth.py:
the asr recipe's data stages, then every stage here with a tiny model, one epoch and two cost weights."""
from __future__ import annotations

import csv
import json

from recipe_utils import copy_corpus, recipe_copy, run_recipe

# replaces the recipe's conf/dense.yaml in the private copy: every fine-tune config inherits it
TINY_DENSE = """\
model:
  encoder: {name: amortized_transformer, output_dim: 32, dim: 32, num_layers: 2, num_heads: 2, ffn_dim: 64,
            subsampling_channels: 4, chunk_size: 4, left_context: 8, arbitrators: false}
  decoder_dim: 32
  joiner_dim: 32
  ctc_head: true
loss: {ctc_scale: 1.0}
data: {max_duration: 60.0, num_buckets: 2}
train: {num_epochs: 1, log_interval: 5, progress_bar: false, tensorboard: false}
"""


def test_amortized_recipe_tiny_end_to_end(tmp_path, tiny_synth_corpus):
    root = tmp_path / "synth_assistant"
    asr = recipe_copy("synth_assistant/asr", root / "asr")
    copy_corpus(tiny_synth_corpus, asr)  # the asr recipe's stages 0-3, run once per session (tests/conftest.py)
    recipe = recipe_copy("synth_assistant/amortized", root / "amortized")
    (recipe / "conf" / "dense.yaml").write_text(TINY_DENSE)
    args = ["--vocab-size", "80", "--dense-epochs", "1", "--ft-epochs", "1", "--sw-left-contexts", "0",
            "--cost-weights", "0.5 20", "--kd-cost-weights", "0.5", "--joint-cost-weights", "0.5",
            "--n-bootstrap", "20", "--timing-repeats", "1", "--dense-threads", "1", "--joint-threads", "1",
            "--avg", "1"]  # one fine-tune epoch: nothing to average (run.sh averages 3)
    proc = run_recipe(recipe, *args)
    for n in range(11):
        assert f"Stage {n}:" in proc.stdout
    gated = ["amortized-cw0.5", "amortized-cw20", "amortized-kd-cw0.5", "joint-cw0.5"]
    chosen = (recipe / "exp/chosen").read_text().strip()
    assert chosen in gated  # chosen on dev (local/operating_point.py select)
    models = ["dense-ft", "sw-lc0"] + gated + [f"static-{chosen}"]
    from lhotse import load_manifest

    test_ids = {c.id for c in load_manifest(recipe / "data/fbank/synth_cuts_test.jsonl.gz")}
    dev_ids = {c.id for c in load_manifest(recipe / "data/fbank/synth_cuts_dev.jsonl.gz")}
    for m in models:
        # the joint model trains from scratch for dense + fine-tune epochs
        suffix = f"modified_beam_search-epoch-{2 if m.startswith('joint') else 1}-avg-1-beam-4"
        for set_name, ids in (("test", test_ids), ("dev", dev_ids)):
            with open(recipe / "exp" / m / "decode" / set_name / f"compute-{set_name}-{suffix}.tsv", newline="") as f:
                rows = list(csv.DictReader(f, delimiter="\t"))
            assert {r["cut_id"] for r in rows} == ids
        fractions = [float(r["flop_fraction"]) for r in rows]
        assert all(len(r["mha_frames"].split()) == 2 and len(r["ffn_frames"].split()) == 2 for r in rows)
        if m in gated:
            assert all(0.0 < x < 1.2 for x in fractions)
        elif m.startswith("static-"):
            assert all(0.0 < x <= 1.0 for x in fractions)
        else:
            assert all(x == 1.0 for x in fractions)
        dec = recipe / "exp" / m / "decode" / "test"
        stats = json.loads((dec / f"stats-test-{suffix}.json").read_text())
        assert stats["encoder_seconds"] > 0 and "flop_fraction" in stats
        assert (dec / f"cohorts-{suffix}" / "cohort-summary-accent.json").is_file()
    timing = json.loads((recipe / "exp/encoder-time.json").read_text())
    assert set(timing["models"]) == set(models) and timing["reference"] == "dense-ft"
    assert timing["models"]["dense-ft"]["time_vs_reference"] == 1.0
    assert "gate_on_fraction" not in timing["models"]["dense-ft"]
    for m in ("amortized-cw0.5", "amortized-cw20", "amortized-kd-cw0.5"):
        fractions = timing["models"][m]["gate_on_fraction"]
        assert len(fractions) == 2 and all(len(b) == 2 and all(0 <= x <= 1 for x in b) for b in fractions)

    results = (recipe / "RESULTS.md").read_text()
    for m in models:
        assert f"| {m} |" in results
    assert "The paper reports 60% less compute" in results
    assert "git revision `" in results and "(the trainings and this table)" in results
    assert "Executed encoder FLOPs per accent" in results
    assert "rel. WER change [95% CI]" in results and "Models named `amortized-kd-*`" in results
    assert "decoded on dev and test, modified beam search (beam 4), each on its own" in results
    # the asr recipe ran its data stages only: no LSTM decode to compare the dense reference with, and it says so
    assert ("Not compared: `../asr/exp/lstm/decode/test/recogs-test-modified_beam_search-epoch-15-avg-5-beam-4.txt`"
            " is missing") in results
    # the joint model's config has the warm-up; the static one drops modules
    joint_cfg = (recipe / "exp/joint-cw0.5/config.yaml").read_text()
    assert "gate_warmup_steps: 2600" in joint_cfg and "arbitrators: true" in joint_cfg
    static_cfg = (recipe / "exp" / f"static-{chosen}" / "config.yaml").read_text()
    assert "static_skip:" in static_cfg and "arbitrators: false" in static_cfg
    # the distilled variant was fine-tuned against the dense reference: its config names the teacher, its log
    # reports the term
    kd_cfg = (recipe / "exp/amortized-kd-cw0.5/config.yaml").read_text()
    assert "teacher: exp/dense-ft/epoch-1.pt" in kd_cfg and "cost_weight: 0.5" in kd_cfg
    assert ", distill " in (recipe / "exp/amortized-kd-cw0.5/log/train.log").read_text()
    assert "## Where the arbitrators run the modules" in results and "| amortized-cw20 | " in results
    assert (recipe / "results/wer-vs-compute.png").stat().st_size > 1000
    # the sliding-window model costs less than dense (4 attention keys instead of 12), on every utterance
    flops, suffix = {}, "modified_beam_search-epoch-1-avg-1-beam-4"
    for m in ("dense-ft", "sw-lc0"):
        with open(recipe / "exp" / m / "decode/test" / f"compute-test-{suffix}.tsv", newline="") as f:
            flops[m] = {r["cut_id"]: float(r["flops"]) for r in csv.DictReader(f, delimiter="\t")}
    assert all(flops["sw-lc0"][i] < flops["dense-ft"][i] for i in test_ids)

    run_recipe(recipe, *args, "--stage", "3", "--stop-stage", "4")  # finished trainings are kept
    for m in ("amortized-cw20", "joint-cw0.5"):
        assert "nothing to do" in (recipe / "exp" / m / "log/train.log").read_text()
