"""Fairness I: cohort discovery (geographic tree, geodemographic, automatic), EWC (Fisher, penalty, trainer
hook) and oversampling, on small hand-made fixtures (no recipe data)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch

from serac.fairness.auto_cohorts import AutoCohorts, fit_auto_cohorts
from serac.fairness.discovery import SpeakerRecord, disparity, write_cohort_map
from serac.fairness.geo_tree import GeoPoint, GeoTree, best_split, grow_geo_tree
from serac.fairness.geodemographic import assign_speakers, best_partition, candidate_partitions
from trainer_utils import TinyTrainer

# ---------------------------------------------------------------------------------------------
# geographic tree
# ---------------------------------------------------------------------------------------------

# speaker: (lon, lat, errors, words); every speaker has 100 words, so WER = errors %
GEO = {
    "a": (-120.0, 35.0, 10, 100),
    "b": (-110.0, 45.0, 30, 100),
    "c": (-100.0, 30.0, 2, 100),
    "d": (-90.0, 40.0, 3, 100),
    "e": (-80.0, 33.0, 4, 100),
}


def geo_points(names=None) -> List[GeoPoint]:
    return [GeoPoint(s, *GEO[s]) for s in (names or sorted(GEO))]


def test_best_split_by_hand() -> None:
    # lon thresholds (pooled WER left | right, |difference|):
    #   -115: 10 | 39/400=9.75 (0.25); -105: 40/200=20 | 9/300=3 (17); -95: 42/300=14 | 7/200=3.5 (10.5);
    #   -85: 45/400=11.25 | 4 (7.25)
    # lat thresholds (sorted c 30, e 33, a 35, d 40, b 45):
    #   31.5: 2 | 47/400=11.75 (9.75); 34: 3 | 43/300=14.33 (11.33); 37.5: 16/300=5.33 | 33/200=16.5 (11.17);
    #   42.5: 19/400=4.75 | 30 (25.25)
    split = best_split(geo_points(), min_speakers=1, min_words=1)
    assert (split.feature, split.threshold) == ("lat", 42.5)
    assert split.wer_left == pytest.approx(4.75) and split.wer_right == pytest.approx(30.0)
    assert split.gain == pytest.approx(25.25)
    # at least two speakers a side: the single-speaker lat split is out, lon -105 (difference 17) wins
    split = best_split(geo_points(), min_speakers=2, min_words=1)
    assert (split.feature, split.threshold, split.speakers_left, split.speakers_right) == ("lon", -105.0, 2, 3)
    assert split.gain == pytest.approx(17.0)
    # the same through a word minimum (150 words = at least two speakers here)
    split = best_split(geo_points(), min_speakers=1, min_words=150)
    assert (split.feature, split.threshold) == ("lon", -105.0)
    # three speakers a side of five is impossible
    assert best_split(geo_points(), min_speakers=3) is None
    # a minimum gain above every candidate leaves nothing
    assert best_split(geo_points(), min_speakers=1, min_gain=30.0) is None


def test_tree_growth_thresholds_and_assignment() -> None:
    tree = grow_geo_tree(geo_points(), max_leaves=3, min_speakers=1, min_words=1)
    # 1st split: lat <= 42.5 (above). 2nd: within {a, c, d, e} (b alone cannot split):
    #   lon -110: 10 | 9/300=3 (7); -95: 12/200=6 | 7/200=3.5 (2.5); -85: 15/300=5 | 4 (1)
    #   lat 31.5: 2 | 17/300=5.67 (3.67); 34: 3 | 13/200=6.5 (3.5); 37.5: 16/300=5.33 | 3 (2.33)  -> lon -110
    assert [leaf.id for leaf in tree.leaves()] == ["g00", "g01", "g1"]
    assert (tree.root.split.feature, tree.root.split.threshold) == ("lat", 42.5)
    assert (tree.root.left.split.feature, tree.root.left.split.threshold) == ("lon", -110.0)
    assert sorted(tree.root.left.right.speakers) == ["c", "d", "e"]
    assert tree.describe("g01") == "lat <= 42.50 and lon > -110.00"
    assert tree.assign(lon=-118.0, lat=36.0) == "g00"
    assert tree.assign(lon=-85.0, lat=30.0) == "g01"
    assert tree.assign(lon=-100.0, lat=47.0) == "g1"
    # the json form round-trips and assigns the same way
    again = GeoTree.from_dict(json.loads(json.dumps(tree.to_dict())))
    for lon, lat in [(-118.0, 36.0), (-85.0, 30.0), (-100.0, 47.0), (-110.0, 42.5)]:
        assert again.assign(lon, lat) == tree.assign(lon, lat)
    assert "lat <= 42.50" in tree.to_dict()["tree"]["split"]["text"]


def test_tree_respects_max_leaves_and_min_size() -> None:
    rng = np.random.default_rng(0)
    pts = [GeoPoint(f"s{i:03d}", float(rng.uniform(-124, -67)), float(rng.uniform(25, 49)),
                    int(rng.integers(0, 40)), int(rng.integers(50, 150))) for i in range(120)]
    for max_leaves, min_speakers, min_words in [(1, 1, 1), (2, 5, 100), (7, 8, 500), (50, 10, 800)]:
        tree = grow_geo_tree(pts, max_leaves=max_leaves, min_speakers=min_speakers, min_words=min_words)
        leaves = tree.leaves()
        assert 1 <= len(leaves) <= max_leaves
        assert sum(len(leaf.speakers) for leaf in leaves) == len(pts)
        if len(leaves) > 1:
            assert all(len(leaf.speakers) >= min_speakers and leaf.words >= min_words for leaf in leaves)
        # every fitted speaker is assigned to the leaf that holds it
        by_id = {p.speaker: p for p in pts}
        for leaf in leaves:
            assert all(tree.assign(by_id[s].lon, by_id[s].lat) == leaf.id for s in leaf.speakers)
    # with no minimum the tree stops at max_leaves
    assert len(grow_geo_tree(pts, max_leaves=7, min_speakers=1, min_words=1).leaves()) == 7


# ---------------------------------------------------------------------------------------------
# geodemographic
# ---------------------------------------------------------------------------------------------

# speaker: (income, urbanicity, errors) with 100 words each
DEMO = {"s1": ("low", "urban", 10), "s2": ("low", "rural", 20), "s3": ("high", "urban", 2),
        "s4": ("mid", "rural", 8), "s5": ("high", "suburban", 4)}


def demo_records() -> List[SpeakerRecord]:
    return [SpeakerRecord(s, errors=e, words=100, utts=1,
                          attrs={"demo_income_band": inc, "demo_urbanicity": urb, "zip": f"0{i}"})
            for i, (s, (inc, urb, e)) in enumerate(sorted(DEMO.items()))]


def test_geodemographic_partition_by_hand() -> None:
    # income=high: 6/200=3 vs 38/300=12.67 (9.67); income=low: 30/200=15 vs 14/300=4.67 (10.33);
    # income=mid: 8 vs 36/400=9 (1); urban: 12/200=6 vs 32/300=10.67 (4.67);
    # rural: 28/200=14 vs 16/300=5.33 (8.67); suburban: 4 vs 40/400=10 (6)
    best = best_partition(demo_records())
    assert (best.attribute, best.value) == ("demo_income_band", "low")
    assert best.wer_in == pytest.approx(15.0) and best.wer_out == pytest.approx(14 / 3)
    cands = candidate_partitions(demo_records())
    assert [(c.attribute, c.value) for c in cands][:3] == [("demo_income_band", "low"), ("demo_income_band", "high"),
                                                          ("demo_urbanicity", "rural")]
    assert len(cands) == 6
    # restricted to urbanicity: rural wins
    assert best_partition(demo_records(), attributes=["demo_urbanicity"]).value == "rural"
    # single-speaker sides excluded by min_speakers=2: income=mid and suburban disappear
    assert {(c.attribute, c.value) for c in candidate_partitions(demo_records(), min_speakers=2)} == {
        ("demo_income_band", "low"), ("demo_income_band", "high"), ("demo_urbanicity", "urban"),
        ("demo_urbanicity", "rural")}
    # new speakers are assigned by their zip's attribute; a speaker without it goes to the rest
    labels = assign_speakers(best, {"t1": {"demo_income_band": "low"}, "t2": {"demo_income_band": "mid"}, "t3": {}})
    assert labels == {"t1": "demo_income_band=low", "t2": "demo_income_band!=low", "t3": "demo_income_band!=low"}


def test_disparity_fit_ranked_and_own() -> None:
    recs = {r.speaker: r for r in demo_records()}
    assign = {"s1": "A", "s2": "A", "s3": "B", "s4": "C", "s5": "B"}  # A 15%, B 3%, C 8%
    own = disparity(assign, recs)
    assert (own["bottom"], own["top"]) == ("A", "B")
    assert own["relative_gap"] == pytest.approx((15 - 3) / 3 * 100)
    assert own["bottom_speaker_share"] == pytest.approx(40.0)
    # ranked as on another set (C worst, A best): bottom C 8% vs top A 15%
    ranked = disparity(assign, recs, ranking=["C", "B", "A"])
    assert (ranked["bottom"], ranked["top"]) == ("C", "A")
    assert ranked["relative_gap"] == pytest.approx((8 - 15) / 15 * 100)
    assert ranked["bottom_speaker_share"] == pytest.approx(20.0)


# ---------------------------------------------------------------------------------------------
# automatic cohorts
# ---------------------------------------------------------------------------------------------


def blobs(seed: int = 0) -> Tuple[List[str], np.ndarray, Dict[str, SpeakerRecord]]:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 0.0], [0.0, 6.0, 6.0]])
    speakers, rows, recs = [], [], {}
    for i in range(30):
        c = i % 3
        s = f"spk{i:02d}"
        speakers.append(s)
        rows.append(centres[c] + rng.normal(scale=0.5, size=3))
        recs[s] = SpeakerRecord(s, errors=[5, 20, 10][c], words=100, utts=1)
    return speakers, np.array(rows), recs


def test_kmeans_cohorts_deterministic_and_ranked() -> None:
    speakers, x, recs = blobs()
    a = fit_auto_cohorts(speakers, x, recs, num_clusters=3, seed=3, n_init=4)
    b = fit_auto_cohorts(speakers, x, recs, num_clusters=3, seed=3, n_init=4)
    assert a.assign(speakers, x) == b.assign(speakers, x)
    assert np.array_equal(a.centroids, b.centroids)
    labels = a.assign(speakers, x)
    # clusters named by decreasing WER: the 20% blob is auto1, the 10% blob auto2, the 5% blob auto3
    assert {labels[s] for s in speakers[1::3]} == {"auto1"}
    assert {labels[s] for s in speakers[2::3]} == {"auto2"}
    assert {labels[s] for s in speakers[0::3]} == {"auto3"}
    # new speakers go to the nearest centroid (in the standardised space); json round trip keeps that
    new = np.array([[5.2, 4.9, 0.1], [0.1, 5.8, 6.3], [-0.2, 0.1, 0.0]])
    again = AutoCohorts.from_dict(json.loads(json.dumps(a.to_dict())))
    assert a.predict(new) == again.predict(new) == ["auto1", "auto2", "auto3"]
    z = a.transform(new)
    nearest = [a.names[int(np.argmin(((a.centroids - row) ** 2).sum(1)))] for row in z]
    assert nearest == a.predict(new)


def test_fbank_stats_extractor_is_deterministic() -> None:
    from serac.speaker.embeddings import FbankStatsExtractor

    ext = FbankStatsExtractor()
    audio = np.random.default_rng(0).normal(scale=0.1, size=16000).astype(np.float32)
    v1, v2 = ext.embed_utterance(audio, 16000), ext.embed_utterance(audio, 16000)
    assert v1.shape == (80,) and np.array_equal(v1, v2) and np.all(np.isfinite(v1))


# ---------------------------------------------------------------------------------------------
# discovery CLI on a tiny decode
# ---------------------------------------------------------------------------------------------


def write_cuts(path: Path, speakers: Dict[str, dict], utts: Dict[str, str]) -> None:
    from lhotse import CutSet, MonoCut, SupervisionSegment

    cuts = []
    for cut_id, speaker in utts.items():
        sup = SupervisionSegment(id=cut_id, recording_id=cut_id, start=0.0, duration=1.0, text="a b c d",
                                 speaker=speaker, custom=dict(speakers[speaker]))
        cuts.append(MonoCut(id=cut_id, start=0.0, duration=1.0, channel=0, supervisions=[sup]))
    CutSet.from_cuts(cuts).to_file(path)


def test_discover_cli_geo_and_geodemo(tmp_path: Path) -> None:
    from functools import partial

    from entry_points import run_entry_point
    from serac.fairness.cohort_metrics import apply_cohort_maps, cohort_wer, load_cohort_map, load_cut_attributes
    from serac.scoring.wer import store_transcripts

    main = partial(run_entry_point, "discover_cohorts")

    def make(prefix: str, n: int, seed: int) -> Tuple[Path, Path]:
        rng = np.random.default_rng(seed)
        speakers, utts, results = {}, {}, []
        for i in range(n):
            s = f"{prefix}{i:02d}"
            west = i % 2 == 0
            speakers[s] = {"lon": float(rng.uniform(-120, -100) if west else rng.uniform(-90, -70)),
                           "lat": float(rng.uniform(30, 45)), "zip": f"{i:05d}",
                           "demo_urbanicity": "rural" if west else "urban"}
            for j in range(3):
                cut_id = f"{s}-{j}"
                utts[cut_id] = s
                hyp = "a x y d" if west else "a b c d"  # the west is worse
                results.append((cut_id, "a b c d".split(), hyp.split()))
        cuts = tmp_path / f"{prefix}.jsonl.gz"
        write_cuts(cuts, speakers, utts)
        recogs = tmp_path / f"recogs-{prefix}.txt"
        store_transcripts(recogs, results)
        return recogs, cuts

    fit_r, fit_c = make("dv", 12, 0)
    ev_r, ev_c = make("te", 10, 1)
    out = tmp_path / "geo"
    assert main(["--method", "geo", "--fit-recogs", str(fit_r), "--fit-cuts", str(fit_c), "--eval-recogs", str(ev_r),
                 "--eval-cuts", str(ev_c), "--max-leaves", "4", "--min-speakers", "2", "--min-words", "8",
                 "--out-dir", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    tree = json.loads((out / "model.json").read_text())
    assert tree["tree"]["split"]["feature"] == "lon" and -100 < tree["tree"]["split"]["threshold"] < -90
    assert tree["num_leaves"] == 2  # no further split changes the WER
    assert summary["fit"]["bottom_wer"] == pytest.approx(50.0) and summary["fit"]["top_wer"] == pytest.approx(0.0)
    assert summary["eval"]["ranking"] == "fit" and summary["eval"]["bottom_wer"] == pytest.approx(50.0)
    assert (out / "map-fit.png").is_file() and (out / "map-eval.png").is_file()
    # the cohort map scores test through cohort_metrics (what steps/score_cohorts.sh --cohort-map does)
    cmap = load_cohort_map(out / "cohort-map.tsv")
    assert cmap.key == "geo_region" and len(cmap.values) == 22
    report = cohort_wer(ev_r, apply_cohort_maps(load_cut_attributes(ev_c), [cmap]), "geo_region", n_bootstrap=0)
    assert report.max_wer == pytest.approx(50.0) and report.min_wer == pytest.approx(0.0)

    out = tmp_path / "geodemo"
    assert main(["--method", "geodemo", "--fit-recogs", str(fit_r), "--fit-cuts", str(fit_c), "--eval-recogs",
                 str(ev_r), "--eval-cuts", str(ev_c), "--min-speakers", "2", "--min-words", "8",
                 "--out-dir", str(out)]) == 0
    model = json.loads((out / "model.json").read_text())
    assert model["partition"]["attribute"] == "demo_urbanicity"
    cmap = load_cohort_map(out / "cohort-map.tsv")
    assert cmap.values["te00"]["geodemo"] == cmap.values["dv00"]["geodemo"]  # both west = rural


# ---------------------------------------------------------------------------------------------
# EWC: Fisher against brute force, penalty, trainer hook
# ---------------------------------------------------------------------------------------------

TINY_MODEL = {"encoder": {"name": "lstm", "hidden_dim": 12, "num_layers": 1, "output_dim": 10,
                          "subsampling_factor": 2, "dropout": 0.0},
              "decoder_dim": 8, "joiner_dim": 8, "context_size": 2}
LOSS_CFG = {"rnnt_type": "modified", "prune_range": 3, "lm_scale": 0.25, "am_scale": 0.0, "simple_loss_scale": 0.5,
            "warm_step": 500}


def tiny_model(seed: int = 0):
    from serac.transducer.model import build_model

    torch.manual_seed(seed)
    return build_model(TINY_MODEL, num_features=6, vocab_size=7, blank_id=0)


def tiny_batch(seed: int = 1, n: int = 4):
    g = torch.Generator().manual_seed(seed)
    lens = torch.tensor([24, 20, 17, 22][:n])
    x = torch.randn(n, int(lens.max()), 6, generator=g)
    y = [torch.randint(1, 7, (int(k),), generator=g).tolist() for k in [3, 2, 4, 1][:n]]
    return x, lens, y


def test_fisher_matches_brute_force_per_sample_gradients() -> None:
    from serac.train.ewc import fisher_diagonal
    from serac.transducer.loss import backend

    if backend is None:
        pytest.skip("no RNN-T backend")
    model = tiny_model()
    x, lens, y = tiny_batch()
    # two batches (padded), 3 + 1 utterances
    batches = [(x[:3], lens[:3], y[:3]), (x[3:], lens[3:], y[3:])]
    fisher, stats = fisher_diagonal(model, batches, LOSS_CFG)
    assert stats["num_utts"] == 4

    # brute force: each utterance alone and unpadded; l_u = (0.5 simple + pruned) / encoder frames
    params = dict(model.named_parameters())
    expect = {n: torch.zeros_like(p) for n, p in params.items()}
    model.eval()
    per_sample = []
    for i in range(4):
        model.zero_grad()
        out = model(x[i:i + 1, : int(lens[i])], lens[i:i + 1], [y[i]], prune_range=3, lm_scale=0.25, am_scale=0.0,
                    rnnt_type="modified")
        loss = (0.5 * out["simple_loss"] + out["pruned_loss"]) / out["num_frames"].float()
        loss.backward()
        per_sample.append({n: p.grad.detach().clone() for n, p in params.items()})
        for n, p in params.items():
            expect[n] += p.grad.detach() ** 2 / 4
    assert set(fisher) == set(expect)
    for n in expect:
        assert torch.allclose(fisher[n], expect[n], rtol=1e-4, atol=1e-10), n
    # it is the mean of squared per-sample gradients, not the square of the mean gradient
    mean_sq = sum(float((sum(g[n] for g in per_sample) / 4).pow(2).sum()) for n in expect)
    assert sum(float(f.sum()) for f in fisher.values()) > 1.05 * mean_sq


def test_fisher_loss_has_the_training_emission_restrictions() -> None:
    """utterance_loss (what the Fisher differentiates) applies loss.onset_margin as training does: on an
    utterance with a leading silence, the restricted loss is the model's own forward with onset_margin."""
    from serac.train.ewc import utterance_loss

    model = tiny_model().eval()
    x = torch.full((1, 24, 6), -4.0)
    x[0, 10:] = torch.randn(14, 6) + 2.0  # silence, then "speech" from frame 10
    lens, y = torch.tensor([24]), [[3, 4]]
    free = utterance_loss(model, x, lens, y, LOSS_CFG).item()
    restricted = utterance_loss(model, x, lens, y, {**LOSS_CFG, "onset_margin": 0}).item()
    out = model(x, lens, y, prune_range=3, lm_scale=0.25, am_scale=0.0, rnnt_type="modified", onset_margin=0)
    expect = ((0.5 * out["simple_loss"] + out["pruned_loss"]) / out["num_frames"]).item()
    assert restricted == pytest.approx(expect)
    assert restricted > free + 1e-3


def test_ewc_penalty_zero_at_theta_star_and_gradient() -> None:
    from serac.train.ewc import EWCPenalty, ewc_distance

    model = tiny_model()
    theta_star = {n: p.detach().clone() for n, p in model.named_parameters()}
    g = torch.Generator().manual_seed(0)
    fisher = {n: torch.rand(p.shape, generator=g) for n, p in model.named_parameters()}
    lam = 7.5
    penalty = EWCPenalty(fisher, theta_star, lam, model=model)
    value = penalty(model)
    assert value.item() == 0.0
    value.backward()
    assert all(torch.count_nonzero(p.grad) == 0 for p in model.parameters())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    model.zero_grad()
    value = penalty(model)
    value.backward()
    expect = 0.0
    for n, p in model.named_parameters():
        delta = p.detach() - theta_star[n]
        expect += 0.5 * lam * float((fisher[n] * delta ** 2).sum())
        assert torch.allclose(p.grad, lam * fisher[n] * delta, rtol=1e-5, atol=1e-7), n
    assert value.item() == pytest.approx(expect, rel=1e-5)
    state = {n: p.detach() for n, p in model.named_parameters()}
    assert ewc_distance(state, fisher, theta_star) == pytest.approx(expect / lam, rel=1e-5)
    # a Fisher that misses a parameter is refused
    with pytest.raises(ValueError):
        EWCPenalty({k: v for k, v in list(fisher.items())[1:]}, theta_star, lam, model=model)


def test_trainer_ewc_section_pulls_towards_theta_star(tmp_path: Path) -> None:
    from serac.train.ewc import save_fisher

    run = TinyTrainer(tmp_path).run
    base_ckpt = run("base", [])
    theta_star = base_ckpt["model"]
    init = str(tmp_path / "base" / "epoch-1.pt")
    fisher_path = tmp_path / "fisher.pt"
    save_fisher({n: torch.ones_like(p) for n, p in tiny_named_parameters(base_ckpt)}, fisher_path)

    def moved(ckpt) -> float:
        return sum(float((ckpt["model"][n] - theta_star[n]).abs().sum()) for n, _ in tiny_named_parameters(base_ckpt))

    plain = run("ft", [], init_from=init)
    ewc = run("ewc", [f"ewc.fisher={fisher_path}", "ewc.lambda=1000"], init_from=init)
    assert ewc["config"]["ewc"] == {"fisher": str(fisher_path), "lambda": 1000}
    assert plain["batch_idx_train"] == ewc["batch_idx_train"] >= 4
    assert moved(ewc) < 0.5 * moved(plain)
    # lambda 0 with a Fisher is exactly plain fine-tuning (same seed, same batches)
    zero = run("ewc0", [f"ewc.fisher={fisher_path}", "ewc.lambda=0"], init_from=init)
    for n in theta_star:
        assert torch.allclose(zero["model"][n], plain["model"][n], atol=1e-6), n
    with pytest.raises(ValueError, match="init-from"):
        run("noinit", [f"ewc.fisher={fisher_path}", "ewc.lambda=1"])


def test_trainer_distill_section_pulls_the_encoder_towards_the_teacher(tmp_path: Path) -> None:
    """distill.teacher / distill.weight (the amortized recipe's optional KD): the fine-tuned encoder's output stays
    closer to the frozen teacher's than plain fine-tuning's does; weight 0 is plain fine-tuning exactly; the
    valid line reports the term; a teacher of another output size is refused, naming the mismatch."""
    from serac.data.tokenizer import Tokenizer
    from serac.transducer.model import build_model

    trainer = TinyTrainer(tmp_path)
    run, valid, tok = trainer.run, trainer.valid, Tokenizer(trainer.lang)

    def encode(ckpt, x):
        model = build_model(ckpt["config"]["model"], num_features=x.size(-1), vocab_size=tok.vocab_size,
                            blank_id=tok.blank_id)
        model.load_state_dict(ckpt["model"])
        with torch.no_grad():
            return model.eval().encode(x, torch.full((x.size(0),), x.size(1)))[0]

    teacher = run("teacher", [])
    init = str(tmp_path / "teacher" / "epoch-1.pt")
    plain = run("ft", [], init_from=init)
    kd = run("kd", [f"distill.teacher={init}", "distill.weight=100"], init_from=init)
    assert plain["batch_idx_train"] == kd["batch_idx_train"] >= 4
    torch.manual_seed(0)
    x = torch.randn(3, 40, 6)  # write_feature_cuts' 6-dim features
    target = encode(teacher, x)
    gap = {name: float(((encode(c, x) - target) ** 2).mean()) for name, c in (("plain", plain), ("kd", kd))}
    assert gap["kd"] < 0.5 * gap["plain"], gap
    assert valid["kd"]["distill_loss"] > 0 and "distill_loss" not in valid["ft"]
    zero = run("kd0", [f"distill.teacher={init}", "distill.weight=0"], init_from=init)
    for n in plain["model"]:
        assert torch.allclose(zero["model"][n], plain["model"][n], atol=1e-6), n
    other = run("other", ["model.encoder.output_dim=12"])
    with pytest.raises(ValueError, match="output_dim is 12, the student's 10"):
        run("bad", [f"distill.teacher={tmp_path / 'other' / 'epoch-1.pt'}", "distill.weight=1"], init_from=init)
    assert other["batch_idx_train"] >= 4


def tiny_named_parameters(ckpt) -> List[Tuple[str, torch.Tensor]]:
    """The trainable entries of a checkpoint's state dict (buffers such as feature statistics excluded)."""
    return [(n, t) for n, t in ckpt["model"].items() if not n.startswith("feat_")]


# ---------------------------------------------------------------------------------------------
# oversampling
# ---------------------------------------------------------------------------------------------


def test_oversampled_manifest_repeats_exactly_the_bottom_cohorts(tmp_path: Path) -> None:
    from lhotse import CutSet, MonoCut, SupervisionSegment

    from serac.fairness.oversample import oversample_cuts, sample_by_duration

    def cut(cut_id: str, speaker: str, dur: float) -> MonoCut:
        return MonoCut(id=cut_id, start=0.0, duration=dur, channel=0,
                       supervisions=[SupervisionSegment(id=cut_id, recording_id=cut_id, start=0.0, duration=dur,
                                                        text="x", speaker=speaker)])

    cuts = CutSet.from_cuts([cut("a1", "A", 1.0), cut("a2", "A", 2.0), cut("b1", "B", 1.5), cut("b2", "B", 0.5),
                             cut("c1", "C", 3.0)])
    over = oversample_cuts(cuts, {"B", "C"}, 3)
    ids = [c.id for c in over]
    assert ids == ["a1", "a2", "b1", "b1_rep1", "b1_rep2", "b2", "b2_rep1", "b2_rep2", "c1", "c1_rep1", "c1_rep2"]
    counts: Dict[str, int] = {}
    for c in over:
        counts[c.supervisions[0].speaker] = counts.get(c.supervisions[0].speaker, 0) + 1
    assert counts == {"A": 2, "B": 6, "C": 3}
    # copies are the same cut under another id
    by_id = {c.id: c for c in over}
    assert by_id["b1_rep2"].supervisions[0].text == by_id["b1"].supervisions[0].text
    assert by_id["b1_rep2"].duration == by_id["b1"].duration
    # k = 1 is the identity; the file round-trips
    assert [c.id for c in oversample_cuts(cuts, {"B"}, 1)] == [c.id for c in cuts]
    over.to_file(tmp_path / "over.jsonl.gz")
    assert len(CutSet.from_file(tmp_path / "over.jsonl.gz")) == 11
    # duration-matched subsets: seeded, order-independent, reach the target
    sub = sample_by_duration(over, 5.0, seed=3)
    assert sum(c.duration for c in sub) >= 5.0
    assert sum(c.duration for c in list(sub)[:-1]) < 5.0
    shuffled = CutSet.from_cuts(list(reversed(list(over))))
    assert [c.id for c in sample_by_duration(shuffled, 5.0, seed=3)] == [c.id for c in sub]


def test_cohort_map_writer_roundtrip(tmp_path: Path) -> None:
    from serac.fairness.cohort_metrics import load_cohort_map

    write_cohort_map({"s2": "g1", "s1": "g0"}, "geo_region", tmp_path / "m.tsv", comment="fitted on dev")
    cmap = load_cohort_map(tmp_path / "m.tsv")
    assert cmap.by == "speaker" and cmap.key == "geo_region"
    assert cmap.values == {"s1": {"geo_region": "g0"}, "s2": {"geo_region": "g1"}}


def test_mitigation_table_by_hand(tmp_path: Path) -> None:
    from functools import partial

    from entry_points import run_entry_point
    from serac.scoring.wer import store_transcripts

    main = partial(run_entry_point, "compare_methods")

    ref = "a b c d e f g h i j".split()

    def hyp(errors: int) -> List[str]:
        return ["x"] * errors + ref[errors:]

    speakers = {"t1": {"region": "R1"}, "t2": {"region": "R1"}, "o1": {"region": "R2"}, "o2": {"region": "R2"}}
    write_cuts(tmp_path / "cuts.jsonl.gz", speakers, {f"{s}-0": s for s in speakers})
    # baseline: targeted R1 (4 + 2) / 20 = 30%, other R2 (1 + 1) / 20 = 10%, overall 20%, region var 100
    # method:   targeted (2 + 1) / 20 = 15% (-50%), other (1 + 2) / 20 = 15% (+50%), overall 15% (-25%), var 0
    for name, errs in (("base", {"t1": 4, "t2": 2, "o1": 1, "o2": 1}), ("m", {"t1": 2, "t2": 1, "o1": 1, "o2": 2}),
                       ("m2", {"t1": 4, "t2": 1, "o1": 1, "o2": 2})):
        store_transcripts(tmp_path / f"{name}.txt", [(f"{s}-0", ref, hyp(e)) for s, e in errs.items()])
    out = tmp_path / "t.json"
    assert main(["mitigation", "--cuts", str(tmp_path / "cuts.jsonl.gz"), "--key", "region", "--targets", "R1",
                 "--method", "none", str(tmp_path / "base.txt"), "--method", "ft", str(tmp_path / "m.txt"),
                 "--baseline", "none", "--out-md", str(tmp_path / "t.md"), "--out-json", str(out)]) == 0
    rows = {r["method"]: r for r in json.loads(out.read_text())["rows"]}
    base, m = rows["none"], rows["ft"]
    assert (base["targeted"], base["other"], base["overall"]) == pytest.approx((30.0, 10.0, 20.0))
    assert (base["mean"], base["max"], base["var"], base["worst"]) == (pytest.approx(20.0), pytest.approx(30.0),
                                                                       pytest.approx(100.0), "R1")
    assert (m["targeted"], m["other"], m["overall"], m["var"]) == pytest.approx((15.0, 15.0, 15.0, 0.0))
    assert m["rel"]["targeted"] == pytest.approx(-50.0) and m["rel"]["other"] == pytest.approx(50.0)
    assert m["rel"]["overall"] == pytest.approx(-25.0) and m["rel"]["var"] == pytest.approx(-100.0)
    # every speaker resample of the targeted pair halves the errors (t1 4 -> 2, t2 2 -> 1): a point interval
    assert m["ci_targeted"] == pytest.approx([-50.0, -50.0])
    assert "not kept within +1%" in (tmp_path / "t.md").read_text()
    # a method given twice (two seeds) is the mean of its runs: targeted (15 + 25) / 2, sd of (15, 25)
    assert main(["mitigation", "--cuts", str(tmp_path / "cuts.jsonl.gz"), "--key", "region", "--targets", "R1",
                 "--method", "none", str(tmp_path / "base.txt"), "--method", "ft", str(tmp_path / "m.txt"),
                 "--method", "ft", str(tmp_path / "m2.txt"), "--baseline", "none", "--out-md", str(tmp_path / "t.md"),
                 "--out-json", str(out)]) == 0
    m = {r["method"]: r for r in json.loads(out.read_text())["rows"]}["ft"]
    assert m["num_runs"] == 2 and m["targeted"] == pytest.approx(20.0) and m["other"] == pytest.approx(15.0)
    assert m["sd"]["targeted"] == pytest.approx(np.std([15.0, 25.0], ddof=1))
    assert m["regions"] == pytest.approx({"R1": 20.0, "R2": 15.0})


def test_mitigation_table_gap_overall_interval_and_targets_from_a_summary(tmp_path: Path) -> None:
    """The columns the ARW row of the fairness recipe relies on: min, bottom/top gap, the overall interval, targets
    from a cohort-summary JSON (the baseline's worst cohort on dev), no Fisher distance for a from-scratch model."""
    from functools import partial

    from entry_points import run_entry_point
    from serac.scoring.wer import store_transcripts

    main = partial(run_entry_point, "compare_methods")
    ref = "a b c d e f g h i j".split()
    speakers = {"t1": {"accent": "A"}, "t2": {"accent": "A"}, "o1": {"accent": "B"}, "o2": {"accent": "B"}}
    write_cuts(tmp_path / "cuts.jsonl.gz", speakers, {f"{s}-0": s for s in speakers})
    # baseline: A 30%, B 10% (gap 200%); scratch: A 15%, B 15% (gap 0), every speaker's errors halved or kept
    for name, errs in (("base", {"t1": 4, "t2": 2, "o1": 1, "o2": 1}), ("m", {"t1": 2, "t2": 1, "o1": 1, "o2": 2})):
        store_transcripts(tmp_path / f"{name}.txt", [(f"{s}-0", ref, ["x"] * e + ref[e:]) for s, e in errs.items()])
    (tmp_path / "dev-summary.json").write_text(json.dumps({"key": "accent", "summary": {"bottom_cohort": "A"}}))
    (tmp_path / "ckpt").mkdir()
    torch.save({"model": {}, "batch_idx_train": 12, "epoch": 3, "config": {}}, tmp_path / "ckpt" / "epoch-3.pt")
    out = tmp_path / "t.json"
    argv = ["mitigation", "--cuts", str(tmp_path / "cuts.jsonl.gz"), "--key", "accent",
            "--targets-from-summary", str(tmp_path / "dev-summary.json"), "--method", "none", str(tmp_path / "base.txt"),
            "--method", "scratch", str(tmp_path / "m.txt"), str(tmp_path / "ckpt"), "--from-scratch", "scratch",
            "--baseline", "none", "--out-md", str(tmp_path / "t.md"), "--out-json", str(out)]
    assert main(argv) == 0
    t = json.loads(out.read_text())
    assert t["targets"] == ["A"] and t["from_scratch"] == ["scratch"]
    rows = {r["method"]: r for r in t["rows"]}
    base, m = rows["none"], rows["scratch"]
    assert (base["min"], base["max"], base["gap"]) == pytest.approx((10.0, 30.0, 200.0))
    assert (m["min"], m["max"], m["gap"]) == pytest.approx((15.0, 15.0, 0.0))
    assert m["steps"] == 12 and "fisher_distance" not in m
    lo, hi = m["ci_overall"]  # overall 20% -> 15%: some resamples get better, none worse than +50%
    assert lo <= -25.0 <= hi and hi <= 50.0 and lo < 0
    md = (tmp_path / "t.md").read_text()
    assert "| cohort mean % | cohort min % | cohort max % (worst) | gap % |" in md
    assert "Per-cohort WER (%), targeted cohorts first:" in md and "gap 0.0% (baseline 200.0%)" in md
    # a summary of another attribute is refused
    (tmp_path / "dev-summary.json").write_text(json.dumps({"key": "gender", "summary": {"bottom_cohort": "f"}}))
    assert main(argv) == 1


# ---------------------------------------------------------------------------------------------
# automatic discovery with serac's own speaker-embedding model
# ---------------------------------------------------------------------------------------------


def tiny_speaker_checkpoint(path: Path, seed: int) -> Path:
    from serac.speaker.model import build_model

    torch.manual_seed(seed)
    model = build_model({"channels": 16, "mfa_channels": 32, "attention_channels": 8, "se_channels": 8,
                         "embedding_dim": 12, "num_mel_bins": 80})
    torch.save({"model_config": model.config, "model": model.state_dict(), "feature": {"sampling_rate": 16000}},
               path)
    return path


def write_tone_cuts(tmp_path: Path, name: str, freqs: Dict[str, float], noise: float, seed: int) -> Path:
    """``<name>.jsonl.gz``: two 0.5 s utterances per speaker, a speaker-specific tone (``freqs``, Hz) plus
    Gaussian noise, as wav files in ``tmp_path``."""
    import soundfile as sf
    from lhotse import CutSet, Recording, SupervisionSegment

    rng = np.random.default_rng(seed)
    cuts = []
    for s, f in freqs.items():
        for j in range(2):
            cut_id = f"{s}-{j}"
            t = np.arange(8000) / 16000.0
            audio = 0.3 * np.sin(2 * np.pi * f * t) + rng.normal(0, noise, t.size)
            sf.write(tmp_path / f"{cut_id}.wav", audio.astype(np.float32), 16000)
            rec = Recording.from_file(tmp_path / f"{cut_id}.wav", recording_id=cut_id)
            cut = rec.to_cut()
            cut.supervisions = [SupervisionSegment(id=cut_id, recording_id=cut_id, start=0.0, duration=rec.duration,
                                                   text="a b c d", speaker=s)]
            cuts.append(cut)
    path = tmp_path / f"{name}.jsonl.gz"
    CutSet.from_cuts(cuts).to_file(path)
    return path


def test_discover_auto_with_the_serac_speaker_model(tmp_path: Path) -> None:
    """--embedding serac --speaker-model: the checkpoint's SHA-1 is in the summary and in the embedding cache's
    name, so another checkpoint in the same output directory is embedded afresh, never read from the cache."""
    from functools import partial

    from entry_points import run_entry_point
    from serac.scoring.wer import store_transcripts
    from serac.speaker.embeddings import file_sha1

    main = partial(run_entry_point, "discover_cohorts")
    cuts_path = write_tone_cuts(tmp_path, "dev", {f"spk{i}": 150.0 + 120 * i for i in range(6)}, noise=0.02, seed=0)
    recogs = tmp_path / "recogs-dev.txt"
    store_transcripts(recogs, [(f"spk{i}-{j}", "a b c d".split(), ("a x c d" if i < 3 else "a b c d").split())
                               for i in range(6) for j in range(2)])
    ck1 = tiny_speaker_checkpoint(tmp_path / "a.pt", seed=1)
    ck2 = tiny_speaker_checkpoint(tmp_path / "b.pt", seed=2)
    out = tmp_path / "auto"
    base = ["--method", "auto", "--fit-recogs", str(recogs), "--fit-cuts", str(cuts_path), "--num-clusters", "2",
            "--out-dir", str(out)]

    assert main([*base, "--embedding", "serac", "--speaker-model", str(ck1)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    sha1 = file_sha1(str(ck1))
    assert summary["params"]["embedding"] == "serac" and summary["params"]["speaker_model_sha1"] == sha1
    assert json.loads((out / "model.json").read_text())["params"]["speaker_model"] == str(ck1)
    caches = sorted(p.name for p in (out / "embeddings").glob("*.npz"))
    assert caches == [f"serac-{sha1[:12]}-max0-seed0-dev.npz"]
    v1 = np.load(out / "embeddings" / caches[0])["vectors"]
    assert v1.shape == (6, 12) and np.allclose(np.linalg.norm(v1, axis=1), 1.0)

    # another checkpoint: a second cache file with other vectors (the first one is not reused)
    assert main([*base, "--embedding", "auto", "--speaker-model", str(ck2)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["params"]["embedding"] == "serac"
    assert summary["params"]["speaker_model_sha1"] == file_sha1(str(ck2)) != sha1
    caches = sorted((out / "embeddings").glob("*.npz"))
    assert len(caches) == 2
    v2 = np.load(next(p for p in caches if sha1[:12] not in p.name))["vectors"]
    assert not np.allclose(v1, v2)

    # a checkpoint with other embedding kinds, or one that is missing: an error, no output rewritten
    assert main([*base, "--embedding", "fbank-stats", "--speaker-model", str(ck1)]) == 1
    assert main([*base, "--embedding", "serac", "--speaker-model", str(tmp_path / "missing.pt")]) == 1
    assert json.loads((out / "summary.json").read_text())["params"]["speaker_model_sha1"] == file_sha1(str(ck2))
