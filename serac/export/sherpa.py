"""Decode lhotse cut sets with sherpa-onnx (greedy search) from the audio, as a deployed recogniser would.

sherpa-onnx computes the features itself (kaldi-native-fbank with lhotse's defaults: dither 0, snip_edges False,
low_freq 20, high_freq -400, samples in [-1, 1]); the number of mel bins and the sample rate come from the exported
encoder's metadata (``feature_dim``, ``sample_rate``), so a 23-bin 8 kHz yesno model decodes as it was trained.

Streaming: the audio goes in ``decode_chunk_len`` feature frames at a time; every chunk the recogniser is ready
for is decoded at once, and the time of each ``decode_stream`` call is one chunk's compute latency. sherpa-onnx
decodes only whole chunks (``T`` frames), so the end of the stream is padded with silence (``tail_padding_s``,
by default a chunk and a half more than ``T`` needs) as sherpa-onnx's own examples do.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from serac.export.onnx_export import read_metadata

Result = Tuple[str, List[str], List[str]]


@dataclass
class SherpaModel:
    model_dir: Path
    metadata: Dict[str, str]

    @property
    def streaming(self) -> bool:
        return self.metadata.get("serac_mode") == "streaming"

    @property
    def sample_rate(self) -> int:
        return int(self.metadata.get("sample_rate", 16000))

    @property
    def feature_dim(self) -> int:
        return int(self.metadata.get("feature_dim", 80))

    def files(self) -> Dict[str, str]:
        files = {name: self.model_dir / f"{name}.onnx" for name in ("encoder", "decoder", "joiner")}
        files["tokens"] = self.model_dir / "tokens.txt"
        for name, path in files.items():
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: export the model first (steps/export.sh)")
        return {k: str(v) for k, v in files.items()}


def load_sherpa_model(model_dir: str | Path) -> SherpaModel:
    model_dir = Path(model_dir)
    encoder = model_dir / "encoder.onnx"
    if not encoder.is_file():
        raise FileNotFoundError(f"{encoder} not found: export the model first (steps/export.sh)")
    return SherpaModel(model_dir, read_metadata(encoder))


def make_recognizer(model: SherpaModel, num_threads: int = 1, decoding_method: str = "greedy_search"):
    import sherpa_onnx

    files = model.files()
    common = dict(encoder=files["encoder"], decoder=files["decoder"], joiner=files["joiner"], tokens=files["tokens"],
                  num_threads=num_threads, sample_rate=model.sample_rate, feature_dim=model.feature_dim,
                  decoding_method=decoding_method)
    if model.streaming:
        return sherpa_onnx.OnlineRecognizer.from_transducer(**common)
    return sherpa_onnx.OfflineRecognizer.from_transducer(**common)


def _audio(cut, sample_rate: int, where: str) -> np.ndarray:
    if cut.sampling_rate != sample_rate:
        raise ValueError(f"{where}: cut {cut.id} is {cut.sampling_rate} Hz, the exported model takes {sample_rate} Hz")
    audio = cut.load_audio()
    if audio.ndim == 2:
        if audio.shape[0] != 1:
            raise ValueError(f"{where}: cut {cut.id} has {audio.shape[0]} channels; sherpa-onnx decodes one")
        audio = audio[0]
    return np.ascontiguousarray(audio, dtype=np.float32)


def _reference(cut, where: str) -> List[str]:
    if not cut.supervisions:
        raise ValueError(f"{where}: cut {cut.id} has no supervision (no reference text)")
    return (cut.supervisions[0].text or "").split()


@dataclass
class SherpaDecodeStats:
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0
    chunk_seconds: List[float] = field(default_factory=list)  # streaming: each full chunk's decode time

    def as_dict(self) -> Dict[str, Any]:
        return {"audio_seconds": self.audio_seconds, "compute_seconds": self.compute_seconds,
                "rtf": self.compute_seconds / max(self.audio_seconds, 1e-9)}


def decode_offline(recognizer, model: SherpaModel, cuts, where: str = "cuts") -> Tuple[List[Result], SherpaDecodeStats]:
    """One utterance at a time (batch 1, as the streaming decoder): the time of ``decode_stream`` per utterance
    (features included: sherpa-onnx computes them inside) adds up to compute_seconds."""
    results, stats = [], SherpaDecodeStats()
    for cut in cuts:
        audio = _audio(cut, model.sample_rate, where)
        t0 = time.perf_counter()
        stream = recognizer.create_stream()
        stream.accept_waveform(model.sample_rate, audio)
        recognizer.decode_stream(stream)
        stats.compute_seconds += time.perf_counter() - t0
        stats.audio_seconds += len(audio) / model.sample_rate
        results.append((cut.id, _reference(cut, where), stream.result.text.split()))
    return results, stats


def tail_padding_seconds(model: SherpaModel) -> float:
    """Silence after the end of a stream so that every real frame reaches the encoder: sherpa-onnx decodes a chunk
    once more than ``T`` frames are ready, so T + decode_chunk_len frames and a half chunk of margin."""
    t = int(model.metadata.get("T", 0))
    shift = int(model.metadata.get("decode_chunk_len", t))
    return (t + shift + shift // 2 + 1) * 0.01


def decode_online(recognizer, model: SherpaModel, cuts, where: str = "cuts",
                  tail_padding_s: Optional[float] = None) -> Tuple[List[Result], SherpaDecodeStats]:
    """Feed each utterance in chunks of ``decode_chunk_len`` feature frames of audio and decode every chunk as soon
    as the recogniser is ready (batch 1); the time of each ``decode_stream`` call is a chunk's compute latency."""
    chunk_frames = int(model.metadata["decode_chunk_len"])
    chunk_samples = chunk_frames * model.sample_rate // 100
    pad = tail_padding_seconds(model) if tail_padding_s is None else tail_padding_s
    results, stats = [], SherpaDecodeStats()
    for cut in cuts:
        audio = _audio(cut, model.sample_rate, where)
        padded = np.concatenate([audio, np.zeros(int(round(pad * model.sample_rate)), dtype=np.float32)])
        stream = recognizer.create_stream()
        t_total = 0.0
        for start in range(0, len(padded), chunk_samples):
            t0 = time.perf_counter()
            stream.accept_waveform(model.sample_rate, padded[start:start + chunk_samples])
            if start + chunk_samples >= len(padded):
                stream.input_finished()
            t_total += time.perf_counter() - t0
            while recognizer.is_ready(stream):
                t0 = time.perf_counter()
                recognizer.decode_stream(stream)
                elapsed = time.perf_counter() - t0
                stats.chunk_seconds.append(elapsed)
                t_total += elapsed
        stats.compute_seconds += t_total
        stats.audio_seconds += len(audio) / model.sample_rate
        text = recognizer.get_result(stream)
        results.append((cut.id, _reference(cut, where), (text if isinstance(text, str) else text.text).split()))
    return results, stats
