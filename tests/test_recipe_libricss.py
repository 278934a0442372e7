"""egs/libricss/sts end to end on TINY copies of LibriSpeech and LibriCSS laid out exactly like the real corpora
(LibriSpeech: parts / speaker / chapter / FLAC + trans.txt; LibriCSS: for_release/<condition>/<session dir>/record/
raw_recording.wav, 7 channels at 16 kHz, and transcription/meeting_info.txt), built from yesno recordings: lhotse's
librispeech and libricss recipes, the LibriCSS windows, conversations simulated from LibriSpeech, fbank, BPE with
the turn tokens, a shrunken STS trained one epoch on CPU through --train-opts, offline and streaming decoding of
the LibriCSS test windows, scoring per condition and RESULTS.md; dev-clean and LibriCSS come through --download true
(already downloaded: lhotse's markers skip the network). Also: a missing corpus without --download stops stage 0 with
a message naming what is missing."""
from __future__ import annotations

import csv
import json
import subprocess

import numpy as np
import pytest

from recipe_utils import ROOT, SHARED_DATA, recipe_copy, recipe_env, run_recipe
from test_recipe_librispeech import make_tiny_librispeech
from test_recipe_sts import TINY_MODEL

YESNO = SHARED_DATA / "yesno"
LIBRISPEECH_PARTS = {"train-clean-100": {"19": 4, "26": 4, "32": 4}, "dev-clean": {"84": 2, "174": 2}}
# LibriCSS's directory names: for_release/<condition>/overlap_ratio_<r>_sil<a>_<b>_session<n>_actual<r'>
CONDITIONS = {"0L": ("0.0", "2.9_3.0", 0.0), "0S": ("0.0", "0.1_0.5", 0.0), "OV10": ("10.0", "0.1_1.0", 0.1),
              "OV20": ("20.0", "0.1_1.0", 0.2), "OV30": ("30.0", "0.1_1.0", 0.3), "OV40": ("40.0", "0.1_1.0", 0.4)}
CSS_SPEAKERS = ("1089", "121", "1320")
TURNS_PER_SESSION = 4
TINY_STS = " ".join(TINY_MODEL + ["--set", "model.separator.separator_layers=1", "--set",
                                  "model.separator.tail_encoder.num_layers=1", "--set", "data.num_workers=0",
                                  "--set", "data.num_buckets=2", "--set", "data.spec_augment=null"])


def make_tiny_libricss(root):
    """LibriCSS/for_release/<condition>/<session>/ for sessions 0 (dev) and 1 (test) of each condition: four yesno
    utterances of three speakers placed like the condition (long or short silences, or overlaps of the condition's
    ratio), mixed into 7 channels (a gain per microphone) at 16 kHz."""
    import soundfile as sf

    with open(YESNO / "utterances.tsv") as f:
        utts = list(csv.DictReader(f, delimiter="\t"))
    rng = np.random.default_rng(0)
    k = 0
    for cond, (ratio, sil, target) in CONDITIONS.items():
        for session in (0, 1):
            turns, audio = [], []
            for i in range(TURNS_PER_SESSION):
                utt = utts[k % len(utts)]
                k += 1
                samples, sr = sf.read(YESNO / utt["path"], dtype="float32")
                audio.append(np.repeat(samples, 16000 // sr) * 0.5)   # 8 -> 16 kHz, as LibriCSS is recorded
                turns.append((CSS_SPEAKERS[i % 3], utt["text"], len(audio[-1]) / 16000))
            total = sum(d for _, _, d in turns)
            overlap = target * total / (1 + target) / (TURNS_PER_SESSION - 1)   # per turn change
            lo, hi = (float(x) for x in sil.split("_"))
            starts, t = [], 0.5
            for _, _, dur in turns:
                starts.append(round(t, 3))
                t = starts[-1] + dur + (-overlap if target else rng.uniform(lo, hi))
            length = int((max(s + d for s, (_, _, d) in zip(starts, turns)) + 0.5) * 16000)
            mix = np.zeros((length, 7), dtype=np.float32)
            for s, a in zip(starts, audio):
                mix[int(s * 16000):int(s * 16000) + len(a)] += a[:, None] * np.linspace(1.0, 0.7, 7)[None, :]
            name = f"overlap_ratio_{ratio}_sil{sil}_session{session}_actual{100 * target:.1f}"
            d = root / "LibriCSS/for_release" / cond / name
            (d / "record").mkdir(parents=True)
            (d / "transcription").mkdir()
            sf.write(d / "record/raw_recording.wav", mix, 16000, subtype="PCM_16")
            lines = ["start_time\tend_time\tspeaker\tutterance_id\ttranscription\n"]
            for i, (s, (spk, text, dur)) in enumerate(zip(starts, turns)):
                lines.append(f"{s:.3f}\t{s + dur:.3f}\t{spk}\t{spk}-{session}-{i:04d}\t{text}\n")
            (d / "transcription/meeting_info.txt").write_text("".join(lines))
    return root / "LibriCSS"


@pytest.mark.skipif(not (YESNO / "waves_yesno").is_dir(), reason=f"{YESNO} not present")
def test_libricss_recipe_tiny(tmp_path, monkeypatch):
    from lhotse import load_manifest

    # the training part where --librispeech-dir says; dev-clean and LibriCSS only in --dl-dir, as lhotse's download
    # recipes leave them (their completion markers make --download true skip the network: the download wiring runs)
    librispeech = make_tiny_librispeech(tmp_path / "corpus", {"train-clean-100": LIBRISPEECH_PARTS["train-clean-100"]})
    dl_dir = tmp_path / "dl"
    make_tiny_librispeech(dl_dir, {"dev-clean": LIBRISPEECH_PARTS["dev-clean"]})
    (dl_dir / "LibriSpeech/dev-clean/.completed").touch()
    make_tiny_libricss(dl_dir)
    (dl_dir / "LibriCSS/for_release.zip").touch()
    recipe = recipe_copy("libricss/sts", tmp_path / "libricss")

    # no corpus where it is said to be, no --download: stage 0 names what is missing and how to get it
    missing = subprocess.run(["bash", "./run.sh", "--librispeech-dir", str(tmp_path / "nowhere"), "--libricss-dir",
                              str(tmp_path / "nowhere"), "--stop-stage", "0"], cwd=recipe, env=recipe_env(),
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0
    assert "LibriSpeech parts not found" in missing.stderr and "train-other-500" in missing.stderr
    assert "LibriCSS parts not found" in missing.stderr and "for_release/OV40" in missing.stderr
    assert "--download true" in missing.stderr

    args = ["--librispeech-dir", str(librispeech), "--libricss-dir", str(tmp_path / "nowhere"), "--download", "true",
            "--dl-dir", str(dl_dir), "--train-parts", "train-clean-100",
            "--conversations", "train:8,dev:2", "--max-window-s", "20", "--prepare-nj", "1", "--sim-nj", "1",
            "--fbank-nj", "1", "--vocab-size", "12", "--systems", "sts", "--gpus-per-node", "0", "--train-threads",
            "1", "--num-epochs", "1", "--avg", "1", "--decode-nj", "1", "--n-bootstrap", "50",
            "--train-opts", TINY_STS]
    proc = run_recipe(recipe, *args, timeout=600)
    for n in range(8):
        assert f"Stage {n}:" in proc.stdout
    assert (recipe / "data/manifests/log/download_librispeech.log").is_file()
    assert (recipe / "data/manifests/librispeech_supervisions_dev-clean.jsonl.gz").is_file()

    monkeypatch.chdir(recipe)  # feature paths are relative to the recipe
    recordings = load_manifest(recipe / "data/manifests/libricss-mdm_recordings_all.jsonl.gz")
    assert len(recordings) == 12 and all(r.num_channels == 7 for r in recordings)
    windows = load_manifest(recipe / "data/fbank/libricss_cuts_test.jsonl.gz")
    assert {c.custom["condition"] for c in windows} == set(CONDITIONS)
    assert {c.custom["session"] for c in windows} == {"session1"}
    # every test turn is in exactly one window, whole (the windows never cut a turn), on channel 0
    assert sum(len(c.supervisions) for c in windows) == 6 * TURNS_PER_SESSION
    for c in windows:
        assert all(0 <= s.start and s.end <= c.duration + 1e-3 for s in c.supervisions)
        assert all(s.text == s.text.strip() and s.speaker in CSS_SPEAKERS for s in c.supervisions)
        assert c.channel == 0 and c.load_features().shape[0] == c.num_frames
    assert len([c for c in windows if c.custom["condition"] == "0L"]) == 2   # 2 x 2 turns in 20 s windows
    assert len(load_manifest(recipe / "data/manifests/libricss_cuts_dev.jsonl.gz")) >= 6

    convs = load_manifest(recipe / "data/fbank/conv_cuts_train.jsonl.gz")
    assert len(convs) == 8
    assert all(len({s.speaker for s in c.supervisions}) == 2 for c in convs)
    dev_speakers = {s.speaker for c in load_manifest(recipe / "data/fbank/conv_cuts_dev.jsonl.gz")
                    for s in c.supervisions}
    assert dev_speakers <= {"84", "174"}

    dec = recipe / "exp/sts/decode/libricss_test"
    for sfx in ("greedy_search-epoch-1-avg-1", "streaming_greedy_search-chunk-160ms-epoch-1-avg-1"):
        hyps = [json.loads(line) for line in (dec / f"hyps-libricss_test-{sfx}.jsonl").read_text().splitlines()]
        assert sorted(h["id"] for h in hyps) == sorted(c.id for c in windows)
        score = json.loads((dec / f"multitalker-libricss_test-{sfx}.json").read_text())
        assert list(score["bins"]) == sorted(CONDITIONS) and score["options"]["group_by"] == "condition"
        assert score["overall"]["ref_turns"] == 6 * TURNS_PER_SESSION
    results = (recipe / "RESULTS.md").read_text()
    assert "# libricss / sts" in results and "### Per condition (`libricss_test`)" in results
    for cond in CONDITIONS:
        assert f"| `sts` | {cond} |" in results
    assert "| libricss test |" in results and "### Streaming (`libricss_test`" in results

    again = run_recipe(recipe, *args, "--stop-stage", "2", timeout=300)
    assert "libricss_cuts_{dev,test}.jsonl.gz exist, skipping" in again.stdout
    assert "conv_cuts_{train,dev}.jsonl.gz exist; skipping" in again.stdout
    # windows made with other options are not reused silently
    other = run_recipe(recipe, *args, "--max-window-s", "30", "--stop-stage", "0", check=False)
    assert other.returncode != 0 and "max_window_s=20 margin_s=0.5', not" in other.stderr


def test_libricss_conf_builds_the_paper_scale_model():
    from serac.config import load_config
    from serac.transducer.model import build_model

    cfg = load_config(ROOT / "egs/libricss/sts/conf/sts.yaml")
    model = build_model(cfg["model"], 80, 500)
    assert model.encoder.num_output_channels == 2
    assert 40e6 < sum(p.numel() for p in model.parameters()) < 50e6   # the size its comment states (46.6 M)
    for system in ("mt_rnnt", "sts_no_penalty", "sts_no_fastemit"):
        assert load_config(ROOT / f"egs/libricss/sts/conf/{system}.yaml")["model"] == cfg["model"]
