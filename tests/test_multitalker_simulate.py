"""Conversation simulation (serac/multitalker/simulate.py and serac.bin.simulate_conversations)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from entry_points import run_entry_point
import soundfile as sf
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet, load_manifest
from lhotse.utils import fastcopy

from serac.multitalker.simulate import (ConversationConfig, check_disjoint_speakers, conversation_turns,
                                        max_active_talkers, overlap_ratio, place_turns, simulate_conversations)

SR = 16000
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet".split()


def make_source_corpus(root: Path, prefix: str = "synth", speakers_per_split=None, utts: int = 4) -> Path:
    """A tiny single-speaker corpus laid out like the synth corpus's manifests (tones of random lengths)."""
    speakers_per_split = speakers_per_split or {"train": 4, "dev": 3, "test": 3}
    rng = np.random.default_rng(0)
    manifest_dir = root / "manifests"
    manifest_dir.mkdir(parents=True, exist_ok=True)
    for split, num in speakers_per_split.items():
        recs, sups = [], []
        for s in range(num):
            spk = f"{split}spk{s}"
            for u in range(utts):
                uid = f"{spk}-{u:02d}"
                dur = float(rng.uniform(0.6, 1.6))
                t = np.arange(int(dur * SR)) / SR
                path = root / "audio" / f"{uid}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, (0.1 * np.sin(2 * np.pi * (200 + 50 * s) * t)).astype(np.float32), SR)
                rec = Recording.from_file(path, recording_id=uid)
                recs.append(rec)
                text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 4)))).upper()
                sups.append(SupervisionSegment(id=uid, recording_id=uid, start=0.0, duration=rec.duration,
                                               channel=0, text=text, speaker=spk))
        RecordingSet.from_recordings(recs).to_file(manifest_dir / f"{prefix}_recordings_{split}.jsonl.gz")
        SupervisionSet.from_segments(sups).to_file(manifest_dir / f"{prefix}_supervisions_{split}.jsonl.gz")
    return manifest_dir


def source_cuts(manifest_dir: Path, split: str, prefix: str = "synth") -> CutSet:
    return CutSet.from_manifests(
        recordings=load_manifest(manifest_dir / f"{prefix}_recordings_{split}.jsonl.gz"),
        supervisions=load_manifest(manifest_dir / f"{prefix}_supervisions_{split}.jsonl.gz"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_source_corpus(tmp_path_factory.mktemp("conv"))


def test_conversations_have_turns_speakers_and_at_most_two_talkers(corpus):
    cuts = source_cuts(corpus, "train")
    convs = simulate_conversations(cuts, 40, seed=3, config=ConversationConfig(speakers=(2, 3), turns=(3, 7)))
    assert len(convs) == 40
    sources = {c.supervisions[0].id: c.supervisions[0] for c in cuts}
    num_speakers = set()
    for conv in convs:
        turns = conversation_turns(conv)
        assert 3 <= len(turns) <= 7
        assert max_active_talkers([(t.start, t.end) for t in turns]) <= 2
        assert all(a.speaker != b.speaker for a, b in zip(turns, turns[1:])), conv.id  # turns change speaker
        for t in turns:  # every turn keeps its source's speaker and words
            assert t.speaker == sources[t.id].speaker and t.text == sources[t.id].text
        assert conv.duration == pytest.approx(max(t.end for t in turns), abs=1e-3)
        num_speakers.add(len({t.speaker for t in turns}))
    assert num_speakers == {2, 3}


def test_overlap_ratio_follows_the_configured_target(corpus):
    cuts = source_cuts(corpus, "train")
    none = simulate_conversations(cuts, 20, seed=1, config=ConversationConfig(overlap_ratios=[0.0]))
    assert all(overlap_ratio([(t.start, t.end) for t in conversation_turns(c)]) == 0.0 for c in none)
    some = simulate_conversations(cuts, 30, seed=1, config=ConversationConfig(overlap_ratios=[0.3], turns=(4, 6)))
    ratios = [overlap_ratio([(t.start, t.end) for t in conversation_turns(c)]) for c in some]
    assert 0.2 < float(np.median(ratios)) <= 0.3 + 1e-3
    assert max(ratios) <= 0.3 + 1e-2


def test_place_turns_never_overlaps_three_even_with_a_large_target():
    rng = np.random.default_rng(5)
    for _ in range(200):
        durs = rng.uniform(0.2, 3.0, size=int(rng.integers(2, 9))).tolist()
        starts = place_turns(durs, 0.9, (0.0, 0.5), rng)
        assert starts == sorted(starts)
        assert max_active_talkers([(s, s + d) for s, d in zip(starts, durs)]) <= 2


def test_mixed_audio_loads(corpus):
    conv = simulate_conversations(source_cuts(corpus, "dev"), 1, seed=2, config=ConversationConfig())[0]
    audio = conv.load_audio()
    assert audio.shape[-1] == pytest.approx(conv.duration * SR, abs=2)


def test_disjoint_speakers_are_checked():
    check_disjoint_speakers({"train": ["a", "b"], "test": ["c"]})
    with pytest.raises(ValueError, match="speaker b occurs in both split train and split test"):
        check_disjoint_speakers({"train": ["a", "b"], "test": ["b"]})


def test_source_cut_without_speaker_is_named(corpus):
    cut = source_cuts(corpus, "dev")[0]
    bad = fastcopy(cut, supervisions=[fastcopy(cut.supervisions[0], speaker=None)])
    with pytest.raises(ValueError, match=f"cut {cut.id}: supervision .* has no speaker"):
        simulate_conversations([bad], 1, seed=1, config=ConversationConfig())


def _run(args, monkeypatch):
    assert run_entry_point("simulate_conversations", args) == 0


def test_bin_is_deterministic_for_any_nj_and_checks_speakers(corpus, tmp_path, monkeypatch):
    common = ["--manifest-dir", str(corpus), "--splits", "train:12,test:7", "--seed", "4", "--speakers", "2,3"]
    one = tmp_path / "one"
    _run([*common, "--out-dir", str(one)], monkeypatch)
    three = tmp_path / "three"
    for job in (1, 2, 3):
        _run([*common, "--out-dir", str(three), "--nj", "3", "--job", str(job)], monkeypatch)
    _run([*common, "--out-dir", str(three), "--nj", "3", "--merge"], monkeypatch)
    for split in ("train", "test"):
        a = [c.to_dict() for c in load_manifest(one / f"conv_cuts_{split}.jsonl.gz")]
        b = [c.to_dict() for c in load_manifest(three / f"conv_cuts_{split}.jsonl.gz")]
        assert a == b and len(a) == {"train": 12, "test": 7}[split]
    train_speakers = {s.speaker for c in load_manifest(one / "conv_cuts_train.jsonl.gz") for s in c.supervisions}
    test_speakers = {s.speaker for c in load_manifest(one / "conv_cuts_test.jsonl.gz") for s in c.supervisions}
    assert train_speakers and test_speakers and not train_speakers & test_speakers
    _run([*common[:-4], "--speakers", "2,3", "--seed", "5", "--out-dir", str(tmp_path / "other")], monkeypatch)
    other = [c.to_dict() for c in load_manifest(tmp_path / "other" / "conv_cuts_train.jsonl.gz")]
    assert other != [c.to_dict() for c in load_manifest(one / "conv_cuts_train.jsonl.gz")]
    # a manifest directory whose splits share a speaker is refused
    shared = make_source_corpus(tmp_path / "shared", speakers_per_split={"train": 2, "test": 2})
    sups = load_manifest(shared / "synth_supervisions_test.jsonl.gz")
    SupervisionSet.from_segments([fastcopy(s, speaker="trainspk0") for s in sups]).to_file(
        shared / "synth_supervisions_test.jsonl.gz")
    with pytest.raises(ValueError, match="speaker trainspk0 occurs in both split train and split test"):
        _run(["--manifest-dir", str(shared), "--splits", "train:2,test:2", "--out-dir", str(tmp_path / "x")],
             monkeypatch)


def test_bin_draws_a_split_from_other_source_splits(corpus, tmp_path, monkeypatch, capsys):
    """--sources: conversation split "mix" draws on the source splits dev and test together (LibriSpeech's parts in
    egs/libricss/sts); a split not named reads its own; a wrong mapping or a missing part is named."""
    _run(["--manifest-dir", str(corpus), "--splits", "mix:6,train:2", "--sources", "mix:dev+test",
          "--out-dir", str(tmp_path / "out")], monkeypatch)
    mix = {s.speaker for c in load_manifest(tmp_path / "out/conv_cuts_mix.jsonl.gz") for s in c.supervisions}
    assert mix <= {f"{split}spk{s}" for split in ("dev", "test") for s in range(3)}
    assert {spk[:3] for spk in mix} == {"dev", "tes"}   # both source splits are drawn on (6 conversations)
    train = {s.speaker for c in load_manifest(tmp_path / "out/conv_cuts_train.jsonl.gz") for s in c.supervisions}
    assert all(spk.startswith("train") for spk in train)
    bad = ["--manifest-dir", str(corpus), "--splits", "mix:2", "--sources", "other:dev", "--out-dir", str(tmp_path)]
    assert run_entry_point("simulate_conversations", bad) == 1
    assert "--sources: expected 'split:part+part,...' naming splits of --splits (mix), got 'other:dev'" in \
        capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="the source of conversation split mix"):
        _run(["--manifest-dir", str(corpus), "--splits", "mix:2", "--sources", "mix:dev+nowhere",
              "--out-dir", str(tmp_path / "bad")], monkeypatch)
