#!/usr/bin/env python3
"""Print where a transducer emits its tokens, frame by frame, against the speech energy (a diagnostic).

One line per cut: one character per encoder frame, '.' for a frame whose mean log-mel energy is in the lower 40%
of the cut's range, '#' above it, and the first letter of the token greedy search emits on that frame instead.
It shows whether a model emits a word at its onset, at its end, or not at all (docs/transducer-training.md,
yesno section).

Usage (in a recipe directory, after path.sh):
  python tools/emission_timeline.py --exp-dir exp/lstm --lang-dir data/lang_word --epoch 100 --avg 10 \
      --cuts data/fbank/yesno_cuts_test.jsonl.gz [--ids 1_1_1_1_1_0_0_0 0_1_0_1_0_0_0_0]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from lhotse import load_manifest_lazy

from serac.decode.job import load_model
from serac.transducer.search import greedy_search_batch


def timeline(model, tokenizer, feats: torch.Tensor) -> str:
    """The line for one cut's (T, F) features."""
    with torch.no_grad():
        enc, enc_lens = model.encode(feats.unsqueeze(0), torch.tensor([feats.size(0)]))
        frames: list = [[]]
        hyp = greedy_search_batch(model, enc, enc_lens, frames=frames)[0]
    factor = feats.size(0) // enc.size(1) if enc.size(1) else 1
    energy = feats[: enc.size(1) * factor].mean(1).view(-1, factor).mean(1)
    threshold = energy.min() + 0.4 * (energy.max() - energy.min())
    chars = ["#" if e > threshold else "." for e in energy.tolist()]
    for token, t in zip(hyp, frames[0]):
        chars[t] = (tokenizer.decode([token]).strip() or "?")[0]
    return "".join(chars)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--lang-dir", required=True)
    p.add_argument("--epoch", type=int, required=True)
    p.add_argument("--avg", type=int, default=1)
    p.add_argument("--cuts", required=True)
    p.add_argument("--ids", nargs="*", default=[], help="cut id prefixes (default: every cut)")
    args = p.parse_args()
    cuts = load_manifest_lazy(args.cuts)
    model = tokenizer = None
    for cut in cuts:
        if args.ids and not any(cut.id.startswith(i) for i in args.ids):
            continue
        feats = torch.from_numpy(cut.load_features())
        if model is None:
            model, tokenizer, _ = load_model(Path(args.exp_dir), Path(args.lang_dir), args.epoch, args.avg,
                                             feats.size(1))
        print(cut.id, timeline(model, tokenizer, feats))


if __name__ == "__main__":
    main()
