"""Initialise some modules of a model from another model's checkpoint (``train.init_modules`` with
``--init-from``): the standard remedy in multi-talker ASR when the training budget is small, e.g. the STS mixture
encoder, decoder and joiner from a single-talker transducer of the same corpus (docs/sts.md).

``init_modules`` maps a destination prefix (a module of the model being trained, ``encoder.mixture``) to a source
prefix (a module of the checkpoint's model, ``encoder``); ``"decoder": "decoder"`` takes a module under the same
name. Every parameter and buffer under an asked destination prefix must have a counterpart of the same shape under
the source prefix and vice versa (a clear error otherwise: nothing is loaded half); everything else keeps its fresh
initialisation. The report names what was loaded and what was not.

The vocabulary-indexed tensors (decoder embedding, joiner output, simple-loss projections, CTC head: rows = token
ids) are copied row by row by token symbol when the two models' token inventories are given (``--init-lang-dir``
for the source): a destination token the source lacks (e.g. the turn tokens ``<sot>``/``<eot>``, or a BPE piece of
a larger inventory) keeps its fresh row. Without the source inventory these tensors must match in shape and the
inventories are taken to be the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

import torch

# Parameters whose first dimension is the token id (serac.transducer.model.Transducer).
VOCAB_ROW_PARAMS = ("decoder.embedding.weight", "joiner.output_linear.weight", "joiner.output_linear.bias",
                    "simple_am_proj.weight", "simple_am_proj.bias", "simple_lm_proj.weight", "simple_lm_proj.bias",
                    "ctc_output.weight", "ctc_output.bias")


@dataclass
class PartialInitReport:
    """What :func:`init_modules_from_state` did, by destination tensor name."""

    loaded: Dict[str, str] = field(default_factory=dict)  # destination name -> source name
    remapped_rows: Dict[str, int] = field(default_factory=dict)  # vocabulary tensor -> rows copied by token
    not_loaded: List[str] = field(default_factory=list)  # destination tensors left as initialised
    tokens_missing: List[str] = field(default_factory=list)  # destination tokens the source inventory lacks

    def summary(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors:"]
        lines += [f"  {d} <- {s}" + (f" ({self.remapped_rows[d]} rows by token)" if d in self.remapped_rows else "")
                  for d, s in self.loaded.items()]
        lines.append(f"not loaded (fresh initialisation) {len(self.not_loaded)} tensors: {', '.join(self.not_loaded)}")
        if self.tokens_missing:
            lines.append(f"{len(self.tokens_missing)} tokens absent from the source inventory keep fresh rows: "
                         f"{' '.join(self.tokens_missing)}")
        return "\n".join(lines)


def _under(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def _rename(name: str, dst_prefix: str, src_prefix: str) -> str:
    rest = name if dst_prefix == "" else name[len(dst_prefix):].lstrip(".")
    return ".".join(p for p in (src_prefix, rest) if p)


def init_modules_from_state(model: torch.nn.Module, source_state: Mapping[str, torch.Tensor],
                            modules: Mapping[str, str], *, source: str = "the checkpoint",
                            source_tokens: Optional[Sequence[str]] = None,
                            target_tokens: Optional[Sequence[str]] = None) -> PartialInitReport:
    """Copy the tensors of ``modules`` (destination prefix -> source prefix) from ``source_state`` into ``model``.

    ``source_tokens`` / ``target_tokens`` (id -> symbol, both or neither): copy the rows of the vocabulary-indexed
    tensors by symbol. Raises ValueError naming the tensors on a missing counterpart, a shape mismatch, or a prefix
    that names nothing; the model is unchanged then."""
    if not modules:
        raise ValueError("init_modules is empty: name the modules to take from the checkpoint")
    if (source_tokens is None) != (target_tokens is None):
        raise ValueError("give both token inventories (source and target) or neither")
    dst_state = model.state_dict()
    new: Dict[str, torch.Tensor] = {}
    report = PartialInitReport()
    row_map = None
    if source_tokens is not None:
        src_ids = {t: i for i, t in enumerate(source_tokens)}
        row_map = [(i, src_ids[t]) for i, t in enumerate(target_tokens) if t in src_ids]
        report.tokens_missing = [t for t in target_tokens if t not in src_ids]
    for dst_prefix, src_prefix in modules.items():
        dst_names = [n for n in dst_state if _under(n, dst_prefix)]
        src_names = {n for n in source_state if _under(n, src_prefix)}
        if not dst_names:
            raise ValueError(f"init_modules: the model has no module {dst_prefix!r}")
        if not src_names:
            raise ValueError(f"init_modules: {source} has no module {src_prefix!r} (asked for {dst_prefix!r})")
        wanted = {n: _rename(n, dst_prefix, src_prefix) for n in dst_names}
        missing = [f"{d} <- {s}" for d, s in wanted.items() if s not in src_names]
        unused = sorted(src_names - set(wanted.values()))
        if missing or unused:
            raise ValueError(f"init_modules {dst_prefix!r} <- {src_prefix!r} of {source}: the modules differ; "
                             f"missing in the source: {missing or 'none'}; in the source only: {unused or 'none'}")
        for d, s in wanted.items():
            dst, src = dst_state[d], source_state[s]
            if row_map is not None and d in VOCAB_ROW_PARAMS:
                if dst.shape[1:] != src.shape[1:] or src.shape[0] != len(source_tokens) or \
                        dst.shape[0] != len(target_tokens):
                    raise ValueError(f"init_modules: {d} {tuple(dst.shape)} <- {s} {tuple(src.shape)} of {source}: "
                                     f"shapes do not match the token inventories ({len(target_tokens)} <- "
                                     f"{len(source_tokens)} tokens)")
                t = dst.clone()
                for i, j in row_map:
                    t[i] = src[j]
                new[d] = t
                report.remapped_rows[d] = len(row_map)
            elif dst.shape != src.shape:
                raise ValueError(f"init_modules: shape mismatch {d} {tuple(dst.shape)} <- {s} {tuple(src.shape)} "
                                 f"of {source}")
            else:
                new[d] = src.to(dst.dtype).clone()
            report.loaded[d] = s
    model.load_state_dict(new, strict=False)
    report.not_loaded = [n for n in dst_state if n not in new]
    return report


def parameters_under(model: torch.nn.Module, prefixes: Sequence[str]) -> List[torch.nn.Parameter]:
    """The parameters of ``model`` under any of ``prefixes`` (module names; ValueError for one that names none)."""
    named = dict(model.named_parameters())
    for prefix in prefixes:
        if not any(_under(n, prefix) for n in named):
            raise ValueError(f"train.init_freeze_modules: the model has no parameters under {prefix!r}")
    return [p for n, p in named.items() if any(_under(n, prefix) for prefix in prefixes)]

