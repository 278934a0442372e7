"""Token n-gram LM: interpolated Kneser-Ney by hand, normalisation, ARPA round trip, bad input."""
import math
import random

import pytest
import torch

from serac.lm.ngram import NgramLm


def test_bigram_matches_hand_computed_kneser_ney():
    # vocab {0, 1}; <s> = 2, </s> = 3; sentences "0 1" and "0"
    lm = NgramLm.train([[0, 1], [0]], order=2, vocab_size=2)
    # continuation counts N1+(. w): 0 <- {<s>}, 1 <- {0}, </s> <- {0, 1}; D1 = n1/(n1+2 n2) = 2/4
    p1 = {0: 0.5 / 4 + 0.5 * 3 / 4 / 3, 1: 0.5 / 4 + 0.5 * 3 / 4 / 3, 3: 1.5 / 4 + 0.5 * 3 / 4 / 3}
    assert p1 == pytest.approx({0: 0.25, 1: 0.25, 3: 0.5})
    # bigram raw counts: (<s> 0) 2, (0 1) 1, (0 </s>) 1, (1 </s>) 1; D2 = 3 / (3 + 2) = 0.6
    expect = {
        (2, 0): (2 - 0.6) / 2 + 0.3 * 0.25,   # bow(<s>) = 0.6 * 1 / 2
        (2, 1): 0.3 * 0.25,
        (2, 3): 0.3 * 0.5,
        (0, 1): (1 - 0.6) / 2 + 0.6 * 0.25,   # bow(0) = 0.6 * 2 / 2
        (0, 0): 0.6 * 0.25,
        (1, 3): (1 - 0.6) / 1 + 0.6 * 0.5,    # bow(1) = 0.6
    }
    for (h, w), p in expect.items():
        assert math.exp(lm.score([h], w)) == pytest.approx(p), (h, w)
    assert math.exp(lm.sentence_logprob([0, 1])) == pytest.approx(0.775 * 0.35 * 0.7)


def random_corpus(seed=0, vocab=7, n=60):
    rng = random.Random(seed)
    return [[rng.randrange(vocab) for _ in range(rng.randint(1, 8))] for _ in range(n)]


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_every_context_is_a_distribution(order):
    vocab = 7
    lm = NgramLm.train(random_corpus(), order=order, vocab_size=vocab)
    rng = random.Random(1)
    contexts = [[lm.bos], [lm.bos, 3], [1, 2, 3, 4], [6, 6, 6, 6, 6], []] + [
        [rng.randrange(vocab) for _ in range(rng.randint(0, 5))] for _ in range(30)]
    for ctx in contexts:
        lp = lm.log_probs(ctx)
        assert lp.shape == (vocab + 1,)
        assert float(lp.exp().sum()) == pytest.approx(1.0, abs=1e-9), ctx
        # the vectorised scores agree with the per-token backoff recursion
        for w in range(vocab):
            assert float(lp[w]) == pytest.approx(lm.score(ctx, w))
        assert float(lp[vocab]) == pytest.approx(lm.score(ctx, lm.eos))


def test_arpa_round_trip(tmp_path):
    symbols = [f"t{i}" for i in range(7)]
    lm = NgramLm.train(random_corpus(2), order=3, vocab_size=7)
    lm.write_arpa(tmp_path / "lm.arpa", symbols)
    text = (tmp_path / "lm.arpa").read_text()
    assert text.startswith("\\data\\\nngram 1=") and "\\3-grams:" in text and text.rstrip().endswith("\\end\\")
    back = NgramLm.read_arpa(tmp_path / "lm.arpa", symbols)
    for sent in random_corpus(3, n=20):
        assert back.sentence_logprob(sent) == pytest.approx(lm.sentence_logprob(sent), abs=1e-5)
    # the training sentences are likelier than shuffled ones
    train = random_corpus(2)
    shuffled = [random.Random(4).sample(s, len(s)) for s in train]
    assert sum(map(lm.sentence_logprob, train)) > sum(map(lm.sentence_logprob, shuffled))


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="sentence 1: token ids \\[9\\]"):
        NgramLm.train([[0], [9]], order=2, vocab_size=3)
    with pytest.raises(ValueError, match="no training sentences"):
        NgramLm.train([], order=2, vocab_size=3)
    lm = NgramLm.train([[0, 1]], order=2, vocab_size=2)
    lm.write_arpa(tmp_path / "lm.arpa", ["a", "b"])
    with pytest.raises(ValueError, match="lm.arpa:.*token 'a' is not in the token list"):
        NgramLm.read_arpa(tmp_path / "lm.arpa", ["x", "b"])
