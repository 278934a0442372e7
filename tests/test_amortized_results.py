"""The amortized recipe's dev choices and RESULTS.md writer (egs/synth_assistant/amortized/local/operating_point.py
and write_results.py) on tiny fake exp dirs: the operating point is chosen on dev (test would choose another), the
verdicts come from the paired interval, the static module-drop counterpart is compared, the per-frame-decision
share and the per-cohort compute tables are what the hand counts below say.

Usage:
  python -m pytest -q tests/test_amortized_results.py
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest
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
