#!/usr/bin/env python3
"""Write the STS recipe's RESULTS.md from the files of a run (the logic: serac/multitalker/report.py).

Usage::

    python -m serac.bin.write_multitalker_results --systems "sts mt_rnnt sts_no_penalty sts_no_fastemit" \\
        --exp-root exp --set test --suffix greedy_search-epoch-6-avg-2 \\
        --streaming-set dev --streaming-suffix streaming_greedy_search-chunk-160ms-epoch-6-avg-2 \\
        --manifests data/manifests --timing exp/timing.tsv --out RESULTS.md
    # a system decoded at its own checkpoint (the single-speaker floor): its suffixes
    python -m serac.bin.write_multitalker_results --systems "sts_init single_talker" ... \\
        --suffix-of single_talker=greedy_search-epoch-15-avg-1 \\
        --streaming-suffix-of single_talker=streaming_greedy_search-chunk-160ms-epoch-15-avg-1

Reads ``<exp-root>/<system>/decode/<set>/multitalker-<set>-<suffix>.json`` (serac.bin.score_multitalker) and
``<exp-root>/<system>/config.yaml`` of every system.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List, Optional


def system_suffixes(items: List[str], option: str) -> Dict[str, str]:
    """``SYSTEM=SUFFIX`` items as a dict (SystemExit naming the option and the item otherwise)."""
    out: Dict[str, str] = {}
    for item in items:
        system, sep, suffix = item.partition("=")
        if not (sep and system and suffix):
            raise SystemExit(f"{option} {item!r}: expected SYSTEM=SUFFIX")
        out[system] = suffix
    return out


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", required=True, help="space-separated system names (exp/<name>)")
    p.add_argument("--exp-root", type=Path, default=Path("exp"))
    p.add_argument("--set", dest="set_name", required=True)
    p.add_argument("--suffix", required=True)
    p.add_argument("--streaming-set")
    p.add_argument("--streaming-suffix")
    p.add_argument("--suffix-of", action="append", default=[], metavar="SYSTEM=SUFFIX",
                   help="a system decoded with another suffix than --suffix (repeatable)")
    p.add_argument("--streaming-suffix-of", action="append", default=[], metavar="SYSTEM=SUFFIX",
                   help="a system streamed with another suffix than --streaming-suffix (repeatable)")
    p.add_argument("--manifests", type=Path, help="data/manifests with conv_cuts_<split>.jsonl.gz")
    p.add_argument("--timing", type=Path, help="the recipe's exp/timing.tsv")
    p.add_argument("--n-bootstrap", type=int, default=1000)
    p.add_argument("--command", default="", help="the command that reproduces the run")
    p.add_argument("--note", default="", help="a paragraph under the title (e.g. what was reduced)")
    p.add_argument("--title", default="synth_assistant / sts: separator-transducer-segmenter")
    p.add_argument("--summary-sets", default="conv:train,conv:dev,conv:test",
                   help="prefix:split,... the manifests (<prefix>_cuts_<split>.jsonl.gz) the summary table counts")
    p.add_argument("--summary-title", default="Conversations (simulated, speakers disjoint across splits)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    from serac.multitalker.report import write_results

    try:
        write_results(args.systems.split(), args.exp_root, args.set_name, args.suffix, args.out,
                      args.streaming_set, args.streaming_suffix, args.manifests, args.timing, args.n_bootstrap,
                      args.command, title=args.title, note=args.note, summary_sets=args.summary_sets.split(","),
                      summary_title=args.summary_title, suffixes=system_suffixes(args.suffix_of, "--suffix-of"),
                      streaming_suffixes=system_suffixes(args.streaming_suffix_of, "--streaming-suffix-of"))
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(str(e)) from None
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
