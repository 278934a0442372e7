"""Word error rate scoring in icefall's file formats, with NIST sclite's alignment.

Files written by a decode (icefall's names and layouts, so existing tooling keeps working)::

    recogs-<set>-<suffix>.txt      per cut: ``{cut_id}:\\tref=[...]`` and ``{cut_id}:\\thyp=[...]``
    errs-<set>-<suffix>.txt        %WER line, error counts, per-utterance alignment, confusion lists
    wer-summary-<set>-<suffix>.txt ``settings\\tWER`` then one ``name\\twer`` row per setting

Alignment uses sclite's costs (insertion 3, deletion 3, substitution 4, correct 0) and
sclite's tie-breaking, so insertion/deletion/substitution counts equal those of
``sclite -r ref.trn trn -h hyp.trn trn -i rm`` exactly (checked in tests/test_wer.py).
icefall uses unit costs instead (kaldialign's default mode); the *total* error count is
usually the same, but the split into ins/del/sub, and on rare utterances the total, can differ.
sclite is the reference most papers quote, so we follow it.  Comparison is case-sensitive;
sclite folds case unless given ``-s``.

Usage::

    from serac.scoring.wer import store_transcripts, write_error_stats, write_wer_summary
    store_transcripts("recogs-test-greedy_search.txt", results)
    stats = write_error_stats("errs-test-greedy_search.txt", "test-greedy_search", results)
    write_wer_summary("wer-summary-test.txt", {"greedy_search": stats["wer"]})
"""
from __future__ import annotations

import ast
import logging
import re
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from serac.utils import atomic_write_text

PathLike = Union[str, Path]

# (cut_id, reference words, hypothesis words)
Result = Tuple[str, List[str], List[str]]
# One aligned position: (ref word or None for an insertion, hyp word or None for a deletion)
AlignedPair = Tuple[Optional[str], Optional[str]]

# sclite's default word costs (sclite -h: "-c" options); substitution < insertion + deletion
# but more than either, which decides how ambiguous alignments are split.
SCLITE_INS_COST = 3
SCLITE_DEL_COST = 3
SCLITE_SUB_COST = 4

# icefall writes "*" for the empty side of an insertion/deletion in the errs file
_EPS = "*"

logger = logging.getLogger(__name__)


def align(ref: Sequence[str], hyp: Sequence[str]) -> List[AlignedPair]:
    """Minimum-cost alignment of ``hyp`` to ``ref`` with sclite's costs and tie-breaking.

    Returns pairs ``(ref_word, hyp_word)``; ``ref_word`` is None for an insertion and
    ``hyp_word`` is None for a deletion.  Among equal-cost alignments sclite prefers, in each
    DP cell, substitution/match over deletion over insertion (``net_dp.c``); we do the same,
    which is what makes the ins/del/sub split identical to sclite's, not just the cost.
    """
    num_ref, num_hyp = len(ref), len(hyp)
    # cost[i][j]: best cost of aligning ref[:i] with hyp[:j]; move[i][j]: last step taken
    cost = [[0] * (num_hyp + 1) for _ in range(num_ref + 1)]
    move = [[""] * (num_hyp + 1) for _ in range(num_ref + 1)]
    for j in range(1, num_hyp + 1):
        cost[0][j] = cost[0][j - 1] + SCLITE_INS_COST
        move[0][j] = "I"
    for i in range(1, num_ref + 1):
        cost[i][0] = cost[i - 1][0] + SCLITE_DEL_COST
        move[i][0] = "D"
    for i in range(1, num_ref + 1):
        ref_word = ref[i - 1]
        prev_row, row, row_move = cost[i - 1], cost[i], move[i]
        for j in range(1, num_hyp + 1):
            diagonal = prev_row[j - 1] + (0 if ref_word == hyp[j - 1] else SCLITE_SUB_COST)
            deletion = prev_row[j] + SCLITE_DEL_COST
            insertion = row[j - 1] + SCLITE_INS_COST
            if diagonal <= deletion and diagonal <= insertion:
                row[j], row_move[j] = diagonal, "S"
            elif deletion < insertion:
                row[j], row_move[j] = deletion, "D"
            else:
                row[j], row_move[j] = insertion, "I"

    pairs: List[AlignedPair] = []
    i, j = num_ref, num_hyp
    while i > 0 or j > 0:
        step = move[i][j]
        if step == "S":
            pairs.append((ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif step == "D":
            pairs.append((ref[i - 1], None))
            i -= 1
        else:
            pairs.append((None, hyp[j - 1]))
            j -= 1
    pairs.reverse()
    return pairs


def error_counts(ref: Sequence[str], hyp: Sequence[str]) -> Tuple[int, int, int]:
    """``(insertions, deletions, substitutions)`` of ``hyp`` against ``ref`` (sclite alignment)."""
    num_ins = num_del = num_sub = 0
    for ref_word, hyp_word in align(ref, hyp):
        if ref_word is None:
            num_ins += 1
        elif hyp_word is None:
            num_del += 1
        elif ref_word != hyp_word:
            num_sub += 1
    return num_ins, num_del, num_sub


def _check_results(results: Sequence[Result], what: str) -> List[Result]:
    """Refuse empty or duplicated results, sorted by cut id (icefall's order)."""
    results = list(results)
    if not results:
        raise ValueError(f"{what}: no results to score (empty result list)")
    seen = set()
    for item in results:
        if len(item) != 3:
            raise ValueError(f"{what}: expected (cut_id, ref_words, hyp_words), got {item!r}")
        cut_id, ref, hyp = item
        if cut_id in seen:
            raise ValueError(f"{what}: duplicate cut id {cut_id!r} in the results")
        seen.add(cut_id)
        for side, words in (("ref", ref), ("hyp", hyp)):
            if isinstance(words, str):
                raise TypeError(
                    f"{what}: {side} of cut {cut_id!r} is a string; pass a list of words "
                    f"(e.g. text.split())"
                )
    return sorted(results, key=lambda r: r[0])


def wer_stats(results: Sequence[Result]) -> Dict[str, float]:
    """Counts and %WER of ``results`` without writing anything.

    Returns ``{"wer", "ins", "del", "sub", "errs", "words", "utts"}``; ``wer`` is a percentage
    (not rounded).  Raises ValueError on an empty list, duplicate cut ids, or zero reference words.
    """
    results = _check_results(results, "wer_stats")
    num_ins = num_del = num_sub = num_words = 0
    for _, ref, hyp in results:
        ins, dels, subs = error_counts(ref, hyp)
        num_ins, num_del, num_sub = num_ins + ins, num_del + dels, num_sub + subs
        num_words += len(ref)
    return _stats_dict(num_ins, num_del, num_sub, num_words, len(results))


def _stats_dict(num_ins: int, num_del: int, num_sub: int, num_words: int, num_utts: int) -> Dict[str, float]:
    if num_words == 0:
        raise ValueError("WER is undefined: the references contain no words")
    num_errs = num_ins + num_del + num_sub
    return {
        "wer": 100.0 * num_errs / num_words,
        "ins": num_ins,
        "del": num_del,
        "sub": num_sub,
        "errs": num_errs,
        "words": num_words,
        "utts": num_utts,
    }


# ---------------------------------------------------------------------------------------------
# recogs files
# ---------------------------------------------------------------------------------------------


def store_transcripts(path: PathLike, results: Iterable[Result]) -> None:
    """Write icefall's recogs file: for each cut (sorted by id) a ``ref=`` and a ``hyp=`` line
    holding the Python repr of the word lists."""
    results = _check_results(list(results), f"store_transcripts({path})")
    lines = []
    for cut_id, ref, hyp in results:
        lines.append(f"{cut_id}:\tref={list(ref)!r}")
        lines.append(f"{cut_id}:\thyp={list(hyp)!r}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def load_transcripts(path: PathLike) -> List[Result]:
    """Read a recogs file written by :func:`store_transcripts` (or by icefall).

    Lines other than ``ref=`` / ``hyp=`` (e.g. icefall's ``timestamp_ref=``) are ignored.  A word
    list stored as a plain string is split on whitespace.  Malformed lines raise ValueError naming
    the file and line number.  Returns results sorted by cut id.
    """
    path = Path(path)
    refs: Dict[str, List[str]] = {}
    hyps: Dict[str, List[str]] = {}
    order: List[str] = []
    field_re = re.compile(r"^([A-Za-z_]+)=(.*)$", re.DOTALL)
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            cut_id, sep, rest = line.partition(":\t")
            match = field_re.match(rest) if sep else None
            if not sep or not cut_id or match is None:
                raise ValueError(f"{where}: expected '<cut_id>:\\tref=[...]' or '...hyp=[...]', got {line!r}")
            field, value_text = match.groups()
            if field not in ("ref", "hyp"):
                continue
            try:
                value = ast.literal_eval(value_text)
            except (ValueError, SyntaxError) as e:
                raise ValueError(f"{where}: cannot parse the {field} of cut {cut_id!r}: {e}") from None
            if isinstance(value, str):
                value = value.split()
            if not isinstance(value, (list, tuple)) or not all(isinstance(w, str) for w in value):
                raise ValueError(f"{where}: {field} of cut {cut_id!r} is not a list of words: {value_text}")
            target = refs if field == "ref" else hyps
            if cut_id in target:
                raise ValueError(f"{where}: second {field}= line for cut {cut_id!r} (duplicate cut id)")
            if cut_id not in refs and cut_id not in hyps:
                order.append(cut_id)
            target[cut_id] = list(value)
    results: List[Result] = []
    for cut_id in order:
        if cut_id not in refs or cut_id not in hyps:
            missing = "ref" if cut_id not in refs else "hyp"
            raise ValueError(f"{path}: cut {cut_id!r} has no {missing}= line")
        results.append((cut_id, refs[cut_id], hyps[cut_id]))
    if not results:
        raise ValueError(f"{path}: no ref=/hyp= lines found (empty recogs file?)")
    return sorted(results, key=lambda r: r[0])


# ---------------------------------------------------------------------------------------------
# errs and wer-summary files
# ---------------------------------------------------------------------------------------------


def _merge_successive_errors(pairs: List[AlignedPair]) -> List[Tuple[str, str]]:
    """icefall's PER-UTT DETAILS grouping: a run of adjacent errors is shown as one
    ``(ref words->hyp words)`` chunk, which reads better than one bracket per word."""
    chunks: List[Tuple[List[str], List[str], bool]] = []
    for ref_word, hyp_word in pairs:
        is_error = ref_word != hyp_word
        if is_error and chunks and chunks[-1][2]:
            refs, hyps, _ = chunks[-1]
        else:
            refs, hyps = [], []
            chunks.append((refs, hyps, is_error))
        if ref_word is not None:
            refs.append(ref_word)
        if hyp_word is not None:
            hyps.append(hyp_word)
    return [(" ".join(r) if r else _EPS, " ".join(h) if h else _EPS) for r, h, _ in chunks]


def write_error_stats(path: PathLike, test_set_name: str, results: Sequence[Result]) -> Dict[str, float]:
    """Write icefall's errs file for ``results`` and return the totals.

    Layout (as icefall's ``write_error_stats``)::

        %WER = 12.34
        Errors: X insertions, Y deletions, Z substitutions, over N reference words (C correct)
        Search below for sections starting with PER-UTT DETAILS:, SUBSTITUTIONS:, ...
        PER-UTT DETAILS / SUBSTITUTIONS / DELETIONS / INSERTIONS / PER-WORD STATS sections

    Returns ``{"wer": percent (unrounded), "ins", "del", "sub", "errs", "words", "utts"}``.
    Raises ValueError for an empty result list, a duplicate cut id, or zero reference words.
    """
    results = _check_results(results, f"write_error_stats({test_set_name})")
    subs: Dict[Tuple[str, str], int] = defaultdict(int)
    ins: Dict[str, int] = defaultdict(int)
    dels: Dict[str, int] = defaultdict(int)
    # per word: correct, as-ref-in-substitution, as-hyp-in-substitution, inserted, deleted
    word_counts: Dict[str, List[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    num_correct = 0
    num_words = 0
    per_utt_lines = []
    for cut_id, ref, hyp in results:
        pairs = align(ref, hyp)
        num_words += len(ref)
        for ref_word, hyp_word in pairs:
            if ref_word is None:
                ins[hyp_word] += 1
                word_counts[hyp_word][3] += 1
            elif hyp_word is None:
                dels[ref_word] += 1
                word_counts[ref_word][4] += 1
            elif ref_word != hyp_word:
                subs[(ref_word, hyp_word)] += 1
                word_counts[ref_word][1] += 1
                word_counts[hyp_word][2] += 1
            else:
                word_counts[ref_word][0] += 1
                num_correct += 1
        chunks = _merge_successive_errors(pairs)
        per_utt_lines.append(
            f"{cut_id}:\t" + " ".join(r if r == h else f"({r}->{h})" for r, h in chunks)
        )

    stats = _stats_dict(sum(ins.values()), sum(dels.values()), sum(subs.values()), num_words, len(results))
    logger.info(
        f"[{test_set_name}] %WER {stats['wer']:.2f}% [{stats['errs']} / {num_words}, "
        f"{stats['ins']} ins, {stats['del']} del, {stats['sub']} sub ]"
    )

    out = [
        f"%WER = {stats['wer']:.2f}",
        f"Errors: {stats['ins']} insertions, {stats['del']} deletions, {stats['sub']} substitutions, "
        f"over {num_words} reference words ({num_correct} correct)",
        "Search below for sections starting with PER-UTT DETAILS:, SUBSTITUTIONS:, DELETIONS:, "
        "INSERTIONS:, PER-WORD STATS:",
        "",
        "PER-UTT DETAILS: corr or (ref->hyp)  ",
        *per_utt_lines,
        "",
        "SUBSTITUTIONS: count ref -> hyp",
    ]
    # icefall's order: count descending, ties broken by the words descending
    for count, (ref_word, hyp_word) in sorted(((v, k) for k, v in subs.items()), reverse=True):
        out.append(f"{count}   {ref_word} -> {hyp_word}")
    out += ["", "DELETIONS: count ref"]
    for count, word in sorted(((v, k) for k, v in dels.items()), reverse=True):
        out.append(f"{count}   {word}")
    out += ["", "INSERTIONS: count hyp"]
    for count, word in sorted(((v, k) for k, v in ins.items()), reverse=True):
        out.append(f"{count}   {word}")
    out += ["", "PER-WORD STATS: word  corr tot_errs count_in_ref count_in_hyp"]
    for _, word, counts in sorted(((sum(v[1:]), k, v) for k, v in word_counts.items()), reverse=True):
        corr, ref_sub, hyp_sub, num_inserted, num_deleted = counts
        tot_errs = ref_sub + hyp_sub + num_inserted + num_deleted
        out.append(f"{word}   {corr} {tot_errs} {corr + ref_sub + num_deleted} {corr + hyp_sub + num_inserted}")
    atomic_write_text(path, "\n".join(out) + "\n")
    return stats


def write_wer_summary(path: PathLike, rows: Mapping[str, float]) -> None:
    """icefall's wer-summary file: ``settings\\tWER`` then ``name\\twer`` by WER ascending."""
    if not rows:
        raise ValueError(f"write_wer_summary({path}): no rows")
    lines = ["settings\tWER"]
    for name, wer in sorted(rows.items(), key=lambda kv: (kv[1], kv[0])):
        lines.append(f"{name}\t{wer:.2f}")
    atomic_write_text(path, "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------
# sclite trn files (for cross-checking with NIST tools)
# ---------------------------------------------------------------------------------------------

_TRN_UNSAFE = re.compile(r"[\s()]")


def trn_utterance_id(cut_id: str, speaker: Optional[str] = None) -> str:
    """The ``(speaker-utterance)`` id sclite's ``-i rm`` mode parses.

    sclite takes everything before the first ``-`` as the speaker, so ``-`` is replaced in the
    speaker part; whitespace and parentheses would break the trn line and are replaced in both.
    Without a speaker, every utterance goes to speaker ``spk``.
    """
    speaker_part = _TRN_UNSAFE.sub("_", speaker if speaker else "spk").replace("-", "_")
    return f"({speaker_part}-{_TRN_UNSAFE.sub('_', cut_id)})"


def write_trn(
    path: PathLike,
    results: Sequence[Result],
    which: str = "ref",
    speakers: Optional[Mapping[str, str]] = None,
) -> None:
    """Write the ref or hyp side of ``results`` as an sclite trn file (``words (spk-utt)``).

    Cross-check with ``sctk sclite -r ref.trn trn -h hyp.trn trn -i rm -o sum stdout``
    (add ``-s`` for case-sensitive scoring, as ours is).  ``speakers`` maps cut id to speaker
    so sclite's per-speaker table is meaningful.
    """
    if which not in ("ref", "hyp"):
        raise ValueError(f"write_trn: which must be 'ref' or 'hyp', not {which!r}")
    results = _check_results(results, f"write_trn({path})")
    lines = []
    for cut_id, ref, hyp in results:
        words = ref if which == "ref" else hyp
        speaker = speakers.get(cut_id) if speakers is not None else None
        ident = trn_utterance_id(cut_id, speaker)
        lines.append(f"{' '.join(words)} {ident}" if words else ident)
    atomic_write_text(path, "\n".join(lines) + "\n")
