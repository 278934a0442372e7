"""Compute-cost amortized streaming Transformer encoder (Xie et al., Interspeech 2022).

A streaming Transformer transducer encoder whose blocks each carry a lightweight *arbitrator* that decides,
frame by frame, whether the block's multi-head self-attention (MHA) and its feed-forward network (FFN) run
for that frame. A skipped sub-module contributes zero and the residual carries the frame unchanged. Training
adds ``cost_weight x`` the expected fraction of encoder FLOPs executed, so the model learns where compute
can be saved; at inference the gates are deterministic and skipped frames are really not computed (gathered
out before the module, scattered back after), so wall-clock time falls with the FLOPs.

Architecture (defaults in brackets)::

    fbank (N, T, 80) -> causal 2-D conv subsampling (time / 4, [16] channels) -> linear [192]
      -> [6] x block:
           (g_mha, g_ffn) = arbitrator(x) > 0    arbitrator: LayerNorm -> linear [32] -> ReLU -> linear 2
           x = x + g_mha * ChunkedMHSA(LayerNorm(x))   [4] heads, chunk [4] frames, left context [32] frames
           x = x + g_ffn * FFN(x)                      FFN: LayerNorm -> linear [768] -> Swish -> linear
      -> LayerNorm -> linear (output_dim [256]) at 25 frames/s

Joint training from scratch (the paper's recipe; ``gate_warmup_steps``, ``cost_ramp_steps``): for the first
``gate_warmup_steps`` training steps every gate is forced on and the cost term is off (the arbitrators are idle
while the blocks learn), then the cost weight rises linearly from 0 to ``cost_weight`` over ``cost_ramp_steps``.
The trainer tells the encoder its step (:meth:`set_train_step`); evaluation always uses the learned gates.

Static module drop (the baseline at matched FLOPs; ``arbitrators: false``, ``static_skip: [mha1, ffn2, ...]``,
blocks counted from 1): the named modules never run, on any frame; their parameters stay (a dense checkpoint
loads) and the FLOP count leaves them out.

Both decisions of a block are taken from the block input (two decisions per block), so they are known
before either module runs and depend on nothing a streaming encoder has not seen yet.

Gates (see docs/encoders.md, "Amortized Transformer"):

* training: straight-through Gumbel-sigmoid. ``hard = [logit + logistic noise > 0]`` is used in the
  forward pass (the same 0/1 decisions inference makes, no half-open modules), the gradient flows through
  ``sigmoid((logit + noise) / gate_temperature)``. The cost term uses the *exact* expectation of the hard
  gate under the noise, ``P(on) = sigmoid(logit)``, so its gradient needs no estimator.
* inference (``eval()``): ``on = logit > 0``, deterministic.

A frame whose MHA gate is off neither queries nor answers in that block: its query, key and value are not
computed and it is masked out of the other frames' attention windows (cache slots included). Its
representation still reaches later blocks through the residual. The attention scores are computed per chunk
of ``chunk_size`` queries (the chunked layout of ``ChunkedSelfAttention``), for every chunk holding at least
one active query; the inactive queries of such a chunk are computed and discarded, and counted.

FLOPs (multiply-accumulates x 2 of matmuls and convolutions; LayerNorm, softmax, activations, gathers and
residual adds are not counted, as in ``encoder_flops_per_second``), per output frame:

* front end: the two subsampling convolutions and the projection (always run);
* per block: arbitrator (always run when present), MHA = Q/K/V/output projections ``8 d^2`` plus scores and
  weighted sum over the whole attention window ``4 (left_context + chunk_size) d`` (the window is computed at
  full size, cache slots included, so that is what it costs), FFN ``4 d ffn_dim``;
* the output projection ``2 d output_dim``.

After every forward: ``last_flops`` (N,) FLOPs executed per utterance over its valid frames (expected values
in training), ``last_dense_flops`` (N,) what the same encoder without arbitrators costs on them,
``last_flop_fraction`` = their ratio, ``last_gates`` a list per block of (N, T', 2) bool gates (MHA, FFN),
``last_module_frames`` (N, blocks, 2) the valid frames each MHA / FFN ran on (every model, dense too), and
``aux_loss`` = ``cost_weight x`` the batch's expected executed fraction (per frame; ``None`` without
arbitrators) for the transducer's loss.

Usage:
  encoder = build_encoder(80, {"name": "amortized_transformer", "cost_weight": 0.5})
  y, y_lens = encoder(feats, feat_lens); encoder.last_flop_fraction     # per utterance
  dense = build_encoder(80, {"name": "amortized_transformer", "arbitrators": False})
  sliding = build_encoder(80, {"name": "amortized_transformer", "arbitrators": False, "left_context": 8})

Streaming (shared with the Conformer: :mod:`serac.encoders.chunked_attention`): ``chunk_multiple = 4 *
chunk_size`` input frames, ``look_ahead = 4 * chunk_size - 1`` (the first frame of a chunk waits for the chunk's
end), a stream may end inside a chunk; the state is the subsampling convolutions' caches and per block
the last ``left_context`` keys/values with their validity (False for padding and for frames whose MHA gate was
off). A checkpoint without arbitrators (the dense model) loads into an encoder with them: the arbitrators
keep their initialisation (see :meth:`_fill_missing_arbitrators`), which is how the recipe fine-tunes.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from serac.encoders import register_encoder
from serac.encoders.cpu_ops import Dropout, Linear
from serac.encoders.streaming import CausalConv2dSubsampling, ChunkedSelfAttention, State
from serac.encoders.chunked_attention import ChunkedAttentionEncoder
from serac.encoders.conformer import FeedForward


def pad_to_chunks(mask: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """(..., T) bool -> (..., chunks, chunk_size), the last chunk padded with False."""
    pad = (-mask.size(-1)) % chunk_size
    return nn.functional.pad(mask, (0, pad), value=False).unflatten(-1, (-1, chunk_size))


def parse_static_skip(names: Optional[List[str]], num_layers: int) -> set:
    """``["mha1", "ffn2", ...]`` (1-based blocks) -> a set of those names; ValueError naming a bad one."""
    valid = {f"{m}{i}" for m in ("mha", "ffn") for i in range(1, num_layers + 1)}
    if names is None:
        return set()
    if isinstance(names, str):
        names = names.replace(",", " ").split()
    bad = [n for n in names if n not in valid]
    if bad:
        raise ValueError(f"amortized_transformer: static_skip {bad} not understood: use mha<B> / ffn<B> with a block "
                         f"B in 1..{num_layers}")
    return set(names)


class Arbitrator(nn.Module):
    """Per-frame gate logits (MHA, FFN) from the block input: LayerNorm -> linear -> ReLU -> linear 2 (or a
    single linear map when ``hidden_dim`` is 0). The output bias starts at ``init_bias`` > 0 so that a model
    fine-tuned from a dense checkpoint starts with (almost) every module on."""

    def __init__(self, dim: int, hidden_dim: int, init_bias: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.hidden = Linear(dim, hidden_dim) if hidden_dim > 0 else None
        self.out = Linear(hidden_dim if hidden_dim > 0 else dim, 2)
        nn.init.constant_(self.out.bias, init_bias)
        self.flops_per_frame = 2 * (dim * hidden_dim + hidden_dim * 2 if hidden_dim > 0 else dim * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        if self.hidden is not None:
            h = torch.relu(self.hidden(h))
        return self.out(h)


class AmortizedBlock(nn.Module):
    """Pre-LayerNorm Transformer block with chunked self-attention and an optional arbitrator.

    ``gather`` (default True) makes eval-mode forward run each module on the active frames only; False runs
    every module on every frame and multiplies by the gates (the training computation, with the eval gates):
    the two give the same output, which the tests check."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, chunk_size: int, left_context: int, dropout: float,
                 arbitrator_dim: Optional[int], gate_init_bias: float, gate_temperature: float,
                 run_mha: bool = True, run_ffn: bool = True) -> None:
        super().__init__()
        # static module drop (no arbitrator): a module that never runs, on any frame (its parameters are kept, so
        # a dense checkpoint loads; they get no gradient)
        self.run_mha, self.run_ffn = run_mha, run_ffn
        self.gates_forced_on = False  # the joint training's gate warm-up: every module on, the arbitrator idle
        self.norm_attn = nn.LayerNorm(dim)
        self.attn = ChunkedSelfAttention(dim, num_heads, chunk_size, left_context, dropout)
        self.dropout = Dropout(dropout)
        self.ffn = FeedForward(dim, ffn_dim, dropout)
        self.arbitrator = (Arbitrator(dim, arbitrator_dim, gate_init_bias) if arbitrator_dim is not None else None)
        self.gate_temperature = gate_temperature
        self.gather = True
        self.chunk_size = chunk_size
        # FLOPs per frame of each part (see the module docstring)
        self.mha_proj_flops = 2 * 4 * dim * dim
        self.attn_core_flops = 2 * 2 * (left_context + chunk_size) * dim
        self.mha_flops = self.mha_proj_flops + self.attn_core_flops
        self.ffn_flops = 2 * 2 * dim * ffn_dim
        self.arbitrator_flops = self.arbitrator.flops_per_frame if self.arbitrator is not None else 0

    def train(self, mode: bool = True) -> "AmortizedBlock":
        # eval: one attention window per chunk, so the per-utterance FLOP count (last_flops) is what runs;
        # training (whose count is an expectation anyway): the blocked form, the same outputs in fewer, larger
        # matmuls (fwd+bwd in 0.81-0.87 of the time on one thread: bench/bench_amortized.py, docs/encoders.md)
        super().train(mode)
        self.attn.block_frames = ChunkedSelfAttention.block_frames if mode else 0
        return self

    def init_state(self, batch_size: int, device: torch.device) -> State:
        return self.attn.init_state(batch_size, device)

    def forward(self, x: torch.Tensor, key_valid: torch.Tensor, state: State
                ) -> Tuple[torch.Tensor, State, Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Returns (output, new state, gates (N, T, 2) bool, P(gate on) (N, T, 2) in training). Without an
        arbitrator both are None. The encoder counts the FLOPs from them for all blocks at once."""
        if self.arbitrator is None:
            if self.run_mha:
                attn_out, state = self.attn(self.norm_attn(x), key_valid, state)
                x = x + self.dropout(attn_out)
            return (x + self.ffn(x) if self.run_ffn else x), state, None, None
        if self.gates_forced_on:
            attn_out, state = self.attn(self.norm_attn(x), key_valid, state)
            x = x + self.dropout(attn_out)
            on = key_valid.unsqueeze(-1).expand(-1, -1, 2)
            return x + self.ffn(x), state, on, on.to(x.dtype)
        logits = self.arbitrator(x)
        if self.training:
            return self._forward_train(x, key_valid, state, logits)
        on = (logits > 0) & key_valid.unsqueeze(-1)
        if self.gather:
            x, state = self._forward_gathered(x, on, state)
        else:
            attn_out, state = self.attn(self.norm_attn(x), on[..., 0], state)
            x = x + attn_out * on[..., 0:1]
            x = x + self.ffn(x) * on[..., 1:2]
        return x, state, on, None

    def _forward_train(self, x: torch.Tensor, key_valid: torch.Tensor, state: State, logits: torch.Tensor
                       ) -> Tuple[torch.Tensor, State, torch.Tensor, torch.Tensor]:
        # straight-through Gumbel-sigmoid: hard 0/1 gates forward, relaxed gradient backward
        u = torch.rand_like(logits).clamp_(1e-6, 1 - 1e-6)
        soft = torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / self.gate_temperature)
        hard = (soft > 0.5).to(x.dtype)
        gates = hard + soft - soft.detach()
        on = hard.bool() & key_valid.unsqueeze(-1)
        # the full computation, multiplied by the gates: d loss / d gate needs the module output of skipped frames
        attn_out, state = self.attn(self.norm_attn(x), on[..., 0], state)
        x = x + self.dropout(attn_out) * gates[..., 0:1]
        x = x + self.ffn(x) * gates[..., 1:2]
        # exact expectation of the hard gate under logistic noise: P(logit + noise > 0) = sigmoid(logit)
        return x, state, on, torch.sigmoid(logits)

    def _forward_gathered(self, x: torch.Tensor, on: torch.Tensor, state: State) -> Tuple[torch.Tensor, State]:
        """Eval: each module runs on the rows of its active frames only; results are added back in place.
        (Where every frame is active the gathers are skipped: the same computation without the copies.)"""
        n, t, d = x.shape
        attn = self.attn
        att_on = on[..., 0]
        rows = att_on.reshape(-1).nonzero().squeeze(1)
        if rows.numel() == n * t:
            q, k, v = attn.in_proj(self.norm_attn(x)).chunk(3, dim=-1)
            out, state = attn.attend(q, k, v, att_on, state)
            x = x + attn.out_proj(out)
        else:
            flat = x.reshape(n * t, d)
            qkv = flat.new_zeros(n * t, 3 * d)
            if rows.numel():
                qkv.index_copy_(0, rows, attn.in_proj(self.norm_attn(flat.index_select(0, rows))))
            q, k, v = qkv.reshape(n, t, 3 * d).chunk(3, dim=-1)
            # the score computation runs per chunk: only chunks with at least one active query
            chunks = pad_to_chunks(att_on, self.chunk_size).any(-1).reshape(-1).nonzero().squeeze(1)
            out, state = attn.attend(q, k, v, att_on, state, chunk_index=chunks)
            if rows.numel():
                flat = flat.index_add(0, rows, attn.out_proj(out.reshape(n * t, d).index_select(0, rows)))
            x = flat.reshape(n, t, d)
        rows = on[..., 1].reshape(-1).nonzero().squeeze(1)
        if rows.numel() == n * t:
            return x + self.ffn(x), state
        flat = x.reshape(n * t, d)
        if rows.numel():
            flat = flat.index_add(0, rows, self.ffn(flat.index_select(0, rows)))
        return flat.reshape(n, t, d), state


@register_encoder("amortized_transformer")
class AmortizedTransformerEncoder(ChunkedAttentionEncoder):
    """Streaming Transformer with per-frame, per-module arbitrators (``arbitrators: false`` is the dense
    baseline, a smaller ``left_context`` the sliding-window baseline). chunk_size / left_context in output
    frames; ``cost_weight`` scales the expected executed FLOP fraction added to the per-frame loss."""

    def __init__(
        self,
        num_features: int,
        output_dim: int = 256,
        dim: int = 192,
        num_layers: int = 6,
        num_heads: int = 4,
        ffn_dim: int = 768,
        subsampling_channels: int = 16,
        chunk_size: int = 4,
        left_context: int = 32,
        dropout: float = 0.1,
        arbitrators: bool = True,
        arbitrator_dim: int = 32,
        gate_init_bias: float = 2.0,
        gate_temperature: float = 1.0,
        cost_weight: float = 0.0,
        gate_warmup_steps: int = 0,
        cost_ramp_steps: int = 0,
        static_skip: Optional[List[str]] = None,
    ) -> None:
        super().__init__()
        self._set_chunking(chunk_size, left_context)
        self.output_dim = output_dim
        self.cost_weight = float(cost_weight)
        self.has_arbitrators = bool(arbitrators)
        self.gate_warmup_steps, self.cost_ramp_steps = int(gate_warmup_steps), int(cost_ramp_steps)
        if (self.gate_warmup_steps or self.cost_ramp_steps) and not self.has_arbitrators:
            raise ValueError("amortized_transformer: gate_warmup_steps / cost_ramp_steps need arbitrators: true")
        skip = parse_static_skip(static_skip, num_layers)
        if skip and self.has_arbitrators:
            raise ValueError("amortized_transformer: static_skip is the static baseline: it needs arbitrators: false")
        self.train_step: Optional[int] = None  # set by the trainer before each step (set_train_step)
        self.subsampling = CausalConv2dSubsampling(num_features, subsampling_channels, dim)
        self.dropout = Dropout(dropout)
        self.blocks = nn.ModuleList(
            AmortizedBlock(dim, num_heads, ffn_dim, chunk_size, left_context, dropout,
                           arbitrator_dim if arbitrators else None, gate_init_bias, gate_temperature,
                           run_mha=f"mha{i + 1}" not in skip, run_ffn=f"ffn{i + 1}" not in skip)
            for i in range(num_layers))
        self.norm_out = nn.LayerNorm(dim)
        self.out = Linear(dim, output_dim)
        sub, c = self.subsampling, subsampling_channels
        # per output frame: conv1 makes 2 frames of (mid_freq x c) outputs from 1 channel (3x3), conv2 one frame
        # of (out_freq x c) from c channels (3x3), then the flattened projection
        self.front_flops = 2 * (2 * sub.mid_freq * c * 9 + sub.out_freq * c * c * 9 + c * sub.out_freq * dim)
        self.out_flops = 2 * dim * output_dim
        self.dense_flops_per_frame = (self.front_flops + self.out_flops
                                      + sum(b.mha_flops + b.ffn_flops for b in self.blocks))
        self.aux_loss: Optional[torch.Tensor] = None
        self.last_flops: Optional[torch.Tensor] = None
        self.last_dense_flops: Optional[torch.Tensor] = None
        self.last_flop_fraction: Optional[torch.Tensor] = None
        self.last_gates: List[torch.Tensor] = []
        self.last_module_frames: Optional[torch.Tensor] = None
        self.register_load_state_dict_pre_hook(self._fill_missing_arbitrators)

    def set_train_step(self, step: int) -> None:
        """The trainer's step count before a training step (validation passes a step past every warm-up): drives
        the gate warm-up and the cost ramp of joint training from scratch."""
        self.train_step = int(step)

    def cost_scale(self) -> float:
        """The share of ``cost_weight`` in force: 0 during the gate warm-up, then rising linearly to 1 over
        ``cost_ramp_steps`` (1 when no step was set: evaluation, or training without a warm-up)."""
        if self.train_step is None or not self.training:
            return 1.0
        past = self.train_step - self.gate_warmup_steps
        if past < 0:
            return 0.0
        return min(1.0, (past + 1) / self.cost_ramp_steps) if self.cost_ramp_steps > 0 else 1.0

    def set_gather(self, gather: bool) -> None:
        """True (default): eval-mode blocks compute only the active frames; False: compute all, mask (tests)."""
        for b in self.blocks:
            b.gather = gather

    @staticmethod
    def _fill_missing_arbitrators(module: "AmortizedTransformerEncoder", state_dict: Dict[str, Any], prefix: str,
                                  *_args: Any) -> None:
        # fine-tuning from a dense checkpoint: arbitrator parameters it lacks keep their initialisation
        missing = [name for name, _ in module.named_parameters()
                   if ".arbitrator." in f".{name}" and prefix + name not in state_dict]
        if missing and not any(".arbitrator." in k for k in state_dict if k.startswith(prefix)):
            for name, tensor in module.state_dict().items():
                if ".arbitrator." in f".{name}":
                    state_dict[prefix + name] = tensor.detach().clone()
            logging.info(f"{len(missing)} arbitrator parameters not in the checkpoint: kept at initialisation")

    def _run_blocks(self, h: torch.Tensor, key_valid: torch.Tensor, states: List[State]
                    ) -> Tuple[torch.Tensor, List[State]]:
        """The blocks, then the FLOP bookkeeping of their gates (``last_*`` and ``aux_loss``)."""
        block_states, gates, probs = [], [], []
        warming = (self.training and self.train_step is not None and self.train_step < self.gate_warmup_steps)
        for block in self.blocks:
            block.gates_forced_on = warming
        for block, block_state in zip(self.blocks, states):
            h, block_state, block_gates, block_probs = block(h, key_valid, block_state)
            block_states.append(block_state)
            if block_gates is not None:
                gates.append(block_gates)
                probs.append(block_probs)
        flops, dense = self._count_flops(key_valid, gates, probs)
        self.last_flops, self.last_dense_flops = flops.detach(), dense.detach()
        self.last_flop_fraction = (flops.detach() / dense.clamp(min=1)).float()
        self.last_gates = gates
        self.last_module_frames = self._module_frames(key_valid, gates)
        self.aux_loss = None
        if self.has_arbitrators:
            # per-frame mean over the batch: the trainer multiplies it by the number of frames
            fraction = flops.sum() / dense.sum().clamp(min=1)
            self.aux_loss = self.cost_weight * self.cost_scale() * fraction.to(h.dtype)
        return h, block_states

    def _module_frames(self, key_valid: torch.Tensor, gates: List[torch.Tensor]) -> torch.Tensor:
        """(N, blocks, 2) int64: per utterance, the valid frames each block's MHA / FFN ran on."""
        if gates:
            return torch.stack(gates, 1).sum(2).long()
        frames = key_valid.sum(1)
        runs = torch.tensor([[b.run_mha, b.run_ffn] for b in self.blocks], device=frames.device)
        return frames[:, None, None] * runs.long()

    def _output(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm_out(h))

    def _count_flops(self, key_valid: torch.Tensor, gates: List[torch.Tensor], probs: List[Optional[torch.Tensor]]
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(FLOPs per utterance, dense FLOPs per utterance) over the valid frames, all blocks at once. Eval: what
        the gathered forward runs (projections and FFN on active frames, the attention core on every valid query
        of a chunk holding an active query, arbitrators and front end on every frame). Training: the expectation
        under the gate distribution, per frame (differentiable in the arbitrator logits)."""
        frames = key_valid.sum(1).to(torch.float64)
        dense = frames * self.dense_flops_per_frame
        if not gates:
            skipped = sum((0 if b.run_mha else b.mha_flops) + (0 if b.run_ffn else b.ffn_flops) for b in self.blocks)
            return dense - frames * skipped, dense
        b = self.blocks[0]  # every block has the same sizes
        always = frames * (self.front_flops + self.out_flops + len(gates) * b.arbitrator_flops)
        if self.training:
            p = torch.stack(probs)  # (blocks, N, T, 2)
            per_frame = p[..., 0] * b.mha_flops + p[..., 1] * b.ffn_flops
            return always.to(p.dtype) + (per_frame * key_valid.to(p.dtype)).sum((0, 2)), dense.to(p.dtype)
        on = torch.stack(gates)  # (blocks, N, T, 2)
        counts = on.sum((0, 2)).to(torch.float64)  # (N, 2)
        chunk_active = pad_to_chunks(on[..., 0], self.chunk_size).any(-1)  # (blocks, N, chunks)
        core_queries = (pad_to_chunks(key_valid, self.chunk_size).sum(-1) * chunk_active).sum((0, 2)).to(torch.float64)
        return (always + counts[:, 0] * b.mha_proj_flops + core_queries * b.attn_core_flops
                + counts[:, 1] * b.ffn_flops), dense
