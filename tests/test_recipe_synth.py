"""A tiny end-to-end run of the main recipe (egs/synth_assistant/asr): every stage, few speakers, one epoch."""
from __future__ import annotations

import json

from recipe_utils import recipe_copy, run_recipe, summary_wer

TINY_CONFIG = """\
model:
  encoder: {name: lstm, hidden_dim: 64, num_layers: 1, output_dim: 64}
  decoder_dim: 32
  joiner_dim: 32
data: {max_duration: 60.0, num_buckets: 2}
train: {num_epochs: 1, log_interval: 5}
"""

GEN_OPTS = ("--dev-speakers 4 --test-speakers 6 --min-test-speakers-per-accent 0 --adapt-speakers-per-region 1 "
            "--eval-utts-per-speaker 3")


def test_synth_recipe_tiny_end_to_end(tmp_path):
    recipe = recipe_copy("synth_assistant/asr", tmp_path / "synth")
    (recipe / "conf" / "tiny.yaml").write_text(TINY_CONFIG)
    args = ["--num-speakers", "10", "--utts-per-speaker", "4", "--gen-opts", GEN_OPTS, "--train-config",
            "conf/tiny.yaml", "--num-epochs", "1", "--avg", "1", "--vocab-size", "80", "--n-bootstrap", "50",
            "--decode-nj", "2"]
    proc = run_recipe(recipe, *args)
    for n in range(8):
        assert f"Stage {n}:" in proc.stdout
    dec = recipe / "exp/lstm/decode/test"
    wer = summary_wer(dec / "wer-summary-test-greedy_search-epoch-1-avg-1.txt")
    assert wer >= 0.0  # one epoch of a tiny model: any WER, insertions can push it past 100%
    recogs = (dec / "recogs-test-greedy_search-epoch-1-avg-1.txt").read_text().splitlines()
    from lhotse import load_manifest

    num_test = len(load_manifest(recipe / "data/fbank/synth_cuts_test.jsonl.gz"))
    assert num_test > 0 and len(recogs) == 2 * num_test  # a ref and a hyp line per utterance
    cohorts = dec / "cohorts-greedy_search-epoch-1-avg-1"
    for key in ("accent", "gender", "age_band", "state", "region"):
        summary = json.loads((cohorts / f"cohort-summary-{key}.json").read_text())
        assert summary["key"] == key and summary["summary"]["num_cohorts"] >= 1
        assert (cohorts / f"cohort-wer-{key}.tsv").is_file()
    assert (cohorts / "speaker-wer-map.png").stat().st_size > 1000
    results = (recipe / "RESULTS.md").read_text()
    assert "| test | greedy_search-epoch-1-avg-1 |" in results and "Per-cohort WER on test" in results
    assert "Corpus `synth`" in results

    # re-running skips finished work, including generation and training
    again = run_recipe(recipe, *args, "--stage", "0", "--stop-stage", "5")
    out = again.stdout + again.stderr
    assert "skipping" in out
    assert "nothing to do" in (recipe / "exp/lstm/log/train.log").read_text()
