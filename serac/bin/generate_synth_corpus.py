#!/usr/bin/env python3
r"""Generate serac's synthetic multi-accent voice-assistant corpus (espeak-ng on a real US map).

Usage:
  # one shard of N (what local/generate.sh runs under $cmd JOB=1:N), then the merge
  python -m serac.bin.generate_synth_corpus --out-dir download/synth --job 1 --nj 4
  python -m serac.bin.generate_synth_corpus --out-dir download/synth --nj 4 --merge \
      --manifest-dir data/manifests
  # everything in one process (small corpora)
  python -m serac.bin.generate_synth_corpus --out-dir /tmp/synth --manifest-dir /tmp/synth/manifests \
      --num-speakers 8 --utts-per-speaker 3
  # sizes only, no audio; print the resolved priors
  python -m serac.bin.generate_synth_corpus --out-dir download/synth --summary
  python -m serac.bin.generate_synth_corpus --dump-config > conf/synth.yaml

Writes DIR/audio/<split>/<speaker>/<utt>.flac, DIR/shards/{recordings,supervisions}.J.jsonl.gz,
DIR/speakers.tsv and DIR/corpus.yaml; the merge writes
<manifest-dir>/<prefix>_{recordings,supervisions}_{train,dev,test,adapt}.jsonl.gz.
The same --seed and size options must be given to every job and to the merge.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Dict

from serac.utils import setup_logging


def add_size_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("corpus size (defaults come from the config)")
    g.add_argument("--num-speakers", type=int, default=None, help="training speakers (default 150)")
    g.add_argument("--utts-per-speaker", type=int, default=None,
                   help="utterances per train and adapt speaker (default 24)")
    g.add_argument("--hours", type=float, default=None,
                   help="hours of training audio; sets --utts-per-speaker from the mean utterance duration")
    g.add_argument("--eval-utts-per-speaker", type=int, default=None,
                   help="utterances per dev/test speaker (default 12)")
    g.add_argument("--dev-speakers", type=int, default=None, help="population draw of dev speakers before top-ups")
    g.add_argument("--test-speakers", type=int, default=None, help="population draw of test speakers before top-ups")
    g.add_argument("--min-test-speakers-per-accent", type=int, default=None)
    g.add_argument("--adapt-speakers-per-region", type=int, default=None)


def add_job_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("jobs")
    g.add_argument("--out-dir", help="corpus directory (audio, shards, speakers.tsv)")
    g.add_argument("--job", type=int, default=None, help="generate only shard JOB (1-based) of --nj")
    g.add_argument("--nj", type=int, default=1, help="number of shards (speakers are dealt round-robin)")
    g.add_argument("--merge", action="store_true", help="merge the --nj shards into per-split manifests")
    g.add_argument("--manifest-dir", default="data/manifests")
    g.add_argument("--prefix", default="synth", help="manifest prefix: <prefix>_recordings_<split>.jsonl.gz")
    g.add_argument("--no-validate", action="store_true", help="skip lhotse validation in the merge")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1, help="the corpus seed: same seed, same corpus")
    p.add_argument("--config", default=None, help="YAML deep-merged over the default priors")
    p.add_argument("--audio-format", choices=["flac", "wav"], default=None)
    p.add_argument("--dump-config", action="store_true", help="print the resolved config as YAML and exit")
    p.add_argument("--summary", action="store_true", help="print speakers/utterances per split and exit")
    add_size_arguments(p)
    add_job_arguments(p)
    return p


def resolve_config(args: argparse.Namespace) -> Dict[str, Any]:
    from serac.data.synth.config import load_config
    from serac.data.synth.generate import utts_per_speaker_for_hours

    cfg = load_config(args.config)
    sp = cfg["splits"]
    if args.num_speakers is not None:
        sp["train"]["speakers"] = args.num_speakers
    if args.hours is not None:
        if args.utts_per_speaker is not None:
            raise SystemExit("give --hours or --utts-per-speaker, not both")
        args.utts_per_speaker = utts_per_speaker_for_hours(args.hours, int(sp["train"]["speakers"]))
    if args.utts_per_speaker is not None:
        sp["train"]["utts_per_speaker"] = args.utts_per_speaker
        sp["adapt"]["utts_per_speaker"] = args.utts_per_speaker
    if args.eval_utts_per_speaker is not None:
        sp["dev"]["utts_per_speaker"] = args.eval_utts_per_speaker
        sp["test"]["utts_per_speaker"] = args.eval_utts_per_speaker
    if args.dev_speakers is not None:
        sp["dev"]["speakers"] = args.dev_speakers
    if args.test_speakers is not None:
        sp["test"]["speakers"] = args.test_speakers
    if args.min_test_speakers_per_accent is not None:
        sp["test"]["min_per_accent"] = args.min_test_speakers_per_accent
    if args.adapt_speakers_per_region is not None:
        sp["adapt"]["speakers_per_region"] = args.adapt_speakers_per_region
    if args.audio_format is not None:
        cfg["audio"]["format"] = args.audio_format
    return cfg


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    cfg = resolve_config(args)
    if args.dump_config:
        import yaml

        sys.stdout.write(yaml.safe_dump(cfg, sort_keys=False))
        return 0

    from serac.data.synth.generate import Corpus, corpus_summary, generate_shard, merge_shards

    if args.summary:
        print(json.dumps(corpus_summary(Corpus(cfg, args.seed)), indent=2))
        return 0
    if not args.out_dir:
        raise SystemExit("--out-dir is required")
    logging.info("generate_synth_corpus: %s", " ".join(sys.argv[1:] if argv is None else argv))
    if args.job is not None:
        stats = generate_shard(args.out_dir, args.job, args.nj, args.seed, cfg)
        logging.info("shard %d/%d done: %s", args.job, args.nj, stats)
        if args.merge:
            logging.warning("--merge ignored with --job: merge once all shards are done")
        return 0
    if not args.merge:
        for job in range(1, args.nj + 1):
            stats = generate_shard(args.out_dir, job, args.nj, args.seed, cfg)
            logging.info("shard %d/%d done: %s", job, args.nj, stats)
    from serac.data.synth.generate import check_or_write_settings

    check_or_write_settings(args.out_dir, args.seed, cfg)
    merge_shards(args.out_dir, args.manifest_dir, args.nj, args.prefix, validate=not args.no_validate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
