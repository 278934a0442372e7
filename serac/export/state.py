"""Carry a serac encoder's streaming state in the fixed state tensors of a sherpa-onnx online model type.

sherpa-onnx creates an online encoder's initial states itself, as zeros of shapes it computes from the encoder's
metadata, batches streams by concatenating them along one dimension, and otherwise hands the tensors back to the
model untouched. So a state tensor is, to sherpa, a zero-initialised bag of floats with a batch axis: any encoder
whose streaming state is a fixed-size tree of tensors that starts at zero (every serac encoder: convolution
caches, running sums and counts, LSTM h/c, attention key/value caches with all-invalid slots) fits once its
leaves are laid out in those tensors. Where a sherpa type names a tensor after a real part of the model (the
``lstm`` type's h and c, the ``conformer`` type's attention and convolution caches), serac puts that part there,
so the files read naturally; every other leaf goes into extra, documented room (``serac_state_layout`` in the
encoder's metadata).

Layouts (``N`` streams):

* ``lstm``: ``h`` (L, N, d_model), ``c`` (L, N, rnn_hidden_size), batched on dim 1. An encoder with an LSTM stack
  (state leaves ``lstm_h``/``lstm_c``, (N, L, H)): ``h[..., :H]`` and ``c`` are the LSTM's, ``h[..., H:]`` holds the
  other leaves (flattened per stream, spread over the L rows). Without an LSTM: L = 1 and the flattened leaves fill
  ``h`` then ``c``.
* ``conformer``: ``cached_attn`` (L, left_context, N, encoder_dim) and ``cached_conv`` (L, cnn_module_kernel - 1, N,
  encoder_dim), batched on dim 2, one row per chunked-attention layer. ``encoder_dim = 2 * dim + 1``: each
  attention cache slot holds its key, its value and whether it holds a real frame (1.0) or not (0.0). The first
  ``kernel - 1`` rows of ``cached_conv`` hold the layer's causal depthwise convolution cache in columns
  ``[0, dim)`` (the conformer's convolution module; none for the amortized Transformer), the rows after them
  the other leaves (subsampling caches), flattened per stream.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Tuple

import torch

ATTENTION_KEYS = ("key", "value", "valid")


def flatten_state(state: Any, path: str = "") -> List[Tuple[str, torch.Tensor]]:
    """The leaves of a state tree (dicts in insertion order, lists in order) with their paths."""
    if isinstance(state, torch.Tensor):
        return [(path, state)]
    if isinstance(state, dict):
        return [leaf for k, v in state.items() for leaf in flatten_state(v, f"{path}.{k}" if path else str(k))]
    if isinstance(state, (list, tuple)):
        return [leaf for i, v in enumerate(state) for leaf in flatten_state(v, f"{path}[{i}]")]
    raise TypeError(f"unsupported state element at {path or '<root>'}: {type(state).__name__}")


def unflatten_state(template: Any, leaves: Dict[str, torch.Tensor], path: str = "") -> Any:
    """The tree of ``template`` with each leaf replaced by ``leaves[path]``."""
    if isinstance(template, torch.Tensor):
        return leaves[path]
    if isinstance(template, dict):
        return {k: unflatten_state(v, leaves, f"{path}.{k}" if path else str(k)) for k, v in template.items()}
    if isinstance(template, (list, tuple)):
        return [unflatten_state(v, leaves, f"{path}[{i}]") for i, v in enumerate(template)]
    raise TypeError(f"unsupported state element at {path or '<root>'}: {type(template).__name__}")


class _FlatLeaves:
    """Leaves packed per stream into one float vector (bools as 0/1), in a fixed order."""

    def __init__(self, leaves: Sequence[Tuple[str, torch.Tensor]]) -> None:
        for path, t in leaves:
            if t.dim() == 0 or t.size(0) != 1:
                raise ValueError(f"state leaf {path}: expected a batch dimension of 1 in init_state(1), "
                                 f"got shape {tuple(t.shape)}")
            if torch.count_nonzero(t):
                raise ValueError(f"state leaf {path} does not start at zero: sherpa-onnx creates initial states "
                                 f"as zeros, so this state cannot be carried")
        self.paths = [p for p, _ in leaves]
        self.shapes = [tuple(t.shape[1:]) for _, t in leaves]
        self.dtypes = [t.dtype for _, t in leaves]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.size = sum(self.sizes)

    def pack(self, leaves: Dict[str, torch.Tensor], batch: int) -> torch.Tensor:
        """(N, size) float."""
        if not self.paths:
            return torch.zeros(batch, 0)
        # empty leaves (e.g. the cache of a kernel-1 convolution) carry nothing
        return torch.cat([leaves[p].reshape(batch, -1).to(torch.float32)
                          for p, size in zip(self.paths, self.sizes) if size], dim=1)

    def unpack(self, flat: torch.Tensor) -> Dict[str, torch.Tensor]:
        out, start = {}, 0
        for path, shape, dtype, size in zip(self.paths, self.shapes, self.dtypes, self.sizes):
            if size == 0:
                out[path] = flat.new_zeros((flat.size(0),) + shape).to(dtype)
                continue
            part = flat[:, start:start + size].reshape((-1,) + shape)
            out[path] = part > 0.5 if dtype == torch.bool else part.to(dtype)
            start += size
        return out


class LstmTypeLayout:
    """The encoder state in sherpa's ``lstm`` type tensors ``h`` (L, N, d_model) and ``c`` (L, N, rnn_hidden)."""

    model_type = "lstm"

    def __init__(self, init_state: Any) -> None:
        self.template = init_state
        leaves = flatten_state(init_state)
        by_path = dict(leaves)
        self.natural = "lstm_h" in by_path and "lstm_c" in by_path
        if self.natural:
            h, c = by_path["lstm_h"], by_path["lstm_c"]
            self.num_layers, self.hidden, self.cell = int(h.size(1)), int(h.size(2)), int(c.size(2))
            self.rest = _FlatLeaves([(p, t) for p, t in leaves if p not in ("lstm_h", "lstm_c")])
            self.extra = -(-self.rest.size // self.num_layers)
            self.d_model, self.rnn_hidden_size = self.hidden + self.extra, self.cell
        else:
            self.rest = _FlatLeaves(leaves)
            if self.rest.size < 2:
                raise ValueError("a streaming state of fewer than 2 numbers does not fill sherpa's h and c")
            self.num_layers = 1
            self.d_model = -(-self.rest.size // 2)
            self.rnn_hidden_size = self.rest.size - self.d_model

    def init_tensors(self, batch: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """What sherpa creates: zeros."""
        return (torch.zeros(self.num_layers, batch, self.d_model),
                torch.zeros(self.num_layers, batch, self.rnn_hidden_size))

    def unpack(self, h: torch.Tensor, c: torch.Tensor) -> Any:
        n = h.size(1)
        if self.natural:
            leaves = {}
            if self.rest.size:
                leaves = self.rest.unpack(h[:, :, self.hidden:].transpose(0, 1).reshape(n, -1)[:, : self.rest.size])
            leaves["lstm_h"] = h[:, :, : self.hidden].transpose(0, 1)
            leaves["lstm_c"] = c.transpose(0, 1)
        else:
            leaves = self.rest.unpack(torch.cat([h[0], c[0]], dim=1))
        return unflatten_state(self.template, leaves)

    def pack(self, state: Any, batch: int) -> Tuple[torch.Tensor, torch.Tensor]:
        leaves = dict(flatten_state(state))
        flat = self.rest.pack(leaves, batch) if self.rest.size else None
        if not self.natural:
            return flat[:, : self.d_model].unsqueeze(0), flat[:, self.d_model:].unsqueeze(0)
        h = leaves["lstm_h"]
        if self.rest.size:
            pad = self.num_layers * self.extra - self.rest.size
            rest = torch.nn.functional.pad(flat, (0, pad)).reshape(batch, self.num_layers, self.extra)
            h = torch.cat([h, rest], dim=2)
        h = h.transpose(0, 1)
        return h, leaves["lstm_c"].transpose(0, 1)

    def metadata(self) -> Dict[str, str]:
        if self.natural:
            layout = f"h[..., :{self.hidden}] and c: the LSTM stack's h and c"
            if self.rest.paths:
                layout += f"; h[..., {self.hidden}:] flattened per stream: {self.rest.size} numbers of " + \
                    ", ".join(self.rest.paths)
        else:
            layout = f"h then c, flattened per stream: {self.rest.size} numbers of " + ", ".join(self.rest.paths)
        return {"num_encoder_layers": str(self.num_layers), "d_model": str(self.d_model),
                "rnn_hidden_size": str(self.rnn_hidden_size), "serac_state_layout": layout}


def _attention_caches(state: Any, path: str = "") -> List[Tuple[str, Dict[str, torch.Tensor]]]:
    if isinstance(state, dict):
        if set(state) == set(ATTENTION_KEYS):
            return [(path, state)]
        return [a for k, v in state.items() for a in _attention_caches(v, f"{path}.{k}" if path else str(k))]
    if isinstance(state, (list, tuple)):
        return [a for i, v in enumerate(state) for a in _attention_caches(v, f"{path}[{i}]")]
    return []


class ConformerTypeLayout:
    """The encoder state in sherpa's ``conformer`` type tensors ``cached_attn`` (L, left, N, D) and
    ``cached_conv`` (L, kernel - 1, N, D), D = 2 * dim + 1 (see the module docstring)."""

    model_type = "conformer"

    def __init__(self, init_state: Any, encoder_name: str) -> None:
        self.template = init_state
        attn = _attention_caches(init_state)
        if not attn:
            raise ValueError(f"encoder {encoder_name!r} cannot be exported as sherpa-onnx model_type 'conformer': "
                             f"its streaming state has no chunked-attention cache (key/value/valid); export it "
                             f"with --model-type lstm (any serac encoder streams as that type) or offline")
        shapes = {tuple(a["key"].shape[1:]) for _, a in attn}
        if len(shapes) != 1:
            raise ValueError(f"encoder {encoder_name!r}: attention caches of different shapes {sorted(shapes)} do not "
                             f"fit sherpa-onnx's one cached_attn tensor (model_type 'conformer')")
        self.attn_paths = [p for p, _ in attn]
        self.num_layers = len(attn)
        self.left_context, self.dim = next(iter(shapes))
        self.encoder_dim = 2 * self.dim + 1
        # the causal depthwise convolution cache next to each attention cache (the conformer's convolution module)
        self.conv_paths: List[str] = []
        conv_shapes = set()
        leaves = dict(flatten_state(init_state))
        for p in self.attn_paths:
            conv = p.rsplit(".", 1)[0] + ".conv" if p.endswith(".attn") else None
            if conv is not None and conv in leaves and leaves[conv].dim() == 3 and leaves[conv].size(1) == self.dim:
                self.conv_paths.append(conv)
                conv_shapes.add(int(leaves[conv].size(2)))
        if self.conv_paths and (len(self.conv_paths) != self.num_layers or len(conv_shapes) != 1):
            self.conv_paths = []  # irregular: carry them with the other leaves
        self.conv_rows = conv_shapes.pop() if self.conv_paths else 0
        owned = {f"{p}.{k}" if p else k for p in self.attn_paths for k in ATTENTION_KEYS} | set(self.conv_paths)
        self.rest = _FlatLeaves([(p, t) for p, t in flatten_state(init_state) if p not in owned])
        per_row = self.num_layers * self.encoder_dim
        self.rest_rows = -(-self.rest.size // per_row)
        self.cnn_module_kernel = self.conv_rows + self.rest_rows + 1

    def init_tensors(self, batch: int) -> Tuple[torch.Tensor, torch.Tensor]:
        return (torch.zeros(self.num_layers, self.left_context, batch, self.encoder_dim),
                torch.zeros(self.num_layers, self.cnn_module_kernel - 1, batch, self.encoder_dim))

    def unpack(self, cached_attn: torch.Tensor, cached_conv: torch.Tensor) -> Any:
        n = cached_attn.size(2)
        d = self.dim
        leaves: Dict[str, torch.Tensor] = {}
        for i, p in enumerate(self.attn_paths):
            slots = cached_attn[i].transpose(0, 1)  # (N, left, D)
            prefix = f"{p}." if p else ""
            leaves[prefix + "key"] = slots[:, :, :d]
            leaves[prefix + "value"] = slots[:, :, d:2 * d]
            leaves[prefix + "valid"] = slots[:, :, 2 * d] > 0.5
        for i, p in enumerate(self.conv_paths):
            leaves[p] = cached_conv[i, : self.conv_rows, :, :d].permute(1, 2, 0)  # (N, dim, kernel-1)
        if self.rest.size:
            rest = cached_conv[:, self.conv_rows:].permute(2, 0, 1, 3).reshape(n, -1)[:, : self.rest.size]
            leaves.update(self.rest.unpack(rest))
        return unflatten_state(self.template, leaves)

    def pack(self, state: Any, batch: int) -> Tuple[torch.Tensor, torch.Tensor]:
        leaves = dict(flatten_state(state))
        attn = []
        for p in self.attn_paths:
            prefix = f"{p}." if p else ""
            attn.append(torch.cat([leaves[prefix + "key"], leaves[prefix + "value"],
                                   leaves[prefix + "valid"].to(torch.float32).unsqueeze(-1)], dim=2).transpose(0, 1))
        cached_attn = torch.stack(attn)
        rows = []
        if self.conv_paths:
            conv = torch.stack([leaves[p].permute(2, 0, 1) for p in self.conv_paths])  # (L, kernel-1, N, dim)
            rows.append(torch.nn.functional.pad(conv, (0, self.encoder_dim - self.dim)))
        if self.rest_rows:
            flat = self.rest.pack(leaves, batch)
            pad = self.num_layers * self.rest_rows * self.encoder_dim - self.rest.size
            rest = torch.nn.functional.pad(flat, (0, pad)).reshape(batch, self.num_layers, self.rest_rows,
                                                                  self.encoder_dim)
            rows.append(rest.permute(1, 2, 0, 3))
        cached_conv = torch.cat(rows, dim=1)
        return cached_attn, cached_conv

    def metadata(self) -> Dict[str, str]:
        layout = (f"cached_attn[l, j, n]: key[:{self.dim}], value[{self.dim}:{2 * self.dim}], valid[{2 * self.dim}] "
                  f"of {', '.join(self.attn_paths)}")
        if self.conv_paths:
            layout += f"; cached_conv[l, :{self.conv_rows}, n, :{self.dim}]: {', '.join(self.conv_paths)}"
        if self.rest.paths:
            layout += (f"; cached_conv[:, {self.conv_rows}:] flattened per stream: {self.rest.size} numbers of "
                       + ", ".join(self.rest.paths))
        return {"num_encoder_layers": str(self.num_layers), "left_context": str(self.left_context),
                "encoder_dim": str(self.encoder_dim), "cnn_module_kernel": str(self.cnn_module_kernel),
                "pad_length": "0", "serac_state_layout": layout}


def make_layout(model_type: str, init_state: Any, encoder_name: str):
    """The layout of ``init_state`` (an encoder's ``init_state(1)``) in sherpa model type ``model_type``."""
    if model_type == "lstm":
        return LstmTypeLayout(init_state)
    if model_type == "conformer":
        return ConformerTypeLayout(init_state, encoder_name)
    raise ValueError(f"encoder {encoder_name!r}: unknown sherpa-onnx online model_type {model_type!r} "
                     f"(serac exports 'lstm' and 'conformer')")


def default_model_type(init_state: Any) -> str:
    """``conformer`` for encoders with chunked-attention caches, ``lstm`` for the rest."""
    return "conformer" if _attention_caches(init_state) else "lstm"


