"""A tiny run of egs/synth_assistant/sts: stages 0-3 (source corpus, conversations, fbank, BPE with turn tokens),
then 4-7 (train, decode, score, RESULTS.md) with two systems and a tiny model, and the recipe's model config
building an STS model.

The source corpus is a tiny tone corpus laid out like the generator's manifests (data/source), so stage 0 finds it
and skips generation (espeak generation is what tests/test_recipe_synth.py covers, and takes minutes here)."""
from __future__ import annotations

import pytest
import yaml

from recipe_utils import ROOT, recipe_copy, run_recipe

from test_multitalker_simulate import make_source_corpus

ARGS = ["--asr-dir", str(ROOT / "egs/synth_assistant/asr"), "--conversations", "train:8,dev:2,test:3",
        "--vocab-size", "40", "--fbank-nj", "1", "--sim-nj", "1"]


@pytest.fixture(scope="module")
def tiny_sts_run(tmp_path_factory):
    recipe = recipe_copy("synth_assistant/sts", tmp_path_factory.mktemp("sts") / "sts")
    source = make_source_corpus(recipe / "download/synth", speakers_per_split={"train": 4, "dev": 2, "test": 3,
                                                                                 "adapt": 2})
    (recipe / "data").mkdir(exist_ok=True)
    source.rename(recipe / "data/source")
    return recipe, run_recipe(recipe, *ARGS, "--stop-stage", "3")


def test_sts_recipe_stages_0_to_3(tiny_sts_run, monkeypatch):
    from lhotse import load_manifest

    from serac.data.tokenizer import Tokenizer
    from serac.multitalker.simulate import conversation_turns, max_active_talkers
    from serac.multitalker.targets import channel_targets, turn_token_ids

    recipe, proc = tiny_sts_run
    monkeypatch.chdir(recipe)  # feature paths are relative to the recipe
    assert "exist in data/source; skipping" in proc.stdout + proc.stderr
    for n in range(4):
        assert f"Stage {n}:" in proc.stdout
    tok = Tokenizer(recipe / "data/lang_bpe_40_turns")
    sot, eot = turn_token_ids(tok)
    speakers = {}
    for split, num in (("train", 8), ("dev", 2), ("test", 3)):
        cuts = load_manifest(recipe / f"data/fbank/conv_cuts_{split}.jsonl.gz")
        assert len(cuts) == num
        speakers[split] = {s.speaker for c in cuts for s in c.supervisions}
        for cut in cuts:
            turns = conversation_turns(cut)
            assert max_active_talkers([(t.start, t.end) for t in turns]) <= 2
            assert cut.load_features().shape[0] == cut.num_frames
            ch0, ch1 = channel_targets(turns, tok, cut.id)
            assert ch0.tokens[0] == sot and ch0.tokens[-1] == eot
            assert ch0.tokens.count(sot) + ch1.tokens.count(sot) == len(turns)
    assert not speakers["train"] & speakers["test"] and not speakers["dev"] & speakers["test"]
    # re-running skips finished stages (checked in the shell: no Python start-up)
    again = run_recipe(recipe, *ARGS, "--stage", "1", "--stop-stage", "2")
    out = again.stdout + again.stderr
    assert "conv_cuts_{train,dev,test}.jsonl.gz exist; skipping" in out
    assert "data/fbank/conv_cuts_test.jsonl.gz is complete, skipping" in out


# stages 4-7 on the tiny conversations: two systems, a tiny model, one epoch (the default config's sizes are for the
# 60-minute run)
TINY_MODEL = ["--set", "model.separator.mixture_encoder.hidden_dim=16", "--set",
              "model.separator.mixture_encoder.output_dim=16", "--set", "model.separator.mixture_encoder.num_layers=1",
              "--set", "model.separator.separator_dim=16", "--set", "model.separator.tail_encoder.hidden_dim=16",
              "--set", "model.separator.tail_encoder.output_dim=16", "--set", "model.decoder_dim=16", "--set",
              "model.joiner_dim=16", "--set", "loss.ctc_warmup_steps=0", "--set", "data.max_duration=30"]
STAGES_4_7 = ["--stage", "4", "--stop-stage", "7", "--systems", "sts mt_rnnt", "--num-epochs", "1", "--avg", "1",
              "--decode-nj", "1", "--train-parallel", "1", "--n-bootstrap", "50", "--train-opts", " ".join(TINY_MODEL)]


def test_sts_recipe_stages_4_to_7(tiny_sts_run):
    import json

    recipe, _ = tiny_sts_run
    proc = run_recipe(recipe, *ARGS, *STAGES_4_7)
    out = proc.stdout + proc.stderr
    for n in range(4, 8):
        assert f"Stage {n}:" in proc.stdout
    suffix = "greedy_search-epoch-1-avg-1"
    for system in ("sts", "mt_rnnt"):
        score = json.loads((recipe / f"exp/{system}/decode/test/multitalker-test-{suffix}.json").read_text())
        assert score["overall"]["conversations"] == 3
        assert (recipe / f"exp/{system}/decode/dev/hyps-dev-streaming_greedy_search-chunk-160ms-epoch-1-avg-1.jsonl"
                ).is_file()
    assert score["options"]["gap_s"] == 0.5          # mt_rnnt has no turn tokens: turns by silence
    results = (recipe / "RESULTS.md").read_text()
    assert "### The paper's claims here" in results and "not run" in results   # no ablations in this run
    assert "git revision `" in results and "(the trainings and this table)" in results
    assert "--systems sts\\ mt_rnnt --num-epochs 1" in results   # the command repeats the run: options quoted
    assert "not testable here" in results       # one epoch of a tiny model recognises nothing
    assert "| `sts`: STS" in results and "### Wall time of this run" in results
    assert "succeeded" in out
def test_sts_recipe_config_builds_the_model():
    from serac.multitalker.model import TurnLossConfig, build_sts_model

    cfg = yaml.safe_load((ROOT / "egs/synth_assistant/sts/conf/sts.yaml").read_text())
    model = build_sts_model(cfg["model"], num_features=80, vocab_size=130)
    assert model.encoder.num_output_channels == 2
    sts = dict(cfg["sts"])
    assert sts.pop("turn_tokens") is True
    TurnLossConfig(**sts)


def test_sts_recipe_init_from_a_single_talker_model(tiny_sts_run, tmp_path):
    """--systems sts_init needs --init-from (a clear error without it); with a (tiny, untrained) single-talker
    checkpoint of matching sizes the system trains from it and the log says what was loaded."""
    import torch

    from serac.checkpoint import save_checkpoint
    from serac.data.tokenizer import prepare_word_lang
    from serac.transducer.model import build_model

    recipe, _ = tiny_sts_run
    tiny = ["--set", "model.separator.mixture_encoder.hidden_dim=16", "--set",
            "model.separator.mixture_encoder.output_dim=16", "--set", "model.separator.mixture_encoder.num_layers=1",
            "--set", "model.separator.separator_dim=16", "--set", "model.decoder_dim=16", "--set",
            "model.joiner_dim=16", "--set", "loss.ctc_warmup_steps=0", "--set", "data.max_duration=30", "--set",
            "train.init_freeze_steps=1"]
    stage4 = ["--stage", "4", "--stop-stage", "4", "--systems", "sts_init", "--num-epochs", "1",
              "--train-opts", " ".join(tiny)]
    proc = run_recipe(recipe, *ARGS, *stage4, check=False)
    assert proc.returncode != 0 and "system sts_init starts from a single-talker model" in proc.stderr

    lang = tmp_path / "lang_single"
    prepare_word_lang(["A B C"], lang)
    single = build_model({"encoder": {"name": "lstm", "hidden_dim": 16, "num_layers": 1, "output_dim": 16,
                                      "subsampling_factor": 4}, "decoder_dim": 16, "joiner_dim": 16,
                          "ctc_head": True}, 80, 5)
    save_checkpoint(tmp_path / "single.pt", model=single.state_dict())
    run_recipe(recipe, *ARGS, *stage4, "--init-from", str(tmp_path / "single.pt"), "--init-lang-dir", str(lang))
    log = (recipe / "exp/sts_init/log/train.log").read_text()
    assert f"from {tmp_path / 'single.pt'}" in log and "encoder.mixture.lstm.weight_ih_l0 <- encoder.lstm" in log
    assert (recipe / "exp/sts_init/epoch-1.pt").is_file()
    assert torch.load(recipe / "exp/sts_init/epoch-1.pt", weights_only=False)["config"]["train"]["init_modules"]


def test_sts_recipe_single_speaker_floor(tiny_sts_run, tmp_path):
    """--systems single_talker (conf: train.num_epochs 0): stage 4 trains nothing and links the --init-from model,
    its config.yaml and lang dir into exp/single_talker; stages 5-7 decode each conversation as one stream at that
    checkpoint (its own suffix), score it with turns by silence and mark it "floor" in RESULTS.md."""
    import json

    from serac.checkpoint import save_checkpoint
    from serac.config import dump_config, load_config
    from serac.data.tokenizer import prepare_word_lang
    from serac.transducer.model import build_model

    recipe, _ = tiny_sts_run
    stages = ["--stage", "4", "--stop-stage", "7", "--systems", "single_talker", "--n-bootstrap", "20",
              "--decode-nj", "1", "--results", "RESULTS-floor.md", "--results-note", "floor-note.md"]
    proc = run_recipe(recipe, *ARGS, *stages, check=False)
    assert proc.returncode != 0 and "--results-note floor-note.md not found" in proc.stderr
    (recipe / "floor-note.md").write_text("**How this file was made**: by hand.\n")
    proc = run_recipe(recipe, *ARGS, *stages, check=False)
    assert proc.returncode != 0 and "system single_talker starts from a single-talker model" in proc.stderr

    lang, single = tmp_path / "lang_single", tmp_path / "exp_single"
    prepare_word_lang(["A B C"], lang)
    cfg = load_config(None, ["model.encoder.hidden_dim=16", "model.encoder.num_layers=1", "model.encoder.output_dim=16",
                             "model.encoder.subsampling_factor=4", "model.decoder_dim=16", "model.joiner_dim=16",
                             "train.num_epochs=3"])
    model = build_model(cfg["model"], 80, 5)
    single.mkdir()
    save_checkpoint(single / "epoch-3.pt", model=model.state_dict(), config=cfg, epoch=3)
    cfg["env"] = {"num_params": sum(p.numel() for p in model.parameters()), "git_revision": "abc1234"}
    (single / "config.yaml").write_text(dump_config(cfg))
    init = ["--init-from", str(single / "epoch-3.pt"), "--init-lang-dir", str(lang)]
    proc = run_recipe(recipe, *ARGS, *stages, *init)
    exp = recipe / "exp/single_talker"
    assert (exp / "epoch-3.pt").resolve() == single / "epoch-3.pt" and (exp / "lang").resolve() == lang
    assert not (exp / "log/train.log").exists()
    hyps = [json.loads(line) for line in
            (exp / "decode/test/hyps-test-greedy_search-epoch-3-avg-1.jsonl").read_text().splitlines()]
    assert len(hyps) == 3 and all(len(h["channels"]) == 1 for h in hyps)
    score = json.loads((exp / "decode/dev/multitalker-dev-streaming_greedy_search-chunk-160ms-epoch-3-avg-1.json"
                        ).read_text())
    assert score["overall"]["conversations"] == 2 and score["options"]["gap_s"] == 0.5
    results = (recipe / "RESULTS-floor.md").read_text()
    assert "| `single_talker` (floor): the single-talker asr model" in results
    assert "`single_talker`: `greedy_search-epoch-3-avg-1`" in results and "| 0 (+3 single-talker) |" in results
    assert "`abc1234`: single_talker" in results            # the model's own training revision
    assert "single_talker.\n\n**How this file was made**: by hand.\n\n### Conversations" in results
    again = run_recipe(recipe, *ARGS, "--stage", "4", "--stop-stage", "4", "--systems", "single_talker", *init)
    assert f"exp/single_talker links {single / 'epoch-3.pt'}; skipping" in again.stdout + again.stderr
