"""The speaker-embedding model, its training with and without ARW (a few steps), the 'serac' embedding extractor
for cohort discovery, and audio input checks."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from serac.speaker.audio import load_mono
from serac.speaker.model import EcapaTdnn, MarginSoftmax, build_model, load_checkpoint
from serac.speaker.train import (accumulated_pair_losses, load_sv_config, pair_term, pairwise_losses)

TINY = {"channels": 16, "mfa_channels": 32, "attention_channels": 8, "se_channels": 8, "embedding_dim": 12,
        "num_mel_bins": 20}


def test_ecapa_shapes_and_variable_length():
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    assert model(torch.randn(3, 57, 20)).shape == (3, 12)
    assert model(torch.randn(1, 11, 20)).shape == (1, 12)
    with pytest.raises(ValueError, match=r"expected fbank \(batch, frames, 20\)"):
        model(torch.randn(2, 30, 80))
    with pytest.raises(ValueError, match="unknown speaker-model options"):
        build_model({"chanels": 8})


@pytest.mark.parametrize("kind", ["am", "aam"])
def test_margin_softmax_penalises_the_true_class(kind):
    torch.manual_seed(0)
    head = MarginSoftmax(12, 5, kind=kind, margin=0.2, scale=10.0)
    emb, labels = torch.randn(7, 12), torch.randint(0, 5, (7,))
    no_margin = MarginSoftmax(12, 5, kind=kind, margin=0.0, scale=10.0)
    no_margin.weight.data.copy_(head.weight.data)
    with_m, without = head(emb, labels), no_margin(emb, labels)
    assert with_m.shape == (7,) and (with_m > without).all()


def test_unit_weights_make_every_variant_the_baseline_objective():
    torch.manual_seed(0)
    labels = torch.arange(6).repeat_interleave(2)  # P=6 speakers x K=2
    emb = torch.randn(12, 8)
    loss, pos, neg = pairwise_losses(emb, labels, 10.0, 0.5)
    ones = torch.ones(12)
    # accumulated per-sample pair losses (aps, pl) average to the pairwise term (pw) with unit weights
    assert accumulated_pair_losses(loss, pos, neg).mean().item() == pytest.approx(
        pair_term(loss, pos, neg, ones).item(), rel=1e-6)
    assert pos.sum().item() == 12 and neg.sum().item() == 12 * 10


def test_config_rejects_unknown_variant(tmp_path):
    with pytest.raises(ValueError, match="unknown ARW variant 'foo'"):
        load_sv_config(None, ["arw.variant=foo"])
    (tmp_path / "c.yaml").write_text("train: {stepz: 3}\n")
    with pytest.raises(ValueError, match=r"c.yaml: unknown train options \['stepz'\]"):
        load_sv_config(str(tmp_path / "c.yaml"))


def test_serac_extractor_loads_a_checkpoint(tmp_path):
    from serac.speaker.embeddings import get_extractor

    torch.manual_seed(0)
    model = build_model({**TINY, "num_mel_bins": 80})
    torch.save({"model_config": model.config, "model": model.state_dict(), "feature": {"sampling_rate": 16000}},
               tmp_path / "model.pt")
    loaded, _ = load_checkpoint(str(tmp_path / "model.pt"))
    assert isinstance(loaded, EcapaTdnn) and not loaded.training
    ex = get_extractor("auto", checkpoint=str(tmp_path / "model.pt"))
    assert ex.name == "serac" and ex.dim == 12 and ex.unit_norm
    audio = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    e = ex.embed_utterance(audio, 16000)
    assert e.shape == (12,) and np.linalg.norm(e) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="expects 16000 Hz audio, got 8000 Hz"):
        ex.embed_utterance(audio, 8000)
    with pytest.raises(ValueError, match="needs a checkpoint"):
        get_extractor("serac")
    with pytest.raises(FileNotFoundError, match="nope.pt not found"):
        get_extractor("serac", checkpoint=str(tmp_path / "nope.pt"))
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt: not a serac speaker-embedding checkpoint"):
        load_checkpoint(str(tmp_path / "other.pt"))


def test_audio_at_another_rate_names_the_file(tmp_path):
    stereo = np.stack([np.linspace(-0.5, 0.5, 4410), np.zeros(4410)], axis=1).astype(np.float32)
    sf.write(tmp_path / "spk1.wav", stereo, 44100)
    with pytest.raises(ValueError, match=r"spk1.wav: sampled at 44100 Hz, expected 16000 Hz"):
        load_mono(tmp_path / "spk1.wav")
    mono, sr = load_mono(tmp_path / "spk1.wav", resample=True)
    assert sr == 44100 and mono.ndim == 1 and len(mono) == 1600  # 0.1 s at 16 kHz, down-mixed
    assert np.allclose(mono[800], stereo[2205].mean(), atol=0.02)
    (tmp_path / "bad.wav").write_text("not audio")
    with pytest.raises(ValueError, match="bad.wav: cannot read audio"):
        load_mono(tmp_path / "bad.wav")
