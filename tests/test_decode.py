"""serac.decode as a library and its shell steps: decode suffixes are named in one place (and steps/recipes ask
for them), steps/decode.sh prints the recogs it wrote and shards give the same files for any --nj,
steps/decode_streaming.sh decodes every kind of encoder (the amortized Transformer included)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest
import torch

from recipe_utils import ROOT, recipe_env
from serac.decode.naming import decode_suffix, streaming_suffix

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize("args, suffix", [
    (("greedy_search", 10, 3, 4), "greedy_search-epoch-10-avg-3"),
    (("modified_beam_search", 15, 5, 8), "modified_beam_search-epoch-15-avg-5-beam-8"),
    (("modified_beam_search", 15, 5, 8, 0.8), "modified_beam_search-epoch-15-avg-5-beam-8-lm-0.8"),
    (("modified_beam_search", 15, 5, 8, 1.0, 2.5), "modified_beam_search-epoch-15-avg-5-beam-8-lm-1-bp-2.5"),
    (("modified_beam_search", 15, 5, 8, None, 1.0), "modified_beam_search-epoch-15-avg-5-beam-8-bp-1"),
])
def test_decode_suffixes_are_unchanged(args, suffix):
    """The names RESULTS.md files and tests refer to, byte for byte."""
    assert decode_suffix(*args) == suffix


def test_print_suffix_is_the_library_suffix():
    """What steps/*.sh and the recipes ask for is what the decoders write (and it needs no model)."""
    def ask(module: str, *opts: str) -> str:
        out = subprocess.run([sys.executable, "-m", module, "--print-suffix", *opts], cwd=ROOT, capture_output=True,
                             text=True, check=True)
        return out.stdout.strip()

    assert ask("serac.bin.decode", "--method", "greedy_search", "--epoch", "4", "--avg", "2") == \
        "greedy_search-epoch-4-avg-2"
    assert ask("serac.bin.decode", "--method", "modified_beam_search", "--epoch", "15", "--avg", "5", "--beam", "8",
               "--lm", "x.arpa", "--lm-scale", "0.80", "--blank-penalty", "2") == \
        decode_suffix("modified_beam_search", 15, 5, 8, 0.8, 2.0) == "modified_beam_search-epoch-15-avg-5-beam-8-lm-0.8-bp-2"
    assert ask("serac.bin.decode_streaming", "--chunk-ms", "160", "--epoch", "30", "--avg", "5") == \
        streaming_suffix(160.0, 30, 5) == "streaming_greedy_search-chunk-160ms-epoch-30-avg-5"
    assert ask("serac.bin.decode_streaming", "--chunk-ms", "12.5", "--epoch", "3", "--avg", "1") == \
        "streaming_greedy_search-chunk-12.5ms-epoch-3-avg-1"


def test_no_module_imports_an_entry_point():
    """serac/bin holds entry points only: no module of the project imports one (they are run with python -m)."""
    offenders = []
    paths = [p for top in ("serac", "egs", "bench", "tests", "utils", "steps", "tools") for p in (ROOT / top).rglob("*.py")
             if not {"data", "exp", "download"} & set(p.relative_to(ROOT).parts)]
    for path in paths:
        rel = path.relative_to(ROOT)
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith(("from serac.bin", "import serac.bin")):
                offenders.append(f"{rel}:{line_no}: {stripped}")
    assert not offenders, "\n".join(offenders)


# ---------------------------------------------------------------------------------------------
# the shell steps on a tiny untrained model
# ---------------------------------------------------------------------------------------------

TINY_ENCODERS: Dict[str, Dict[str, Any]] = {
    "lstm": dict(hidden_dim=12, num_layers=1, output_dim=10, subsampling_factor=4),
    "amortized_transformer": dict(dim=16, num_layers=2, num_heads=2, ffn_dim=32, subsampling_channels=4,
                                  chunk_size=2, left_context=4, arbitrator_dim=4, output_dim=10),
}


def tiny_experiment(tmp_path: Path, encoder: str) -> Tuple[Path, Path, Path]:
    """(exp dir with an untrained epoch-1.pt, word lang dir, cuts with features): enough to run the decoders."""
    from serac.data.tokenizer import Tokenizer, prepare_word_lang
    from serac.checkpoint import save_checkpoint
    from serac.transducer.model import build_model
    from trainer_utils import write_feature_cuts

    lang, cuts, exp = tmp_path / "lang", tmp_path / "cuts.jsonl.gz", tmp_path / "exp"
    prepare_word_lang(["YES NO"], lang)
    write_feature_cuts(cuts, tmp_path / "feats", 7, 3)
    tokenizer = Tokenizer(lang)
    cfg = {"model": {"encoder": {"name": encoder, **TINY_ENCODERS[encoder]}, "decoder_dim": 8, "joiner_dim": 8}}
    torch.manual_seed(0)
    model = build_model(cfg["model"], num_features=6, vocab_size=tokenizer.vocab_size, blank_id=tokenizer.blank_id)
    with torch.no_grad():  # an untrained joiner mostly emits blank: make the transcripts non-empty
        model.joiner.output_linear.bias[model.blank_id] -= 3.0
    save_checkpoint(exp / "epoch-1.pt", model=model.state_dict(), config=cfg)
    return exp, lang, cuts


def step(script: str, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", script, *map(str, args)], cwd=ROOT, env=recipe_env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"{script} {args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_decode_sh_prints_its_recogs_and_shards_do_not_change_the_results(tmp_path: Path):
    exp, lang, cuts = tiny_experiment(tmp_path, "lstm")
    help_text = subprocess.run(["bash", "steps/decode.sh"], cwd=ROOT, env=recipe_env(), capture_output=True,
                               text=True).stderr
    assert "--num-threads" in help_text and "--max-duration" in help_text
    out = exp / "decode" / "test"
    recogs = out / "recogs-test-greedy_search-epoch-1-avg-1.txt"
    # a stale shard of an interrupted run with another --nj must not end up in the merge
    out.mkdir(parents=True)
    (out / "recogs-test-greedy_search-epoch-1-avg-1.shard-3.txt").write_text("stale")
    proc = step("steps/decode.sh", "--nj", 3, "--epoch", 1, exp, lang, cuts, "test")
    assert proc.stdout.splitlines()[-1] == f"steps/decode.sh: recogs: {recogs}"
    assert not list(out.glob("*.shard-*")), "shard files left behind"
    sharded = {p.name: p.read_text() for p in out.glob("*-test-*.txt")}
    assert sharded[recogs.name].count("hyp=") == 7
    # an existing decode is kept whatever --nj (its results do not depend on it), and says where it is
    proc = step("steps/decode.sh", "--nj", 1, "--epoch", 1, exp, lang, cuts, "test")
    assert "exists" in proc.stdout and proc.stdout.splitlines()[-1].endswith(str(recogs))
    # ... as a fresh one-job decode shows: the same recogs, errs and wer-summary files byte for byte
    for p in out.glob("*-test-*"):
        p.unlink()
    step("steps/decode.sh", "--nj", 1, "--epoch", 1, exp, lang, cuts, "test")
    assert {p.name: p.read_text() for p in out.glob("*-test-*.txt")} == sharded
def test_decode_streaming_sh_decodes_an_amortized_model(tmp_path: Path):
    """Cut lengths of 30-49 frames: most utterances end inside an attention chunk (chunk_multiple 8)."""
    from serac.decode.job import load_model
    from serac.decode.offline import decode_cuts
    from serac.data.dataset import load_cuts
    from serac.scoring.wer import load_transcripts

    exp, lang, cuts = tiny_experiment(tmp_path, "amortized_transformer")
    proc = step("steps/decode_streaming.sh", "--nj", 2, "--epoch", 1, "--chunk-ms", 80, exp, lang, cuts, "test")
    recogs = exp / "decode/test/recogs-test-streaming_greedy_search-chunk-80ms-epoch-1-avg-1.txt"
    assert proc.stdout.splitlines()[-1] == f"steps/decode_streaming.sh: recogs: {recogs}"
    model, tokenizer, _ = load_model(exp, lang, 1, 1, 6)
    offline, _, _ = decode_cuts(model, tokenizer, load_cuts(cuts), "greedy_search", 4, 300.0)
    assert sorted(offline) == load_transcripts(recogs)
    assert sum(len(hyp) for _, _, hyp in offline) > 5, "near-empty transcripts would make the comparison vacuous"
