"""The base of the chunked-attention encoders (``conformer``, ``amortized_transformer``): causal convolutional
subsampling, a stack of blocks whose self-attention is chunked (:class:`ChunkedSelfAttention`), an output layer.

It owns what those encoders share, so they stream and end a stream the same way:

* the chunking: ``chunk_size`` / ``left_context`` in output frames, ``chunk_multiple = 4 * chunk_size`` input
  frames, ``look_ahead = chunk_multiple - 1`` (the first frame of a chunk waits for the chunk's end);
* the state: the subsampling convolutions' caches and one state per block (``init_state``);
* the chunk loop: ``forward`` (the whole utterance from the initial state, keys beyond ``x_lens`` masked),
  ``streaming_forward`` (a multiple of ``chunk_multiple`` frames) and ``streaming_forward_final`` (the end of a
  stream: any multiple of 4 frames; the attention pads the partial chunk with invalid keys, exactly as
  ``forward`` treats an utterance's tail).

A subclass builds ``self.subsampling``, ``self.dropout`` and ``self.blocks`` (each with ``init_state(batch_size,
device)``) and says how the blocks run (:meth:`_run_blocks`) and how their output is mapped (:meth:`_output`).
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch

from serac.encoders import EncoderBase
from serac.encoders.streaming import check_chunk

EncoderState = Dict[str, Any]


class ChunkedAttentionEncoder(EncoderBase):
    """Base class; see the module docstring. Not registered: it is not an encoder by itself."""

    subsampling_factor = 4

    def _set_chunking(self, chunk_size: int, left_context: int) -> None:
        self.chunk_size, self.left_context = chunk_size, left_context
        self.chunk_multiple = chunk_size * self.subsampling_factor
        self.look_ahead = self.chunk_multiple - 1

    def init_state(self, batch_size: int, device: torch.device) -> EncoderState:
        return {"subsampling": self.subsampling.init_state(batch_size, device),
                "blocks": [b.init_state(batch_size, device) for b in self.blocks]}

    def _run_blocks(self, h: torch.Tensor, key_valid: torch.Tensor, states: List[Any]
                    ) -> Tuple[torch.Tensor, List[Any]]:
        """The blocks in turn; each is called as ``block(h, key_valid, state) -> (h, state)``."""
        new_states = []
        for block, block_state in zip(self.blocks, states):
            h, block_state = block(h, key_valid, block_state)
            new_states.append(block_state)
        return h, new_states

    def _output(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(h)

    def _encode(self, x: torch.Tensor, key_valid: torch.Tensor, state: EncoderState
                ) -> Tuple[torch.Tensor, EncoderState]:
        h, sub_state = self.subsampling(x, state["subsampling"])
        h, block_states = self._run_blocks(self.dropout(h), key_valid, state["blocks"])
        return self._output(h), {"subsampling": sub_state, "blocks": block_states}

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = x[:, : x.size(1) // self.subsampling_factor * self.subsampling_factor]
        y_lens = torch.div(x_lens, self.subsampling_factor, rounding_mode="floor")
        key_valid = torch.arange(x.size(1) // self.subsampling_factor, device=x.device)[None, :] < y_lens[:, None]
        y, _ = self._encode(x, key_valid, self.init_state(x.size(0), x.device))
        return y, y_lens

    def _stream(self, x: torch.Tensor, state: EncoderState) -> Tuple[torch.Tensor, EncoderState]:
        key_valid = torch.ones(x.size(0), x.size(1) // self.subsampling_factor, dtype=torch.bool, device=x.device)
        return self._encode(x, key_valid, state)

    def streaming_forward(self, x: torch.Tensor, state: EncoderState) -> Tuple[torch.Tensor, EncoderState]:
        check_chunk(x, self.chunk_multiple, type(self).__name__)
        return self._stream(x, state)

    def streaming_forward_final(self, x: torch.Tensor, state: EncoderState) -> Tuple[torch.Tensor, EncoderState]:
        """The end of a stream may stop inside an attention chunk (any multiple of 4 frames): the attention then
        pads the partial chunk with invalid keys, exactly as ``forward`` treats an utterance's tail."""
        if x.size(1) % self.subsampling_factor:
            raise ValueError(f"{type(self).__name__}.streaming_forward_final needs a multiple of "
                             f"{self.subsampling_factor} input frames, got {x.size(1)}")
        return self._stream(x, state)
