#!/usr/bin/env python3
"""Prepare VoxCeleb for serac's speaker-verification recipe with lhotse's VoxCeleb recipe, offline.

lhotse's ``prepare_voxceleb`` always fetches the VoxCeleb1-O trial list from openslr.org; this script calls its
per-corpus parts (the same recordings and supervisions: speaker, gender, nationality, split from vox1_meta.csv)
and reads the trial list from the corpus directory instead (``veri_test2.txt`` (VoxCeleb1-O cleaned) or
``voxceleb1_test_v2.txt``, lines ``label enrol.wav test.wav``), writing it as a serac trial TSV with the enrolment
speaker's gender, nationality and nationality_group (USA / UK / other, the paper's grouping).

Writes <manifest-dir>/voxceleb_{recordings,supervisions}_{train,test}.jsonl.gz and <trials-out>.

Usage:
  local/prepare_voxceleb.py --voxceleb1 /data/VoxCeleb1 [--voxceleb2 /data/VoxCeleb2] data/manifests data/trials/vox1-o.tsv
"""
from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

from serac.speaker.trials import Trial, write_trials
from serac.utils import atomic_path, setup_logging

TRIAL_FILES = ("veri_test2.txt", "voxceleb1_test_v2.txt", "veri_test.txt")


def nationality_group(n: str) -> str:
    return {"usa": "USA", "uk": "UK"}.get(n.strip().lower(), "other")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--voxceleb1", required=True, help="VoxCeleb1 root: wav/id*/<video>/*.wav and vox1_meta.csv")
    p.add_argument("--voxceleb2", default=None, help="VoxCeleb2 root (added to the training split)")
    p.add_argument("--trials-file", default=None, help=f"default: the first of {TRIAL_FILES} in --voxceleb1")
    p.add_argument("--num-jobs", type=int, default=1)
    p.add_argument("manifest_dir")
    p.add_argument("trials_out")
    args = p.parse_args()
    setup_logging()
    from lhotse.qa import fix_manifests, validate_recordings_and_supervisions
    from lhotse.recipes.voxceleb import _prepare_voxceleb_v1, _prepare_voxceleb_v2

    root = Path(args.voxceleb1)
    for need in (root / "wav", root / "vox1_meta.csv"):
        if not need.exists():
            raise SystemExit(f"{need} not found: --voxceleb1 must be laid out like VoxCeleb1 (wav/id*/<video>/*.wav, "
                             "vox1_meta.csv); lhotse download_voxceleb1 fetches it")
    trials_file = Path(args.trials_file) if args.trials_file else next(
        (root / f for f in TRIAL_FILES if (root / f).is_file()), None)
    if trials_file is None or not trials_file.is_file():
        raise SystemExit(f"no trial list in {root} (one of {TRIAL_FILES}); give --trials-file (VoxCeleb1-O: "
                         "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/veri_test2.txt)")
    manifests = _prepare_voxceleb_v1(root, args.num_jobs)
    if args.voxceleb2:
        from lhotse.manipulation import combine

        v2 = _prepare_voxceleb_v2(Path(args.voxceleb2), args.num_jobs)
        for k in ("recordings", "supervisions"):
            manifests["train"][k] = combine(manifests["train"][k], v2[k])
    out = Path(args.manifest_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        recs, sups = fix_manifests(manifests[split]["recordings"], manifests[split]["supervisions"])
        sups = sups.map(lambda s: s.with_custom("nationality_group", nationality_group(s.custom["nationality"])))
        validate_recordings_and_supervisions(recs, sups)
        if len(recs) == 0:
            raise SystemExit(f"{root}: no recordings in the {split} split (vox1_meta.csv Set column dev/test)")
        for obj, name in ((recs, "recordings"), (sups, "supervisions")):
            with atomic_path(out / f"voxceleb_{name}_{split}.jsonl.gz") as tmp:
                obj.to_file(tmp)
        manifests[split]["supervisions"] = sups
    sup_by_id = {s.id: s for s in manifests["test"]["supervisions"]}
    trials = []
    with open(trials_file) as f:
        for n, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3 or parts[0] not in ("0", "1"):
                raise SystemExit(f"{trials_file}:{n}: expected 'label enrol.wav test.wav', got {line.strip()!r}")
            enrol, test = ("-".join(x.rsplit(".", 1)[0].split("/")) for x in parts[1:])
            for utt in (enrol, test):
                if utt not in sup_by_id:
                    raise SystemExit(f"{trials_file}:{n}: {utt} is not a VoxCeleb1 test recording in {root}/wav")
            e, t = sup_by_id[enrol], sup_by_id[test]
            trials.append(Trial(parts[0] == "1", enrol, test, e.speaker, t.speaker,
                                {"gender": e.gender or "", "nationality": e.custom["nationality"],
                                 "nationality_group": e.custom["nationality_group"]}))
    write_trials(trials, args.trials_out)
    logging.info(f"{len(trials)} trials -> {args.trials_out}; manifests -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
