"""Encoder registry.

Every encoder is one file in this package, registered by name with :func:`register_encoder`
and built from a YAML config section ``encoder: {name: lstm, ...}`` by :func:`build_encoder`.

The contract every encoder follows (see :class:`EncoderBase`):

* ``forward(x, x_lens) -> (y, y_lens)``: ``x`` is (N, T, F) features, ``y`` is (N, T', output_dim)
  with ``T' = T // subsampling_factor`` (trailing frames that do not fill a subsampling step are dropped).
* ``look_ahead``: number of *input* frames after frame ``t`` that output frames covering ``t`` may depend on.
  0 for a strictly causal encoder. Tests change frames after ``t + look_ahead`` and check that outputs
  up to ``t`` do not move.
* Streaming: ``init_state(batch_size, device)`` returns the carried state; ``streaming_forward(x_chunk, state)
  -> (y_chunk, new_state)`` consumes a chunk whose length is a multiple of ``chunk_multiple`` input frames
  (e.g. the subsampling factor, or the attention chunk size). Feeding an utterance chunk by chunk gives the same
  output as ``forward`` on the whole utterance (up to float tolerance).
* End of stream: ``streaming_forward_final(x_chunk, state)`` consumes the last chunk, which may be any multiple
  of ``subsampling_factor`` frames (what ``forward`` keeps of an utterance's tail). The default hands it to
  ``streaming_forward`` when it is also a multiple of ``chunk_multiple``; encoders whose ``chunk_multiple`` is
  larger (chunked attention) override it.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple, Type

import torch
from torch import nn

_REGISTRY: Dict[str, Type["EncoderBase"]] = {}


class EncoderBase(nn.Module):
    """Base class of every serac encoder."""

    #: number of input frames per output frame
    subsampling_factor: int = 4
    #: input frames after t that outputs up to t may depend on
    look_ahead: int = 0
    #: a streaming chunk must be a multiple of this many input frames
    chunk_multiple: int = 4
    output_dim: int

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def init_state(self, batch_size: int, device: torch.device) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement streaming")

    def streaming_forward(self, x: torch.Tensor, state: Any) -> Tuple[torch.Tensor, Any]:
        raise NotImplementedError(f"{type(self).__name__} does not implement streaming")

    def streaming_forward_final(self, x: torch.Tensor, state: Any) -> Tuple[torch.Tensor, Any]:
        """The last chunk of a stream: a positive multiple of ``subsampling_factor`` input frames."""
        if x.size(1) % self.subsampling_factor:
            raise ValueError(f"{type(self).__name__}.streaming_forward_final needs a multiple of "
                             f"{self.subsampling_factor} input frames, got {x.size(1)}")
        if x.size(1) % self.chunk_multiple:
            raise NotImplementedError(f"{type(self).__name__} cannot end a stream on {x.size(1)} frames (not a "
                                      f"multiple of chunk_multiple {self.chunk_multiple}): override "
                                      f"streaming_forward_final")
        return self.streaming_forward(x, state)


def register_encoder(name: str) -> Callable[[Type[EncoderBase]], Type[EncoderBase]]:
    def deco(cls: Type[EncoderBase]) -> Type[EncoderBase]:
        if name in _REGISTRY:
            raise ValueError(f"encoder {name!r} registered twice")
        _REGISTRY[name] = cls
        cls.registry_name = name
        return cls

    return deco


def available_encoders() -> list:
    _import_all()
    return sorted(_REGISTRY)


def build_encoder(num_features: int, cfg: Dict[str, Any]) -> EncoderBase:
    """Build an encoder from a config dict ``{"name": ..., **kwargs}``."""
    _import_all()
    cfg = dict(cfg)
    name = cfg.pop("name", None)
    if name not in _REGISTRY:
        raise ValueError(f"unknown encoder {name!r}; available: {sorted(_REGISTRY)}")
    encoder = _REGISTRY[name](num_features=num_features, **cfg)
    encoder.num_features = num_features
    return encoder


def _import_all() -> None:
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
