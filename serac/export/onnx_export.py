"""Export a serac transducer to the ONNX files sherpa-onnx decodes: encoder.onnx, decoder.onnx, joiner.onnx and
tokens.txt (the contract is in docs/export.md).

As icefall's export-onnx.py does, the joiner's input projections move into the encoder and decoder files (the
decoder output of a hypothesis is computed once and reused on every frame), so joiner.onnx is
``output_linear(tanh(encoder_out + decoder_out))``. The encoder normalises its input features itself (serac's
global mean/variance constants), so sherpa's raw fbank goes straight in.

Exporters: torch.onnx's dynamo exporter (opset 18, one file: no external data, dynamic batch and time axes, traced
with batch 2), except for graphs holding an ``nn.LSTM`` (the lstm and conv_rnnt encoders): with torch 2.13 the
dynamo exporter fails to decompose ``aten.lstm`` over a dynamic time axis ("stack expects each tensor to be equal
size"), so those go through the TorchScript exporter, which maps ``nn.LSTM`` to the ONNX LSTM operator. Every
exported file is checked against the PyTorch module with onnxruntime (other batch sizes and lengths than traced).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from serac.data.tokenizer import BLANK, UNK, Tokenizer
from serac.export.state import ConformerTypeLayout, LstmTypeLayout, default_model_type, make_layout
from serac.transducer.model import Transducer
from serac.utils import atomic_path, atomic_write_text

OPSET = 18
#: the batch size the exporters trace with (1 would let an exporter specialise the batch axis to 1)
TRACE_BATCH = 2
WORD_BOUNDARY = "\u2581"  # sentencepiece's "▁": sherpa-onnx turns it into a space


class OfflineEncoder(nn.Module):
    """(x (N, T, F) raw fbank, x_lens (N,) int64) -> (encoder_out (N, T', joiner_dim), encoder_out_lens (N,))."""

    def __init__(self, model: Transducer) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        encoder_out, encoder_out_lens = self.model.encode(x, x_lens)
        return self.model.joiner.encoder_proj(encoder_out), encoder_out_lens


class OnnxDecoder(nn.Module):
    """y (N, context_size) int64 -> decoder_out (N, joiner_dim).

    sherpa-onnx starts a hypothesis from the context ``[-1, ..., -1, blank]`` (icefall's modified beam search; its
    greedy search uses ``[blank, ..., blank]``); serac's searches and its training left-pad with blanks. Negative
    ids are mapped to blank here, so either start context gives exactly serac's decoder output (the blank row of
    serac's embedding is zero, as is a -1 in StatelessDecoder: the two agree anyway)."""

    def __init__(self, model: Transducer) -> None:
        super().__init__()
        # the parts it needs only: the exporter is chosen by what the module holds (see uses_lstm)
        self.decoder, self.decoder_proj, self.blank_id = model.decoder, model.joiner.decoder_proj, model.blank_id

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        y = torch.where(y < 0, torch.full_like(y, self.blank_id), y)
        return self.decoder_proj(self.decoder(y, need_pad=False)[:, -1])


class OnnxJoiner(nn.Module):
    """(encoder_out (N, joiner_dim), decoder_out (N, joiner_dim)) -> logits (N, vocab_size)."""

    def __init__(self, model: Transducer) -> None:
        super().__init__()
        self.joiner = model.joiner

    def forward(self, encoder_out: torch.Tensor, decoder_out: torch.Tensor) -> torch.Tensor:
        return self.joiner(encoder_out, decoder_out, project_input=False)


class LstmTypeEncoder(nn.Module):
    """sherpa ``lstm`` type: (x (N, T, F), h, c) -> (encoder_out (N, T/4, joiner_dim), h, c)."""

    def __init__(self, model: Transducer, layout: LstmTypeLayout) -> None:
        super().__init__()
        self.model, self.layout = model, layout

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        state = self.layout.unpack(h, c)
        encoder_out, state = self.model.encoder.streaming_forward(self.model.normalize(x), state)
        new_h, new_c = self.layout.pack(state, x.size(0))
        return self.model.joiner.encoder_proj(encoder_out), new_h, new_c


class ConformerTypeEncoder(nn.Module):
    """sherpa ``conformer`` type: (x (N, T, F), cached_attn, cached_conv, processed_frames (N,) int64) ->
    (encoder_out, cached_attn, cached_conv). ``processed_frames`` (input frames before this chunk) also bounds the
    valid attention slots: a stream that has produced ``p`` encoder frames has at most ``p`` real slots."""

    def __init__(self, model: Transducer, layout: ConformerTypeLayout) -> None:
        super().__init__()
        self.model, self.layout = model, layout
        self.subsampling_factor = int(model.encoder.subsampling_factor)

    def forward(self, x: torch.Tensor, cached_attn: torch.Tensor, cached_conv: torch.Tensor,
                processed_frames: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        produced = torch.div(processed_frames, self.subsampling_factor, rounding_mode="floor")
        slot = torch.arange(self.layout.left_context, device=x.device)
        reachable = (slot.unsqueeze(0) >= self.layout.left_context - produced.unsqueeze(1)).to(cached_attn.dtype)
        # the valid flag lives in column 2 * dim of every slot
        flag = cached_attn[..., 2 * self.layout.dim:] * reachable.t().unsqueeze(0).unsqueeze(-1)
        cached_attn = torch.cat([cached_attn[..., : 2 * self.layout.dim], flag], dim=-1)
        state = self.layout.unpack(cached_attn, cached_conv)
        encoder_out, state = self.model.encoder.streaming_forward(self.model.normalize(x), state)
        new_attn, new_conv = self.layout.pack(state, x.size(0))
        return self.model.joiner.encoder_proj(encoder_out), new_attn, new_conv


def uses_lstm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.LSTM) for m in module.modules())


def _export(module: nn.Module, args: Tuple[torch.Tensor, ...], path: Path, input_names: Sequence[str],
            output_names: Sequence[str], dynamic: Dict[str, Dict[int, str]], metadata: Dict[str, str]) -> str:
    """Export ``module`` to ``path`` (atomically) with ``metadata`` in metadata_props. ``dynamic`` maps input and
    output names to {axis: axis name}. Returns the exporter used ("dynamo" or "torchscript")."""
    import onnx

    exporter = "torchscript" if uses_lstm(module) else "dynamo"
    # a new wrapper module starts in training mode, and the exporters restore the mode they found on every
    # submodule afterwards: without eval() here the model would come back with its dropout on
    module.eval()
    with atomic_path(path) as tmp, torch.no_grad():
        if exporter == "dynamo":
            dims = {name: torch.export.Dim(name, min=1 if name == "N" else 2, max=1 << 20)
                    for axes in dynamic.values() for name in axes.values()}
            shapes = {name: {axis: dims[d] for axis, d in dynamic.get(name, {}).items()} or None
                      for name in input_names}
            torch.onnx.export(module, args, str(tmp), dynamo=True, opset_version=OPSET, external_data=False,
                              input_names=list(input_names), output_names=list(output_names),
                              dynamic_shapes=shapes, verbose=False)
        else:
            torch.onnx.export(module, args, str(tmp), dynamo=False, opset_version=OPSET,
                              input_names=list(input_names), output_names=list(output_names), dynamic_axes=dynamic)
        proto = onnx.load(str(tmp))
        del proto.metadata_props[:]
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, str(value)
        onnx.save(proto, str(tmp))
    module.eval()
    logging.info(f"wrote {path} ({exporter} exporter, opset {OPSET})")
    return exporter


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _check_close(what: str, got: Sequence[Any], want: Sequence[torch.Tensor], atol: float = 1e-3) -> float:
    worst = 0.0
    for i, (g, w) in enumerate(zip(got, want)):
        g = torch.from_numpy(g)
        if tuple(g.shape) != tuple(w.shape):
            raise RuntimeError(f"{what}: output {i} has shape {tuple(g.shape)}, PyTorch gives {tuple(w.shape)}")
        err = (g.to(torch.float64) - w.to(torch.float64)).abs().max().item() if w.numel() else 0.0
        worst = max(worst, err)
        if not math.isfinite(err) or err > atol * max(1.0, w.abs().max().item()):
            raise RuntimeError(f"{what}: output {i} differs from PyTorch by {err:.3g} (onnxruntime vs torch)")
    return worst


@dataclass
class ExportResult:
    out_dir: Path
    files: Dict[str, Path]
    exporters: Dict[str, str]
    model_type: Optional[str]  # sherpa online model type; None for offline
    metadata: Dict[str, str] = field(default_factory=dict)
    max_abs_diff: Dict[str, float] = field(default_factory=dict)


def sherpa_tokens(tokenizer: Tokenizer) -> str:
    """tokens.txt for sherpa-onnx: every id, one ``symbol id`` a line. sherpa-onnx joins the symbols of a result and
    turns a leading "▁" into a space, so the words of a word-level lang dir get that prefix (BPE pieces have it)."""
    lines = []
    for i, token in enumerate(tokenizer.id2token):
        if tokenizer.kind == "word" and token not in (BLANK, UNK) and not token.startswith(WORD_BOUNDARY):
            token = WORD_BOUNDARY + token
        lines.append(f"{token} {i}\n")
    return "".join(lines)


def _common_metadata(model: Transducer, sample_rate: int, encoder_name: str) -> Dict[str, str]:
    return {"model_author": "serac", "serac_encoder": encoder_name, "feature_dim": str(int(model.feat_mean.numel())),
            "sample_rate": str(int(sample_rate)), "subsampling_factor": str(int(model.encoder.subsampling_factor)),
            "vocab_size": str(int(model.vocab_size)), "context_size": str(int(model.decoder.context_size)),
            "joiner_dim": str(int(model.joiner.output_linear.in_features)), "blank_id": str(int(model.blank_id))}


def export_decoder_joiner(model: Transducer, out_dir: Path, metadata: Dict[str, str], verify: bool = True
                          ) -> Tuple[Dict[str, str], Dict[str, float]]:
    ctx, joiner_dim = model.decoder.context_size, model.joiner.output_linear.in_features
    exporters, diffs = {}, {}
    y = torch.randint(0, model.vocab_size, (TRACE_BATCH, ctx), dtype=torch.int64)
    exporters["decoder"] = _export(OnnxDecoder(model), (y,), out_dir / "decoder.onnx", ["y"], ["decoder_out"],
                                   {"y": {0: "N"}, "decoder_out": {0: "N"}},
                                   {**metadata, "vocab_size": str(model.vocab_size), "context_size": str(ctx)})
    enc, dec = torch.randn(TRACE_BATCH, joiner_dim), torch.randn(TRACE_BATCH, joiner_dim)
    exporters["joiner"] = _export(OnnxJoiner(model), (enc, dec), out_dir / "joiner.onnx",
                                  ["encoder_out", "decoder_out"], ["logit"],
                                  {"encoder_out": {0: "N"}, "decoder_out": {0: "N"}, "logit": {0: "N"}},
                                  {**metadata, "joiner_dim": str(joiner_dim)})
    if verify:
        y = torch.tensor([[-1] * (ctx - 1) + [model.blank_id], [model.blank_id] * ctx]
                         + [list(range(1, ctx + 1))], dtype=torch.int64).clamp(max=model.vocab_size - 1)
        with torch.no_grad():
            diffs["decoder"] = _check_close("decoder.onnx", _session(out_dir / "decoder.onnx").run(None, {"y": y.numpy()}),
                                            [OnnxDecoder(model)(y)])
            enc, dec = torch.randn(3, joiner_dim), torch.randn(3, joiner_dim)
            diffs["joiner"] = _check_close("joiner.onnx", _session(out_dir / "joiner.onnx").run(
                None, {"encoder_out": enc.numpy(), "decoder_out": dec.numpy()}), [OnnxJoiner(model)(enc, dec)])
    return exporters, diffs


def prepare_for_export(model: Transducer) -> Transducer:
    model = model.eval()
    set_gather = getattr(model.encoder, "set_gather", None)
    if set_gather is not None:
        # the amortized Transformer's gathered forward selects active frames with nonzero(): data-dependent shapes
        # ONNX cannot hold; the masked forward computes the same output (tests/test_amortized.py checks it)
        set_gather(False)
    return model



def _finish_export(model, tokenizer, out_dir: Path, meta: Dict[str, str], verify: bool, exporters: dict,
                   diffs: dict, model_type: Optional[str], encoder_meta: Dict[str, str]) -> "ExportResult":
    """Decoder, joiner and tokens.txt beside an exported encoder (offline or streaming alike)."""
    dj_exporters, dj_diffs = export_decoder_joiner(model, out_dir, meta, verify)
    exporters.update(dj_exporters)
    diffs.update(dj_diffs)
    atomic_write_text(out_dir / "tokens.txt", sherpa_tokens(tokenizer))
    return ExportResult(out_dir, {n: out_dir / f"{n}.onnx" for n in ("encoder", "decoder", "joiner")} |
                        {"tokens": out_dir / "tokens.txt"}, exporters, model_type, encoder_meta, diffs)

def export_offline(model: Transducer, tokenizer: Tokenizer, out_dir: str | Path, sample_rate: int = 16000,
                   encoder_name: Optional[str] = None, verify: bool = True) -> ExportResult:
    """encoder.onnx (x, x_lens) -> (encoder_out, encoder_out_lens), decoder.onnx, joiner.onnx, tokens.txt."""
    model = prepare_for_export(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = encoder_name or getattr(model.encoder, "registry_name", type(model.encoder).__name__)
    meta = _common_metadata(model, sample_rate, name)
    num_features = int(model.feat_mean.numel())
    # traced on a length whose last attention chunk is partial: the exporter follows the branch the traced shapes
    # take, and the padded one also computes whole chunks (padding by 0), the other does not generalise
    frames = 8 * max(int(model.encoder.chunk_multiple), 4) + int(model.encoder.subsampling_factor)
    x = torch.randn(TRACE_BATCH, frames, num_features)
    x_lens = torch.tensor([frames, frames - 5], dtype=torch.int64)
    exporters, diffs = {}, {}
    exporters["encoder"] = _export(OfflineEncoder(model), (x, x_lens), out_dir / "encoder.onnx", ["x", "x_lens"],
                                   ["encoder_out", "encoder_out_lens"],
                                   {"x": {0: "N", 1: "T"}, "x_lens": {0: "N"}, "encoder_out": {0: "N", 1: "T_out"},
                                    "encoder_out_lens": {0: "N"}},
                                   {**meta, "serac_mode": "offline"})
    if verify:
        x = torch.randn(3, frames + 27, num_features)
        x_lens = torch.tensor([frames + 27, frames // 2 + 1, frames + 9], dtype=torch.int64)
        with torch.no_grad():
            want_out, want_lens = OfflineEncoder(model)(x, x_lens)
        got_out, got_lens = _session(out_dir / "encoder.onnx").run(None, {"x": x.numpy(), "x_lens": x_lens.numpy()})
        if got_lens.tolist() != want_lens.tolist():
            raise RuntimeError(f"encoder.onnx: output lengths {got_lens.tolist()} != PyTorch {want_lens.tolist()}")
        # compare the valid frames only: what lies beyond an utterance's length is not defined
        mask = (torch.arange(want_out.size(1))[None, :] < want_lens[:, None]).unsqueeze(-1)
        diffs["encoder"] = _check_close("encoder.onnx", [got_out * mask.numpy()], [want_out * mask])
    return _finish_export(model, tokenizer, out_dir, meta, verify, exporters, diffs, None, meta)


def export_streaming(model: Transducer, tokenizer: Tokenizer, out_dir: str | Path, chunk_frames: int,
                     model_type: Optional[str] = None, sample_rate: int = 16000, encoder_name: Optional[str] = None,
                     verify: bool = True) -> ExportResult:
    """A sherpa-onnx online model: the encoder takes ``chunk_frames`` feature frames per call (metadata T and
    decode_chunk_len) and its state in the tensors of sherpa ``model_type`` (``lstm`` or ``conformer``; by default
    ``conformer`` for chunked-attention encoders, ``lstm`` otherwise)."""
    model = prepare_for_export(model)
    encoder = model.encoder
    name = encoder_name or getattr(encoder, "registry_name", type(encoder).__name__)
    chunk_multiple = int(encoder.chunk_multiple)
    if chunk_frames <= 0 or chunk_frames % chunk_multiple:
        raise ValueError(f"encoder {name!r}: a chunk of {chunk_frames} feature frames is not a positive multiple of "
                         f"its chunk_multiple ({chunk_multiple} frames)")
    init_state = encoder.init_state(1, torch.device("cpu"))
    model_type = model_type or default_model_type(init_state)
    layout = make_layout(model_type, init_state, name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = _common_metadata(model, sample_rate, name)
    enc_meta = {**meta, **layout.metadata(), "model_type": model_type, "T": str(chunk_frames),
                "decode_chunk_len": str(chunk_frames), "serac_mode": "streaming"}
    num_features = int(model.feat_mean.numel())
    s1, s2 = layout.init_tensors(TRACE_BATCH)
    x = torch.randn(TRACE_BATCH, chunk_frames, num_features)
    if model_type == "lstm":
        wrapper: nn.Module = LstmTypeEncoder(model, layout)
        args: Tuple[torch.Tensor, ...] = (x, s1, s2)
        names = ["x", "h", "c"]
        out_names = ["encoder_out", "new_h", "new_c"]
        dynamic = {"x": {0: "N"}, "h": {1: "N"}, "c": {1: "N"}, "encoder_out": {0: "N"}, "new_h": {1: "N"},
                   "new_c": {1: "N"}}
    else:
        wrapper = ConformerTypeEncoder(model, layout)
        args = (x, s1, s2, torch.zeros(TRACE_BATCH, dtype=torch.int64))
        names = ["x", "cached_attn", "cached_conv", "processed_frames"]
        out_names = ["encoder_out", "new_cached_attn", "new_cached_conv"]
        dynamic = {"x": {0: "N"}, "cached_attn": {2: "N"}, "cached_conv": {2: "N"}, "processed_frames": {0: "N"},
                   "encoder_out": {0: "N"}, "new_cached_attn": {2: "N"}, "new_cached_conv": {2: "N"}}
    exporters, diffs = {}, {}
    exporters["encoder"] = _export(wrapper, args, out_dir / "encoder.onnx", names, out_names, dynamic, enc_meta)
    if verify:
        diffs["encoder"] = verify_streaming_encoder(model, layout, out_dir / "encoder.onnx", chunk_frames)
    return _finish_export(model, tokenizer, out_dir, meta, verify, exporters, diffs, model_type, enc_meta)


@torch.no_grad()
def verify_streaming_encoder(model: Transducer, layout, path: Path, chunk_frames: int, num_chunks: int = 4,
                             batch: int = 3) -> float:
    """Run ``num_chunks`` chunks of random features through encoder.onnx the way sherpa-onnx does (zero initial
    states, ``processed_frames`` = input frames before the chunk) and through serac's ``streaming_forward``;
    returns the largest difference of the projected encoder outputs."""
    sess = _session(path)
    names = [i.name for i in sess.get_inputs()]
    num_features = int(model.feat_mean.numel())
    x = torch.randn(batch, chunk_frames * num_chunks, num_features)
    s1, s2 = layout.init_tensors(batch)
    state = model.encoder.init_state(batch, torch.device("cpu"))
    got, want = [], []
    for k in range(num_chunks):
        chunk = x[:, k * chunk_frames:(k + 1) * chunk_frames]
        feeds = {names[0]: chunk.numpy(), names[1]: s1.numpy(), names[2]: s2.numpy()}
        if len(names) == 4:
            feeds[names[3]] = torch.full((batch,), k * chunk_frames, dtype=torch.int64).numpy()
        out, s1_np, s2_np = sess.run(None, feeds)
        s1, s2 = torch.from_numpy(s1_np), torch.from_numpy(s2_np)
        got.append(out)
        y, state = model.encoder.streaming_forward(model.normalize(chunk), state)
        want.append(model.joiner.encoder_proj(y))
    import numpy as np

    return _check_close(f"{path} (streaming, {num_chunks} chunks)", [np.concatenate(got, axis=1)],
                        [torch.cat(want, dim=1)])


def read_metadata(path: str | Path) -> Dict[str, str]:
    """An ONNX file's metadata_props as a dict."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def supported_online_types(model: Transducer) -> List[str]:
    """The sherpa-onnx online model types this model's encoder can be exported as."""
    init_state = model.encoder.init_state(1, torch.device("cpu"))
    types = ["lstm"]
    if default_model_type(init_state) == "conformer":
        types.append("conformer")
    return types


def load_averaged_model(exp_dir: str | Path, lang_dir: str | Path, epoch: int, avg: int
                        ) -> Tuple[Transducer, Tokenizer, Dict[str, Any]]:
    """The model decoding uses (``epoch-E.pt`` or the average of the last ``avg`` epochs ending at E), with its
    tokenizer and config. The feature dimension is read from the checkpoint's normalisation constants."""
    from serac.decode.job import load_model
    from serac.checkpoint import epoch_checkpoints, load_checkpoint

    paths = epoch_checkpoints(exp_dir, epoch, avg)
    state = load_checkpoint(paths[-1])["model"]
    if "feat_mean" not in state:
        raise ValueError(f"{paths[-1]}: no feat_mean in the model state: not a serac transducer checkpoint")
    num_features = int(state["feat_mean"].numel())
    if any(k.startswith("cohort_embed.") for k in state):
        raise NotImplementedError(f"{paths[-1]}: a model with a cohort embedding takes each utterance's cohort as a "
                                  f"second input, which sherpa-onnx's transducer has no place for: not exported")
    return load_model(Path(exp_dir), Path(lang_dir), epoch, avg, num_features)
