"""Token inventories in ``data/lang_*``: sentencepiece BPE (``bpe.model`` + ``tokens.txt``) or a plain
word / character list (``tokens.txt`` only, for tiny corpora such as yesno).

Id 0 is always ``<blk>`` (the transducer blank), as in icefall.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, List, Sequence

from serac.utils import atomic_path, atomic_write_text

BLANK = "<blk>"
UNK = "<unk>"


class Tokenizer:
    """Encode text to ids and back, for whichever kind of lang dir it is given."""

    def __init__(self, lang_dir: str | Path) -> None:
        self.lang_dir = Path(lang_dir)
        tokens_txt = self.lang_dir / "tokens.txt"
        if not tokens_txt.is_file():
            raise FileNotFoundError(f"{tokens_txt} not found: prepare the lang dir first (steps/prepare_lang.sh)")
        self.id2token: List[str] = []
        for n, line in enumerate(tokens_txt.read_text().splitlines(), 1):
            parts = line.split()
            if len(parts) != 2 or int(parts[1]) != len(self.id2token):
                raise ValueError(f"{tokens_txt}:{n}: expected '<token> {len(self.id2token)}', got {line!r}")
            self.id2token.append(parts[0])
        if self.id2token[0] != BLANK:
            raise ValueError(f"{tokens_txt}: id 0 must be {BLANK}, got {self.id2token[0]}")
        self.token2id = {t: i for i, t in enumerate(self.id2token)}
        self.blank_id = 0
        bpe_model = self.lang_dir / "bpe.model"
        self.kind = (self.lang_dir / "kind").read_text().strip() if (self.lang_dir / "kind").exists() else (
            "bpe" if bpe_model.exists() else "word")
        self.sp = None
        if self.kind == "bpe":
            import sentencepiece as spm

            self.sp = spm.SentencePieceProcessor(model_file=str(bpe_model))
            if self.sp.get_piece_size() != len(self.id2token):
                raise ValueError(f"{bpe_model} has {self.sp.get_piece_size()} pieces but tokens.txt has "
                                 f"{len(self.id2token)}")
        self.unk_id = self.token2id.get(UNK)

    @property
    def vocab_size(self) -> int:
        return len(self.id2token)

    def encode(self, text: str) -> List[int]:
        if self.sp is not None:
            return self.sp.encode(text, out_type=int)
        units = list(text.replace(" ", "")) if self.kind == "char" else text.split()
        ids = []
        for u in units:
            if u in self.token2id:
                ids.append(self.token2id[u])
            elif self.unk_id is not None:
                ids.append(self.unk_id)
            else:
                raise KeyError(f"token {u!r} of {text!r} is not in {self.lang_dir}/tokens.txt and there is no {UNK}")
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        if self.sp is not None:
            return self.sp.decode([int(i) for i in ids])
        sep = "" if self.kind == "char" else " "
        return sep.join(self.id2token[i] for i in ids)


def prepare_word_lang(texts: Iterable[str], lang_dir: str | Path, kind: str = "word",
                      extra_symbols: Sequence[str] = ()) -> None:
    """Write a word (or char) token list with ``<blk>`` at 0, then any ``extra_symbols`` (e.g. the turn tokens
    ``<sot>``/``<eot>`` of serac.multitalker), and ``<unk>`` last."""
    counts: Counter = Counter()
    for t in texts:
        counts.update(list(t.replace(" ", "")) if kind == "char" else t.split())
    tokens = [BLANK] + list(extra_symbols) + sorted(set(counts) - set(extra_symbols)) + [UNK]
    lang_dir = Path(lang_dir)
    atomic_write_text(lang_dir / "tokens.txt", "".join(f"{t} {i}\n" for i, t in enumerate(tokens)))
    atomic_write_text(lang_dir / "kind", kind + "\n")


def prepare_bpe_lang(texts: Iterable[str], lang_dir: str | Path, vocab_size: int,
                     extra_symbols: Sequence[str] = ()) -> None:
    """Train a sentencepiece BPE model with ``<blk>`` = 0, ``<sos/eos>`` = 1, ``<unk>`` = 2 (icefall's layout), then
    any ``extra_symbols`` as unsplittable pieces (e.g. the turn tokens ``<sot>``/``<eot>`` of serac.multitalker)."""
    import sentencepiece as spm

    lang_dir = Path(lang_dir)
    lang_dir.mkdir(parents=True, exist_ok=True)
    transcript = lang_dir / "transcript_words.txt"
    with atomic_path(transcript) as tmp:
        with open(tmp, "w") as f:
            for t in texts:
                f.write(t + "\n")
    with atomic_path(lang_dir / "bpe.model") as tmp:
        prefix = str(tmp)[: -len(".model")]
        spm.SentencePieceTrainer.train(
            input=str(transcript), vocab_size=vocab_size, model_type="bpe", model_prefix=prefix,
            character_coverage=1.0, input_sentence_size=100_000_000, bos_id=-1, eos_id=-1, unk_id=2,
            user_defined_symbols=[BLANK, "<sos/eos>", *extra_symbols], num_threads=1, minloglevel=2)
        Path(prefix + ".vocab").unlink(missing_ok=True)
    sp = spm.SentencePieceProcessor(model_file=str(lang_dir / "bpe.model"))
    atomic_write_text(lang_dir / "tokens.txt", "".join(f"{sp.id_to_piece(i)} {i}\n" for i in range(sp.get_piece_size())))
    atomic_write_text(lang_dir / "kind", "bpe\n")
