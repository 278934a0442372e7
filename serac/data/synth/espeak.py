"""espeak-ng through ctypes, with output that does not depend on what was synthesized before.

espeak-ng (the library shipped in the ``espeakng-loader`` wheel) keeps synthesis state in C
statics -- the pitch-flutter index, the glottal phase, resonator memories -- that carry over from
one utterance to the next and cannot be reset through the API. The same text with the same voice
therefore gives slightly different samples depending on the process's history, which would make
the corpus depend on how speakers were sharded over jobs. To make every utterance a pure function
of its parameters, synthesis runs in a small helper process (a "zygote") that initializes the
library once and then forks a child per utterance: each child starts from the pristine
post-initialization state, synthesizes, writes the int16 samples to the shared pipe and exits.
A fork of the tiny helper costs well under a millisecond.

    >>> from serac.data.synth.espeak import Espeak
    >>> tts = Espeak.get()
    >>> samples = tts.synth("what is seventeen plus four", voice="en-GB-scotland+f2")
    >>> tts.sample_rate
    22050

Running this file directly (``python espeak.py LIB DATA``) is the helper itself; it imports
nothing but the standard library.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import struct
import subprocess
import sys
import threading
from typing import List, Optional

# espeak_AUDIO_OUTPUT
AUDIO_OUTPUT_SYNCHRONOUS = 2
# espeak_POSITION_TYPE
POS_CHARACTER = 1
# synth flags
espeakCHARS_UTF8 = 1
# espeak_PARAMETER
espeakRATE = 1
espeakVOLUME = 2
espeakPITCH = 3
espeakRANGE = 4
espeakWORDGAP = 7

ESPEAK_SAMPLE_RATE = 22050

# The English accent voices espeak-ng ships (espeak-ng-data/lang/gmw/en*). The ninth file there,
# en-Shaw, is the Shavian *alphabet* with plain "en" phonemes -- a script, not an accent.
ENGLISH_ACCENTS = (
    "en-US",
    "en-US-nyc",
    "en",
    "en-GB-x-rp",
    "en-GB-scotland",
    "en-GB-x-gbclan",
    "en-GB-x-gbcwmd",
    "en-029",
)

MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8")
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5")

_HEADER = struct.Struct("<ii")  # status (0 ok), payload bytes


def espeak_paths() -> tuple:
    """(library path, data dir) of the espeak-ng bundled in espeakng-loader."""
    import espeakng_loader

    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


def list_english_accents() -> List[str]:
    """The accents of :data:`ENGLISH_ACCENTS` present in the installed espeak-ng data."""
    _, data = espeak_paths()
    present = set(os.listdir(os.path.join(data, "lang", "gmw")))
    return [a for a in ENGLISH_ACCENTS if a in present]


def _read_exactly(stream, n: int) -> bytes:
    chunks = []
    while n > 0:
        b = stream.read(n)
        if not b:
            raise RuntimeError("espeak helper process died")
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


class Espeak:
    """Client of one espeak-ng helper process; use :meth:`get` for the per-process instance."""

    _instance: Optional["Espeak"] = None
    _instance_pid: Optional[int] = None
    _class_lock = threading.Lock()

    def __init__(self) -> None:
        lib_path, data_path = espeak_paths()
        self.sample_rate = ESPEAK_SAMPLE_RATE
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [sys.executable, "-I", os.path.abspath(__file__), lib_path, data_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        status, n = _HEADER.unpack(_read_exactly(self._proc.stdout, _HEADER.size))
        if status != 0:
            raise RuntimeError(f"espeak-ng initialization failed (status {status}, rate {n})")
        atexit.register(self.close)

    @classmethod
    def get(cls) -> "Espeak":
        """The instance of this process (a forked process gets its own helper)."""
        with cls._class_lock:
            if cls._instance is None or cls._instance_pid != os.getpid():
                cls._instance = cls()
                cls._instance_pid = os.getpid()
            return cls._instance

    def close(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                proc.stdin.close()
                proc.wait(timeout=5)
            except Exception:  # pragma: no cover - best effort at exit
                proc.kill()
        self._proc = None

    def synth(
        self,
        text: str,
        voice: str = "en-US",
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        word_gap: int = 0,
        seed: int = 0,
    ):
        """Synthesize ``text``; int16 numpy array at :attr:`sample_rate` (22050 Hz).

        ``rate`` is in words per minute (80-450), ``pitch`` and ``pitch_range`` are 0-100,
        ``word_gap`` is an extra pause between words in units of 10 ms, ``seed`` seeds
        espeak-ng's (and libc's) random generator.
        """
        import numpy as np

        req = {
            "text": text,
            "voice": voice,
            "rate": int(rate),
            "pitch": int(pitch),
            "range": int(pitch_range),
            "gap": int(word_gap),
            "seed": int(seed) & 0x7FFFFFFF,
        }
        with self._lock:
            if self._proc is None:
                raise RuntimeError("espeak helper is closed")
            self._proc.stdin.write((json.dumps(req) + "\n").encode("utf-8"))
            status, n = _HEADER.unpack(_read_exactly(self._proc.stdout, _HEADER.size))
            data = _read_exactly(self._proc.stdout, n) if n > 0 else b""
        if status != 0:
            raise ValueError(f"espeak-ng failed on voice {voice!r} text {text!r} (status {status})")
        return np.frombuffer(data, dtype=np.int16).copy()


# --------------------------------------------------------------------------- helper process


def _load(lib_path: str, data_path: str):
    lib = ctypes.CDLL(lib_path)
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
        ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = None
    # buflength 1000 ms: few callbacks per utterance.
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 1000, data_path.encode(), 0)
    return lib, rate


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _synth_child(lib, req: dict, out_fd: int) -> None:
    """Runs in the forked child: synthesize one request and write header + samples."""
    chunks: List[bytes] = []
    callback_type = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
    )

    def collect(wav, numsamples, events):  # noqa: ARG001 - C signature
        if numsamples > 0 and wav:
            chunks.append(ctypes.string_at(wav, numsamples * 2))
        return 0

    callback = callback_type(collect)
    lib.espeak_SetSynthCallback.argtypes = [callback_type]
    lib.espeak_SetSynthCallback(callback)
    if lib.espeak_SetVoiceByName(req["voice"].encode()) != 0:
        _write_all(out_fd, _HEADER.pack(2, 0))
        return
    lib.espeak_SetParameter(espeakRATE, req["rate"], 0)
    lib.espeak_SetParameter(espeakPITCH, req["pitch"], 0)
    lib.espeak_SetParameter(espeakRANGE, req["range"], 0)
    lib.espeak_SetParameter(espeakWORDGAP, req["gap"], 0)
    lib.espeak_SetParameter(espeakVOLUME, 100, 0)
    lib.espeak_ng_SetRandSeed(req["seed"])
    libc = ctypes.CDLL(None)
    libc.srand(ctypes.c_uint(req["seed"]))
    buf = ctypes.create_string_buffer(req["text"].encode("utf-8"))
    err = lib.espeak_Synth(buf, len(buf), 0, POS_CHARACTER, 0, espeakCHARS_UTF8, None, None)
    lib.espeak_Synchronize()
    if err != 0:
        _write_all(out_fd, _HEADER.pack(3, 0))
        return
    data = b"".join(chunks)
    _write_all(out_fd, _HEADER.pack(0, len(data)) + data)


def _serve(lib_path: str, data_path: str) -> int:
    out_fd = sys.stdout.fileno()
    lib, rate = _load(lib_path, data_path)
    if rate != ESPEAK_SAMPLE_RATE:
        _write_all(out_fd, _HEADER.pack(1, rate))
        return 1
    _write_all(out_fd, _HEADER.pack(0, rate))
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            return 0
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _synth_child(lib, req, out_fd)
            except BaseException:  # noqa: BLE001 - the parent reports the failure
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            # The child writes only after synthesis completed, so nothing is on the pipe yet.
            _write_all(out_fd, _HEADER.pack(4, 0))


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1], sys.argv[2]))
