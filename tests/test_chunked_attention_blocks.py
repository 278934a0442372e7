"""ChunkedSelfAttention computes full-utterance attention in blocks of whole chunks (``_attend_blocks``: one batched
matmul per block over the keys the block's windows span, -inf outside each query's own window) for speed. It must
give what one window per chunk gives: the per-chunk form is the ``chunk_index`` path over every chunk (the amortized
Transformer's gathered windows), and ``block_frames = 0`` (blocks of one chunk, what the FLOP count runs)."""
from __future__ import annotations

import pytest
import torch

from serac.encoders.streaming import ChunkedSelfAttention


def _per_chunk(attn: ChunkedSelfAttention, q, k, v, valid, state):
    n, t = q.shape[:2]
    num_chunks = -(-t // attn.chunk_size)
    return attn.attend(q, k, v, valid, state, chunk_index=torch.arange(n * num_chunks))


@pytest.mark.parametrize("chunk,left,t,block_frames", [(4, 64, 100, 24), (4, 64, 37, 24), (4, 64, 100, 100),
                                                       (2, 3, 23, 6), (3, 7, 20, 1), (4, 8, 5, 24), (1, 0, 9, 4)])
def test_blocks_equal_per_chunk_windows(chunk, left, t, block_frames):
    torch.manual_seed(0)
    n, dim, heads = 3, 16, 2
    attn = ChunkedSelfAttention(dim, heads, chunk, left)
    attn.block_frames = block_frames
    with torch.no_grad():
        attn.relative_bias.normal_()
    q, k, v = (torch.randn(n, t, dim, requires_grad=True) for _ in range(3))
    # the last utterance is only padding (chunks without any valid key), the first has a left context
    lens = torch.tensor([t, max(1, t // 2), 0])
    valid = torch.arange(t)[None] < lens[:, None]
    state = attn.init_state(n, "cpu")
    state["key"], state["value"] = torch.randn(n, left, dim), torch.randn(n, left, dim)
    state["valid"][0] = True
    ref, ref_state = _per_chunk(attn, q, k, v, valid, state)
    out, out_state = attn.attend(q, k, v, valid, state)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for key in ref_state:
        torch.testing.assert_close(out_state[key], ref_state[key])
    params = [q, k, v, attn.relative_bias]
    ref_grads = torch.autograd.grad((ref * valid[..., None]).pow(2).sum(), params)
    grads = torch.autograd.grad((out * valid[..., None]).pow(2).sum(), params)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)


def test_empty_span():
    attn = ChunkedSelfAttention(8, 2, 4, 8)
    x = torch.randn(2, 0, 8)
    out, state = attn.attend(x, x, x, torch.zeros(2, 0, dtype=torch.bool), attn.init_state(2, "cpu"))
    assert out.shape == (2, 0, 8) and state["key"].shape == (2, 8, 8)


@pytest.mark.parametrize("span,step", [(5, 2), (3, 3), (7, 1)])
def test_spans_backward_equals_unfold(span, step):
    from serac.encoders.streaming import _spans

    torch.manual_seed(0)
    x = torch.randn(2, 3, 13, 4, requires_grad=True)
    ref = x.unfold(2, span, step).transpose(-1, -2)
    out = _spans(x, span, step)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(ref, x, g)[0])
