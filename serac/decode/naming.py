"""The one place decode suffixes are named.

A decode's files are ``recogs-<set>-<suffix>.txt``, ``errs-<set>-<suffix>.txt``, ``wer-summary-<set>-<suffix>.txt``
and ``stats-<set>-<suffix>.json``. The suffix says how the set was decoded:

* ``greedy_search-epoch-E-avg-N``
* ``modified_beam_search-epoch-E-avg-N-beam-K``, then ``-lm-S`` with a shallow-fusion LM of weight S, then
  ``-bp-P`` with a blank penalty P
* ``streaming_greedy_search-chunk-Cms-epoch-E-avg-N`` (streaming decode in chunks of C ms)

Numbers print as Python's ``%g`` (0.3, 160, 12.5). Shell steps and recipes ask for a suffix with
``python -m serac.bin.decode --print-suffix ...`` / ``python -m serac.bin.decode_streaming --print-suffix ...``
instead of rebuilding it. This module imports nothing heavy, so asking is quick.
"""
from __future__ import annotations

from typing import Optional

METHODS = ("greedy_search", "modified_beam_search")
STREAMING_METHOD = "streaming_greedy_search"


def format_ms(ms: float) -> str:
    """160.0 -> '160', 12.5 -> '12.5'."""
    return f"{ms:g}"


def decode_suffix(method: str, epoch: int, avg: int, beam: int, lm_scale: Optional[float] = None,
                  blank_penalty: float = 0.0) -> str:
    """The suffix of an offline decode. ``lm_scale``: given when decoding with an LM; ``beam``, ``lm_scale`` and
    ``blank_penalty`` only name modified_beam_search decodes."""
    if method not in METHODS:
        raise ValueError(f"unknown decoding method {method!r}; known: {', '.join(METHODS)}")
    suffix = f"{method}-epoch-{epoch}-avg-{avg}"
    if method == "modified_beam_search":
        suffix += f"-beam-{beam}" + (f"-lm-{lm_scale:g}" if lm_scale is not None else "")
        suffix += f"-bp-{blank_penalty:g}" if blank_penalty else ""
    return suffix


def streaming_suffix(chunk_ms: float, epoch: int, avg: int) -> str:
    """The suffix of a streaming decode in chunks of ``chunk_ms`` ms."""
    return f"{STREAMING_METHOD}-chunk-{format_ms(chunk_ms)}ms-epoch-{epoch}-avg-{avg}"
