"""Token n-gram language models (interpolated Kneser-Ney) in ARPA format, for shallow fusion in beam search.

The model is over the transducer's own output tokens (BPE pieces), trained on the training transcripts, so it
needs no lexicon and never meets an out-of-vocabulary word. Training is interpolated Kneser-Ney (Chen &
Goodman 1999) with one absolute discount per order, D = n1 / (n1 + 2 n2) from that order's count-of-counts:

    p(w | h) = max(c(h w) - D, 0) / c(h .) + D * N1+(h .) / c(h .) * p(w | h')        (h' = h minus its first token)

where c is the raw count at the highest order and the continuation count N1+(. g) (number of distinct tokens
seen before g) at the lower orders (raw counts for n-grams that start with <s>, which nothing precedes); the
unigram level interpolates with the uniform distribution over the vocabulary, so every token has a probability.
Written in backoff form, p(w | h) = bow(h) p(w | h') for unseen h w, which is exactly the interpolated formula:
the ARPA file is what SRILM / KenLM / kaldilm read and write. Sentence ends score log p(</s> | h).
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

import torch

from serac.utils import atomic_write_text

BOS, EOS = "<s>", "</s>"
LOG10 = math.log(10.0)


class NgramLm:
    """A backoff n-gram model over integer tokens 0..vocab_size-1. Internally the sentence start is
    ``vocab_size`` and the sentence end ``vocab_size + 1``; :meth:`log_probs` returns natural-log scores for
    the vocabulary plus the sentence end (index ``vocab_size``)."""

    def __init__(self, order: int, vocab_size: int, logp: Dict[Tuple[int, ...], float],
                 bow: Dict[Tuple[int, ...], float]):
        if order < 1:
            raise ValueError(f"n-gram order must be >= 1, got {order}")
        self.order, self.vocab_size = order, vocab_size
        self.bos, self.eos = vocab_size, vocab_size + 1
        self.logp, self.bow = logp, bow  # natural logs
        self._cache: Dict[Tuple[int, ...], torch.Tensor] = {}
        self._successors: Dict[Tuple[int, ...], List[Tuple[int, float]]] = defaultdict(list)
        for gram, lp in logp.items():
            self._successors[gram[:-1]].append((gram[-1], lp))

    # ---- training -------------------------------------------------------------------------------------------
    @classmethod
    def train(cls, sentences: Iterable[Sequence[int]], order: int, vocab_size: int) -> "NgramLm":
        """Interpolated Kneser-Ney on token sequences (each a sentence without <s> / </s>)."""
        if order < 1:
            raise ValueError(f"n-gram order must be >= 1, got {order}")
        bos, eos = vocab_size, vocab_size + 1
        counts: List[Dict[Tuple[int, ...], float]] = [defaultdict(float) for _ in range(order + 1)]
        n_sent = 0
        for sent in sentences:
            toks = list(sent)
            bad = [t for t in toks if not 0 <= t < vocab_size]
            if bad:
                raise ValueError(f"sentence {n_sent}: token ids {bad[:5]} outside 0..{vocab_size - 1}")
            seq = [bos] + toks + [eos]
            n_sent += 1
            for i in range(1, len(seq)):
                # the longest n-gram ending at i; near the start it is shorter and begins with <s>
                gram = tuple(seq[max(0, i - order + 1) : i + 1])
                counts[len(gram)][gram] += 1.0
        if n_sent == 0:
            raise ValueError("no training sentences")
        # Kneser-Ney counts: raw at the highest order and for n-grams that begin with <s> (nothing precedes them);
        # every other lower-order n-gram g counts its distinct left extensions, N1+(. g)
        for k in range(order, 1, -1):
            for gram in counts[k]:
                counts[k - 1][gram[1:]] += 1.0

        def discount(k: int) -> float:
            n1 = sum(1 for c in counts[k].values() if c == 1)
            n2 = sum(1 for c in counts[k].values() if c == 2)
            return min(max(n1 / (n1 + 2 * n2), 0.1), 0.9) if n1 + n2 > 0 else 0.5

        probs: Dict[Tuple[int, ...], float] = {}
        bows: Dict[Tuple[int, ...], float] = {}
        # unigrams: interpolate with the uniform distribution over the vocabulary plus </s>
        d1 = discount(1)
        total1 = sum(counts[1].values())
        seen1 = len(counts[1])
        uniform = 1.0 / (vocab_size + 1)
        for w in list(range(vocab_size)) + [eos]:
            c = counts[1].get((w,), 0.0)
            probs[(w,)] = max(c - d1, 0.0) / total1 + d1 * seen1 / total1 * uniform
        for k in range(2, order + 1):
            d = discount(k)
            hist_total: Dict[Tuple[int, ...], float] = defaultdict(float)
            hist_types: Dict[Tuple[int, ...], int] = defaultdict(int)
            for gram, c in counts[k].items():
                hist_total[gram[:-1]] += c
                hist_types[gram[:-1]] += 1
            for h, tot in hist_total.items():
                bows[h] = d * hist_types[h] / tot
            for gram, c in counts[k].items():
                h = gram[:-1]
                probs[gram] = (c - d) / hist_total[h] + bows[h] * cls._backoff_prob(probs, bows, gram[1:])
        logp = {g: math.log(p) for g, p in probs.items()}
        bow = {h: math.log(b) for h, b in bows.items()}
        return cls(order, vocab_size, logp, bow)

    @staticmethod
    def _backoff_prob(probs, bows, gram: Tuple[int, ...]) -> float:
        p = probs.get(gram)
        if p is not None:
            return p
        return bows.get(gram[:-1], 1.0) * NgramLm._backoff_prob(probs, bows, gram[1:])

    # ---- scoring --------------------------------------------------------------------------------------------
    def score(self, context: Sequence[int], token: int) -> float:
        """Natural-log p(token | context); ``context`` may begin with ``self.bos``; ``token`` may be ``self.eos``."""
        h = self.state(context)
        acc = 0.0
        while True:
            lp = self.logp.get(h + (token,))
            if lp is not None:
                return acc + lp
            if not h:
                raise KeyError(f"token {token} has no unigram probability")
            acc += self.bow.get(h, 0.0)
            h = h[1:]

    def state(self, context: Sequence[int]) -> Tuple[int, ...]:
        """The part of ``context`` the model can use: its last order-1 tokens."""
        return tuple(context[-(self.order - 1):]) if self.order > 1 else ()

    def log_probs(self, context: Sequence[int]) -> torch.Tensor:
        """(vocab_size + 1,) natural-log scores of every token and, last, of the sentence end, after ``context``."""
        h = self.state(context)
        out = self._cache.get(h)
        if out is not None:
            return out
        if h:
            out = self.log_probs(h[1:]) + self.bow.get(h, 0.0)
        else:
            out = torch.full((self.vocab_size + 1,), -math.inf, dtype=torch.float64)
        succ = self._successors.get(h)
        if succ:
            idx = torch.tensor([w if w != self.eos else self.vocab_size for w, _ in succ])
            out = out.clone()
            out[idx] = torch.tensor([lp for _, lp in succ], dtype=torch.float64)
        self._cache[h] = out
        return out

    def sentence_logprob(self, tokens: Sequence[int]) -> float:
        seq = [self.bos] + list(tokens)
        return sum(self.score(seq[: i + 1], seq[i + 1]) for i in range(len(tokens))) + self.score(seq, self.eos)

    # ---- ARPA -----------------------------------------------------------------------------------------------
    def write_arpa(self, path: str | Path, symbols: Sequence[str]) -> None:
        """ARPA file (log10 scores) with ``symbols[i]`` naming token i, plus <s> and </s>."""
        if len(symbols) != self.vocab_size:
            raise ValueError(f"{len(symbols)} symbols for a vocabulary of {self.vocab_size}")
        names = list(symbols) + [BOS, EOS]
        by_order: Dict[int, List[Tuple[int, ...]]] = defaultdict(list)
        for g in self.logp:
            by_order[len(g)].append(g)
        # <s> is a context, never predicted: a unigram entry with a dummy probability, as SRILM writes it
        unigram_bos = (self.bos,)
        by_order[1].append(unigram_bos)
        lines = ["\\data\\"] + [f"ngram {k}={len(by_order[k])}" for k in range(1, self.order + 1)] + [""]
        for k in range(1, self.order + 1):
            lines.append(f"\\{k}-grams:")
            for g in sorted(by_order[k]):
                lp = -99.0 if g == unigram_bos else self.logp[g] / LOG10
                row = f"{lp:.6f}\t{' '.join(names[t] for t in g)}"
                if k < self.order and g in self.bow:
                    row += f"\t{self.bow[g] / LOG10:.6f}"
                lines.append(row)
            lines.append("")
        lines.append("\\end\\")
        atomic_write_text(Path(path), "\n".join(lines) + "\n")

    @classmethod
    def read_arpa(cls, path: str | Path, symbols: Sequence[str]) -> "NgramLm":
        """Read an ARPA file over ``symbols`` (token i is ``symbols[i]``) plus <s> and </s>."""
        path = Path(path)
        ids = {s: i for i, s in enumerate(symbols)}
        ids[BOS], ids[EOS] = len(symbols), len(symbols) + 1
        logp: Dict[Tuple[int, ...], float] = {}
        bow: Dict[Tuple[int, ...], float] = {}
        order, section = 0, None
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line or line in ("\\data\\", "\\end\\"):
                    continue
                if line.startswith("ngram "):
                    order = max(order, int(line.split()[1].split("=")[0]))
                    continue
                if line.startswith("\\") and line.endswith("-grams:"):
                    section = int(line[1:].split("-")[0])
                    continue
                if section is None:
                    raise ValueError(f"{path}:{lineno}: unexpected line before any n-gram section: {line!r}")
                parts = line.split()
                if len(parts) not in (section + 1, section + 2):
                    raise ValueError(f"{path}:{lineno}: expected {section} tokens after the score: {line!r}")
                try:
                    gram = tuple(ids[t] for t in parts[1 : section + 1])
                except KeyError as e:
                    raise ValueError(f"{path}:{lineno}: token {e.args[0]!r} is not in the token list") from None
                if gram != (ids[BOS],):
                    logp[gram] = float(parts[0]) * LOG10
                if len(parts) == section + 2:
                    bow[gram] = float(parts[-1]) * LOG10
        if order == 0:
            raise ValueError(f"{path}: no \\data\\ header with ngram counts")
        missing = [s for i, s in enumerate(symbols) if (i,) not in logp]
        if missing:
            raise ValueError(f"{path}: tokens without a unigram probability: {missing[:5]}")
        return cls(order, len(symbols), logp, bow)


def load_lm(path: str | Path, symbols: Sequence[str]) -> NgramLm:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"language model {path} not found (did the LM stage run?)")
    return NgramLm.read_arpa(path, symbols)
