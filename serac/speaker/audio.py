"""Reading audio for speaker verification: mono, at the model's sample rate, or a clear error naming the file."""
from __future__ import annotations

from math import gcd
from pathlib import Path
from typing import Tuple

import numpy as np

SAMPLING_RATE = 16000


def load_mono(path: str | Path, sampling_rate: int = SAMPLING_RATE, resample: bool = False
              ) -> Tuple[np.ndarray, int]:
    """(float32 mono samples, original sample rate) of an audio file.

    Multi-channel files are down-mixed (mean of the channels). A file at another rate than ``sampling_rate``
    raises ValueError naming the file unless ``resample`` is true (polyphase resampling, scipy).
    """
    import soundfile as sf

    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # unreadable or not audio: say which file
        raise ValueError(f"{path}: cannot read audio ({e})") from e
    if audio.shape[0] == 0:
        raise ValueError(f"{path}: empty audio")
    mono = audio.mean(axis=1)
    if sr != sampling_rate:
        if not resample:
            raise ValueError(f"{path}: sampled at {sr} Hz, expected {sampling_rate} Hz (resample it first, "
                             "e.g. with the recipe's data preparation)")
        from scipy.signal import resample_poly

        g = gcd(int(sr), int(sampling_rate))
        mono = resample_poly(mono, sampling_rate // g, int(sr) // g).astype(np.float32)
    return mono, int(sr)
