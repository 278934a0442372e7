"""Transcript checks for every set the trainer reads (training and validation alike), before the first step.

A cut the transducer loss cannot score is skipped and counted, with its id and the reason in the log, one summary
line per set and the full list in ``<exp-dir>/log/skipped-cuts-<set>.txt``:

- no supervision, or an empty transcript (the loss has no symbol to score);
- a word that is not in ``tokens.txt`` of a word/char lang without ``<unk>``;
- more tokens than encoder frames (the supervision's feature frames // the encoder's subsampling factor) with the
  modified or constrained transducer, which emits at most one symbol per frame (the loss needs T >= S).

A set in which every cut would be skipped is refused with an error naming its first cut: skipping would leave
nothing to train on or validate with.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

from lhotse import CutSet
from lhotse.utils import supervision_to_frames

from serac.data.tokenizer import Tokenizer
from serac.utils import atomic_write_text

#: the transducer topologies that emit at most one symbol per encoder frame (so need T >= S)
ONE_SYMBOL_PER_FRAME = ("modified", "constrained")
#: cut ids shown in the log per set; the file next to the log has all of them
MAX_LOGGED = 20


def transcript_problem(cut, tokenizer: Tokenizer, subsampling_factor: int, one_symbol_per_frame: bool
                       ) -> Optional[Tuple[str, str]]:
    """(kind, details) of why the transducer loss cannot score ``cut`` (its first supervision, as the trainer's
    batches hold one supervision per cut), or None."""
    if not cut.supervisions:
        return "no supervision", "the cut has no supervision"
    sup = cut.supervisions[0]
    text = (sup.text or "").strip()
    if not text:
        return "empty transcript", "empty transcript"
    try:
        num_tokens = len(tokenizer.encode(text))
    except KeyError as e:
        return "unknown token", str(e.args[0]) if e.args else f"{text!r} has a token not in tokens.txt"
    if num_tokens == 0:
        return "no tokens", f"transcript {text!r} encodes to no tokens"
    if one_symbol_per_frame and cut.num_frames is not None:
        # the frames the data loader gives this supervision (lhotse's own rule), then every encoder's floor division
        frames = supervision_to_frames(sup, cut.frame_shift, cut.sampling_rate, max_frames=cut.num_frames)[1]
        encoder_frames = frames // subsampling_factor
        if num_tokens > encoder_frames:
            return "more tokens than encoder frames", (f"{num_tokens} tokens > {encoder_frames} encoder frames ({frames} feature frames / "
                    f"subsampling {subsampling_factor}); the one-symbol-per-frame transducer needs T >= S")
    return None


def check_transcripts(cuts: CutSet, path: str | Path, set_name: str, tokenizer: Tokenizer, subsampling_factor: int,
                      rnnt_type: str, log_dir: Optional[Path] = None,
                      problem: Callable[..., Optional[Tuple[str, str]]] = transcript_problem) -> CutSet:
    """``cuts`` without those ``problem`` rejects (default :func:`transcript_problem`; an STS model checks whole
    conversations, serac.multitalker.training) in one pass over a lazy manifest (the returned set stays lazy).
    ``log_dir``: where ``skipped-cuts-<set_name>.txt`` is written (rank 0), None: nowhere."""
    one_per_frame = rnnt_type in ONE_SYMBOL_PER_FRAME
    problems: Dict[str, Tuple[str, str]] = {}
    total = 0
    for cut in cuts:
        total += 1
        why = problem(cut, tokenizer, subsampling_factor, one_per_frame)
        if why is not None:
            problems[cut.id] = why
    if total == 0:
        raise ValueError(f"{path}: the {set_name} set has no cuts")
    if len(problems) == total:
        first = next(iter(problems))
        raise ValueError(f"{path}: every one of the {total} cuts of the {set_name} set is unusable, e.g. cut {first}: "
                         f"{problems[first][1]}")
    out = Path(log_dir) / f"skipped-cuts-{set_name}.txt" if log_dir is not None else None
    if not problems:
        if out is not None:
            out.unlink(missing_ok=True)  # a list from an earlier run of this directory no longer holds
        return cuts
    listing = "".join(f"{cut_id}\t{why}\n" for cut_id, (_, why) in problems.items())
    where = ""
    if out is not None:
        atomic_write_text(out, listing)
        where = f"; all of them in {out}"
    for cut_id, (_, why) in list(problems.items())[:MAX_LOGGED]:
        logging.warning(f"{path}: cut {cut_id}: {why}; skipped")
    if len(problems) > MAX_LOGGED:
        logging.warning(f"{path}: ... and {len(problems) - MAX_LOGGED} more")
    reasons: Dict[str, int] = {}
    for kind, _ in problems.values():
        reasons[kind] = reasons.get(kind, 0) + 1
    logging.warning(f"{set_name} set: skipped {len(problems)} of {total} cuts (" +
                    ", ".join(f"{n} {kind}" for kind, n in reasons.items()) + f"){where}")
    bad = set(problems)
    return cuts.filter(lambda c: c.id not in bad)
