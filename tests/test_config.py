"""Config loading: ``base:`` inheritance (paths relative to the naming file, chains, cycles, encoder replacement,
overrides last), and the encoder-comparison configs of the recipes have matched encoder sizes."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from serac.config import DEFAULTS, load_config
from serac.encoders import build_encoder
from serac.encoders.cost import count_parameters

ROOT = Path(__file__).resolve().parent.parent
COMPARE_MODELS = ["lstm", "conv_rnnt", "conformer", "contextnet"]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_base_is_relative_to_the_config_and_chains(tmp_path, monkeypatch):
    write(tmp_path / "conf/main.yaml", "model: {encoder: {name: lstm, hidden_dim: 64}, decoder_dim: 32}\n"
                                       "optim: {lr: 1.0e-3}\ntrain: {num_epochs: 7}\n")
    write(tmp_path / "conf/compare/mid.yaml", "base: ../main.yaml\noptim: {grad_clip: 1.0}\n")
    child = write(tmp_path / "conf/compare/conformer.yaml",
                  "base: mid.yaml\nmodel: {encoder: {name: conformer, dim: 16}}\ntrain: {num_epochs: 9}\n")
    monkeypatch.chdir(tmp_path / "conf")  # resolution must not depend on the working directory
    cfg = load_config(child, ["optim.lr=2e-3"])
    assert "base" not in cfg
    # another encoder name replaces the inherited encoder section instead of merging hidden_dim into it
    assert cfg["model"]["encoder"] == {"name": "conformer", "dim": 16}
    assert cfg["model"]["decoder_dim"] == 32 and cfg["model"]["joiner_dim"] == DEFAULTS["model"]["joiner_dim"]
    assert cfg["optim"]["grad_clip"] == 1.0 and cfg["optim"]["lr"] == 2e-3  # --set overrides come last
    assert cfg["train"]["num_epochs"] == 9
    assert cfg["optim"]["weight_decay"] == DEFAULTS["optim"]["weight_decay"]
    # the same encoder name merges
    same = write(tmp_path / "conf/wide.yaml", "base: main.yaml\nmodel: {encoder: {num_layers: 5}}\n")
    assert load_config(same)["model"]["encoder"] == {"name": "lstm", "hidden_dim": 64, "num_layers": 5}


def test_base_errors_name_the_files(tmp_path):
    a = write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(ValueError, match="circular base"):
        load_config(a)
    missing = write(tmp_path / "c.yaml", "base: nowhere.yaml\n")
    with pytest.raises(FileNotFoundError, match=r"nowhere.yaml not found \(the base of .*c.yaml\)"):
        load_config(missing)
    bad = write(tmp_path / "d.yaml", "base: [a.yaml]\n")
    with pytest.raises(ValueError, match="d.yaml: 'base' must be a path"):
        load_config(bad)
    typo = write(tmp_path / "e.yaml", "base: f.yaml\n")
    write(tmp_path / "f.yaml", "modle: {}\n")
    with pytest.raises(ValueError, match=r"f.yaml: unknown sections \['modle'\]"):
        load_config(typo)


def encoder_params(config: Path) -> int:
    torch.manual_seed(0)
    return count_parameters(build_encoder(80, load_config(config)["model"]["encoder"]))


@pytest.mark.parametrize("conf_dir, target", [("egs/synth_assistant/asr/conf/compare", 2.65e6),
                                              ("egs/librispeech/asr/conf", 30e6)])
def test_comparison_configs_have_matched_encoder_sizes(conf_dir, target):
    """The four encoders of a comparison table are within 10% of each other and near the intended size; every
    other setting is inherited, so the configs differ only in the encoder (and the Conformer's longer warm-up)."""
    configs = {m: ROOT / conf_dir / f"{m}.yaml" for m in COMPARE_MODELS}
    counts = {m: encoder_params(path) for m, path in configs.items()}
    assert {load_config(p)["model"]["encoder"]["name"] for p in configs.values()} == set(COMPARE_MODELS)
    assert max(counts.values()) <= 1.1 * min(counts.values()), counts
    assert all(0.9 * target <= c <= 1.1 * target for c in counts.values()), counts
    resolved = {m: load_config(p) for m, p in configs.items()}
    for m, cfg in resolved.items():
        rest = {k: v for k, v in cfg.items() if k != "model"}
        base = {k: v for k, v in resolved["lstm"].items() if k != "model"}
        if m == "conformer":  # the one allowed difference: a longer learning-rate warm-up (docs/encoders.md)
            assert rest["optim"]["warmup_steps"] >= base["optim"]["warmup_steps"]
            rest = dict(rest, optim={k: v for k, v in rest["optim"].items() if k != "warmup_steps"})
            base = dict(base, optim={k: v for k, v in base["optim"].items() if k != "warmup_steps"})
        assert rest == base, m
        assert {k: v for k, v in cfg["model"].items() if k != "encoder"} == \
            {k: v for k, v in resolved["lstm"]["model"].items() if k != "encoder"}, m
