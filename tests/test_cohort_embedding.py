"""The cohort embedding of the transducer (model.cohort_embedding; Dheram et al. 2022's mitigation for discovered
cohorts): zero-initialised, so a model fine-tuned from one without it starts with the same outputs; once trained,
different cohorts change the encoding; cohort ids come from the cuts, and a cut without a known cohort is an error
naming it; training and offline decoding pass them; streaming and export refuse such a model."""
from __future__ import annotations

import pytest
import torch
from lhotse import MonoCut, SupervisionSegment

from serac.transducer.model import build_model

ENC = {"name": "lstm", "hidden_dim": 16, "num_layers": 1, "output_dim": 12}
COHORTS = {"key": "auto_cohort", "cohorts": ["auto0", "auto1", "auto2"], "dim": 4}

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def cut(cid: str, cohort=None) -> MonoCut:
    custom = {"auto_cohort": cohort} if cohort is not None else {}
    return MonoCut(cid, 0, 1.0, 0, supervisions=[SupervisionSegment(cid, cid, 0, 1.0, speaker="s", custom=custom)])


def models():
    torch.manual_seed(0)
    plain = build_model({"encoder": ENC, "decoder_dim": 8, "joiner_dim": 8}, num_features=10, vocab_size=6)
    torch.manual_seed(1)
    cohort = build_model({"encoder": ENC, "decoder_dim": 8, "joiner_dim": 8, "cohort_embedding": COHORTS},
                         num_features=10, vocab_size=6)
    cohort.load_state_dict(plain.state_dict())  # fine-tuning from the plain model: the new parameters are kept
    return plain.eval(), cohort.eval()


@torch.no_grad()
def test_zero_init_starts_as_the_model_it_was_fine_tuned_from_and_cohorts_then_differ():
    plain, cohort = models()
    x, lens = torch.randn(3, 20, 10), torch.tensor([20, 20, 16])
    ids = cohort.cohort_ids([cut("a", "auto0"), cut("b", "auto2"), cut("c", "auto1")])
    assert ids.tolist() == [0, 2, 1]
    torch.testing.assert_close(cohort.encode(x, lens, ids)[0], plain.encode(x, lens)[0])
    torch.nn.init.normal_(cohort.cohort_proj.weight)  # as after training
    a = cohort.encode(x[:1], lens[:1], torch.tensor([0]))[0]
    b = cohort.encode(x[:1], lens[:1], torch.tensor([2]))[0]
    assert not torch.allclose(a, b)


def test_cohort_ids_name_the_cut_and_encode_needs_them():
    _, cohort = models()
    with pytest.raises(ValueError, match="cut b: no 'auto_cohort'"):
        cohort.cohort_ids([cut("a", "auto0"), cut("b")])
    with pytest.raises(ValueError, match="cut a: cohort 'auto9'"):
        cohort.cohort_ids([cut("a", "auto9")])
    with pytest.raises(ValueError, match="pass each utterance's cohort id"):
        cohort.encode(torch.randn(1, 8, 10), torch.tensor([8]))
    plain, _ = models()
    with pytest.raises(ValueError, match="without a cohort embedding"):
        plain.encode(torch.randn(1, 8, 10), torch.tensor([8]), torch.tensor([0]))
    with pytest.raises(ValueError, match="cohort_embedding needs key"):
        build_model({"encoder": ENC, "cohort_embedding": {"key": "x"}}, num_features=10, vocab_size=6)


def test_training_passes_the_cohorts_and_trains_the_embedding():
    from serac.config import load_config
    from serac.train.trainer import compute_loss

    class Tok:
        def encode(self, text):
            return [int(c) for c in text.split()]

    _, model = models()
    model.train()
    batch = {"inputs": torch.randn(2, 24, 10),
             "supervisions": {"num_frames": torch.tensor([24, 20]), "text": ["1 2", "3"],
                              "cut": [cut("a", "auto1"), cut("b", "auto2")]}}
    loss, _ = compute_loss(model, batch, Tok(), load_config(None, []), step=10**6, device=torch.device("cpu"),
                           train=True)
    loss.backward()
    assert model.cohort_proj.weight.grad.abs().sum() > 0
    # the embedding rows of the batch's cohorts get a gradient only once the projection is non-zero
    batch["supervisions"]["cut"][1] = cut("b")
    with pytest.raises(ValueError, match="cut b"):
        compute_loss(model, batch, Tok(), load_config(None, []), step=10**6, device=torch.device("cpu"), train=True)


def test_offline_decoding_passes_the_cohorts(monkeypatch):
    """decode_cuts gives the model each cut's cohort (the encoder output differs by cohort once trained)."""
    import serac.decode.offline as offline

    _, model = models()
    torch.nn.init.normal_(model.cohort_proj.weight, std=5.0)

    class Tok:
        def decode(self, ids):
            return " ".join(str(i) for i in ids)

    feats = torch.randn(1, 24, 10)
    seen = []
    real_encode = model.encode

    def spy(x, lens, cohorts=None):
        seen.append(cohorts.tolist())
        return real_encode(x, lens, cohorts)

    monkeypatch.setattr(model, "encode", spy)
    for c in ("auto0", "auto2"):
        batch = {"inputs": feats, "supervisions": {"num_frames": torch.tensor([24]), "text": ["1 2"],
                                                   "cut": [cut("a", c)]}}
        monkeypatch.setattr(offline, "eval_dataloader", lambda cuts, max_duration, b=batch: [b])
        offline.decode_cuts(model, Tok(), None, "greedy_search", 4, 10.0)
    assert seen == [[0], [2]]


def test_streaming_decode_and_export_refuse_a_cohort_model(tmp_path, monkeypatch):
    import serac.decode.streaming as streaming
    from serac.export.onnx_export import load_averaged_model

    _, model = models()
    torch.save({"model": model.state_dict()}, tmp_path / "epoch-1.pt")
    with pytest.raises(NotImplementedError, match="cohort embedding"):
        load_averaged_model(tmp_path, tmp_path, 1, 1)
    monkeypatch.setattr(streaming, "open_cuts", lambda p: ([], type("C", (), {"num_features": 10})()))
    monkeypatch.setattr(streaming, "load_model", lambda *a: (model, None, {}))
    with pytest.raises(NotImplementedError, match="streaming decoding of a model with a cohort embedding"):
        streaming.decode_set_streaming(str(tmp_path), str(tmp_path), str(tmp_path / "c.jsonl.gz"), "test", 1, 1)
