"""serac.bin.write_encoder_table on fake experiment directories: the verdict on the ConvRNN-T paper's claim from
the paired speaker-bootstrap intervals (holds / does not hold / undecided), the seeds of a model pooled per speaker,
and the convergence flag from the last three validation losses."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import torch
import yaml

from entry_points import run_entry_point
from serac.decode.naming import decode_suffix, streaming_suffix
from serac.scoring.power import paired_speaker_errors, pooled_speaker_errors
from serac.train.convergence import convergence
from serac.scoring.wer import store_transcripts

EPOCH = 3
SPEAKERS = [f"spk{i:02d}" for i in range(12)]
REF = "the quick brown fox jumps over a lazy dog now".split()  # 10 words per utterance, one utterance per speaker
TINY_ENCODERS = {"lstm": {"name": "lstm", "hidden_dim": 16, "num_layers": 1, "output_dim": 16},
                 "conv_rnnt": {"name": "conv_rnnt", "local_channels": 4, "local_blocks": 1, "local_dim": 8,
                               "global_channels": 8, "global_dilations": [1], "lstm_hidden": 8, "lstm_layers": 1,
                               "output_dim": 16}}


def _hyp(errors: int):
    return ["x"] * errors + REF[errors:]  # `errors` substitutions


def write_cuts(path: Path) -> Path:
    """A supervision manifest: utterance u<i> is spoken by SPEAKERS[i] (all cut_speakers needs)."""
    from lhotse import SupervisionSegment, SupervisionSet

    SupervisionSet.from_segments([SupervisionSegment(id=f"u{i:02d}", recording_id=f"u{i:02d}", start=0.0,
                                                     duration=1.0, speaker=s) for i, s in enumerate(SPEAKERS)]
                                 ).to_file(path)
    return path


def fake_run(root: Path, model: str, seed: int, errors: Sequence[int], losses=(1.0, 1.0, 1.0)) -> Path:
    """The files of one training and its decodes: ``errors`` per speaker (test set, both decodings), the validation
    ``losses`` of epochs 1-3."""
    exp = root / f"{model}-seed{seed}"
    cfg = {"model": {"encoder": TINY_ENCODERS[model]}, "train": {"seed": seed, "num_epochs": EPOCH},
           "env": {"num_features": 80, "encoder_params": 1000, "num_params": 2000, "git_revision": "abc1234"}}
    exp.mkdir(parents=True)
    (exp / "config.yaml").write_text(yaml.safe_dump(cfg))
    for epoch, loss in enumerate(losses, start=1):
        torch.save({"valid": {"loss": loss, "pruned_loss": loss / 2, "ctc_loss": loss / 3}}, exp / f"epoch-{epoch}.pt")
    wer = 100.0 * sum(errors) / (len(REF) * len(SPEAKERS))
    dec = exp / "decode" / "test"
    dec.mkdir(parents=True)
    for method in ("greedy_search", "modified_beam_search"):
        suffix = decode_suffix(method, EPOCH, 1, 4)
        (dec / f"wer-summary-test-{suffix}.txt").write_text(f"settings\tWER\n{suffix}\t{wer:.2f}\n")
        store_transcripts(dec / f"recogs-test-{suffix}.txt",
                          [(f"u{i:02d}", REF, _hyp(e)) for i, e in enumerate(errors)])
    stats = {"wer": wer, "rtf": 0.01 * seed, "chunk_compute_ms": {"mean": 1.0, "p50": 1.0 * seed, "p90": 2.0,
             "p99": 3.0}, "look_ahead_ms": 30, "algorithmic_latency_ms": 160, "chunk_ms": 160, "num_threads": 1}
    (dec / f"stats-test-{streaming_suffix(160, EPOCH, 1)}.json").write_text(json.dumps(stats))
    return exp


def write_table(tmp_path: Path, exp_dirs: Sequence[Path], *extra: str) -> str:
    out = tmp_path / "RESULTS-encoders.md"
    cuts = tmp_path / "cuts_test.jsonl.gz"
    if not cuts.exists():
        write_cuts(cuts)
    messages = io.StringIO()
    with contextlib.redirect_stderr(messages):
        status = run_entry_point("write_encoder_table", [
            "--exp-dirs", ",".join(map(str, exp_dirs)), "--sets", "test", "--epoch", str(EPOCH), "--cohort-key", "",
            "--cuts-pattern", str(tmp_path / "cuts_{set}.jsonl.gz"), "--n-bootstrap", "500",
            "--command", "./run.sh --stage 8 --stop-stage 10", "--out", str(out), *extra])
    if status:
        raise SystemExit(messages.getvalue())  # the message the command exited with
    return out.read_text()


LOW = [1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1]       # 8 errors
HIGH = [4, 3, 5, 4, 3, 4, 5, 3, 4, 4, 3, 4]      # 46 errors: every speaker worse than LOW


def verdict_of(table: str) -> str:
    beam = [line for line in table.splitlines() if line.startswith("With modified beam search")]
    assert len(beam) == 1, table
    return beam[0]


def test_verdict_holds_when_conv_rnnt_is_clearly_better(tmp_path):
    dirs = [fake_run(tmp_path, "lstm", s, HIGH) for s in (1, 2)] + [fake_run(tmp_path, "conv_rnnt", s, LOW)
                                                                    for s in (1, 2)]
    table = write_table(tmp_path, dirs)
    assert "**holds** (every interval lies below 0)" in verdict_of(table)
    assert "With greedy search on test, the paper's claim" in table and table.count("**holds**") == 2
    assert "| test | modified beam search | `lstm` | -82.6% |" in table       # 8 / 46 - 1
    assert "| `conv_rnnt` | 1 2 |" in table and "| `lstm` | 1 2 |" in table   # the mean-over-seeds rows
    assert "Not in this run: `conformer`, `contextnet`" in table
    assert "Every training had converged by epoch 3" in table
    assert "reproduce with `./run.sh --stage 8 --stop-stage 10`; git revision `" in table


def test_verdict_does_not_hold_when_conv_rnnt_is_clearly_worse(tmp_path):
    dirs = [fake_run(tmp_path, "lstm", 1, LOW), fake_run(tmp_path, "conv_rnnt", 1, HIGH)]
    verdict = verdict_of(write_table(tmp_path, dirs))
    assert "**does not hold**: ConvRNN-T's WER is higher vs `lstm` on test [+" in verdict


def test_verdict_undecided_when_the_models_are_tied(tmp_path):
    # ConvRNN-T better on half the speakers, worse on the other half, the same total: the interval includes 0
    mixed = [1, 4, 1, 4, 1, 4, 1, 4, 1, 4, 1, 4]
    swapped = [4, 1, 4, 1, 4, 1, 4, 1, 4, 1, 4, 1]
    dirs = [fake_run(tmp_path, "lstm", 1, mixed), fake_run(tmp_path, "conv_rnnt", 1, swapped)]
    table = write_table(tmp_path, dirs)
    verdict = verdict_of(table)
    assert "**undecided at this size**: no interval lies above 0, but these include 0: vs `lstm` on test [-" in verdict
    assert "| undecided |" in table


def test_seeds_are_pooled_per_speaker(tmp_path):
    """Each speaker's errors are averaged over a model's seeds before the relative difference: a seed that is
    worse on one speaker and a seed better on another pool into their mean."""
    conv = [[1] * 12, [3] * 6 + [1] * 6]
    lstm = [[2] * 12, [2] * 12]
    from serac.scoring.wer import load_transcripts

    dirs = [fake_run(tmp_path, "conv_rnnt", s + 1, e) for s, e in enumerate(conv)]
    dirs += [fake_run(tmp_path, "lstm", s + 1, e) for s, e in enumerate(lstm)]
    recogs = [load_transcripts(d / "decode/test" / f"recogs-test-{decode_suffix('greedy_search', EPOCH, 1, 4)}.txt")
              for d in dirs]
    speakers = {f"u{i:02d}": s for i, s in enumerate(SPEAKERS)}
    ea, eb, names = pooled_speaker_errors(recogs[:2], recogs[2:], speakers)
    assert names == SPEAKERS
    np.testing.assert_allclose(ea, [2] * 6 + [1] * 6)
    np.testing.assert_allclose(eb, [2] * 12)
    # one seed alone is what power.paired_speaker_errors gives
    np.testing.assert_allclose(pooled_speaker_errors(recogs[:1], recogs[2:3], speakers)[0],
                               paired_speaker_errors(recogs[0], recogs[2], speakers)[0])
    table = write_table(tmp_path, dirs)
    assert "| test | greedy search | `lstm` | -25.0% |" in table   # (12 + 24) / (24 + 24) - 1
    conv_row = table.split("## Accuracy and cost")[1].split("| `conv_rnnt` | 1 2 | ")[1].split(" | ")
    assert conv_row[:2] == ["15.00", "15.00"]  # test greedy, beam: the mean of the seeds' 10.00 and 20.00


def test_a_training_that_did_not_learn_is_named_and_the_claim_judged_without_it(tmp_path):
    """A seed at 100% WER (a flat loss at the CTC plateau passes for converged) is named as not learned; the claim is
    judged twice: pooled over all seeds, and with each model counted by its seeds that learned."""
    failed = [10] * 12                                           # every word wrong: WER 100%
    tied = [1, 4, 1, 4, 1, 4, 1, 4, 1, 4, 1, 4]
    dirs = [fake_run(tmp_path, "lstm", 1, failed), fake_run(tmp_path, "lstm", 2, tied)]
    dirs += [fake_run(tmp_path, "conv_rnnt", s, [4, 1, 4, 1, 4, 1, 4, 1, 4, 1, 4, 1]) for s in (1, 2)]
    table = write_table(tmp_path, dirs)
    assert "| `lstm` | 1 | 1.0000 / 1.0000 / 1.0000 | +0.0% | did not learn (test greedy WER 100.0% >= 90%) |" in table
    assert "| test | modified beam search | `lstm` (seeds that learned: 2; conv_rnnt: 1 2) |" in table
    # pooled with the failed seed ConvRNN-T looks far better; against the seed that learned it is a tie
    assert "**holds** (every interval lies below 0)" in verdict_of(table)
    learned = [line for line in table.splitlines()
               if line.startswith("Counting only the trainings that learned, with modified beam search")]
    assert len(learned) == 1 and "**undecided at this size**" in learned[0], table
    assert "**Flagged**: trainings that did not learn to recognise speech (test greedy WER >= 90%): `lstm` seed 1" \
        in table
    assert "Every training had converged by epoch 3" in table  # by its loss: the failed one too, flat at 1.0


def test_a_model_none_of_whose_seeds_learned_is_left_out_of_the_second_verdict(tmp_path):
    dirs = [fake_run(tmp_path, "lstm", 1, [10] * 12), fake_run(tmp_path, "conv_rnnt", 1, LOW)]
    table = write_table(tmp_path, dirs)
    assert "seeds that learned:" not in table  # no comparison row without the failed training
    assert not [line for line in table.splitlines() if line.startswith("Counting only")]
    assert "`lstm` seed 1 (test greedy WER 100.0%)" in table


def test_a_seed_given_twice_is_refused(tmp_path):
    dirs = [fake_run(tmp_path / "a", "lstm", 1, LOW), fake_run(tmp_path / "b", "lstm", 1, LOW),
            fake_run(tmp_path, "conv_rnnt", 1, LOW)]
    with pytest.raises(SystemExit, match="are both lstm with seed 1"):
        write_table(tmp_path, dirs)


@pytest.mark.parametrize("losses, status, converged", [
    ((1.0, 0.995, 0.985), "converged", True),        # -1.5%
    ((1.0, 0.9, 0.8), "still improving", False),     # -20%
    ((1.0, 1.05, 1.1), "rising", False),             # +10%
])
def test_convergence_is_judged_from_the_last_three_validation_losses(losses, status, converged):
    cv = convergence(losses, EPOCH, 2.0)
    assert (cv["status"], cv["converged"]) == (status, converged)
    assert convergence((1.0, 0.995, 0.985), EPOCH, 1.0)["status"] == "still improving"  # the threshold is an option
    short = convergence((1.0,), 1, 2.0)
    assert not short["converged"] and short["status"].startswith("not judged (1 epoch(s)")


def test_unconverged_training_flags_the_verdict(tmp_path):
    dirs = [fake_run(tmp_path, "lstm", 1, HIGH, losses=(1.0, 0.9, 0.8)), fake_run(tmp_path, "conv_rnnt", 1, LOW)]
    table = write_table(tmp_path, dirs)
    assert "| `lstm` | 1 | 1.0000 / 0.9000 / 0.8000 | -20.0% | still improving |" in table
    assert "| `conv_rnnt` | 1 | 1.0000 / 1.0000 / 1.0000 | +0.0% | converged |" in table
    assert "**Flagged**: not every training is known to have converged by epoch 3 (`lstm` seed 1: still improving, " \
           "-20.0%)" in table
    # with a 25% threshold the same losses count as converged
    table = write_table(tmp_path, dirs, "--converged-pct", "25")
    assert "**Flagged**" not in table and "Every training had converged" in table


def test_missing_conv_rnnt_or_decode_is_named(tmp_path):
    lstm = fake_run(tmp_path, "lstm", 1, LOW)
    assert "`conv_rnnt` is not among the compared models" in write_table(tmp_path, [lstm])
    conv = fake_run(tmp_path, "conv_rnnt", 1, LOW)
    (conv / "decode/test" / f"recogs-test-{decode_suffix('modified_beam_search', EPOCH, 1, 4)}.txt").unlink()
    with pytest.raises(SystemExit, match="recogs-test-modified_beam_search-epoch-3-avg-1-beam-4.txt missing"):
        write_table(tmp_path, [lstm, conv])


def test_decodes_of_other_cuts_or_without_errors_are_named(tmp_path):
    lstm = fake_run(tmp_path, "lstm", 1, [0] * 12)     # no errors: the relative difference is undefined
    conv = fake_run(tmp_path, "conv_rnnt", 1, LOW)
    with pytest.raises(SystemExit, match="conv_rnnt vs lstm on test .*system B makes no errors"):
        write_table(tmp_path, [lstm, conv])
    other = fake_run(tmp_path / "other", "lstm", 1, HIGH)
    recogs = other / "decode/test" / f"recogs-test-{decode_suffix('modified_beam_search', EPOCH, 1, 4)}.txt"
    store_transcripts(recogs, [(f"u{i:02d}", REF, _hyp(e)) for i, e in enumerate(HIGH[:-1])])  # one cut fewer
    with pytest.raises(SystemExit, match="conv_rnnt vs lstm on test \\(modified beam search.*cover different cuts"):
        write_table(tmp_path, [other, conv])


def test_seed_to_seed_differences_are_tabled_and_flag_close_verdicts(tmp_path):
    """A model's second seed against its first, with the same paired interval; a decided comparison that is no
    more than twice the largest seed-to-seed difference is named under the verdict."""
    lstm = [[3] * 12, [4] * 12]  # seed 2 vs 1: +33.3%, decided (every speaker worse)
    conv = [[2] * 12, [2] * 12]  # vs the LSTM's pooled 3.5 per speaker: -42.9%, within 2 x 33.3%
    dirs = [fake_run(tmp_path, "lstm", s + 1, e) for s, e in enumerate(lstm)]
    dirs += [fake_run(tmp_path, "conv_rnnt", s + 1, e) for s, e in enumerate(conv)]
    table = write_table(tmp_path, dirs)
    assert "## Seed to seed: the same recipe, another training" in table
    assert "| test | modified beam search | `lstm` | 2 vs 1 | +33.3% | [+33.3%, +33.3%] | yes |" in table
    assert "| test | greedy search | `conv_rnnt` | 2 vs 1 | +0.0% | [+0.0%, +0.0%] | no |" in table
    assert "(here up to 33.3%)" in table
    assert "**Seeds**: these decided differences are no more than twice the largest difference between two seeds of " \
           "one model (33.3%, above): vs `lstm` on test (modified beam search) -42.9%" in table
    # one seed per model: no such section, no such flag
    single = write_table(tmp_path / "one", [fake_run(tmp_path / "one", "lstm", 1, [3] * 12),
                                            fake_run(tmp_path / "one", "conv_rnnt", 1, [2] * 12)])
    assert "## Seed to seed" not in single and "**Seeds**" not in single


def write_earlier_decode(exp: Path, epoch: int, errors: Sequence[int]) -> None:
    """The greedy decode of test at an earlier ``epoch`` (the convergence check on WER), ``errors`` per speaker."""
    suffix = decode_suffix("greedy_search", epoch, 1, 4)
    dec = exp / "decode" / "test"
    wer = 100.0 * sum(errors) / (len(REF) * len(SPEAKERS))
    (dec / f"wer-summary-test-{suffix}.txt").write_text(f"settings\tWER\n{suffix}\t{wer:.2f}\n")
    store_transcripts(dec / f"recogs-test-{suffix}.txt", [(f"u{i:02d}", REF, _hyp(e)) for i, e in enumerate(errors)])


def test_convergence_on_dev_wer_flags_a_model_still_improving(tmp_path):
    """--converge-epoch: a model whose WER fell decidably from the earlier epoch is `still improving` and flags the
    verdict, one with the same WER has `no decidable change`, one that got worse is `worse`; the noisy validation
    losses are then only a trend (no flag from them)."""
    lstm = [fake_run(tmp_path, "lstm", s, LOW, losses=(1.0, 0.8, 1.2)) for s in (1, 2)]
    conv = [fake_run(tmp_path, "conv_rnnt", s, LOW) for s in (1, 2)]
    for d in lstm:
        write_earlier_decode(d, 2, HIGH)   # 46 -> 8 errors: still improving
    for d in conv:
        write_earlier_decode(d, 2, LOW)    # unchanged
    table = write_table(tmp_path, lstm + conv, "--converge-epoch", "2")
    assert "| `lstm` | 1 2 | 38.33 | 6.67 | -82.6% |" in table and "| still improving |" in table
    assert "| `conv_rnnt` | 1 2 | 6.67 | 6.67 | +0.0% | [+0.0%, +0.0%] | no decidable change |" in table
    assert "**Flagged**: still improving on test from epoch 2 to 3 (greedy WER, the interval lies below 0): `lstm` " \
           "-82.6%" in table
    assert "not every training is known to have converged" not in table  # the valid-loss rule is not the judge
    assert "| change, first to last | trend |" in table
    for d in lstm:
        write_earlier_decode(d, 2, LOW)
    for d in conv:
        write_earlier_decode(d, 2, [0] * len(SPEAKERS))  # 0 -> 8 errors: worse (and no division by 0 errors)
    with pytest.raises(SystemExit, match="conv_rnnt: epoch 3 vs 2 on test"):
        write_table(tmp_path, lstm + conv, "--converge-epoch", "2")
    for d in conv:
        write_earlier_decode(d, 2, [0, 0, 1] * 4)  # 4 -> 8 errors, no speaker better: worse, which is no flag
    table = write_table(tmp_path, lstm + conv, "--converge-epoch", "2")
    assert "| `conv_rnnt` | 1 2 | 3.33 | 6.67 | +100.0% |" in table and "| worse |" in table
    assert "**Flagged**" not in table
    for d in conv:
        write_earlier_decode(d, 2, [0] + [1] * (len(SPEAKERS) - 1))  # 11 -> 8: better, but not decidably
    table = write_table(tmp_path, lstm + conv, "--converge-epoch", "2")
    assert "no decidable change" in table and "**Flagged**" not in table
    assert "Every model had stopped improving by epoch 3" in table
    for d in conv:
        (d / "decode/test" / f"recogs-test-{decode_suffix('greedy_search', 2, 1, 4)}.txt").unlink()
    with pytest.raises(SystemExit, match="greedy decode of test at epoch 2"):
        write_table(tmp_path, lstm + conv, "--converge-epoch", "2")
    with pytest.raises(SystemExit, match="--converge-epoch 3 must lie between 0 and --epoch 3"):
        write_table(tmp_path, lstm + conv, "--converge-epoch", "3")
