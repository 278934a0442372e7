"""sherpa-onnx export (serac.export, steps/export.sh, steps/decode_sherpa.sh, the yesno recipe's sherpa stage).

* The yesno LSTM, trained by the recipe on the real corpus: sherpa-onnx's transcripts (from the audio, its own
  fbank) equal serac's greedy search (serac's features), offline and streaming (sherpa type ``lstm``), and the
  exported files carry the metadata sherpa-onnx reads.
* A small model of every other encoder, streaming as its default sherpa type (Conformer and amortized Transformer:
  ``conformer``; ContextNet and ConvRNN-T: ``lstm``) and offline: sherpa-onnx's transcripts equal serac's greedy
  search on the same features (kaldi-native-fbank, as sherpa-onnx computes them), so the only difference left is
  ONNX vs PyTorch arithmetic.
* Every encoder's streaming state survives its sherpa layouts; a type that cannot hold an encoder fails with a
  message naming the type and the encoder; sherpa's start context gives serac's decoder output.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch

from recipe_utils import ROOT, YESNO, recipe_env, run_recipe
from serac.data.tokenizer import Tokenizer, prepare_word_lang
from serac.export.onnx_export import (OnnxDecoder, export_offline, export_streaming, load_averaged_model,
                                      read_metadata)
from serac.decode.offline import decode_cuts
from serac.decode.streaming import decode_cuts_streaming
from serac.export.sherpa import (decode_offline, decode_online, load_sherpa_model, make_recognizer,
                                 tail_padding_seconds)
from serac.export.state import default_model_type, make_layout
from serac.scoring.wer import load_transcripts
from serac.transducer.model import build_model
from serac.transducer.search import _context

YESNO_SHERPA_STAGE = 7  # egs/yesno/asr/run.sh: export to sherpa-onnx and decode test with it
needs_yesno = pytest.mark.skipif(not YESNO.is_dir(), reason=f"{YESNO} not present")
pytestmark = pytest.mark.usefixtures("one_thread")

SMALL_ENCODERS: Dict[str, dict] = {
    "lstm": dict(name="lstm", hidden_dim=16, num_layers=2, output_dim=8),
    "lstm_conv2d": dict(name="lstm", subsampling="conv2d", conv_channels=4, hidden_dim=16, num_layers=2,
                        output_dim=8),
    "conv_rnnt": dict(name="conv_rnnt", local_channels=4, local_blocks=1, local_dim=16, global_channels=16,
                      global_dilations=(1, 2), lstm_hidden=16, lstm_layers=2, output_dim=8, input_skip=True),
    "conformer": dict(name="conformer", dim=16, num_layers=2, num_heads=2, ffn_dim=32, conv_kernel_size=5,
                      subsampling_channels=4, chunk_size=2, left_context=3, output_dim=8),
    "contextnet": dict(name="contextnet", channels=16, num_blocks=4, layers_per_block=2, output_dim=8),
    "amortized_transformer": dict(name="amortized_transformer", dim=16, num_layers=2, num_heads=2, ffn_dim=32,
                                  subsampling_channels=4, chunk_size=2, left_context=3, output_dim=8,
                                  arbitrator_dim=8, gate_init_bias=0.0),
}

def small_model(name: str, vocab_size: int = 4, num_features: int = 23, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model({"encoder": dict(SMALL_ENCODERS[name]), "decoder_dim": 8, "joiner_dim": 8}, num_features,
                        vocab_size)
    # non-trivial normalisation constants: the exported encoder must apply them
    model.set_feature_stats(torch.randn(num_features) * 0.1, torch.rand(num_features) + 0.5)
    return model.eval()


def word_lang(tmp_path: Path) -> Tokenizer:
    prepare_word_lang(["YES NO"], tmp_path / "lang")
    return Tokenizer(tmp_path / "lang")


# ---------------------------------------------------------------------------------------------- cheap checks

def test_decoder_start_context_is_serac_start(tmp_path):
    """sherpa-onnx's start context [-1, ..., -1, blank] gives exactly what serac's search ([blank, blank]) and
    training's left padding compute, so no checkpoint changes meaning."""
    model = small_model("lstm")
    with torch.no_grad():
        # a non-zero blank row would break the equivalence of blank and "no token": the wrapper maps -1 to blank
        model.decoder.embedding.weight[0].normal_()
        start = OnnxDecoder(model)(torch.tensor([[-1, 0], [0, 0]]))
        serac = model.joiner.decoder_proj(model.decoder(_context([[]], 2, 0, torch.device("cpu")), need_pad=False))
        assert torch.equal(start[0], start[1])
        torch.testing.assert_close(start[0], serac[0, 0])
        tokens = torch.tensor([[2, 1]])
        torch.testing.assert_close(OnnxDecoder(model)(tokens)[0],
                                   model.joiner.decoder_proj(model.decoder(tokens, need_pad=False))[0, 0])


@pytest.mark.parametrize("name", list(SMALL_ENCODERS))
def test_state_layout_round_trip(name):
    """Streaming through the sherpa state tensors (pack after each chunk, unpack before the next, from sherpa's
    zero initial tensors) gives serac's own streaming output, for every encoder and every type it can take."""
    model = small_model(name)
    encoder = model.encoder
    if hasattr(encoder, "set_gather"):
        encoder.set_gather(False)
    init = encoder.init_state(1, torch.device("cpu"))
    types = ["lstm"] + (["conformer"] if default_model_type(init) == "conformer" else [])
    x = torch.randn(2, 4 * encoder.chunk_multiple, 23)
    with torch.no_grad():
        state = encoder.init_state(2, torch.device("cpu"))
        want = []
        for k in range(4):
            y, state = encoder.streaming_forward(x[:, k * encoder.chunk_multiple:(k + 1) * encoder.chunk_multiple],
                                                 state)
            want.append(y)
        for model_type in types:
            layout = make_layout(model_type, init, name)
            s1, s2 = layout.init_tensors(2)
            got = []
            for k in range(4):
                y, new_state = encoder.streaming_forward(
                    x[:, k * encoder.chunk_multiple:(k + 1) * encoder.chunk_multiple], layout.unpack(s1, s2))
                s1, s2 = layout.pack(new_state, 2)
                got.append(y)
            torch.testing.assert_close(torch.cat(got, 1), torch.cat(want, 1), msg=f"{name} as {model_type}")


@pytest.mark.parametrize("name", ["lstm", "contextnet"])
def test_type_that_cannot_hold_the_encoder_is_refused(name, tmp_path):
    with pytest.raises(ValueError, match=rf"encoder '{name}' cannot be exported as sherpa-onnx model_type 'conformer'"):
        export_streaming(small_model(name), word_lang(tmp_path), tmp_path / "out", chunk_frames=16,
                         model_type="conformer")


def test_chunk_not_multiple_of_encoder_chunk_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"encoder 'conformer'.* not a positive multiple of its chunk_multiple \(8"):
        export_streaming(small_model("conformer"), word_lang(tmp_path), tmp_path / "out", chunk_frames=12)


# ------------------------------------------------------------------- untrained encoders, sherpa's own features

def knf_features(audio: np.ndarray, sample_rate: int, num_bins: int) -> torch.Tensor:
    """Fbank exactly as sherpa-onnx computes it (kaldi-native-fbank, its FeatureExtractor's options)."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0
    opts.frame_opts.snip_edges = False
    opts.frame_opts.samp_freq = sample_rate
    opts.mel_opts.num_bins = num_bins
    opts.mel_opts.high_freq = -400
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(sample_rate, audio.tolist())
    fbank.input_finished()
    return torch.tensor(np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)]))


class _Cut:
    """The little of a lhotse cut that serac.export.sherpa reads."""

    def __init__(self, path: Path) -> None:
        import soundfile as sf

        self.audio, self.sampling_rate = sf.read(str(path), dtype="float32")
        self.id = path.stem
        self.supervisions = [type("Sup", (), {"text": " ".join("YES" if c == "1" else "NO" for c in path.stem[::2])})]

    def load_audio(self) -> np.ndarray:
        return self.audio[None]


@needs_yesno
@pytest.mark.parametrize("name,model_type", [("conformer", "conformer"), ("amortized_transformer", "conformer"),
                                             ("contextnet", "lstm"), ("conv_rnnt", "lstm")])
def test_small_encoder_sherpa_matches_serac_on_sherpa_features(name, model_type, tmp_path):
    """Streaming (the sherpa type each encoder exports as by default) and offline: sherpa-onnx's greedy transcripts
    equal serac's greedy search on the same features (kaldi-native-fbank, the same padded audio, the same chunks)."""
    tokenizer = word_lang(tmp_path)
    model = small_model(name, vocab_size=tokenizer.vocab_size)
    with torch.no_grad():
        # sherpa-onnx leaves <unk> out of its text: keep an untrained model to YES / NO / blank, and let it emit
        model.joiner.output_linear.bias[tokenizer.unk_id] = -1e4
        model.joiner.output_linear.bias[tokenizer.blank_id] -= 0.5
    cuts = [_Cut(p) for p in sorted(YESNO.glob("*.wav"))[:3]]
    chunk = 16
    online = load_sherpa_model(export_streaming(model, tokenizer, tmp_path / "on", chunk_frames=chunk,
                                                sample_rate=8000).out_dir)
    assert online.metadata["model_type"] == model_type
    offline = load_sherpa_model(export_offline(model, tokenizer, tmp_path / "off", sample_rate=8000).out_dir)
    from serac.transducer.search import greedy_search_batch, streaming_greedy_search

    sherpa_on, _ = decode_online(make_recognizer(online), online, cuts)
    sherpa_off, _ = decode_offline(make_recognizer(offline), offline, cuts)
    pad = np.zeros(int(round(tail_padding_seconds(online) * 8000)), dtype=np.float32)
    for cut, (_, _, hyp_on), (_, _, hyp_off) in zip(cuts, sherpa_on, sherpa_off):
        feats = knf_features(cut.audio, 8000, 23)
        with torch.no_grad():
            enc, lens = model.encode(feats[None], torch.tensor([feats.size(0)]))
            want_off = tokenizer.decode(greedy_search_batch(model, enc, lens)[0]).split()
            padded = knf_features(np.concatenate([cut.audio, pad]), 8000, 23)
            state, k = None, 0
            while k * chunk + chunk < padded.size(0):  # what sherpa-onnx's IsReady lets through
                state = streaming_greedy_search(model, padded[None, k * chunk:(k + 1) * chunk], state)
                k += 1
            want_on = tokenizer.decode(state.hyps[0]).split()
        assert hyp_off == want_off, f"{name} offline {cut.id}"
        assert hyp_on == want_on, f"{name} streaming {cut.id}"
    assert any(hyp for _, _, hyp in sherpa_on + sherpa_off), f"{name}: no output at all, a vacuous comparison"


# -------------------------------------------------------------------------- trained yesno models, end to end

@pytest.fixture(scope="module")
def yesno_recipe(yesno_recipe_run):
    """The yesno recipe's default run (tests/conftest.py, shared with tests/test_recipe_yesno.py): the recipe's own
    model (100 epochs, the last 10 averaged), the one its sherpa stage exports. A half-trained one (30 epochs, 5
    averaged) has words its greedy search decides by a hair (two of them flipped between serac's fbank and
    sherpa-onnx's own, about 6e-4 apart: docs/export.md)."""
    return yesno_recipe_run[0]


def _hyps(results) -> Dict[str, List[str]]:
    return {cut_id: list(hyp) for cut_id, _, hyp in results}


def test_yesno_sherpa_transcripts_equal_serac_greedy(yesno_recipe, monkeypatch):
    """The recipe's sherpa-onnx stage: sherpa-onnx decodes the audio (its own fbank) and its transcripts equal
    serac's greedy search on serac's features, offline and streaming (160 ms chunks, sherpa type lstm)."""
    recipe, exp, model_type = yesno_recipe, "lstm", "lstm"
    epoch, avg = 100, 10
    base = f"exp/{exp}/sherpa-onnx-epoch-{epoch}-avg-{avg}"
    proc = run_recipe(recipe, "--stage", str(YESNO_SHERPA_STAGE), "--stop-stage", str(YESNO_SHERPA_STAGE),
                      "--num-epochs", str(epoch), "--avg", str(avg))
    assert f"Stage {YESNO_SHERPA_STAGE}: export to sherpa-onnx" in proc.stdout

    # the metadata sherpa-onnx reads
    online_meta = read_metadata(recipe / base / "streaming/encoder.onnx")
    need = {"lstm": ["num_encoder_layers", "T", "decode_chunk_len", "d_model", "rnn_hidden_size"],
            "conformer": ["num_encoder_layers", "T", "decode_chunk_len", "left_context", "encoder_dim", "pad_length",
                          "cnn_module_kernel"]}[model_type]
    assert online_meta["model_type"] == model_type
    assert all(int(online_meta[k]) >= 0 for k in need), online_meta
    assert online_meta["T"] == online_meta["decode_chunk_len"] == "16"
    for mode in ("offline", "streaming"):
        dec = read_metadata(recipe / base / mode / "decoder.onnx")
        assert dec["vocab_size"] == "4" and dec["context_size"] == "2"
    tokens = (recipe / base / "offline/tokens.txt").read_text().split("\n")
    assert tokens[:4] == ["<blk> 0", "\u2581NO 1", "\u2581YES 2", "<unk> 3"]

    # serac's own greedy search, offline and streaming, on serac's features
    monkeypatch.chdir(recipe)
    from lhotse import load_manifest

    cuts = load_manifest("data/fbank/yesno_cuts_test.jsonl.gz")
    model, tokenizer, _ = load_averaged_model(f"exp/{exp}", "data/lang_word", epoch, avg)
    serac_off, _, _ = decode_cuts(model, tokenizer, cuts, "greedy_search", 4, 300.0)
    serac_on, _ = decode_cuts_streaming(model, tokenizer, cuts, "test cuts", 16)
    dec_dir = recipe / f"exp/{exp}/decode/test"
    sherpa_off = load_transcripts(dec_dir / f"recogs-test-sherpa-greedy_search-epoch-{epoch}-avg-{avg}.txt")
    sherpa_on = load_transcripts(
        dec_dir / f"recogs-test-sherpa-streaming_greedy_search-chunk-160ms-epoch-{epoch}-avg-{avg}.txt")
    assert len(sherpa_off) == len(sherpa_on) == 30
    assert sum(len(h) for h in _hyps(serac_off).values()) > 30, "the model emits nothing: a vacuous comparison"
    assert _hyps(sherpa_off) == _hyps(serac_off)
    assert _hyps(sherpa_on) == _hyps(serac_on)
    for suffix in (f"sherpa-greedy_search-epoch-{epoch}-avg-{avg}",
                   f"sherpa-streaming_greedy_search-chunk-160ms-epoch-{epoch}-avg-{avg}"):
        assert (dec_dir / f"wer-summary-test-{suffix}.txt").read_text().startswith("settings\tWER\n")
        assert (dec_dir / f"errs-test-{suffix}.txt").is_file()


@needs_yesno
def test_export_cli_names_type_and_encoder(yesno_recipe):
    proc = subprocess.run([sys.executable, "-m", "serac.bin.export", "--exp-dir", "exp/lstm", "--lang-dir",
                           "data/lang_word", "--epoch", "100", "--out-dir", "exp/lstm/bad", "--mode", "streaming",
                           "--model-type", "conformer"], cwd=yesno_recipe, capture_output=True, text=True,
                          env={**recipe_env(), "PYTHONPATH": str(ROOT)})
    assert proc.returncode != 0
    assert "encoder 'lstm' cannot be exported as sherpa-onnx model_type 'conformer'" in proc.stderr
    assert not (yesno_recipe / "exp/lstm/bad/encoder.onnx").exists()
