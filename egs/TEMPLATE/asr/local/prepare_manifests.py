#!/usr/bin/env python3
"""A folder of audio files and transcripts -> lhotse manifests named as every serac recipe expects.

The corpus folder holds one tab-separated table per split, ``<split>.tsv``, with a header line. Two columns are
required: ``audio`` (a path relative to the folder, or absolute; any format soundfile reads) and ``text``.
Optional columns: ``id`` (default: the audio file's name without its extension; must be unique in a split),
``speaker``, ``gender``, ``language``; every other column becomes a custom supervision field, so it is a cohort
attribute (``--cohort-keys``) like ``speaker``, ``gender`` and ``language``::

    audio	text	speaker	gender	accent
    wav/spk1_001.wav	TURN ON THE LIGHTS	spk1	f	scottish

Each recording is one utterance (its supervision covers the whole file, first channel). Writes
``<out-dir>/<prefix>_{recordings,supervisions}_<split>.jsonl.gz`` (atomically) and fails naming the table,
its line and what is wrong (missing audio, empty transcript, duplicate id, a missing column).

Usage::

    python3 local/prepare_manifests.py --corpus-dir /data/mycorpus --prefix mycorpus --out-dir data/manifests
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import List

from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

from serac.utils import atomic_path

REQUIRED_COLUMNS = ("audio", "text")
SUPERVISION_FIELDS = ("speaker", "gender", "language")


def read_split(table: Path) -> tuple[RecordingSet, SupervisionSet]:
    """The recordings and supervisions of one ``<split>.tsv``; raises ValueError naming the line at fault."""
    with open(table, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        columns = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"{table}: header {columns} lacks the column(s) {missing}")
        custom_columns = [c for c in columns if c not in (*REQUIRED_COLUMNS, "id", *SUPERVISION_FIELDS)]
        recordings, supervisions, seen = [], [], {}
        for line_no, row in enumerate(reader, start=2):
            where = f"{table}:{line_no}"
            if None in row or any(v is None for v in row.values()):
                raise ValueError(f"{where}: expected {len(columns)} tab-separated columns")
            audio = Path(row["audio"])
            audio = audio if audio.is_absolute() else table.parent / audio
            if not audio.is_file():
                raise ValueError(f"{where}: audio file {audio} not found")
            text = " ".join(row["text"].split())
            if not text:
                raise ValueError(f"{where}: empty transcript for {audio}")
            utt_id = row.get("id") or audio.stem
            if utt_id in seen:
                raise ValueError(f"{where}: id {utt_id!r} already used on line {seen[utt_id]}")
            seen[utt_id] = line_no
            try:
                rec = Recording.from_file(audio, recording_id=utt_id)
            except Exception as e:  # soundfile / audioread errors do not name the file
                raise ValueError(f"{where}: cannot read {audio}: {e}") from e
            recordings.append(rec)
            custom = {c: row[c] for c in custom_columns if row[c] != ""}
            supervisions.append(SupervisionSegment(
                id=utt_id, recording_id=utt_id, start=0.0, duration=rec.duration, channel=rec.channel_ids[0],
                text=text, **{k: (row.get(k) or None) for k in SUPERVISION_FIELDS}, custom=custom or None))
    if not recordings:
        raise ValueError(f"{table}: no utterances")
    return RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions)


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-dir", type=Path, required=True, help="holds <split>.tsv and the audio")
    parser.add_argument("--prefix", required=True, help="manifest name prefix, e.g. the corpus name")
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    tables = sorted(args.corpus_dir.glob("*.tsv"))
    if not tables:
        print(f"prepare_manifests.py: {args.corpus_dir} holds no <split>.tsv table (see this script's docstring)",
              file=sys.stderr)
        return 1
    try:
        for table in tables:
            split = table.stem
            recordings, supervisions = read_split(table)
            for kind, manifest in (("recordings", recordings), ("supervisions", supervisions)):
                with atomic_path(args.out_dir / f"{args.prefix}_{kind}_{split}.jsonl.gz") as tmp:
                    manifest.to_file(tmp)
            print(f"{table}: {len(recordings)} utterances -> {args.out_dir}/{args.prefix}_*_{split}.jsonl.gz",
                  file=sys.stderr)
    except ValueError as e:
        print(f"prepare_manifests.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
