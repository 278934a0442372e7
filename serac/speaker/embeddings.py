"""Speaker embeddings from audio, with a pluggable extractor.

Extractors, chosen by name (``get_extractor``):

- ``resemblyzer``: the pretrained GE2E speaker encoder (3-layer LSTM, 256-dim, L2-normalised d-vectors) whose
  weights ship inside the ``resemblyzer`` wheel (``pip install "setuptools<81" resemblyzer==0.1.4``, or
  ``tools/install.sh --with-resemblyzer``). The first call is slow (librosa/numba JIT warm-up, ~15 s).
- ``fbank-stats``: **built-in fallback, no trained model**: per utterance, the mean and standard deviation over
  frames of 40-bin log-mel filterbank energies (80 numbers). It describes the channel, spectral tilt and pitch
  range of the recordings more than speaker identity; it is what you get when no speaker encoder is installed.
- ``serac``: serac's own speaker-embedding model (a small ECAPA-TDNN trained with an additive-margin softmax, with
  or without adversarial reweighting, by ``egs/synth_assistant/sv``), loaded from the checkpoint given as
  ``checkpoint`` (e.g. ``egs/synth_assistant/sv/exp/baseline/model.pt``); 80-bin fbank computed here from the
  audio the same way the recipe's features were (``serac.data.features.make_fbank_extractor``), embeddings
  L2-normalised.
- ``auto``: ``serac`` when a checkpoint is given, else ``resemblyzer`` when it imports, else ``fbank-stats`` (the
  chosen name is logged and recorded).

Every extractor has a ``cache_tag``: its name, and for ``serac`` also the first 12 hex digits of the checkpoint
file's SHA-1, so embeddings cached under that tag are never reused for another model.

A speaker's embedding is the mean of its utterances' embeddings (re-normalised to unit length for extractors
whose vectors are unit-length, as resemblyzer's ``embed_speaker`` does). Audio comes from the lhotse cuts
(``cut.load_audio()``), resampled to 16 kHz.

Usage::

    from serac.speaker.embeddings import get_extractor, speaker_embeddings
    extractor = get_extractor("auto")                      # or get_extractor("serac", checkpoint="model.pt")
    speakers, vectors = speaker_embeddings(load_manifest_lazy("cuts.jsonl.gz"), extractor, max_utts_per_speaker=8)
"""
from __future__ import annotations

import logging
import random
from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

SAMPLING_RATE = 16000
EXTRACTORS = ("auto", "serac", "resemblyzer", "fbank-stats")

logger = logging.getLogger(__name__)


class FbankStatsExtractor:
    """Built-in fallback (not a speaker-verification model): mean and std of log-mel fbank frames."""

    name = cache_tag = "fbank-stats"
    unit_norm = False  # k-means should standardise these dimensions first

    def __init__(self, num_mel_bins: int = 40) -> None:
        from lhotse.features import Fbank, FbankConfig

        self.num_mel_bins = num_mel_bins
        self.fbank = Fbank(FbankConfig(sampling_rate=SAMPLING_RATE, num_filters=num_mel_bins, dither=0.0))
        self.dim = 2 * num_mel_bins

    def embed_utterance(self, audio: np.ndarray, sampling_rate: int) -> np.ndarray:
        if sampling_rate != SAMPLING_RATE:
            raise ValueError(f"fbank-stats expects {SAMPLING_RATE} Hz audio, got {sampling_rate}")
        feats = self.fbank.extract(audio.astype(np.float32), sampling_rate)
        return np.concatenate([feats.mean(axis=0), feats.std(axis=0)]).astype(np.float64)


class ResemblyzerExtractor:
    """Pretrained GE2E speaker encoder from the resemblyzer wheel."""

    name = cache_tag = "resemblyzer"
    unit_norm = True
    dim = 256

    def __init__(self, device: str = "cpu") -> None:
        from resemblyzer import VoiceEncoder, preprocess_wav  # noqa: F401 (import error = not installed)

        self._preprocess = preprocess_wav
        self.encoder = VoiceEncoder(device, verbose=False)

    def embed_utterance(self, audio: np.ndarray, sampling_rate: int) -> np.ndarray:
        # preprocess_wav: volume normalisation and webrtcvad trimming of long silences (resemblyzer's recipe)
        wav = self._preprocess(audio.astype(np.float32), source_sr=sampling_rate)
        if len(wav) < SAMPLING_RATE // 4:  # VAD removed nearly everything: use the raw audio
            wav = audio.astype(np.float32)
        return self.encoder.embed_utterance(wav).astype(np.float64)


class SeracExtractor:
    """serac's own speaker-embedding model (serac.speaker.model.EcapaTdnn) from a training checkpoint."""

    name = "serac"
    unit_norm = True

    def __init__(self, checkpoint: str, fbank_backend: str = "auto") -> None:
        import torch

        from serac.data.features import make_fbank_extractor
        from serac.speaker.model import load_checkpoint

        self._torch = torch
        self.checkpoint = str(checkpoint)
        self.checkpoint_sha1 = file_sha1(self.checkpoint)
        self.cache_tag = f"serac-{self.checkpoint_sha1[:12]}"
        self.model, ckpt = load_checkpoint(self.checkpoint)
        self.dim = self.model.embedding_dim
        feature = ckpt.get("feature", {})
        self.sampling_rate = int(feature.get("sampling_rate", SAMPLING_RATE))
        self.fbank = make_fbank_extractor(self.model.config["num_mel_bins"], self.sampling_rate, fbank_backend)

    def embed_features(self, feats: np.ndarray) -> np.ndarray:
        """Unit-length embedding of one utterance's fbank (frames, bins)."""
        torch = self._torch
        with torch.no_grad():
            x = torch.from_numpy(np.asarray(feats, dtype=np.float32))[None]
            e = self.model(x)[0].double().numpy()
        return e / max(np.linalg.norm(e), 1e-12)

    def embed_utterance(self, audio: np.ndarray, sampling_rate: int) -> np.ndarray:
        if sampling_rate != self.sampling_rate:
            raise ValueError(f"the serac speaker model {self.checkpoint} expects {self.sampling_rate} Hz audio, "
                             f"got {sampling_rate} Hz")
        return self.embed_features(self.fbank.extract(audio.astype(np.float32), sampling_rate))


def file_sha1(path: str) -> str:
    """SHA-1 of a file's bytes (the identity of a checkpoint in cache keys and summaries)."""
    import hashlib

    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resemblyzer_available() -> bool:
    try:
        import resemblyzer  # noqa: F401
    except Exception:
        return False
    return True


def get_extractor(name: str = "auto", checkpoint: Optional[str] = None):
    """An extractor by name: ``auto``, ``serac`` (needs ``checkpoint``), ``resemblyzer`` or ``fbank-stats``."""
    if name not in EXTRACTORS:
        raise ValueError(f"unknown speaker embedding {name!r}; choose from {EXTRACTORS}")
    if name == "auto":
        name = "serac" if checkpoint else "resemblyzer" if resemblyzer_available() else "fbank-stats"
        logger.info(f"speaker embedding 'auto' -> {name}")
    if name == "serac":
        if not checkpoint:
            raise ValueError("the 'serac' speaker embedding needs a checkpoint: a model.pt trained by "
                             "egs/synth_assistant/sv (e.g. ../sv/exp/baseline/model.pt)")
        from pathlib import Path

        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"speaker-model checkpoint {checkpoint} not found (train it with "
                                    "egs/synth_assistant/sv/run.sh --stop-stage 2)")
        return SeracExtractor(checkpoint)
    if name == "resemblyzer":
        if not resemblyzer_available():
            raise ImportError('resemblyzer is not installed: pip install "setuptools<81" resemblyzer==0.1.4 '
                              "(or tools/install.sh --with-resemblyzer), or use --embedding fbank-stats")
        return ResemblyzerExtractor()
    return FbankStatsExtractor()


def cut_audio(cut) -> np.ndarray:
    """Mono float audio of a lhotse cut at 16 kHz."""
    if cut.sampling_rate != SAMPLING_RATE:
        cut = cut.resample(SAMPLING_RATE)
    audio = cut.load_audio()
    return audio[0] if audio.ndim == 2 else audio


def speaker_embeddings(cuts: Iterable, extractor, max_utts_per_speaker: int = 0, seed: int = 0,
                       speakers: Optional[Iterable[str]] = None) -> Tuple[List[str], np.ndarray]:
    """(sorted speaker ids, array (num_speakers, dim)): each row the mean of the speaker's utterance embeddings.

    ``max_utts_per_speaker`` > 0 caps the utterances used per speaker (a seeded random choice among them, the
    same whatever the manifest order); ``speakers`` restricts to those speakers.
    """
    wanted = set(speakers) if speakers is not None else None
    by_speaker: Dict[str, list] = defaultdict(list)
    for cut in cuts:
        sup = cut.supervisions[0] if cut.supervisions else None
        speaker = sup.speaker if sup is not None and sup.speaker is not None else cut.id
        if wanted is None or speaker in wanted:
            by_speaker[speaker].append(cut)
    if not by_speaker:
        raise ValueError("no cuts to embed")
    names = sorted(by_speaker)
    vectors = np.zeros((len(names), extractor.dim), dtype=np.float64)
    for i, speaker in enumerate(names):
        chosen = sorted(by_speaker[speaker], key=lambda c: c.id)
        if 0 < max_utts_per_speaker < len(chosen):
            chosen = random.Random(f"{seed}:{speaker}").sample(chosen, max_utts_per_speaker)
        embs = np.stack([extractor.embed_utterance(cut_audio(c), SAMPLING_RATE) for c in chosen])
        v = embs.mean(axis=0)
        if extractor.unit_norm:
            v = v / max(np.linalg.norm(v), 1e-12)
        vectors[i] = v
        if (i + 1) % 20 == 0:
            logger.info(f"embedded {i + 1}/{len(names)} speakers ({extractor.name})")
    return names, vectors
