#!/usr/bin/env python3
"""LibriCSS sessions (lhotse's libricss manifests) made into the conversation cuts the STS decoder and scorer take:
one channel of the 7-channel array, each session cut into windows of whole turns (serac/multitalker/sessions.py),
split into dev (session0 of every condition; --dev-sessions) and test (sessions 1-9).

Each window is a MonoCut on --channel of the session's raw_recording.wav with one supervision per LibriSpeech
utterance played in it (speaker, words, start, end), and custom fields ``condition`` (0L, 0S, OV10 ... OV40: what
the recipe scores by) and ``session``.

Usage:
  python local/make_windows.py --manifest-dir data/manifests --channel 0 --max-window-s 60 --margin-s 0.5
  # reads data/manifests/libricss-mdm_{recordings,supervisions}_all.jsonl.gz,
  # writes data/manifests/libricss_cuts_{dev,test}.jsonl.gz, then data/manifests/libricss_windows.txt (line 1: the
  # options; then per session its turns, windows, long windows and the windows left out)
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lhotse import CutSet, MonoCut, load_manifest
from lhotse.utils import fastcopy

from serac.multitalker.sessions import session_windows
from serac.utils import atomic_path, atomic_write_text, setup_logging


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest-dir", type=Path, required=True)
    p.add_argument("--channel", type=int, default=0, help="which of the array's 7 microphones (0-6)")
    p.add_argument("--max-window-s", type=float, default=60.0)
    p.add_argument("--margin-s", type=float, default=0.5, help="silence kept around a window's speech, at most")
    p.add_argument("--dev-sessions", default="session0")
    args = p.parse_args()
    setup_logging()
    # the report is the done marker (written last): an old one must not vouch for windows half made again
    (args.manifest_dir / "libricss_windows.txt").unlink(missing_ok=True)
    recordings = load_manifest(args.manifest_dir / "libricss-mdm_recordings_all.jsonl.gz")
    supervisions = load_manifest(args.manifest_dir / "libricss-mdm_supervisions_all.jsonl.gz")
    dev_sessions = set(args.dev_sessions.split(","))
    by_split = {"dev": [], "test": []}
    # line 1: the options, which run.sh compares before reusing the windows
    report = [f"# channel={args.channel} max_window_s={args.max_window_s:g} margin_s={args.margin_s:g}"]
    for rec in sorted(recordings, key=lambda r: r.id):
        if args.channel not in rec.channel_ids:
            raise SystemExit(f"recording {rec.id} ({rec.sources[0].source}) has channels {rec.channel_ids}, "
                             f"not --channel {args.channel}")
        condition, _, session = rec.id.partition("_")   # lhotse names sessions <condition>_<sessionN>
        # lhotse's parser keeps meeting_info.txt's line ends in the text: stripped here, once; upper case as the
        # LibriSpeech transcripts the BPE model is trained on (whatever case the release uses)
        sups = [fastcopy(s, channel=args.channel, text=s.text.strip().upper())
                for s in supervisions.find(recording_id=rec.id)]
        cut = MonoCut(id=rec.id, start=0.0, duration=rec.duration, channel=args.channel, recording=rec,
                      supervisions=sups)
        got = session_windows(cut, args.max_window_s, args.margin_s)
        windows = [w.with_custom("condition", condition).with_custom("session", session) for w in got.windows]
        by_split["dev" if session in dev_sessions else "test"].extend(windows)
        report.append(f"{rec.id}\t{len(sups)} turns\t{len(windows)} windows\t{got.long_windows} longer than "
                      f"{args.max_window_s:g} s\t{len(got.dropped)} dropped")
        for reason in got.dropped:
            logging.warning(f"left out {reason}")
            report.append(f"  dropped {reason}")
    for split, cuts in by_split.items():
        if not cuts:
            raise SystemExit(f"no LibriCSS {split} windows (dev sessions: {args.dev_sessions})")
        out = args.manifest_dir / f"libricss_cuts_{split}.jsonl.gz"
        with atomic_path(out) as tmp:
            CutSet.from_cuts(cuts).to_file(tmp)
        logging.info(f"wrote {out}: {len(cuts)} windows, {sum(c.duration for c in cuts) / 3600:.2f} h")
    atomic_write_text(args.manifest_dir / "libricss_windows.txt", "\n".join(report) + "\n")


if __name__ == "__main__":
    main()
