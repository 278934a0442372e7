"""serac.encoders.cpu_ops (oneDNN linear layers, the rand-drawn dropout) and the blocked running sum: the same maths
as nn.Linear / nn.Dropout / torch.cumsum, the fast path taken where it should be and nowhere else."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from serac.encoders import cpu_ops
from serac.encoders.cpu_ops import Dropout, Linear, linear
from serac.encoders.streaming import cumsum_time

needs_onednn = pytest.mark.skipif(not cpu_ops.onednn_available(), reason="torch built without oneDNN")


def _ran_onednn(y: torch.Tensor) -> bool:
    """Whether the autograd graph of ``y`` has a oneDNN linear node (within a few steps of its output)."""
    nodes = [y.grad_fn]
    for _ in range(3):
        if any(type(node).__name__ == "_OneDnnLinearBackward" for node in nodes):
            return True
        nodes = [nxt for node in nodes if node is not None for nxt, _ in node.next_functions]
    return False


def _grads(fn, x, layer, grad):
    x = x.detach().requires_grad_()
    layer.zero_grad(set_to_none=True)
    y = fn(x)
    y.backward(grad)
    return y.detach(), x.grad, layer.weight.grad, layer.bias.grad, _ran_onednn(y)


@needs_onednn
def test_linear_matches_f_linear_forward_and_backward():
    torch.manual_seed(0)
    layer = Linear(144, 576)
    x = torch.randn(8, 50, 144)
    grad = torch.randn(8, 50, 576)
    fast = _grads(layer, x, layer, grad)
    plain = _grads(lambda v: F.linear(v, layer.weight, layer.bias), x, layer, grad)
    assert fast[4] and not plain[4]  # the oneDNN path ran
    for a, b in zip(fast[:4], plain[:4]):
        assert a.shape == b.shape
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4), (a - b).abs().max()


@needs_onednn
def test_linear_without_grad_and_strided_input():
    layer = Linear(64, 32)
    x = torch.randn(40, 64).t().contiguous().t()  # a transposed view: not contiguous
    with torch.no_grad():
        assert torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-5)
    # a frozen layer on an input without gradient: no autograd node
    layer.requires_grad_(False)
    assert layer(torch.randn(40, 64)).grad_fn is None


def test_linear_keeps_nn_linear_parameters_and_state_dict():
    layer = Linear(7, 3, bias=False)
    assert isinstance(layer, torch.nn.Linear)
    assert list(layer.state_dict()) == ["weight"]
    x = torch.randn(100, 7)
    assert torch.allclose(layer(x), F.linear(x, layer.weight), atol=1e-5)


def test_plain_path_for_few_rows_flop_counting_and_the_switch(monkeypatch):
    layer = Linear(144, 576)
    # a streamed chunk (fewer than MIN_ROWS rows) stays on F.linear
    small = layer(torch.randn(1, cpu_ops.MIN_ROWS - 1, 144))
    assert not _ran_onednn(small)
    # FLOP counting sees the matmul (a dispatch mode: plain path)
    x = torch.randn(4, 100, 144)
    assert _ran_onednn(layer(x)) == cpu_ops.onednn_available()
    with FlopCounterMode(display=False) as counter:
        layer(x)
    assert counter.get_total_flops() == 2 * 400 * 144 * 576
    # SERAC_CPU_OPS=aten: plain everywhere
    monkeypatch.setenv("SERAC_CPU_OPS", "aten")
    assert not cpu_ops.enabled()
    assert not _ran_onednn(layer(x))
    torch.manual_seed(0)
    a = cpu_ops.dropout(x, 0.5, True)
    torch.manual_seed(0)
    assert torch.equal(a, F.dropout(x, 0.5, True))


def test_dropout_distribution_scale_backward_and_seed():
    drop = Dropout(0.1)
    x = torch.ones(200, 1000, requires_grad=True)
    torch.manual_seed(3)
    y = drop(x)
    kept = y != 0
    # each element kept with probability 0.9 (200k draws: 5 sigma is 0.0034) and scaled by 1 / 0.9
    assert abs(kept.float().mean().item() - 0.9) < 0.0034
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.9))
    grad = torch.randn(200, 1000)
    y.backward(grad)
    assert torch.allclose(x.grad, grad * y.detach())  # the same mask and scale
    torch.manual_seed(3)
    assert torch.equal(drop(x), y)  # seeded: the same mask again
    drop.eval()
    assert torch.equal(drop(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)


def test_linear_function_matches_on_two_dims_with_bias_none():
    w = torch.randn(5, 9, requires_grad=True)
    x = torch.randn(64, 9, requires_grad=True)
    y = linear(x, w)
    y.sum().backward()
    gx, gw = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    F.linear(x, w).sum().backward()
    assert torch.allclose(y, F.linear(x, w), atol=1e-5)
    assert torch.allclose(gx, x.grad, atol=1e-5) and torch.allclose(gw, w.grad, atol=1e-4)


@pytest.mark.parametrize("frames", [1, 5, 31, 32, 33, 100, 257])
def test_cumsum_time_is_the_running_sum(frames):
    torch.manual_seed(frames)
    x = torch.randn(3, frames, 7, requires_grad=True)
    grad = torch.randn(3, frames, 7)
    out = cumsum_time(x)
    out.backward(grad)
    fast_grad = x.grad.clone()
    x.grad = None
    ref = torch.cumsum(x, dim=1)
    ref.backward(grad)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-4) and torch.allclose(fast_grad, x.grad, atol=1e-4)


def test_lstm_front_end_keeps_the_plain_arithmetic():
    """The LSTM encoder's conv2d front end is built without the CPU fast paths (the yesno recipe's hypotheses depend
    on its exact float rounding); the other encoders' front ends use them."""
    from serac.encoders import build_encoder

    lstm = build_encoder(80, {"name": "lstm", "subsampling": "conv2d"})
    assert type(lstm.subsampling.proj) is torch.nn.Linear and not lstm.subsampling.fast_cpu_ops
    conformer = build_encoder(80, {"name": "conformer"})
    assert type(conformer.subsampling.proj) is Linear and conformer.subsampling.fast_cpu_ops


def test_switch_off_gives_torch_cumsum_exactly(monkeypatch):
    monkeypatch.setenv("SERAC_CPU_OPS", "aten")
    x = torch.randn(2, 100, 5)
    assert torch.equal(cumsum_time(x), torch.cumsum(x, dim=1))


@pytest.mark.parametrize("frames", [0, 5, 100])
def test_running_mean_se_is_the_definition(frames):
    """The SE takes the running sum over its squeezed channels (W commutes with the sum): same output as the
    definition (squeeze of the mean of frames <= t, carried sum and count included), and the state carries the
    running sum of the input itself, so streamed chunks continue it."""
    from serac.encoders.streaming import RunningMeanSqueezeExcitation

    torch.manual_seed(0)
    se = RunningMeanSqueezeExcitation(32, reduction=4)
    x = torch.randn(3, frames, 32)
    state = {"sum": torch.randn(3, 32) * 5, "count": torch.tensor([[4.0], [9.0], [1.0]])}
    out, new_state = se(x, state)
    mean = (state["sum"].unsqueeze(1) + torch.cumsum(x, 1)) / (state["count"].unsqueeze(1)
                                                            + torch.arange(1, frames + 1).view(1, -1, 1))
    expected = x * torch.sigmoid(se.excite(torch.nn.functional.silu(se.squeeze(mean))))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(new_state["sum"], state["sum"] + x.sum(1))
    assert torch.equal(new_state["count"], state["count"] + frames)
