"""Mitigation for *discovered* cohorts (Dheram et al., Interspeech 2022) in the fairness recipe: the automatic
discovery labels the training and adapt speakers (--label-cuts), local/make_adapt_sets.py targets a discovered
cohort from its map (and refuses unlabelled cuts), compare_methods reads every discovery's dev-ranked bottom/top gap
before and after, and local/write_results.py turns that into the RESULTS table with the verdicts."""
from __future__ import annotations

import importlib.util
import json
from functools import partial
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from lhotse import load_manifest

from entry_points import run_entry_point
from serac.fairness.discovery import write_cohort_map
from serac.scoring.wer import store_transcripts
from test_fairness import write_cuts, write_tone_cuts

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / "egs/synth_assistant/fairness/local"
REF = "a b c d e f g h i j".split()


def _local(name: str):
    spec = importlib.util.spec_from_file_location(f"fairness_{name}", LOCAL / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _recogs(path: Path, errors: Dict[str, int]) -> None:
    """One 10-word utterance per cut id with ``errors`` substitutions."""
    store_transcripts(path, [(cut_id, REF, ["x"] * e + REF[e:]) for cut_id, e in errors.items()])


# ---------------------------------------------------------------------------------------------
# stage 3: the sets of a discovered cohort
# ---------------------------------------------------------------------------------------------


def _adapt_fixture(tmp_path: Path) -> Dict[str, Path]:
    """dev: d1, d2 in auto1 (40% WER), d3, d4 in auto2 (10%), d5 in auto3 (20%); adapt a1 (auto1), a2 (auto2);
    train t1, t2 (auto1), t3..t6 (others). No cut carries auto_cohort: only the map gives it."""
    cohort = {"d1": "auto1", "d2": "auto1", "d3": "auto2", "d4": "auto2", "d5": "auto3", "a1": "auto1",
              "a2": "auto2", "t1": "auto1", "t2": "auto1", "t3": "auto2", "t4": "auto2", "t5": "auto3", "t6": "auto3"}
    paths = {}
    for split, speakers in (("dev", ["d1", "d2", "d3", "d4", "d5"]), ("adapt", ["a1", "a2"]),
                            ("train", ["t1", "t2", "t3", "t4", "t5", "t6"])):
        paths[split] = tmp_path / f"{split}.jsonl.gz"
        write_cuts(paths[split], {s: {"region": "r"} for s in speakers},
                   {f"{s}-{j}": s for s in speakers for j in range(2)})
    errs = {"d1": 4, "d2": 4, "d3": 1, "d4": 1, "d5": 2}
    _recogs(tmp_path / "recogs-dev.txt", {f"{s}-{j}": e for s, e in errs.items() for j in range(2)})
    paths["recogs"] = tmp_path / "recogs-dev.txt"
    paths["map"] = tmp_path / "cohort-map.tsv"
    write_cohort_map(cohort, "auto_cohort", paths["map"], comment="k-means, fitted on dev")
    return paths


def _make_sets(paths: Dict[str, Path], out: Path, *extra: str) -> None:
    _local("make_adapt_sets").main(
        ["--dev-recogs", str(paths["recogs"]), "--dev-cuts", str(paths["dev"]), "--key", "auto_cohort",
         "--cohort-map", str(paths["map"]), "--adapt-cuts", str(paths["adapt"]), "--train-cuts", str(paths["train"]),
         "--oversample-factor", "3", "--out-dir", str(out), *extra])


def test_adapt_sets_target_the_discovered_bottom_cohort(tmp_path: Path) -> None:
    paths = _adapt_fixture(tmp_path)
    out = tmp_path / "sets"
    _make_sets(paths, out, "--num-targets", "1")
    meta = json.loads((out / "targets.json").read_text())
    assert meta["key"] == "auto_cohort" and meta["targets"] == ["auto1"]
    assert [r["cohort"] for r in meta["dev_ranking"]] == ["auto1", "auto3", "auto2"]
    assert meta["adapt_speakers"] == ["a1"] and meta["train_target_speakers"] == 2
    assert meta["cohort_map"] == str(paths["map"])
    # oversampling repeats exactly the bottom cohort's training speakers (t1, t2: 2 cuts each, x3)
    counts: Dict[str, int] = {}
    for c in load_manifest(out / "oversample_full.jsonl.gz"):
        counts[c.supervisions[0].speaker] = counts.get(c.supervisions[0].speaker, 0) + 1
    assert counts == {"t1": 6, "t2": 6, "t3": 2, "t4": 2, "t5": 2, "t6": 2}
    assert {c.supervisions[0].speaker for c in load_manifest(out / "adapt_pool.jsonl.gz")} == {"a1"}
    assert (out / "targets.txt").read_text() == "auto1\n"


def test_adapt_sets_refuse_unlabelled_cuts_and_all_cohorts_targeted(tmp_path: Path) -> None:
    paths = _adapt_fixture(tmp_path)
    # every dev cohort targeted: no other cohort left
    with pytest.raises(SystemExit, match=r"--num-targets 3: choose 1 to 2: dev has 3 auto_cohort cohorts"):
        _make_sets(paths, tmp_path / "sets", "--num-targets", "3")
    # a training speaker the discovery did not label (discovered without --label-cuts): an error naming the cut
    lines = [line for line in paths["map"].read_text().splitlines() if not line.startswith("t5\t")]
    paths["map"].write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit, match=r"train.jsonl.gz: cut 't5-0' \(speaker 't5'\) has no 'auto_cohort': not in "
                                         r"the cohort map .*cohort-map.tsv \(discover the cohorts with this manifest "
                                         r"as --label-cuts"):
        _make_sets(paths, tmp_path / "sets", "--num-targets", "1")
    assert not (tmp_path / "sets" / "targets.json").exists()


# ---------------------------------------------------------------------------------------------
# stage 1: the automatic discovery labels more manifests by the nearest centroid
# ---------------------------------------------------------------------------------------------


def test_auto_discovery_labels_the_label_cuts_speakers_by_nearest_centroid(tmp_path: Path) -> None:
    """Two tone groups on dev (low tones decoded badly): the training speakers with a low / high tone get the low /
    high group's cohort, so stage 3 can target them."""
    low, high = {"dl1": 200.0, "dl2": 230.0, "dl3": 260.0}, {"dh1": 2400.0, "dh2": 2600.0, "dh3": 2800.0}
    dev = write_tone_cuts(tmp_path, "dev", {**low, **high}, noise=0.01, seed=0)
    train = write_tone_cuts(tmp_path, "train", {"tl1": 215.0, "tl2": 245.0, "th1": 2500.0, "th2": 2700.0}, noise=0.01,
                            seed=1)
    store_transcripts(tmp_path / "recogs-dev.txt",
                      [(f"{s}-{j}", "a b c d".split(), ("a x y d" if s in low else "a b c d").split())
                       for s in [*low, *high] for j in range(2)])
    out = tmp_path / "auto"
    main = partial(run_entry_point, "discover_cohorts")
    assert main(["--method", "auto", "--embedding", "fbank-stats", "--num-clusters", "2", "--fit-recogs",
                 str(tmp_path / "recogs-dev.txt"), "--fit-cuts", str(dev), "--label-cuts", str(train),
                 "--out-dir", str(out)]) == 0
    rows = [line.split("\t") for line in (out / "cohort-map.tsv").read_text().splitlines()
            if line and not line.startswith("#")]
    assert rows[0] == ["speaker", "auto_cohort"]
    cohort = dict(rows[1:])
    assert {cohort[s] for s in low} == {"auto1"} and {cohort[s] for s in high} == {"auto2"}  # auto1: the worst
    assert (cohort["tl1"], cohort["tl2"], cohort["th1"], cohort["th2"]) == ("auto1", "auto1", "auto2", "auto2")


# ---------------------------------------------------------------------------------------------
# stage 9: every discovery's gap before and after, with the bottom cohort's interval and the verdict
# ---------------------------------------------------------------------------------------------


def _discovery_fixture(tmp_path: Path) -> List[str]:
    """test: b1, b2 in auto1 (the dev-bottom), t1, t2 in auto2 (the dev-top), m1 in auto3; a summary.json of a
    discovery whose fit ranked auto1 bottom and auto2 top; baseline and oversampling decodes."""
    speakers = {"b1": "auto1", "b2": "auto1", "t1": "auto2", "t2": "auto2", "m1": "auto3"}
    write_cuts(tmp_path / "test.jsonl.gz", {s: {"region": "r"} for s in speakers}, {f"{s}-0": s for s in speakers})
    write_cohort_map(speakers, "auto_cohort", tmp_path / "auto" / "cohort-map.tsv")
    (tmp_path / "auto" / "summary.json").write_text(json.dumps(
        {"method": "auto", "key": "auto_cohort", "params": {"embedding": "fbank-stats"},
         "fit": {"bottom": "auto1", "top": "auto2"}}))
    # baseline: auto1 (4 + 2) / 20 = 30%, auto2 (1 + 1) / 20 = 10%: gap 200%; oversampling: auto1 (2 + 1) / 20 = 15%,
    # auto2 (1 + 2) / 20 = 15%: gap 0%, the bottom cohort -50% (every resample halves it: a point interval)
    _recogs(tmp_path / "base.txt", {"b1-0": 4, "b2-0": 2, "t1-0": 1, "t2-0": 1, "m1-0": 9})
    _recogs(tmp_path / "over.txt", {"b1-0": 2, "b2-0": 1, "t1-0": 1, "t2-0": 2, "m1-0": 9})
    _recogs(tmp_path / "ft.txt", {"b1-0": 4, "b2-0": 2, "t1-0": 1, "t2-0": 1, "m1-0": 0})
    return ["mitigation", "--cuts", str(tmp_path / "test.jsonl.gz"), "--key", "auto_cohort", "--cohort-map",
            str(tmp_path / "auto" / "cohort-map.tsv"), "--targets-from-discovery", str(tmp_path / "auto"),
            "--method", "no adaptation", str(tmp_path / "base.txt"), "--method", "oversampling x4",
            str(tmp_path / "over.txt"), "--method", "fine-tuning", str(tmp_path / "ft.txt"),
            "--baseline", "no adaptation", "--out-md", str(tmp_path / "t.md"), "--out-json", str(tmp_path / "t.json")]


def test_discovered_gap_before_and_after_by_hand(tmp_path: Path) -> None:
    argv = _discovery_fixture(tmp_path)
    main = partial(run_entry_point, "compare_methods")
    assert main(argv) == 0
    t = json.loads((tmp_path / "t.json").read_text())
    assert t["targets"] == ["auto1"] and t["discovery"]["bottom"] == "auto1" and t["discovery"]["top"] == "auto2"
    assert t["targeted_speakers"] == 2  # auto1's test speakers
    rows = {r["method"]: r for r in t["rows"]}
    base, over = rows["no adaptation"], rows["oversampling x4"]
    # the dev-ranked gap, not the test's own max/min (auto3 at 90% is the test's worst, not the dev's bottom)
    assert base["bottom_top_gap"] == pytest.approx(200.0) and base["gap"] == pytest.approx(800.0)
    assert over["bottom_top_gap"] == pytest.approx(0.0) and over["rel"]["bottom_top_gap"] == pytest.approx(-100.0)
    assert over["rel"]["targeted"] == pytest.approx(-50.0) and over["ci_targeted"] == pytest.approx([-50.0, -50.0])

    write_results = _local("write_results")
    text = write_results.discovered_mitigation({"auto": t}, "auto_cohort")
    assert text[0].startswith("| discovery (cohort key) | system | dev-bottom cohort: test WER %")
    body = "\n".join(text[2:])
    assert "| auto (fbank-stats) (`auto_cohort`, targeted) | no adaptation | 30.00 (`auto1`) | 10.00 (`auto2`) | " \
           "200.0 | - | - |" in body
    # the bottom cohort has 2 test speakers: its interval ([-50, -50]) resamples two speakers, so no verdict
    assert "| oversampling x4 | 15.00 (`auto1`) | 15.00 (`auto2`) | 0.0 | -50.0% [-50.0, -50.0] | too small to " \
           "judge (2 test speakers) |" in body
    write_results.MIN_SPEAKERS_TO_JUDGE = 2
    assert "-50.0% [-50.0, -50.0] | holds (interval below 0) |" in "\n".join(
        write_results.discovered_mitigation({"auto": t}, "auto_cohort"))
    assert "fine-tuning" not in body  # the paper's mitigations only
    # tables in section 1's order, the embedding named for the automatic discovery only
    geo = json.loads(json.dumps(t))
    geo["key"], geo["discovery"]["method"] = "geo_region", "geo"
    text = _local("write_results").discovered_mitigation({"auto": t, "geo": geo}, "auto_cohort")
    assert text[2].startswith("| geo (`geo_region`) | no adaptation |") and text[-1].startswith("| auto (fbank-stats)")
    # another target key: not marked targeted; no mitigation decoded: said so
    t["rows"] = [r for r in t["rows"] if r["method"] == "no adaptation"]
    text = _local("write_results").discovered_mitigation({"auto": t}, "region")
    assert "targeted" not in text[2] and "No mitigation of the paper's" in text[-1]

    # a discovery of another key is refused
    bad = list(argv)
    bad[bad.index("--key") + 1] = "geodemo"
    assert main(bad) == 1


def test_label_cuts_labels_by_the_map_and_names_an_unlabelled_speaker(tmp_path):
    """local/label_cuts.py (the cohort-embedding variant's sets): each cut gets its speaker's cohort; the config
    names every cohort of the map in id order; a speaker the map lacks is an error naming the cut."""
    import yaml

    label_cuts = _local("label_cuts")
    paths = _adapt_fixture(tmp_path)
    cmap = {"auto1", "auto2", "auto3"}
    from serac.fairness.cohorts import load_cohort_map

    def cohort_map(assignment: Dict[str, str]):
        write_cohort_map(assignment, "auto_cohort", tmp_path / "map.tsv")
        return load_cohort_map(tmp_path / "map.tsv")

    full = {"t1": "auto1", "t2": "auto1", "t3": "auto2", "t4": "auto2", "t5": "auto3", "t6": "auto3"}
    out = label_cuts.label(str(paths["train"]), "auto_cohort", cohort_map(full))
    assert {c.supervisions[0].speaker: c.supervisions[0].custom["auto_cohort"] for c in out}["t3"] == "auto2"
    assert all(c.supervisions[0].custom["region"] == "r" for c in out)  # the other attributes are kept
    with pytest.raises(ValueError, match=r"train.jsonl.gz: cut .* speaker t6 is not in the cohort map"):
        label_cuts.label(str(paths["train"]), "auto_cohort", cohort_map({k: v for k, v in full.items() if k != "t6"}))
    config = tmp_path / "sets" / "cohortemb.yaml"
    config.parent.mkdir()
    import os
    import subprocess
    import sys

    subprocess.run([sys.executable, str(LOCAL / "label_cuts.py"), "--key", "auto_cohort", "--cohort-map",
                    str(paths["map"]), "--cuts", f"{paths['train']}:{tmp_path / 'sets' / 'train_labelled.jsonl.gz'}",
                    "--base-config", str(tmp_path / "ewc" / "finetune.yaml"), "--config-out", str(config)],
                   check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    cfg = yaml.safe_load(config.read_text())
    assert cfg["base"] == "../ewc/finetune.yaml"
    assert cfg["model"]["cohort_embedding"] == {"key": "auto_cohort", "cohorts": sorted(cmap), "dim": 16}
