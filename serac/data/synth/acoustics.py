"""Deterministic acoustic conditions for synthetic speech: noise, reverberation, telephone channel.

All functions are pure given their inputs and a ``numpy.random.Generator``; signals are float64
at 16 kHz unless stated otherwise.

* ``pink`` / ``brown`` noise: white Gaussian noise shaped to 1/f or 1/f^2 power in the frequency
  domain (hiss, wind and road rumble).
* ``babble``: a fixed bank of six overlapping espeak-ng talkers reading grammar sentences, built
  once per process from a constant seed; an utterance takes a random excerpt.
* reverberation: a synthetic room impulse response -- a direct path plus exponentially decaying
  Gaussian noise whose 60 dB decay time is the RT60 -- at a random direct-to-reverberant ratio.
* telephone: 300-3400 Hz band-pass, 8 kHz resampling, 8-bit mu-law companding, back to 16 kHz.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Tuple

import numpy as np
from scipy import signal

SAMPLE_RATE = 16000


def resample_to_16k(x: np.ndarray, sr: int) -> np.ndarray:
    """float64 at 16 kHz from int16 / float samples at ``sr`` (22050 for espeak-ng)."""
    x = np.asarray(x, dtype=np.float64)
    if sr == SAMPLE_RATE:
        return x
    if sr == 22050:
        return signal.resample_poly(x, 320, 441)
    g = np.gcd(sr, SAMPLE_RATE)
    return signal.resample_poly(x, SAMPLE_RATE // g, sr // g)


def trim_silence(x: np.ndarray, threshold_db: float = -40.0, margin: int = 320) -> np.ndarray:
    """Cut leading/trailing samples quieter than ``threshold_db`` re the peak, keeping ``margin``."""
    if x.size == 0:
        return x
    peak = np.max(np.abs(x))
    if peak == 0:
        return x[:0]
    idx = np.nonzero(np.abs(x) > peak * 10 ** (threshold_db / 20))[0]
    return x[max(idx[0] - margin, 0): min(idx[-1] + margin + 1, x.size)]


def active_speech_power(x: np.ndarray, frame: int = 320, floor_db: float = 30.0) -> float:
    """Mean power over the frames within ``floor_db`` of the loudest frame (a speech level)."""
    n = x.size // frame
    if n == 0:
        return float(np.mean(x ** 2)) if x.size else 0.0
    e = np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1)
    active = e[e >= e.max() * 10 ** (-floor_db / 10)]
    return float(active.mean())


def colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Unit-power noise with power spectrum ~ 1/f^exponent (1 = pink, 2 = brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=float)
    f[0] = 1.0
    spec /= f ** (exponent / 2)
    spec[0] = 0.0
    y = np.fft.irfft(spec, n)
    return y / (np.sqrt(np.mean(y ** 2)) + 1e-12)


@lru_cache(maxsize=1)
def babble_bank(seconds: float = 30.0, talkers: int = 6) -> np.ndarray:
    """Unit-power babble: ``talkers`` overlapping espeak-ng voices, built from a fixed seed."""
    from serac.data.synth.espeak import ENGLISH_ACCENTS, FEMALE_VARIANTS, MALE_VARIANTS, Espeak
    from serac.data.synth.grammar import Grammar

    tts = Espeak.get()
    grammar = Grammar()
    rng = np.random.default_rng(20220918)
    n = int(seconds * SAMPLE_RATE)
    mix = np.zeros(n)
    variants = MALE_VARIANTS + FEMALE_VARIANTS
    for t in range(talkers):
        stream, total = [], 0
        voice = f"{ENGLISH_ACCENTS[t % len(ENGLISH_ACCENTS)]}+{variants[int(rng.integers(len(variants)))]}"
        while total < n:
            text = grammar.sample(rng).text.lower()
            y = resample_to_16k(tts.synth(text, voice, rate=int(rng.integers(150, 200)),
                                          pitch=int(rng.integers(30, 70)), seed=t), tts.sample_rate)
            y = trim_silence(y)
            y = y / (np.sqrt(active_speech_power(y)) + 1e-9)
            stream.append(y)
            stream.append(np.zeros(int(rng.integers(800, 4000))))
            total += y.size
        s = np.concatenate(stream)
        s = np.roll(s, int(rng.integers(n)))[:n]
        mix += s
    return mix / (np.sqrt(np.mean(mix ** 2)) + 1e-12)


def noise(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """Unit-power noise of ``kind`` (babble, pink, brown), ``n`` samples."""
    if kind == "pink":
        return colored_noise(rng, n, 1.0)
    if kind == "brown":
        return colored_noise(rng, n, 2.0)
    if kind == "babble":
        bank = babble_bank()
        start = int(rng.integers(bank.size))
        idx = (start + np.arange(n)) % bank.size
        y = bank[idx]
        return y / (np.sqrt(np.mean(y ** 2)) + 1e-12)
    raise ValueError(f"unknown noise type {kind!r}")


def add_noise(x: np.ndarray, noise_signal: np.ndarray, snr_db: float, speech_power: float) -> np.ndarray:
    """``x`` plus ``noise_signal`` scaled to ``snr_db`` below ``speech_power``."""
    pn = float(np.mean(noise_signal ** 2)) + 1e-20
    gain = np.sqrt(speech_power / (pn * 10 ** (snr_db / 10)))
    return x + gain * noise_signal


def synthetic_rir(rng: np.random.Generator, rt60: float, drr_db: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Direct path + exponentially decaying noise tail (60 dB down after ``rt60`` seconds)."""
    n = max(int(rt60 * sr), 16)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.907755 * t / rt60)
    # a few ms of pre-delay before the diffuse tail
    tail[: int(0.003 * sr)] = 0.0
    tail *= np.sqrt(10 ** (-drr_db / 10) / (np.sum(tail ** 2) + 1e-12))
    tail[0] = 1.0
    return tail


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve and keep the original length (the tail falls into the trailing silence)."""
    y = signal.fftconvolve(x, rir)[: x.size]
    # keep the speech level comparable to the dry signal
    return y * np.sqrt(active_speech_power(x) / (active_speech_power(y) + 1e-20))


@lru_cache(maxsize=2)
def _telephone_sos(sr: int) -> np.ndarray:
    return signal.butter(4, [300.0, 3400.0], btype="bandpass", fs=sr, output="sos")


def telephone(x: np.ndarray, sr: int = SAMPLE_RATE, mu: float = 255.0) -> np.ndarray:
    """Narrow-band telephone channel: band-pass, 8 kHz, 8-bit mu-law, back to ``sr``."""
    y = signal.sosfilt(_telephone_sos(sr), x)
    y8 = signal.resample_poly(y, 1, 2) if sr == 16000 else signal.resample_poly(y, 8000, sr)
    scale = np.max(np.abs(y8)) * 1.05 + 1e-12
    s = y8 / scale
    c = np.sign(s) * np.log1p(mu * np.abs(s)) / np.log1p(mu)
    c = np.round(c * 127.0) / 127.0
    s = np.sign(c) * np.expm1(np.abs(c) * np.log1p(mu)) / mu
    y8 = s * scale
    return signal.resample_poly(y8, 2, 1) if sr == 16000 else signal.resample_poly(y8, sr, 8000)


def to_int16(x: np.ndarray, peak_dbfs: float) -> np.ndarray:
    """Scale so that the peak is at ``peak_dbfs`` and quantize."""
    peak = np.max(np.abs(x)) + 1e-12
    y = x * (10 ** (peak_dbfs / 20) * 32767.0 / peak)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def pad(x: np.ndarray, lead: int, trail: int) -> np.ndarray:
    return np.concatenate([np.zeros(lead), x, np.zeros(trail)])


def apply_condition(
    rng: np.random.Generator,
    speech: np.ndarray,
    condition: str,
    noise_type: str,
    snr_db: float,
    rt60_s: float,
    drr_db: float,
    lead: int,
    trail: int,
) -> Tuple[np.ndarray, float]:
    """Pad, then reverberate / add noise / pass through a telephone channel; returns float signal.

    Every condition gets its noise at ``snr_db`` (for "clean" that is a faint floor); "reverb"
    adds the room, "telephone" the channel after the noise (noise at the far end).
    """
    speech_power = active_speech_power(speech)
    x = pad(speech, lead, trail)
    if condition == "reverb":
        x = reverberate(x, synthetic_rir(rng, rt60_s, drr_db))
    x = add_noise(x, noise(rng, noise_type, x.size), snr_db, speech_power)
    if condition == "telephone":
        x = telephone(x)
    return x, speech_power
