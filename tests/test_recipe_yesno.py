"""End to end: egs/yesno/asr/run.sh on the real yesno corpus, all stages, then re-run (everything skipped)."""
from __future__ import annotations

import pytest

from recipe_utils import YESNO, recipe_copy, run_recipe, summary_wer


def test_yesno_recipe_end_to_end(yesno_recipe_run):
    recipe, proc = yesno_recipe_run  # tests/conftest.py: the default run, shared with tests/test_export_sherpa.py
    for n in range(7):
        assert f"Stage {n}:" in proc.stdout
    dec = recipe / "exp/lstm/decode/test"
    greedy = summary_wer(dec / "wer-summary-test-greedy_search-epoch-100-avg-10.txt")
    beam = summary_wer(dec / "wer-summary-test-modified_beam_search-epoch-100-avg-10-beam-4.txt")
    assert greedy <= 2.0, f"greedy WER {greedy}% > 2%"
    assert beam <= 2.0, f"beam WER {beam}% > 2%"
    errs = (dec / "errs-test-greedy_search-epoch-100-avg-10.txt").read_text()
    assert errs.startswith(f"%WER = {greedy:.2f}")
    recogs = (dec / "recogs-test-greedy_search-epoch-100-avg-10.txt").read_text().splitlines()
    assert len(recogs) == 60  # 30 utterances, a ref and a hyp line each
    assert (recipe / "exp/lstm/config.yaml").is_file() and (recipe / "exp/lstm/tensorboard").is_dir()

    # every stage is re-runnable: a second run finds the outputs and skips the work
    again = run_recipe(recipe, "--corpus-dir", str(YESNO), "--stage", "1")
    out = again.stdout + again.stderr
    assert "exists, skipping" in out
    assert "nothing to do" in (recipe / "exp/lstm/log/train.log").read_text()  # training found epoch-100.pt
    assert summary_wer(dec / "wer-summary-test-greedy_search-epoch-100-avg-10.txt") == greedy


@pytest.mark.parametrize("where", ["no-such-parent/waves_yesno", "waves_yesno"])
def test_yesno_missing_corpus_dir_is_an_error_not_a_download(tmp_path, where):
    # issue 14, defect 5: a missing --corpus-dir exited 1 without a message, or (when its parent existed) started a
    # download that, offline, left an empty tarball behind
    recipe = recipe_copy("yesno/asr", tmp_path / "yesno")
    missing = tmp_path / where
    proc = run_recipe(recipe, "--corpus-dir", str(missing), "--stop-stage", "1", check=False)
    assert proc.returncode == 1
    assert f"--corpus-dir {missing}: no such directory" in proc.stderr
    assert "Stage 0" not in proc.stdout and not (recipe / "download").exists()
