#!/usr/bin/env python3
"""Prepare the real-voice evaluation set (../shared/data/alphanumeric: 70 speakers, 3 recordings each) for
speaker verification: every file down-mixed to mono and resampled to 16 kHz (its recordings are 16-48 kHz, some
stereo) into <out-dir>/wav/, and lhotse manifests <manifest-dir>/alnum_{recordings,supervisions}_all.jsonl.gz
whose supervisions carry the speaker (Response_ID), gender (f / m; empty for "prefer not to say"), and the custom
fields native_language (cleaned), native_group, nationality, device.

native_group (the real-voice stand-in for the paper's nationality): hindi, marathi, english, chinese (Chinese or
Mandarin), dravidian (Kannada, Telugu, Tamil, Malayalam), other.

Usage:
  local/prepare_alphanumeric.py /work/shared/data/alphanumeric data/alnum data/manifests
"""
from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

import soundfile as sf
from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

from serac.speaker.audio import load_mono
from serac.utils import atomic_path, setup_logging

GROUPS = {"hindi": "hindi", "marathi": "marathi", "english": "english", "chinese": "chinese", "mandarin": "chinese",
          "kannada": "dravidian", "telugu": "dravidian", "tamil": "dravidian", "malayalam": "dravidian"}
GENDERS = {"female": "f", "male": "m"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus_dir")
    p.add_argument("out_dir")
    p.add_argument("manifest_dir")
    args = p.parse_args()
    setup_logging()
    corpus, out = Path(args.corpus_dir), Path(args.out_dir)
    meta = corpus / "metadata.csv"
    if not meta.is_file():
        raise SystemExit(f"{meta} not found: is {corpus} the alphanumeric corpus (see its SOURCE.md)?")
    recordings, supervisions, missing = [], [], []
    with open(meta, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        speaker = row["Response_ID"].strip()
        kind = Path(row["file_name"]).parent.name  # Names / Numbers / Addresses
        src = corpus / "audio" / kind / f"{speaker}.flac"
        if not src.is_file():
            missing.append(str(src))
            continue
        audio, sr = load_mono(src, 16000, resample=True)
        utt = f"{speaker}-{kind.lower()}"
        wav = out / "wav" / f"{utt}.wav"
        if not wav.is_file():
            wav.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(wav) as tmp:
                sf.write(str(tmp), audio, 16000, subtype="PCM_16", format="WAV")
        rec = Recording.from_file(wav, recording_id=utt)
        language = " ".join(row["Native Language"].split()).lower().replace("gujrati", "gujarati")
        recordings.append(rec)
        supervisions.append(SupervisionSegment(
            id=utt, recording_id=utt, start=0.0, duration=rec.duration, channel=0, speaker=speaker,
            gender=GENDERS.get(row["Gender"].strip().lower()), language="English",
            custom={"native_language": language, "native_group": GROUPS.get(language, "other"),
                    "nationality": row["Nationality"].strip(), "device": row["Recording Machine"].strip(),
                    "original_sampling_rate": sr}))
    for m in missing:
        logging.warning(f"listed in {meta} but missing: {m} (skipped)")
    if not recordings:
        raise SystemExit(f"{corpus}: no audio found")
    mdir = Path(args.manifest_dir)
    mdir.mkdir(parents=True, exist_ok=True)
    for obj, name in ((RecordingSet.from_recordings(recordings), "recordings"),
                      (SupervisionSet.from_segments(supervisions), "supervisions")):
        with atomic_path(mdir / f"alnum_{name}_all.jsonl.gz") as tmp:
            obj.to_file(tmp)
    logging.info(f"{len(recordings)} recordings of {len({s.speaker for s in supervisions})} speakers "
                 f"-> {mdir}/alnum_*_all.jsonl.gz ({len(missing)} missing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
