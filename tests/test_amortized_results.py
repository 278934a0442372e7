"""The amortized recipe's dev choices and RESULTS.md writer (egs/synth_assistant/amortized/local/operating_point.py
and write_results.py) on tiny fake exp dirs: the operating point is chosen on dev (test would choose another), the
verdicts come from the paired interval, the static module-drop counterpart is compared, the per-frame-decision
share and the per-cohort compute tables are what the hand counts below say.

Usage:
  python -m pytest -q tests/test_amortized_results.py
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / "egs/synth_assistant/amortized/local"
SUFFIX = "greedy_search-epoch-6-avg-1"
ENCODER = dict(name="amortized_transformer", output_dim=8, dim=16, num_layers=2, num_heads=2, ffn_dim=32,
               subsampling_channels=4, chunk_size=2, left_context=4, dropout=0.0)

# test: 6 cuts of 10 words and 10 frames, 3 speakers, half clean, half noisy; dev: 4 cuts of 50 words
TEST_CUTS = {f"t{i}": {"speaker": f"spk{i % 3}", "accent": "en-US" if i < 4 else "en-GB",
                       "condition": "clean" if i < 3 else "noisy"} for i in range(6)}
DEV_CUTS = {f"d{i}": {"speaker": f"spk{i % 2}", "accent": "en-US", "condition": "clean"} for i in range(4)}
TEST_WORDS, DEV_WORDS, FRAMES, DENSE_FLOPS = 10, 50, 10, 1000.0


def _load(name: str):
    if str(LOCAL) not in sys.path:
        sys.path.insert(0, str(LOCAL))
    spec = importlib.util.spec_from_file_location(f"amortized_{name}", LOCAL / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


op = _load("operating_point")


def _rows(mha: Sequence[Sequence[int]], ffn: Sequence[Sequence[int]], frames: Sequence[int]) -> Dict[str, Dict]:
    """read_compute's rows from per-cut module frames (flops do not matter to the module measures)."""
    return {f"c{i}": {"frames": n, "flops": 1.0, "dense_flops": 1.0, "mha": list(m), "ffn": list(f)}
            for i, (m, f, n) in enumerate(zip(mha, ffn, frames))}


# ---------------------------------------------------------------------------------------------
# operating_point
# ---------------------------------------------------------------------------------------------


def test_static_skip_drops_the_modules_on_fewer_than_half_the_frames():
    # 20 frames: block 1 MHA 4 on (0.2), FFN 20 (1.0); block 2 MHA 10 (0.5: kept), FFN 9 (0.45)
    rows = _rows(mha=[[2, 5], [2, 5]], ffn=[[10, 4], [10, 5]], frames=[10, 10])
    assert op.module_fractions(rows) == [[0.2, 1.0], [0.5, 0.45]]
    assert op.static_skip(rows) == ["mha1", "ffn2"]
    dense = _rows(mha=[[10, 10]], ffn=[[10, 10]], frames=[10])
    assert op.static_skip(dense) == []
    with pytest.raises(ValueError, match="no module frames"):
        op.static_skip({"c0": {"frames": 3, "flops": 1.0, "dense_flops": 1.0, "mha": None, "ffn": None}})


def test_per_frame_decision_share_by_hand():
    # block 1: MHA on 3 of 10 frames in both cuts (majority off: 6 of 20 decisions differ, 0.3), FFN always on
    # (0); block 2: MHA on 8 then 4 (12 of 20, majority on: the 8 off frames differ, 0.4), FFN never (0)
    rows = _rows(mha=[[3, 8], [3, 4]], ffn=[[10, 0], [10, 0]], frames=[10, 10])
    assert op.per_frame_decision_share(rows) == pytest.approx((0.3 + 0 + 0.4 + 0) / 4)
    # cut c1 alone: MHA1 0.3 (off), MHA2 0.4 (off, majority from the cut itself): 0.3 + 0.4 differ
    assert op.per_frame_decision_share(rows, cuts=["c1"]) == pytest.approx((0.3 + 0.4) / 4)
    # the same cut against the whole set's majority (MHA2 on): its 6 off frames differ
    whole = op.module_fractions(rows)
    assert op.per_frame_decision_share(rows, majority=whole, cuts=["c1"]) == pytest.approx((0.3 + 0.6) / 4)
    # within utterances: c0 MHA1 3 of 10 and MHA2 8 (2 off), c1 MHA1 3 and MHA2 4: 3 + 2 + 3 + 4 of 80
    assert op.within_utterance_share(rows) == pytest.approx(12 / 80)
    # whole utterances deciding differently: 0.5 across the set, none within an utterance
    across = _rows(mha=[[0], [10]], ffn=[[10], [10]], frames=[10, 10])
    assert op.per_frame_decision_share(across) == pytest.approx(0.25) and op.within_utterance_share(across) == 0.0
    # a static pattern (every module on or off on every frame) is 0
    assert op.per_frame_decision_share(_rows(mha=[[0], [0]], ffn=[[10], [5]], frames=[10, 5])) == 0.0


def test_select_fewest_flops_within_the_bound_else_lowest_wer():
    points = {"a": (10.4, 0.6), "b": (12.0, 0.3), "c": (10.5, 0.7)}   # reference 10.0: a +4%, b +20%, c +5%
    assert op.select(points, ref_wer=10.0, max_rel_wer=5.0) == "a"
    assert op.select(points, ref_wer=10.0, max_rel_wer=25.0) == "b"
    # none within +1%: the lowest WER, whatever its FLOPs
    assert op.select(points, ref_wer=10.0, max_rel_wer=1.0) == "a"
    assert op.select({"x": (11.0, 0.2), "y": (11.0, 0.5)}, ref_wer=10.0, max_rel_wer=1.0) == "x"
    with pytest.raises(ValueError, match="no gated model"):
        op.select({}, ref_wer=10.0, max_rel_wer=5.0)


def test_model_spec_epoch_replaces_the_suffix_epoch():
    m = op.parse_model("joint-cw1=exp/joint-cw1:18", SUFFIX)
    assert m == op.Model("joint-cw1", Path("exp/joint-cw1"), "greedy_search-epoch-18-avg-1")
    assert op.parse_model("dense-ft=exp/dense-ft", SUFFIX).suffix == SUFFIX
    with pytest.raises(ValueError, match="NAME=EXP_DIR"):
        op.parse_model("exp/dense-ft", SUFFIX)
    with pytest.raises(ValueError, match="whole number"):
        op.parse_model("a=exp/a:six", SUFFIX)
    with pytest.raises(ValueError, match="names no epoch"):
        op.model_suffix("modified_beam_search", 3)
    # the recipe's beam-search suffix (run.sh's decode_method): the epoch alone changes
    assert (op.parse_model("j=exp/j:36", "modified_beam_search-epoch-6-avg-1-beam-4").suffix
            == "modified_beam_search-epoch-36-avg-1-beam-4")
    wr = _load("write_results")
    assert wr.search_label("modified_beam_search-epoch-6-avg-1-beam-4") == "modified beam search (beam 4)"
    assert wr.search_label(SUFFIX) == "greedy search"


def test_missing_and_bad_files_are_named(tmp_path):
    m = op.Model("amortized-cw1", tmp_path / "exp/amortized-cw1", SUFFIX)
    with pytest.raises(FileNotFoundError, match=r"amortized-cw1: .*decode/dev/wer-summary-dev-greedy_search-epoch-6"):
        m.decode_file("dev", "wer-summary")
    tsv = tmp_path / "compute.tsv"
    tsv.write_text("cut_id\tframes\tflops\tdense_flops\tflop_fraction\tmha_frames\tffn_frames\n"
                   "a\t10\t5\t10\t0.5\t3 4\t10 10\nb\t10\t5\t10\t0.5\t3 11\t10 10\n")
    with pytest.raises(ValueError, match=r"compute.tsv:3 \(cut b\): module frames outside 0..10"):
        op.read_compute(tsv)
    tsv.write_text("cut_id\tframes\tflops\tdense_flops\tflop_fraction\tmha_frames\tffn_frames\n"
                   "a\t10\t5\t10\t0.5\t3 4\t10\n")
    with pytest.raises(ValueError, match=r"cut a\): mha_frames / ffn_frames have 2 / 1 blocks"):
        op.read_compute(tsv)
    with pytest.raises(FileNotFoundError, match="nothing.tsv: compute TSV missing"):
        op.read_compute(tmp_path / "nothing.tsv")


# ---------------------------------------------------------------------------------------------
# write_results on a fake run
# ---------------------------------------------------------------------------------------------


def _write_decode(exp: Path, set_name: str, suffix: str, cuts: Dict[str, Dict], words: int, errors: List[int],
                  fractions: List[float], modules: Optional[List[List[List[int]]]]) -> None:
    """recogs / errs / wer-summary / stats (``errors[i]`` substituted words in cut i) and the compute TSV."""
    from serac.decode.results import write_compute, write_results

    dec = exp / "decode" / set_name
    results = [(c, [f"w{j}" for j in range(words)], ["x"] * e + [f"w{j}" for j in range(e, words)])
               for c, e in zip(cuts, errors)]
    write_results(dec, set_name, suffix, results, {})
    write_compute(dec / f"compute-{set_name}-{suffix}.tsv",
                  [(c, FRAMES, f * DENSE_FLOPS, DENSE_FLOPS, None if modules is None else modules[i])
                   for i, (c, f) in enumerate(zip(cuts, fractions))])


def _fake_model(root: Path, name: str, encoder: Dict, test_errors: List[int], test_fractions: List[float],
                dev_errors: List[int], dev_fraction: float, epoch: int = 6,
                init: Optional[str] = "exp/dense/epoch-12.pt",
                modules: Optional[List[List[List[int]]]] = None,
                dev_modules: Optional[List[List[List[int]]]] = None) -> Path:
    exp = root / "exp" / name
    (exp / "log").mkdir(parents=True)
    cfg = {"model": {"encoder": {**ENCODER, **encoder}}, "distill": {"teacher": None},
           "paths": {"init_from": str(init)}, "env": {"encoder_params": 12345, "git_revision": "abc1234"}}
    (exp / "config.yaml").write_text(yaml.safe_dump(cfg))
    (exp / "log/train.log").write_text(f"x INFO epoch {epoch}: train loss 0.5, valid loss 0.6, 10s\n")
    suffix = SUFFIX.replace("epoch-6", f"epoch-{epoch}")
    default = [[[FRAMES, FRAMES], [FRAMES, FRAMES]]] * len(TEST_CUTS)  # every module on every frame
    _write_decode(exp, "test", suffix, TEST_CUTS, TEST_WORDS, test_errors, test_fractions, modules or default)
    _write_decode(exp, "dev", suffix, DEV_CUTS, DEV_WORDS, dev_errors, [dev_fraction] * len(DEV_CUTS),
                  dev_modules or [[[FRAMES, FRAMES], [FRAMES, FRAMES]]] * len(DEV_CUTS))
    return exp


def _write_cuts(path: Path) -> None:
    from lhotse import CutSet, MonoCut, SupervisionSegment

    cuts = [MonoCut(id=c, start=0.0, duration=1.0, channel=0,
                    supervisions=[SupervisionSegment(id=c, recording_id=f"rec-{c}", start=0.0, duration=1.0,
                                                     speaker=a["speaker"],
                                                     custom={"accent": a["accent"], "condition": a["condition"]})])
            for c, a in TEST_CUTS.items()]
    CutSet.from_cuts(cuts).to_file(path)


# the gated operating point's modules on test, per cut [[MHA1, FFN1], [MHA2, FFN2]] frames on (of 10):
# MHA1 never (0), FFN1 always (0), MHA2 on 3 of 10 everywhere (0.3 on, majority off: 0.3 differ), FFN2 on 8 in
# cuts t0-t2 and 4 in t3-t5 (0.6 on, majority on: 0.4 differ) -> per-frame-decision share (0 + 0 + 0.3 + 0.4) / 4
CW02_MODULES = [[[0, FRAMES], [3, 8 if i < 3 else 4]] for i in range(6)]
# on dev: MHA1 never, MHA2 on 3 of 10, both FFNs always: its static counterpart drops mha1 and mha2
CW02_DEV_MODULES = [[[0, FRAMES], [3, FRAMES]]] * 4


@pytest.fixture()
def fake_run(tmp_path):
    root = tmp_path / "amortized"
    gated = {"arbitrators": True, "arbitrator_dim": 4}
    # dense reference: test 1 error per cut (10%), dev 5 of 50 per cut (10%)
    _fake_model(root, "dense-ft", {"arbitrators": False}, [1] * 6, [1.0] * 6, [5] * 4, 1.0)
    # the dev choice: dev WER as the reference's at 0.45 of its FLOPs; test: the reference's errors, clean cuts
    # 0.4 and noisy 0.5 of the FLOPs (0.45 over all: 55% saved)
    _fake_model(root, "amortized-cw0.2", {**gated, "cost_weight": 0.2}, [1] * 6, [0.4] * 3 + [0.5] * 3, [5] * 4,
                0.45, modules=CW02_MODULES, dev_modules=CW02_DEV_MODULES)
    # fewer FLOPs but +20% relative dev WER: out on dev, though on test it equals the reference at 0.3 of its FLOPs
    # (choosing on test would take it)
    _fake_model(root, "amortized-cw0.4", {**gated, "cost_weight": 0.4}, [1] * 6, [0.3] * 6, [6] * 4, 0.3)
    # joint from scratch, 12 epochs: within +5% on dev (+5% exactly) but more FLOPs
    _fake_model(root, "joint-cw0.3", {**gated, "cost_weight": 0.3, "gate_warmup_steps": 100}, [2] + [1] * 5,
                [0.7] * 6, [6, 5, 5, 5], 0.7, epoch=12, init=None)
    # the static counterpart of the dev choice: twice the gated model's errors on every test cut
    _fake_model(root, "static-amortized-cw0.2", {"arbitrators": False, "static_skip": ["mha1", "mha2"]}, [2] * 6,
                [0.47] * 6, [8] * 4, 0.47)
    cuts = root / "cuts_test.jsonl.gz"
    _write_cuts(cuts)
    timing = root / "exp/encoder-time.json"
    timing.write_text(json.dumps({"repeats": 1, "reference": "dense-ft", "models": {
        "dense-ft": {"time_vs_reference": 1.0, "speedup_vs_reference": 1.0},
        "amortized-cw0.2": {"time_vs_reference": 0.5, "speedup_vs_reference": 2.0}}}))
    return root, cuts, timing


def _run_writer(root: Path, cuts: Path, timing: Path, models: Sequence[str], extra: Sequence[str] = ()) -> str:
    wr = _load("write_results")
    specs = {"dense-ft": "exp/dense-ft", "amortized-cw0.2": "exp/amortized-cw0.2",
             "amortized-cw0.4": "exp/amortized-cw0.4", "joint-cw0.3": "exp/joint-cw0.3:12",
             "static-amortized-cw0.2": "exp/static-amortized-cw0.2"}
    argv = [a for m in models for a in ("--model", f"{m}={root / specs[m]}")]
    out = root / "RESULTS.md"
    wr.main(argv + ["--reference", "dense-ft", "--suffix", SUFFIX, "--cuts", str(cuts), "--timing", str(timing),
                    "--n-bootstrap", "50", "--plot", str(root / "results/plot.png"), "--out", str(out), *extra])
    return out.read_text()


ALL = ["dense-ft", "amortized-cw0.2", "amortized-cw0.4", "joint-cw0.3", "static-amortized-cw0.2"]


def test_results_choose_on_dev_and_judge_from_the_interval(fake_run):
    root, cuts, timing = fake_run
    results = _run_writer(root, cuts, timing, ALL)
    # the dev choice, not test's (amortized-cw0.4 would be chosen on test: same WER, fewer FLOPs)
    assert "is **amortized-cw0.2** (fine-tuned from dense; dev: 0.450 of the reference's FLOPs" in results
    assert "among the 2 of 3 within +5% relative dev WER of the reference (10.00%)" in results
    assert "On test, once: 55.0% fewer FLOPs, 10.00% WER against 10.00%" in results
    assert "measured encoder speed-up 2.00x, target met" in results
    # the interval of identical errors is [0, 0]: the recipe's target holds, the paper's 60% saving is not reached
    assert ("- the recipe's target, saving >= 50% FLOPs at <= +5% relative WER: **holds** (55.0% saved, interval "
            "[+0.0, +0.0])") in results
    assert "- the paper's claim, saving >= 60% FLOPs at <= +3% relative WER: **does not hold**" in results
    assert "The paper reports 60% less compute" in results
    # training column and kinds: the static model is not dense, the joint one trained from scratch
    assert "| joint-cw0.3 | from scratch with gate warm-up | 0.3 | 4 | 0.700 (30.0% fewer) | - | - | 10.50 | 11.67 |" \
        in results
    assert "| static-amortized-cw0.2 | static drop of amortized-cw0.2 | - | 4 | 0.470 (53.0% fewer) |" in results
    assert ("| dense-ft | fine-tuned from dense | - | 4 | 1.000 (0.0% fewer) | 1.000 | 1.00x | 10.00 | 10.00 |"
            in results)
    # the static comparison: twice the errors on every speaker: static vs gated +100% [+100, +100], holds
    assert ("| amortized-cw0.2 | static-amortized-cw0.2 | mha1, mha2 | 0.450 / 0.470 | 10.00 / 20.00 | "
            "+100.0% [+100.0, +100.0] | holds |") in results
    assert "input-adaptive gating beats static pruning at matched FLOPs: **holds**" in results
    # per-frame-decision share: (0 + 0 + 0.3 + 0.4) / 4 for the chosen model, 0 for dense and static; within
    # utterances: MHA2 3 of 10 in each cut, FFN2 2 off of 10 in t0-t2, 4 on of 10 in t3-t5: 36 of 6 x 10 x 4
    row = next(line for line in results.splitlines() if line.startswith("| amortized-cw0.2 | fine-tuned"))
    assert "| 0.175 (0.150) |" in row
    assert "| 0.000 (0.000) |" in next(line for line in results.splitlines() if line.startswith("| static-"))
    assert "| amortized-cw0.4 | fine-tuned from dense | 0.4 |" in results
    assert "| amortized-cw0.2 | 0.00 / 1.00 (0.00 / 0.00) | 0.30 / 0.60 (0.30 / 0.40) |" in results
    # compute per condition: clean 0.4, noisy 0.5 for the gated model; spread 0.1; the static one flat
    section = results.split("## Executed encoder FLOPs per condition")[1].split("##")[0]
    assert "| clean | 3 | 0.400 | 0.300 | 0.700 | 0.470 |" in section
    assert "| noisy | 3 | 0.500 | 0.300 | 0.700 | 0.470 |" in section
    assert "| **spread (max - min)** | | 0.100 | 0.000 | 0.000 | 0.000 |" in section
    # accent: en-US t0-t3 (0.4 0.4 0.4 0.5 -> 0.425), en-GB t4-t5 (0.5)
    section = results.split("## Executed encoder FLOPs per accent")[1].split("##")[0]
    assert "| en-GB | 2 | 0.500 |" in section and "| en-US | 4 | 0.425 |" in section
    assert "| **spread (max - min)** | | 0.075 |" in section
    assert "rel. WER change [95% CI]" in results and "## Where the arbitrators run the modules" in results
    assert "git revision `" in results and (root / "results/plot.png").stat().st_size > 1000


def test_results_without_the_static_counterpart_say_so(fake_run):
    root, cuts, timing = fake_run
    results = _run_writer(root, cuts, timing, ALL[:4], ["--compute-key", "condition"])
    assert "The operating point amortized-cw0.2 has no static counterpart (`static-amortized-cw0.2`)" in results
    assert "Executed encoder FLOPs per accent" not in results and "Executed encoder FLOPs per condition" in results
    # a looser bound admits amortized-cw0.4 (+20% on dev), which then wins on FLOPs
    results = _run_writer(root, cuts, timing, ALL[:4], ["--max-rel-wer", "25"])
    assert "is **amortized-cw0.4**" in results


def test_static_comparison_against_a_gated_model_without_errors(fake_run):
    """No relative change exists against zero errors: the comparison is undecided, the writer does not crash."""
    root, cuts, timing = fake_run
    exp = root / "exp/amortized-cw0.2"
    _write_decode(exp, "test", SUFFIX, TEST_CUTS, TEST_WORDS, [0] * 6, [0.4] * 3 + [0.5] * 3, CW02_MODULES)
    results = _run_writer(root, cuts, timing, ALL)
    assert "| 0.00 / 20.00 | - [-] | undecided (the gated model makes no test errors) |" in results
    assert "static pruning at matched FLOPs: **undecided (the gated model makes no test errors)**" in results


def test_dense_reference_against_the_lstm_baseline(fake_run):
    """--baseline (run.sh: the asr recipe's LSTM): the reference's paired interval against it and the verdict on
    "at least as good"; a missing decode is said, a decode of other cuts is an error naming the file."""
    root, cuts, timing = fake_run
    lstm = root / "asr/exp/lstm"
    suffix = "greedy_search-epoch-15-avg-5"
    _write_decode(lstm, "test", suffix, TEST_CUTS, TEST_WORDS, [2] * 6, [1.0] * 6, None)
    recogs = lstm / f"decode/test/recogs-test-{suffix}.txt"
    results = _run_writer(root, cuts, timing, ALL, ["--baseline", f"asr-lstm={recogs}"])
    section = results.split("## The dense reference against the baseline asr-lstm (test)")[1].split("##")[0]
    assert "| asr-lstm | 20.00 | - | - |" in section
    assert "| dense-ft | 10.00 | -50.0% [-50.0, -50.0] | **holds (better)** |" in section
    assert "the same test utterances; the reference: greedy search." in section
    # twice the reference's errors the other way round: worse
    _write_decode(lstm, "test", suffix, TEST_CUTS, TEST_WORDS, [1, 0, 1, 0, 1, 0], [1.0] * 6, None)
    results = _run_writer(root, cuts, timing, ALL, ["--baseline", f"asr-lstm={recogs}"])
    assert "| dense-ft | 10.00 | +100.0% [+" in results and "**does not hold (worse)**" in results
    results = _run_writer(root, cuts, timing, ALL, ["--baseline", f"asr-lstm={root / 'nothing.txt'}"])
    assert f"Not compared: `{root / 'nothing.txt'}` is missing" in results
    _write_decode(lstm, "test", suffix, dict(list(TEST_CUTS.items())[:4]), TEST_WORDS, [1] * 4, [1.0] * 4, None)
    with pytest.raises(SystemExit, match=r"--baseline .*recogs-test-greedy_search-epoch-15-avg-5.txt: its test "
                                         r"cuts are not the reference's \(4 vs 6 utterances"):
        _run_writer(root, cuts, timing, ALL, ["--baseline", f"asr-lstm={recogs}"])
    assert _load("write_results").baseline_verdict((-3.0, 2.0)) == "undecided at this size (level)"


def test_results_name_a_missing_dev_decode(fake_run):
    root, cuts, timing = fake_run
    (root / f"exp/joint-cw0.3/decode/dev/wer-summary-dev-greedy_search-epoch-12-avg-1.txt").unlink()
    with pytest.raises(SystemExit, match=r"joint-cw0.3: .*exp/joint-cw0.3/decode/dev/"
                                         r"wer-summary-dev-greedy_search-epoch-12-avg-1.txt is missing"):
        _run_writer(root, cuts, timing, ALL)


def test_operating_point_command_line_chooses_on_dev_and_derives_the_static_skip(fake_run):
    """What run.sh calls: select prints the dev choice, static-skip its majority decisions on dev."""
    root, _, _ = fake_run
    script = str(LOCAL / "operating_point.py")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # serac, as path.sh sets it for the recipe
    models = [a for m in ("amortized-cw0.2", "amortized-cw0.4", "joint-cw0.3:12")
              for a in ("--model", f"{m.split(':')[0]}={root / 'exp' / m}")]
    chosen = subprocess.run([sys.executable, script, "select", "--reference", str(root / "exp/dense-ft"), "--suffix",
                             SUFFIX, *models], check=True, capture_output=True, text=True, env=env).stdout
    assert chosen == "amortized-cw0.2\n"
    tsv = root / f"exp/amortized-cw0.2/decode/dev/compute-dev-{SUFFIX}.tsv"
    skip = subprocess.run([sys.executable, script, "static-skip", str(tsv)], check=True, capture_output=True,
                          text=True, env=env).stdout
    assert skip == "[mha1,mha2]\n"
    (root / f"exp/amortized-cw0.4/decode/dev/compute-dev-{SUFFIX}.tsv").unlink()
    failed = subprocess.run([sys.executable, script, "select", "--reference", str(root / "exp/dense-ft"), "--suffix",
                             SUFFIX, *models], capture_output=True, text=True, env=env)
    assert failed.returncode != 0 and f"amortized-cw0.4/decode/dev/compute-dev-{SUFFIX}.tsv is missing" in failed.stderr


def test_training_label_and_kind_from_the_config():
    wr = _load("write_results")

    def cfg(init="exp/dense/epoch-12.pt", teacher=None, **encoder):
        return {"model": {"encoder": {**ENCODER, **encoder}}, "paths": {"init_from": init},
                "distill": {"teacher": teacher}}

    assert wr.training_label("dense-ft", cfg(arbitrators=False)) == "fine-tuned from dense"
    assert wr.model_kind("dense-ft", cfg(arbitrators=False)["model"]["encoder"]) == "dense"
    # an empty static_skip (a config default, say) does not make a dense model static
    assert wr.model_kind("dense-ft", cfg(arbitrators=False, static_skip=[])["model"]["encoder"]) == "dense"
    assert wr.model_kind("sw-lc4", cfg(arbitrators=False, static_skip=["ffn1"])["model"]["encoder"]) == "static"
    assert wr.training_label("sw-lc4", cfg(arbitrators=False, left_context=4)) == "fine-tuned from dense"
    assert wr.training_label("amortized-kd-cw0.5", cfg(teacher="exp/dense-ft/epoch-6.pt", cost_weight=0.5)) \
        == "distilled"
    assert wr.training_label("joint-cw1", cfg(init="None", gate_warmup_steps=500)) == "from scratch with gate warm-up"
    static = cfg(arbitrators=False, static_skip=[])  # a gated model whose majority runs every module
    assert wr.model_kind("static-joint-cw1", static["model"]["encoder"]) == "static"
    assert wr.training_label("static-joint-cw1", static) == "static drop of joint-cw1"
    assert wr.training_label("pruned", cfg(arbitrators=False, static_skip=["mha1"])) == "static module drop"
    assert wr.model_kind("amortized-cw1", cfg()["model"]["encoder"]) == "amortized"   # arbitrators default on


def test_claim_verdicts_from_the_interval():
    wr = _load("write_results")
    assert wr.claim_verdict(55.0, (-2.0, 4.9), 50.0, 5.0) == "holds"
    assert wr.claim_verdict(55.0, (-2.0, 6.0), 50.0, 5.0) == "undecided at this size"
    assert wr.claim_verdict(55.0, (5.5, 9.0), 50.0, 5.0) == "does not hold"
    assert wr.claim_verdict(45.0, (-9.0, -1.0), 50.0, 5.0) == "does not hold"
    assert wr.gating_verdict((0.5, 9.0)) == "holds"
    assert wr.gating_verdict((-0.5, 9.0)) == "undecided"
    assert wr.gating_verdict((-5.0, 0.0)) == "does not hold"


def test_last_epoch_line_survives_a_rerun_with_nothing_to_do(tmp_path):
    """A rerun of a finished training rewrites log/train.log with "nothing to do": the Training table's last epoch
    comes from the newest earlier log that has one (it read '-' before)."""
    wr = _load("write_results")
    log = tmp_path / "exp/dense-ft/log"
    log.mkdir(parents=True)
    assert wr.last_epoch_line(tmp_path / "exp/dense-ft") == "-"
    epoch = "INFO [trainer.py:639] epoch {}: train loss 0.1, valid loss 0.3, 70s"
    (log / "train-2026-12-01-04-00-00.log").write_text(epoch.format(5) + "\n" + epoch.format(6) + "\n")
    (log / "train-2026-11-30-04-00-00.log").write_text(epoch.format(3) + "\n")
    (log / "train-2026-12-01-07-00-00.log").write_text("nothing to do: epoch-6.pt exists\n")
    (log / "train.log").write_text("nothing to do: epoch-6.pt exists\n")
    assert wr.last_epoch_line(tmp_path / "exp/dense-ft") == "epoch 6: train loss 0.1, valid loss 0.3, 70s"
    (log / "train.log").write_text(epoch.format(7) + "\n")
    assert wr.last_epoch_line(tmp_path / "exp/dense-ft").startswith("epoch 7:")
