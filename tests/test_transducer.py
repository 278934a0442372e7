"""The RNN-T loss backend against an independent float64 forward computation, pruning, and decoding."""
from __future__ import annotations

import math

import pytest
import torch

from serac.transducer import loss as rnnt
from serac.transducer.model import build_model
from serac.transducer.search import greedy_search_batch, modified_beam_search, streaming_greedy_search

pytestmark = pytest.mark.skipif(rnnt.backend is None, reason=f"no RNN-T backend: {rnnt.backend_name}")


def reference_rnnt_loss(logits: torch.Tensor, y: list, blank: int = 0, rnnt_type: str = "regular") -> torch.Tensor:
    """The RNN-T forward variable in float64 for one utterance; logits (T, S+1, V).
    regular: Graves (a symbol keeps the frame); modified: every step, blank or symbol, consumes one frame."""
    lp = logits.double().log_softmax(-1)
    if rnnt_type == "modified":
        t_len, s_plus_1, _ = lp.shape
        # a finite "minus infinity": logaddexp(-inf, -inf) has a NaN gradient in torch
        neg_inf = torch.tensor(-1e30, dtype=torch.float64)
        alpha = [neg_inf] * s_plus_1
        alpha[0] = torch.tensor(0.0, dtype=torch.float64)
        for t in range(t_len):
            new = [alpha[s] + lp[t, s, blank] for s in range(s_plus_1)]
            for s in range(1, s_plus_1):
                new[s] = torch.logaddexp(new[s], alpha[s - 1] + lp[t, s - 1, y[s - 1]])
            alpha = new
        return -alpha[s_plus_1 - 1]
    t_len, s_plus_1, _ = lp.shape
    s_len = s_plus_1 - 1
    neg_inf = torch.tensor(float("-inf"), dtype=torch.float64)
    alpha = [[neg_inf] * s_plus_1 for _ in range(t_len)]
    alpha[0][0] = torch.tensor(0.0, dtype=torch.float64)
    for t in range(t_len):
        for s in range(s_plus_1):
            if t == 0 and s == 0:
                continue
            from_blank = alpha[t - 1][s] + lp[t - 1, s, blank] if t > 0 else neg_inf
            from_sym = alpha[t][s - 1] + lp[t, s - 1, y[s - 1]] if s > 0 else neg_inf
            alpha[t][s] = torch.logaddexp(from_blank, from_sym)
    return -(alpha[t_len - 1][s_len] + lp[t_len - 1, s_len, blank])


def random_batch(seed: int, n: int = 3, t_max: int = 7, s_max: int = 4, vocab: int = 6):
    g = torch.Generator().manual_seed(seed)
    x_lens = torch.randint(3, t_max + 1, (n,), generator=g)
    x_lens[0] = t_max
    y_lens = torch.randint(1, s_max + 1, (n,), generator=g)
    y_lens[1] = s_max
    symbols = torch.zeros(n, s_max, dtype=torch.int64)
    for i in range(n):
        symbols[i, : y_lens[i]] = torch.randint(1, vocab, (int(y_lens[i]),), generator=g)
    logits = torch.randn(n, t_max, s_max + 1, vocab, generator=g)
    return logits, symbols, x_lens, y_lens


@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_loss_matches_float64_reference(seed, rnnt_type):
    logits, symbols, x_lens, y_lens = random_batch(seed)
    x_lens = torch.maximum(x_lens, y_lens)  # the modified topology needs T >= S
    logits.requires_grad_(True)
    ours = rnnt.full_rnnt_loss(logits, symbols, x_lens, y_lens, reduction="none", rnnt_type=rnnt_type)
    for i in range(logits.size(0)):
        t, s = int(x_lens[i]), int(y_lens[i])
        ref = reference_rnnt_loss(logits[i, :t, : s + 1], symbols[i, :s].tolist(), rnnt_type=rnnt_type)
        assert ours[i].item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-5)
    # gradients too: backend vs autograd through the reference
    ours.sum().backward()
    g_ours = logits.grad.clone()
    ref_logits = logits.detach().double().requires_grad_(True)
    total = sum(reference_rnnt_loss(ref_logits[i, : int(x_lens[i]), : int(y_lens[i]) + 1],
                                    symbols[i, : int(y_lens[i])].tolist(), rnnt_type=rnnt_type)
                for i in range(logits.size(0)))
    total.backward()
    assert torch.allclose(g_ours.double(), ref_logits.grad, atol=1e-5)


@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
def test_simple_loss_is_full_loss_on_summed_logits(rnnt_type):
    torch.manual_seed(0)
    _, symbols, x_lens, y_lens = random_batch(3)
    x_lens = torch.maximum(x_lens, y_lens)
    n, t_max, s_max, vocab = 3, 7, 4, 6
    am = torch.randn(n, t_max, vocab)
    lm = torch.randn(n, s_max + 1, vocab)
    boundary = rnnt._boundary(x_lens, y_lens)
    simple = rnnt.backend.rnnt_loss_smoothed(lm=lm, am=am, symbols=symbols, termination_symbol=0,
                                              lm_only_scale=0.0, am_only_scale=0.0, boundary=boundary,
                                              reduction="none", rnnt_type=rnnt_type)
    for i in range(n):
        t, s = int(x_lens[i]), int(y_lens[i])
        ref = reference_rnnt_loss(am[i, :t, None, :] + lm[i, None, : s + 1, :], symbols[i, :s].tolist(),
                                  rnnt_type=rnnt_type)
        assert simple[i].item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-5)


class _AddJoiner(torch.nn.Module):
    def forward(self, am, lm, project_input=False):
        return torch.tanh(am + lm) * 3.0


@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
@pytest.mark.parametrize("seed", [0, 1])
def test_pruned_loss_with_full_range_equals_full_loss(seed, rnnt_type):
    """With a prune range covering every symbol position the pruned loss is the full loss."""
    _, symbols, x_lens, y_lens = random_batch(seed)
    x_lens = torch.maximum(x_lens, y_lens)
    g = torch.Generator().manual_seed(seed + 10)
    n, t_max, s_max, vocab = 3, 7, 4, 6
    am = torch.randn(n, t_max, vocab, generator=g)
    lm = torch.randn(n, s_max + 1, vocab, generator=g)
    joiner = _AddJoiner()
    simple, pruned = rnnt.pruned_rnnt_loss(am=am, lm=lm, simple_am=am, simple_lm=lm, joiner=joiner,
                                           symbols=symbols, x_lens=x_lens, y_lens=y_lens,
                                           prune_range=s_max + 1, reduction="none", rnnt_type=rnnt_type)
    full = rnnt.full_rnnt_loss(joiner(am[:, :, None, :], lm[:, None, :, :]), symbols, x_lens, y_lens,
                               reduction="none", rnnt_type=rnnt_type)
    assert torch.allclose(pruned, full, rtol=1e-5, atol=1e-5)
    # and a narrow range is an approximation that cannot beat the full sum over alignments
    _, narrow = rnnt.pruned_rnnt_loss(am=am, lm=lm, simple_am=am, simple_lm=lm, joiner=joiner, symbols=symbols,
                                      x_lens=x_lens, y_lens=y_lens, prune_range=2, reduction="none",
                                      rnnt_type=rnnt_type)
    assert torch.all(narrow >= full - 1e-4)


@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
@pytest.mark.parametrize("seed", [0, 1])
def test_delay_penalty_equals_the_backends_own(seed, rnnt_type):
    """loss.delay_penalty: both losses equal the backend's rnnt_loss_smoothed / rnnt_loss_pruned with its own
    delay_penalty (same prune ranges), and a penalty lowers the loss of a model that emits early more than that
    of one that emits late."""
    k = rnnt.require_backend()
    _, symbols, x_lens, y_lens = random_batch(seed)
    x_lens = torch.maximum(x_lens, y_lens + 1)
    g = torch.Generator().manual_seed(seed + 20)
    n, t_max, s_max, vocab = 3, 7, 4, 6
    am = torch.randn(n, t_max, vocab, generator=g)
    lm = torch.randn(n, s_max + 1, vocab, generator=g)
    joiner, d = _AddJoiner(), 0.2
    simple, pruned = rnnt.pruned_rnnt_loss(am=am, lm=lm, simple_am=am, simple_lm=lm, joiner=joiner,
                                           symbols=symbols, x_lens=x_lens, y_lens=y_lens, prune_range=2,
                                           lm_scale=0.25, reduction="none", rnnt_type=rnnt_type, delay_penalty=d)
    boundary = rnnt._boundary(x_lens, y_lens)
    ref_simple, (px_grad, py_grad) = k.rnnt_loss_smoothed(
        lm=lm, am=am, symbols=symbols, termination_symbol=0, lm_only_scale=0.25, am_only_scale=0.0,
        boundary=boundary, rnnt_type=rnnt_type, delay_penalty=d, reduction="none", return_grad=True)
    assert torch.allclose(simple, ref_simple, rtol=1e-5, atol=1e-5)
    ranges = k.get_rnnt_prune_ranges(px_grad=px_grad, py_grad=py_grad, boundary=boundary, s_range=2)
    am_p, lm_p = k.do_rnnt_pruning(am=am, lm=lm, ranges=ranges)
    ref_pruned = k.rnnt_loss_pruned(logits=joiner(am_p, lm_p), symbols=symbols, ranges=ranges,
                                    termination_symbol=0, boundary=boundary, rnnt_type=rnnt_type,
                                    delay_penalty=d, reduction="none")
    assert torch.allclose(pruned, ref_pruned, rtol=1e-5, atol=1e-5)
    plain, _ = rnnt.pruned_rnnt_loss(am=am, lm=lm, simple_am=am, simple_lm=lm, joiner=joiner, symbols=symbols,
                                     x_lens=x_lens, y_lens=y_lens, prune_range=2, lm_scale=0.25,
                                     reduction="none", rnnt_type=rnnt_type)
    assert not torch.allclose(simple, plain)


def test_delay_penalty_rewards_early_emission():
    """One symbol, T frames: an acoustic model sure of it on the first frame gains from the penalty, one sure of
    it on the last frame loses (the penalty is zero-mean over the frames)."""
    t_len, vocab = 9, 3
    symbols, x_lens, y_lens = torch.tensor([[1]]), torch.tensor([t_len]), torch.tensor([1])
    lm = torch.zeros(1, 2, vocab)
    losses = {}
    for where in ("early", "late"):
        am = torch.full((1, t_len, vocab), -5.0)
        am[0, :, 0] = 5.0  # blank everywhere
        frame = 0 if where == "early" else t_len - 1
        am[0, frame, 1], am[0, frame, 0] = 5.0, -5.0
        losses[where] = [rnnt.pruned_rnnt_loss(am=am, lm=lm, simple_am=am, simple_lm=lm, joiner=_AddJoiner(),
                                               symbols=symbols, x_lens=x_lens, y_lens=y_lens, prune_range=2,
                                               lm_scale=0.0, delay_penalty=d)[0].item() for d in (0.0, 0.1)]
    assert losses["early"][1] < losses["early"][0] - 0.3
    assert losses["late"][1] > losses["late"][0] + 0.3


def test_loss_scale_warmup():
    assert rnnt.loss_scales(0, 0.5, 100) == (1.0, 0.1)
    s, p = rnnt.loss_scales(50, 0.5, 100)
    assert s == pytest.approx(0.75) and p == pytest.approx(0.55)
    assert rnnt.loss_scales(100, 0.5, 100) == (0.5, 1.0)
    assert rnnt.loss_scales(5, 0.5, 0) == (0.5, 1.0)


def _tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model({"encoder": {"name": "lstm", "hidden_dim": 32, "num_layers": 1, "output_dim": 24},
                        "decoder_dim": 16, "joiner_dim": 16}, num_features=10, vocab_size=7).eval()


def test_decoder_dropout_only_in_training():
    torch.manual_seed(0)
    model = build_model({"encoder": {"name": "lstm", "hidden_dim": 16, "num_layers": 1, "output_dim": 8},
                         "decoder_dim": 64, "joiner_dim": 8, "decoder_dropout": 0.5}, num_features=10, vocab_size=5)
    y = torch.tensor([[0, 1, 2, 3]])
    model.train()
    a, b = model.decoder(y), model.decoder(y)
    assert not torch.equal(a, b) and (a == 0).float().mean() > (model.eval().decoder(y) == 0).float().mean()
    assert torch.equal(model.decoder(y), model.decoder(y))
    with pytest.raises(ValueError, match="unknown model options"):
        build_model({"encoder": {"name": "lstm"}, "decoder_droput": 0.5}, num_features=10, vocab_size=5)


def test_model_loss_is_finite_and_trains():
    model = _tiny_model().train()
    x, x_lens = torch.randn(2, 40, 10), torch.tensor([40, 32])
    y = [[1, 2, 3], [4, 5]]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        out = model(x, x_lens, y, prune_range=3)
        loss = (out["simple_loss"] + out["pruned_loss"]) / out["num_frames"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] * 0.7


def test_ctc_forced_alignment_by_hand():
    """Posteriors that clearly put symbol 1 on frames 1-2 and symbol 2 on frame 4 (blank elsewhere); a repeated
    symbol needs a blank between; padding and impossible utterances give -1."""
    t_max, vocab = 6, 4
    lp = torch.full((3, t_max, vocab), -10.0)
    lp[:, :, 0] = -0.01
    for t, sym in ((1, 1), (2, 1), (4, 2)):
        lp[0, t, sym], lp[0, t, 0] = -0.01, -10.0
    for t, sym in ((0, 3), (2, 3)):          # utterance 1: "3 3" with a blank on frame 1
        lp[1, t, sym], lp[1, t, 0] = -0.01, -10.0
    symbols = torch.tensor([[1, 2, 0], [3, 3, 0], [1, 1, 1]])
    first = rnnt.ctc_forced_alignment(lp, torch.tensor([6, 4, 2]), symbols, torch.tensor([2, 2, 3]))
    assert first.tolist() == [[1, 4, -1], [0, 2, -1], [-1, -1, -1]]  # "1 1 1" cannot fit in 2 frames


@pytest.mark.parametrize("seed,two_sided", [(0, False), (1, False), (0, True), (1, True)])
def test_emission_restriction_removes_exactly_the_early_paths(seed, two_sided):
    """The restricted loss equals the full loss computed on logits where those emissions are impossible,
    while the symbol keeps its probability in the normaliser (so the loss pushes it down there). Two-sided:
    emissions after ``latest`` go too (loss.word_margin's windows)."""
    logits, symbols, x_lens, y_lens = random_batch(seed, n=2, t_max=7, s_max=3)
    y = [symbols[i, : int(y_lens[i])].tolist() for i in range(2)]
    earliest = torch.tensor([[2, 3, 5], [1, 4, 0]])
    latest = torch.tensor([[3, 5, 6], [2, 6, 6]]) if two_sided else None
    k = rnnt.require_backend()
    boundary = rnnt._boundary(x_lens, y_lens)
    px, py = k.get_rnnt_logprobs_joint(logits=logits, symbols=symbols, termination_symbol=0, boundary=boundary,
                                       rnnt_type="modified")
    restricted = -k.mutual_information_recursion(px=rnnt.restrict_emissions(px, earliest, latest), py=py,
                                                  boundary=boundary)
    # brute force: enumerate modified-RNN-T alignments (one symbol or blank per frame) and drop early (late) ones
    import itertools
    logp = logits.log_softmax(-1)
    for b in range(2):
        tb, sb = int(x_lens[b]), int(y_lens[b])
        total = []
        for frames in itertools.combinations(range(tb), sb):
            if any(f < int(earliest[b, i]) for i, f in enumerate(frames)):
                continue
            if latest is not None and any(f > int(latest[b, i]) for i, f in enumerate(frames)):
                continue
            score, s_pos = 0.0, 0
            for t in range(tb):
                if s_pos < sb and frames[s_pos] == t:
                    score += logp[b, t, s_pos, y[b][s_pos]]
                    s_pos += 1
                else:
                    score += logp[b, t, s_pos, 0]
            total.append(score)
        assert total, "the windows must leave a path for this comparison"
        assert restricted[b].item() == pytest.approx(-torch.logsumexp(torch.stack(total), 0).item(), rel=1e-4)
    unrestricted = -k.mutual_information_recursion(px=px, py=py, boundary=boundary)
    assert (restricted >= unrestricted - 1e-5).all()


def _words(spans, t_max: int = 100, feat: int = 6) -> torch.Tensor:
    """(t_max, feat) log-mel features: -10 (silence) with 0.0 (speech) on the given [start, end) spans."""
    x = torch.full((t_max, feat), -10.0)
    for a, b in spans:
        x[a:b] = 0.0
    return x


def test_word_windows_from_speech_segments():
    """One window per word where the energy detector finds one segment per word: from `before` encoder frames
    before the segment to `after` past its last frame; any other utterance (segments merged, a word inaudible)
    and any whose windows leave no path stays unrestricted."""
    x = torch.stack([_words([(20, 36), (42, 54), (70, 90)]),    # 3 words, 3 segments
                     _words([(20, 36), (39, 54), (70, 90)]),    # a 3-frame pause: merged, 2 segments for 3 words
                     _words([(20, 36), (42, 54), (70, 90)])])   # 3 segments, 2 words
    segs = rnnt.batch_segments(x, torch.tensor([100, 100, 100]))
    assert segs[0] == [[20, 36], [42, 54], [70, 90]] and segs[1] == [[20, 54], [70, 90]]
    early, late = rnnt.word_windows(segs, torch.tensor([100, 100, 100]), torch.tensor([3, 3, 2]), factor=4,
                                    before=1, after=0)
    assert early.tolist() == [[4, 9, 16], [0, 0, 0], [0, 0, 0]]
    assert late.tolist() == [[8, 13, 22], [24, 24, 24], [24, 24, 24]]
    # three words in windows so tight that one frame per word does not fit: unrestricted
    tight = [[[0, 4], [4, 8], [4, 8]]]
    early, late = rnnt.word_windows(tight, torch.tensor([40]), torch.tensor([3]), factor=4, before=0, after=0)
    early, late = rnnt.feasible_windows(early, late, torch.tensor([10]), torch.tensor([3]))
    assert early.tolist() == [[0, 0, 0]] and late.tolist() == [[9, 9, 9]]
    # the windows that fit are kept as they are
    kept = rnnt.feasible_windows(torch.tensor([[4, 9, 16]]), torch.tensor([[8, 13, 22]]), torch.tensor([25]),
                                 torch.tensor([3]))
    assert [k.tolist() for k in kept] == [[[4, 9, 16]], [[8, 13, 22]]]


def test_word_margin_restricts_the_loss_and_uses_the_clean_segments():
    """loss.word_margin in the model: the restricted loss is finite, above the free one, with finite gradients;
    the trainer finds the segments before the noise augmentation and SpecAugment (which would hide them)."""
    from serac.config import load_config
    from serac.train.trainer import compute_loss

    torch.manual_seed(0)
    model = build_model({"encoder": {"name": "lstm", "hidden_dim": 32, "num_layers": 1, "output_dim": 24},
                         "decoder_dim": 16, "joiner_dim": 16}, num_features=6, vocab_size=7)
    x = torch.stack([_words([(20, 36), (42, 54), (70, 90)]), _words([(10, 30), (50, 70), (80, 95)])])
    x = x + 0.1 * torch.randn_like(x)
    x_lens, y = torch.tensor([100, 100]), [[1, 2, 3], [4, 5, 6]]
    free = model(x, x_lens, y, prune_range=3)
    tied = model(x, x_lens, y, prune_range=3, word_margin=(1, 0))
    assert torch.isfinite(tied["pruned_loss"]) and torch.isfinite(tied["simple_loss"])
    assert tied["pruned_loss"].item() > free["pruned_loss"].item()
    (tied["simple_loss"] + tied["pruned_loss"]).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

    class Tok:
        def encode(self, text):
            return [int(t) for t in text.split()]

    seen = {}
    real_forward = model.forward

    def spy(feats, lens, targets, **kw):
        seen.update(x=feats, segments=kw.get("segments"), margin=kw.get("word_margin"))
        return real_forward(feats, lens, targets, **kw)

    model.forward = spy
    batch = {"inputs": x, "supervisions": {"num_frames": x_lens, "text": ["1 2 3", "4 5 6"]}}
    cfg = load_config(None, ["loss.word_margin=[1, 0]", "data.noise_floor={prob: 1.0, low: 1.0, high: 1.0}"])
    compute_loss(model, batch, Tok(), cfg, step=100, device=torch.device("cpu"), train=True,
                 spec_augment=lambda f: torch.zeros_like(f))
    assert seen["segments"] == [[[20, 36], [42, 54], [70, 90]], [[10, 30], [50, 70], [80, 95]]]
    assert seen["margin"] == [1, 0] and seen["x"].abs().sum() == 0
    compute_loss(model, batch, Tok(), cfg, step=100, device=torch.device("cpu"), train=False)
    assert seen["segments"] is None and torch.equal(seen["x"], x)  # validation: found on x itself, no noise


def test_speech_onset_and_feasibility():
    x = torch.full((3, 30, 8), -10.0)
    x[0, 12:20] = -2.0           # speech from frame 12
    x[1, 7:9] = -9.0             # never 10 dB above its floor: no onset, no restriction
    x[2, 25:] = 0.0              # speech only in the padding (length 20): none
    onset = rnnt.speech_onset(x, torch.tensor([30, 30, 20]))
    assert onset.tolist() == [12, 0, 0]
    earliest = torch.tensor([[3, 3, 3], [5, 5, 5], [0, 6, 0]])
    kept = rnnt.feasible_earliest(earliest, x_lens=torch.tensor([6, 7, 8]), y_lens=torch.tensor([3, 3, 2]))
    # 3 symbols from frame 3 need frames 3, 4, 5 (fits 6); from frame 5 need 5, 6, 7 (not in 7); 0 then 6 fits 8
    assert kept.tolist() == [[3, 3, 3], [0, 0, 0], [0, 6, 0]]


def test_onset_margin_blocks_emissions_in_the_leading_silence():
    """With speech starting at input frame 40 (encoder frame 10), paths emitting before frame 10 - margin are
    gone: the loss rises, and the gradient lowers every non-blank symbol's score on those silent frames."""
    torch.manual_seed(0)
    model = build_model({"encoder": {"name": "lstm", "hidden_dim": 32, "num_layers": 1, "output_dim": 24},
                         "decoder_dim": 16, "joiner_dim": 16}, num_features=10, vocab_size=7)
    x = torch.full((1, 80, 10), -10.0)
    x[0, 40:] = torch.randn(40, 10)
    x_lens, y = torch.tensor([80]), [[1, 2, 3]]
    free = model(x, x_lens, y, prune_range=3)
    tied = model(x, x_lens, y, prune_range=3, onset_margin=1)
    assert tied["pruned_loss"].item() > free["pruned_loss"].item()
    assert torch.isfinite(tied["simple_loss"]) and torch.isfinite(tied["pruned_loss"])


def test_pruned_loss_with_restriction_is_finite_and_differs():
    torch.manual_seed(0)
    model = build_model({"encoder": {"name": "lstm", "hidden_dim": 32, "num_layers": 1, "output_dim": 24},
                         "decoder_dim": 16, "joiner_dim": 16, "ctc_head": True}, num_features=10, vocab_size=7)
    x, x_lens, y = torch.randn(2, 40, 10), torch.tensor([40, 32]), [[1, 2, 3], [4, 5]]
    free = model(x, x_lens, y, prune_range=3)
    tied = model(x, x_lens, y, prune_range=3, ctc_align_margin=0)
    for k in ("simple_loss", "pruned_loss"):
        assert torch.isfinite(tied[k])
    assert tied["pruned_loss"].item() >= free["pruned_loss"].item() - 1e-3
    (tied["simple_loss"] + tied["pruned_loss"]).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def _ctc_model_and_batch():
    """A tiny LSTM transducer with a CTC head, a two-utterance batch of digit tokens, and the tokenizer for it."""
    class Tok:
        def encode(self, text):
            return [int(c) for c in text.split()]

    torch.manual_seed(0)
    model = build_model({"encoder": {"name": "lstm", "hidden_dim": 32, "num_layers": 1, "output_dim": 24},
                         "decoder_dim": 16, "joiner_dim": 16, "ctc_head": True}, num_features=10, vocab_size=7)
    batch = {"inputs": torch.randn(2, 40, 10),
             "supervisions": {"num_frames": torch.tensor([40, 32]), "text": ["1 2 3", "4 5"]}}
    return model, batch, Tok


def test_ctc_warmup_trains_only_the_encoder_and_ctc_head_then_everything():
    """During loss.ctc_warmup_steps the loss is the CTC loss alone (decoder and joiner get zero gradients);
    afterwards the transducer losses join with their own warm-up ramp starting from that step."""
    from serac.config import load_config
    from serac.train.trainer import compute_loss

    model, batch, Tok = _ctc_model_and_batch()
    cfg = load_config(None, ["loss.ctc_scale=1.0", "loss.ctc_warmup_steps=10", "loss.warm_step=4"])
    dev = torch.device("cpu")
    for step, transducer_on in ((3, False), (10, True), (14, True)):
        model.zero_grad()
        loss, stats = compute_loss(model, batch, Tok(), cfg, step=step, device=dev, train=True)
        loss.backward()
        joiner_grad = sum(p.grad.abs().sum() for p in model.joiner.parameters() if p.grad is not None)
        encoder_grad = sum(p.grad.abs().sum() for p in model.encoder.parameters() if p.grad is not None)
        assert encoder_grad > 0
        assert (joiner_grad > 0) == transducer_on, (step, float(joiner_grad))
        if not transducer_on:
            assert loss.item() == pytest.approx(stats["ctc_loss"], rel=1e-6)
    # the pruned-loss ramp restarts at the end of the CTC warm-up: at step 10 the simple loss dominates
    _, s10 = compute_loss(model, batch, Tok(), cfg, step=10, device=dev, train=True)
    expected = 1.0 * s10["simple_loss"] + 0.1 * s10["pruned_loss"] + s10["ctc_loss"]
    assert s10["loss"] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="ctc_warmup_steps"):
        compute_loss(model, batch, Tok(), load_config(None, ["loss.ctc_warmup_steps=5"]), step=0, device=dev,
                     train=True)


def test_spec_augment_sees_the_onsets_of_the_clean_features():
    """The trainer finds the speech onsets (loss.onset_margin) before SpecAugment masks or warps the features,
    and the model is given the augmented features with the clean onsets."""
    from serac.config import load_config
    from serac.train.trainer import compute_loss
    from serac.transducer.loss import speech_onset

    class Tok:
        def encode(self, text):
            return [int(t) for t in text.split()]

    model = _tiny_model(0)
    seen = {}
    real_forward = model.forward

    def spy(x, x_lens, y, **kw):
        seen.update(x=x, onset=kw.get("onset"))
        return real_forward(x, x_lens, y, **kw)

    model.forward = spy
    feats = torch.full((2, 40, 10), -5.0)
    feats[0, 12:], feats[1, 20:] = 3.0, 3.0  # speech starts at frames 12 and 20
    batch = {"inputs": feats, "supervisions": {"num_frames": torch.tensor([40, 32]), "text": ["1 2 3", "4 5"]}}
    cfg = load_config(None, ["loss.onset_margin=1"])
    masked = lambda f: torch.zeros_like(f)  # a "SpecAugment" that masks everything: no onset left to find
    compute_loss(model, batch, Tok(), cfg, step=100, device=torch.device("cpu"), train=True, spec_augment=masked)
    assert seen["onset"].tolist() == [12, 20] and seen["x"].abs().sum() == 0
    assert speech_onset(seen["x"], torch.tensor([40, 32])).tolist() == [0, 0]
    compute_loss(model, batch, Tok(), cfg, step=100, device=torch.device("cpu"), train=False, spec_augment=masked)
    assert seen["onset"] is None and torch.equal(seen["x"], feats)  # validation: never augmented


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_equals_beam_search_with_beam_1(seed):
    model = _tiny_model(seed)
    torch.manual_seed(100 + seed)
    x, x_lens = torch.randn(3, 60, 10), torch.tensor([60, 48, 20])
    enc, enc_lens = model.encoder(x, x_lens)
    greedy = greedy_search_batch(model, enc, enc_lens)
    assert sum(len(h) for h in greedy) > 0, "an all-blank output would make this comparison vacuous"
    assert greedy == modified_beam_search(model, enc, enc_lens, beam=1)


def test_streaming_greedy_equals_offline_greedy():
    model = _tiny_model(3)
    x = torch.randn(2, 64, 10)
    enc, enc_lens = model.encoder(x, torch.tensor([64, 64]))
    offline = greedy_search_batch(model, enc, enc_lens)
    state = None
    for start in range(0, 64, 16):
        state = streaming_greedy_search(model, x[:, start : start + 16], state)
    assert sum(len(h) for h in offline) > 0
    assert state.hyps == offline


def _brute_force_search(model, enc, lm, lm_scale, blank_penalty):
    """argmax over token sequences of log sum_{alignments, one symbol per frame} p_am + lm_scale * log p_lm
    (with </s>), by enumerating every alignment of a short utterance."""
    import itertools

    blank, ctx, vocab = model.blank_id, model.decoder.context_size, model.joiner.output_linear.out_features
    totals = {}
    for ali in itertools.product(range(vocab), repeat=enc.size(0)):
        tokens, am = [], 0.0
        for t, a in enumerate(ali):
            context = torch.tensor([([blank] * ctx + tokens)[-ctx:]])
            d = model.decoder(context, need_pad=False)
            logits = model.joiner(enc[t].view(1, 1, -1), d).squeeze()
            logits[blank] -= blank_penalty
            am += float(logits.log_softmax(-1)[a])
            if a != blank:
                tokens = tokens + [a]
        totals[tuple(tokens)] = torch.logaddexp(torch.tensor(totals.get(tuple(tokens), -math.inf)),
                                                torch.tensor(am)).item()
    best = max(totals, key=lambda s: totals[s] + lm_scale * lm.sentence_logprob(list(s)))
    return list(best)


@pytest.mark.parametrize("seed,lm_scale,blank_penalty", [(0, 0.0, 0.0), (1, 0.7, 0.0), (2, 1.5, 1.0), (3, 3.0, 2.0)])
def test_beam_search_with_lm_fusion_equals_brute_force(seed, lm_scale, blank_penalty):
    """With a beam wide enough to keep every hypothesis, modified beam search with shallow fusion and a blank
    penalty finds the sequence a brute-force enumeration of all alignments finds."""
    from serac.lm.ngram import NgramLm

    torch.manual_seed(seed)
    model = build_model({"encoder": {"name": "lstm", "hidden_dim": 16, "num_layers": 1, "output_dim": 8},
                         "decoder_dim": 8, "joiner_dim": 8}, num_features=6, vocab_size=4).eval()
    # an LM that strongly prefers "3 1" and "2 2 3"
    lm = NgramLm.train([[3, 1]] * 5 + [[2, 2, 3]] * 3 + [[1]], order=3, vocab_size=4)
    x, x_lens = torch.randn(1, 12, 6) * 3, torch.tensor([12])
    with torch.no_grad():
        enc, enc_lens = model.encoder(x, x_lens)
        assert enc.size(1) == 3
        got = modified_beam_search(model, enc, enc_lens, beam=64, lm=lm, lm_scale=lm_scale,
                                   blank_penalty=blank_penalty)[0]
        want = _brute_force_search(model, enc[0], lm, lm_scale, blank_penalty)
    assert got == want


def test_lm_fusion_changes_the_output_toward_the_lm():
    from serac.lm.ngram import NgramLm

    torch.manual_seed(5)
    model = build_model({"encoder": {"name": "lstm", "hidden_dim": 16, "num_layers": 1, "output_dim": 8},
                         "decoder_dim": 8, "joiner_dim": 8}, num_features=6, vocab_size=4).eval()
    lm = NgramLm.train([[3, 1, 2]] * 10, order=4, vocab_size=4)
    x, x_lens = torch.randn(2, 40, 6), torch.tensor([40, 32])
    with torch.no_grad():
        enc, enc_lens = model.encoder(x, x_lens)
        plain = modified_beam_search(model, enc, enc_lens, beam=4)
        fused = modified_beam_search(model, enc, enc_lens, beam=4, lm=lm, lm_scale=20.0, blank_penalty=5.0)
    lp = [lm.sentence_logprob(h) for h in fused]
    assert fused != plain and all(a > lm.sentence_logprob(b) for a, b in zip(lp, plain))
    with pytest.raises(ValueError, match="the LM has 5 tokens, the model 4"):
        modified_beam_search(model, enc, enc_lens, lm=NgramLm.train([[1]], 2, 5), lm_scale=1.0)


def test_ctc_start_step_leaves_the_ctc_term_out_of_training_until_then():
    """loss.ctc_start_step: before it the training loss has no CTC term (the CTC head gets no gradient), from it
    on the term is ctc_scale x CTC; validation losses include it at every step; with ctc_warmup_steps: an error."""
    from serac.config import load_config
    from serac.train.trainer import compute_loss

    model, batch, Tok = _ctc_model_and_batch()
    cfg = load_config(None, ["loss.ctc_scale=0.5", "loss.ctc_start_step=10", "loss.warm_step=0"])
    dev = torch.device("cpu")
    for step, ctc_on in ((0, False), (9, False), (10, True), (50, True)):
        model.zero_grad()
        loss, stats = compute_loss(model, batch, Tok(), cfg, step=step, device=dev, train=True)
        loss.backward()
        ctc_grad = sum(p.grad.abs().sum() for p in model.ctc_output.parameters() if p.grad is not None)
        assert (ctc_grad > 0) == ctc_on, (step, float(ctc_grad))
        expected = 0.5 * stats["simple_loss"] + stats["pruned_loss"] + (0.5 * stats["ctc_loss"] if ctc_on else 0.0)
        assert stats["loss"] == pytest.approx(expected, rel=1e-5)
        assert loss.item() == pytest.approx(expected, rel=1e-5)
    with torch.no_grad():
        _, valid = compute_loss(model, batch, Tok(), cfg, step=0, device=dev, train=False)
    assert valid["loss"] == pytest.approx(0.5 * valid["simple_loss"] + valid["pruned_loss"] + 0.5 * valid["ctc_loss"],
                                          rel=1e-5)
    with pytest.raises(ValueError, match="ctc_start_step and loss.ctc_warmup_steps"):
        compute_loss(model, batch, Tok(), load_config(None, ["loss.ctc_scale=0.5", "loss.ctc_start_step=5",
                                                             "loss.ctc_warmup_steps=5"]),
                     step=0, device=dev, train=True)
