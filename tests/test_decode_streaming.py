"""Streaming decoding (serac/decode/streaming.py): chunk-by-chunk greedy search gives the offline greedy
transcript for every encoder, the chunk size is checked against the encoder, latency figures are computed."""
from __future__ import annotations

import pytest
import torch

from serac.decode.naming import streaming_suffix
from serac.decode.results import latency_summary, merge_streaming_stats
from serac.decode.streaming import resolve_chunk_frames, stream_utterance
from serac.transducer.model import build_model
from serac.transducer.search import greedy_search_batch

NUM_FEATURES = 80
VOCAB = 9
# every registered encoder, small (the conformer's and the amortized Transformer's chunk_multiple is 8 here)
SMALL_CONFIGS = {
    "lstm": dict(hidden_dim=16, num_layers=2, output_dim=8),
    "conv_rnnt": dict(local_channels=4, local_blocks=1, local_dim=16, global_channels=16, global_dilations=(1, 2, 4),
                      lstm_hidden=16, lstm_layers=2, output_dim=8),
    "conformer": dict(dim=16, num_layers=2, num_heads=2, ffn_dim=32, conv_kernel_size=5, subsampling_channels=4,
                      chunk_size=2, left_context=3, output_dim=8),
    "contextnet": dict(channels=16, num_blocks=4, layers_per_block=2, output_dim=8),
    "amortized_transformer": dict(dim=16, num_layers=2, num_heads=2, ffn_dim=32, subsampling_channels=4,
                                  chunk_size=2, left_context=3, output_dim=8, arbitrator_dim=8),
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model({"encoder": {"name": name, **SMALL_CONFIGS[name]}, "decoder_dim": 16, "joiner_dim": 16},
                        num_features=NUM_FEATURES, vocab_size=VOCAB).eval()
    with torch.no_grad():
        # a random joiner mostly emits blank; a lower blank bias makes the transcripts long enough to compare
        model.joiner.output_linear.bias[model.blank_id] -= 1.0
        model.set_feature_stats(torch.full((NUM_FEATURES,), 0.5), torch.full((NUM_FEATURES,), 2.0))
    return model


def test_every_registered_encoder_is_streamed():
    from serac.encoders import available_encoders

    assert set(available_encoders()) == set(SMALL_CONFIGS)


@pytest.mark.parametrize("name", list(SMALL_CONFIGS))
def test_streaming_transcript_equals_offline_greedy(name):
    """Utterance lengths that are not multiples of the chunk (nor of the subsampling factor), chunks of one and
    of several chunk_multiples: the chunked-attention encoders (chunk_multiple 8 here) also end streams inside an
    attention chunk."""
    model = tiny_model(name)
    m = model.encoder.chunk_multiple
    g = torch.Generator().manual_seed(5)
    lengths = [203, 150, 4 * m + 4, 37, 3]
    feats = [torch.randn(t, NUM_FEATURES, generator=g) for t in lengths]
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    with torch.no_grad():
        enc, enc_lens = model.encode(x, torch.tensor(lengths))
    offline = greedy_search_batch(model, enc, enc_lens)
    assert sum(len(h) for h in offline) > 10, "near-empty transcripts would make the comparison vacuous"
    for chunk in (m, 3 * m):
        for f, ref, t in zip(feats, offline, lengths):
            out = stream_utterance(model, f, chunk)
            assert out.tokens == ref, f"{name}, chunk {chunk}, {t} frames"
            assert len(out.full_chunk_seconds) == t // chunk
            if t >= chunk:
                # the first frame of a chunk waits for the whole chunk: the look-ahead lies inside it
                assert out.max_wait_frames == chunk
            assert out.compute_seconds >= sum(out.full_chunk_seconds) > 0 or t < chunk


def test_chunk_size_is_checked():
    assert resolve_chunk_frames(160, None, 0.01, 4, "exp/x") == 16
    assert resolve_chunk_frames(None, None, 0.01, 16, "exp/x") == 16  # default 160 ms
    assert resolve_chunk_frames(None, 32, 0.01, 16, "exp/x") == 32
    with pytest.raises(ValueError, match=r"exp/x \(ConformerEncoder\).*24 feature frames.*chunk_multiple \(16"):
        resolve_chunk_frames(240, None, 0.01, 16, "exp/x (ConformerEncoder)")
    with pytest.raises(ValueError, match="not a positive whole number of 10 ms"):
        resolve_chunk_frames(165, None, 0.01, 4, "exp/x")
    with pytest.raises(ValueError, match="not a positive multiple"):
        resolve_chunk_frames(None, 0, 0.01, 4, "exp/x")


def test_non_streamable_tail_is_refused():
    """An encoder with chunk_multiple > subsampling_factor that does not override the end of stream says so."""
    model = tiny_model("lstm")
    with pytest.raises(ValueError, match="multiple of 4"):
        model.encoder.streaming_forward_final(torch.zeros(1, 6, NUM_FEATURES), model.encoder.init_state(1, "cpu"))


def test_latency_summary_and_merge():
    s = latency_summary([float(i) for i in range(1, 101)])
    assert s["num_chunks"] == 100 and s["mean"] == pytest.approx(50.5)
    assert s["p50"] == pytest.approx(50.5) and s["p90"] == pytest.approx(90.1) and s["p99"] == pytest.approx(99.01)
    assert latency_summary([])["p99"] is None
    shard = {"audio_seconds": 2.0, "compute_seconds": 0.1, "wall_seconds": 0.2, "num_utts": 1,
             "algorithmic_latency_ms": 160.0}
    merged = merge_streaming_stats([{**shard, "chunk_compute_ms_all": [1.0, 2.0]},
                                    {**shard, "chunk_compute_ms_all": [3.0], "algorithmic_latency_ms": 150.0}])
    assert merged["chunk_compute_ms"]["num_chunks"] == 3 and merged["chunk_compute_ms"]["mean"] == pytest.approx(2.0)
    assert merged["rtf"] == pytest.approx(0.05) and merged["num_utts"] == 2
    assert merged["algorithmic_latency_ms"] == 160.0 and "chunk_compute_ms_all" not in merged
    assert streaming_suffix(160.0, 30, 5) == "streaming_greedy_search-chunk-160ms-epoch-30-avg-5"
