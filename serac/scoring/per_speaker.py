"""Per-speaker WER, the table NIST sclite prints per speaker (``-o sum`` / ``rsum``, the rows its ``spk`` report
breaks down), from serac's results and the cuts' speakers.

Counts come from serac's sclite alignment (:func:`serac.scoring.wer.error_counts`), so every row equals sclite's
on the trn files :func:`serac.scoring.wer.write_trn` writes (tests/test_per_speaker.py runs sclite when installed).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from serac.scoring.wer import error_counts
from serac.utils import PathLike, atomic_write_text

Result = Tuple[str, Sequence[str], Sequence[str]]
HEADER = ["speaker", "utts", "words", "corr", "sub", "del", "ins", "err", "wer", "sent_err"]


@dataclass
class SpeakerCounts:
    utts: int = 0
    words: int = 0
    sub: int = 0
    dele: int = 0
    ins: int = 0
    sent_errs: int = 0

    @property
    def corr(self) -> int:
        return self.words - self.sub - self.dele

    @property
    def errs(self) -> int:
        return self.sub + self.dele + self.ins

    @property
    def wer(self) -> float:
        """Percent; sclite prints Err of a speaker without words as 0 (no insertions) or 100x insertions."""
        return 100.0 * self.errs / self.words if self.words else (100.0 * self.ins if self.ins else 0.0)

    @property
    def sent_err(self) -> float:
        return 100.0 * self.sent_errs / self.utts if self.utts else 0.0

    def add(self, ref: Sequence[str], hyp: Sequence[str]) -> None:
        ins, dele, sub = error_counts(ref, hyp)
        self.utts += 1
        self.words += len(ref)
        self.ins, self.dele, self.sub = self.ins + ins, self.dele + dele, self.sub + sub
        self.sent_errs += int(ins + dele + sub > 0)


def cut_speakers(manifest: PathLike) -> Dict[str, Optional[str]]:
    """cut id -> speaker of its (first) supervision, from a cuts or supervisions manifest."""
    from lhotse import load_manifest_lazy

    speakers = {}
    for item in load_manifest_lazy(manifest):
        sups = getattr(item, "supervisions", None)
        sup = sups[0] if sups else item
        speakers[item.id] = getattr(sup, "speaker", None)
    return speakers


def speaker_counts(results: Iterable[Result], speakers: Mapping[str, Optional[str]],
                   default_speaker: str = "spk") -> Dict[str, SpeakerCounts]:
    """Counts per speaker (``speakers`` maps cut id to speaker; a cut without one counts as ``default_speaker``,
    as :func:`serac.scoring.wer.trn_utterance_id` names it). A result whose cut is not in ``speakers`` is an
    error: scoring it under a made-up speaker would hide a mismatched cut set."""
    counts: Dict[str, SpeakerCounts] = {}
    for cut_id, ref, hyp in results:
        if cut_id not in speakers:
            raise KeyError(f"cut {cut_id} of the results is not in the cuts given for the speakers")
        speaker = speakers[cut_id] or default_speaker
        counts.setdefault(speaker, SpeakerCounts()).add(ref, hyp)
    return counts


def per_speaker_rows(counts: Mapping[str, SpeakerCounts]) -> List[List[str]]:
    """Rows sorted by speaker (as sclite sorts them), then the total ``Sum``."""
    total = SpeakerCounts()
    rows = []
    for speaker in sorted(counts):
        c = counts[speaker]
        rows.append([speaker, str(c.utts), str(c.words), str(c.corr), str(c.sub), str(c.dele), str(c.ins),
                     str(c.errs), f"{c.wer:.2f}", f"{c.sent_err:.2f}"])
        total.utts += c.utts
        total.words += c.words
        total.sub, total.dele, total.ins = total.sub + c.sub, total.dele + c.dele, total.ins + c.ins
        total.sent_errs += c.sent_errs
    rows.append(["Sum", str(total.utts), str(total.words), str(total.corr), str(total.sub), str(total.dele),
                 str(total.ins), str(total.errs), f"{total.wer:.2f}", f"{total.sent_err:.2f}"])
    return rows


def write_per_speaker_table(path: PathLike, results: Iterable[Result], speakers: Mapping[str, Optional[str]]
                            ) -> Dict[str, SpeakerCounts]:
    """A TSV: speaker, utts, words, corr, sub, del, ins, err, wer (%), sent_err (%), one row per speaker and Sum."""
    counts = speaker_counts(results, speakers)
    lines = ["\t".join(HEADER)] + ["\t".join(r) for r in per_speaker_rows(counts)]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return counts
