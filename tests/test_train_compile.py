"""train.compile (serac/train/compile.py): a transducer training step whose encoder runs through torch.compile
gives the eager step's losses and gradients (float tolerance), on a batch of unequal lengths; the compiled path is
used only in training; a training run with train.compile: true trains through it to the eager run's parameters,
and the trainer refuses it under DDP. The compiling tests take minutes with an empty inductor cache."""
from __future__ import annotations

import types

import pytest
import torch

from serac.train.compile import compile_for_training, cxx_compiler
from serac.transducer.model import build_model

needs_cxx = pytest.mark.skipif(not cxx_compiler(), reason="torch.compile's CPU backend needs a C++ compiler "
                                                          "(g++/clang++), none on PATH")

TINY = {
    # dropout 0: the compiled graph draws its dropout masks from another generator than eager's
    "contextnet": {"name": "contextnet", "output_dim": 16, "channels": 16, "num_blocks": 3, "layers_per_block": 2,
                   "se_reduction": 4, "dropout": 0.0},
    "conformer": {"name": "conformer", "output_dim": 16, "dim": 16, "num_layers": 1, "num_heads": 2, "ffn_dim": 32,
                  "subsampling_channels": 8, "chunk_size": 2, "left_context": 4, "dropout": 0.0},
}


def _step(model, x, x_lens, y):
    model.zero_grad(set_to_none=True)
    out = model(x, x_lens, y)
    loss = 0.5 * out["simple_loss"] + out["pruned_loss"]
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@needs_cxx
@pytest.mark.parametrize("name", sorted(TINY))
def test_compiled_training_step_matches_eager(name):
    torch.manual_seed(0)
    model = build_model({"encoder": TINY[name], "decoder_dim": 16, "joiner_dim": 16}, num_features=20,
                        vocab_size=8)
    model.train()
    x = torch.randn(3, 64, 20)
    x_lens = torch.tensor([64, 50, 33])
    y = [[1, 2, 3, 4], [5, 6], [7]]
    eager_loss, eager_grads = _step(model, x, x_lens, y)
    eager_out = model.encoder(x, x_lens)[0].detach()

    compile_for_training(model.encoder)
    loss, grads = _step(model, x, x_lens, y)
    torch.testing.assert_close(loss, eager_loss, rtol=1e-4, atol=1e-5)
    assert grads.keys() == eager_grads.keys()
    for n, g in grads.items():
        torch.testing.assert_close(g, eager_grads[n], rtol=1e-3, atol=1e-5, msg=lambda m: f"{n}: {m}")
    torch.testing.assert_close(model.encoder(x, x_lens)[0].detach(), eager_out, rtol=1e-4, atol=1e-5)
    # another batch size and length (dynamic shapes), given as a non-contiguous slice, runs the compiled graphs
    # without compiling them again (a recompilation costs minutes) and still matches
    with torch._dynamo.config.patch(error_on_recompile=True):
        short = model.encoder(x[:2, :40], torch.tensor([40, 36]))[0]
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(short.detach(), model.encoder(x[:2, :40], torch.tensor([40, 36]))[0],
                                   rtol=1e-4, atol=1e-5)


def test_eval_and_no_grad_run_eager_and_state_dict_is_unchanged():
    model = build_model({"encoder": TINY["contextnet"], "decoder_dim": 16, "joiner_dim": 16}, num_features=20,
                        vocab_size=8)
    keys = list(model.state_dict())
    calls = []
    eager = model.encoder.forward
    compile_for_training(model.encoder)
    # stand in for the compiled function: count the calls that would run it
    model.encoder._compiled_training_forward = lambda *a, **k: calls.append(1) or eager(*a, **k)
    x, x_lens = torch.randn(2, 32, 20), torch.tensor([32, 20])
    model.eval()
    model.encoder(x, x_lens)
    model.train()
    with torch.no_grad():
        model.encoder(x, x_lens)
    assert calls == []
    model.encoder(x, x_lens)
    assert calls == [1]
    assert list(model.state_dict()) == keys
    with pytest.raises(RuntimeError, match="already compiled"):
        compile_for_training(model.encoder)


def test_trainer_refuses_compile_under_ddp(monkeypatch, tmp_path):
    from serac.train import trainer

    monkeypatch.setattr(trainer, "setup_distributed", lambda: (2, 0, 0))
    monkeypatch.setattr(trainer, "setup_logging", lambda *a, **k: None)
    args = types.SimpleNamespace(exp_dir=str(tmp_path / "exp"))
    with pytest.raises(ValueError, match="train.compile: true is only supported in single-process training"):
        trainer.Trainer(args, {"train": {"compile": True, "num_threads": 0}})


def test_trainer_trains_through_the_compiled_encoder(tmp_path, monkeypatch, one_thread):
    """train.compile: true in a real (tiny LSTM) training run: the trainer compiles the encoder, the training steps
    run the compiled forward, and the parameters end where an eager run's do (float tolerance)."""
    pytest.importorskip("torch._inductor")
    if not cxx_compiler():
        pytest.skip("torch.compile's CPU backend needs a C++ compiler (g++/clang++), none on PATH")
    from serac.train import trainer as trainer_module
    from trainer_utils import TinyTrainer

    calls = []

    def spy(encoder):
        compile_for_training(encoder)
        compiled = encoder._compiled_training_forward
        encoder._compiled_training_forward = lambda *a, **k: calls.append(1) or compiled(*a, **k)
        return encoder

    tiny = TinyTrainer(tmp_path)
    eager = tiny.run("eager", [])["model"]
    monkeypatch.setattr(trainer_module, "compile_for_training", spy)
    compiled = tiny.run("compiled", ["train.compile=true"])["model"]
    assert calls, "the training steps did not run the compiled encoder"
    assert compiled.keys() == eager.keys()
    for name, value in compiled.items():
        torch.testing.assert_close(value, eager[name], rtol=1e-3, atol=1e-4, msg=lambda m: f"{name}: {m}")
