"""Initialising some modules from another model's checkpoint (train.init_modules + --init-from,
serac/train/partial_init.py): an STS model's mixture encoder, decoder and joiner from a single-talker transducer,
vocabulary rows by token symbol, clear errors on a mismatch, and the trainer's round trip."""
from __future__ import annotations

from argparse import Namespace

import pytest
import torch

from sts_utils import TinyConversations, sts_model_section

SINGLE_TALKER = {"encoder": {"name": "lstm", "hidden_dim": 16, "num_layers": 1, "output_dim": 16, "dropout": 0.0,
                             "subsampling_factor": 4, "subsampling": "stack"}, "decoder_dim": 8, "joiner_dim": 8}
MODULES = {"encoder.mixture": "encoder", "decoder": "decoder", "joiner": "joiner", "ctc_output": "ctc_output"}
SOURCE_TOKENS = ["<blk>", "NO", "YES", "<unk>"]
TARGET_TOKENS = ["<blk>", "<sot>", "<eot>", "YES", "NO", "<unk>"]


def single_talker(vocab: int = len(SOURCE_TOKENS)) -> torch.nn.Module:
    from serac.transducer.model import build_model

    torch.manual_seed(1)
    return build_model({**SINGLE_TALKER, "ctc_head": True}, 6, vocab)


def sts(mixture_hidden: int = 16) -> torch.nn.Module:
    from serac.transducer.model import build_model

    torch.manual_seed(2)
    section = sts_model_section()["model"]
    section["separator"]["mixture_encoder"]["hidden_dim"] = mixture_hidden
    section["separator"]["tail_encoder"]["output_dim"] = 16  # the joiner's input: the single-talker encoder's
    return build_model({**section, "ctc_head": True}, 6, len(TARGET_TOKENS))


def test_modules_are_loaded_and_vocabulary_rows_follow_the_token():
    from serac.train.partial_init import init_modules_from_state

    source, model = single_talker(), sts()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    src = source.state_dict()
    report = init_modules_from_state(model, src, MODULES, source_tokens=SOURCE_TOKENS, target_tokens=TARGET_TOKENS)
    state = model.state_dict()
    for name, value in src.items():
        if name.startswith("encoder."):
            torch.testing.assert_close(state["encoder.mixture." + name[len("encoder."):]], value, msg=name)
    torch.testing.assert_close(state["joiner.encoder_proj.weight"], src["joiner.encoder_proj.weight"])
    for name in ("decoder.embedding.weight", "joiner.output_linear.weight", "joiner.output_linear.bias",
                 "ctc_output.weight"):
        for i, tok in enumerate(TARGET_TOKENS):
            expected = src[name][SOURCE_TOKENS.index(tok)] if tok in SOURCE_TOKENS else before[name][i]
            torch.testing.assert_close(state[name][i], expected, msg=f"{name}[{tok}]")
        assert report.remapped_rows[name] == 4
    # what was not asked for keeps its initialisation, and the report says so by name
    for name in ("encoder.separator.weight_ih_l0", "encoder.tail.lstm.weight_ih_l0", "simple_am_proj.weight",
                 "feat_mean"):
        torch.testing.assert_close(state[name], before[name], msg=name)
        assert name in report.not_loaded
    assert report.loaded["encoder.mixture.lstm.weight_ih_l0"] == "encoder.lstm.weight_ih_l0"
    assert report.tokens_missing == ["<sot>", "<eot>"]
    assert "encoder.separator.weight_ih_l0" in report.summary()


@pytest.mark.parametrize("make_model,modules,tokens,message", [
    (lambda: sts(mixture_hidden=20), MODULES, True,
     r"shape mismatch encoder\.mixture\.subsampling\.proj\.weight \(20, 24\) <- encoder\.subsampling\.proj\.weight "
     r"\(16, 24\) of the checkpoint"),
    (sts, {"encoder.mixture": "encoder", "decoder": "decoder"}, False,
     r"shape mismatch decoder\.embedding\.weight \(6, 8\) <- decoder\.embedding\.weight \(4, 8\)"),
    (sts, {"encoder.mixer": "encoder"}, True, r"the model has no module 'encoder\.mixer'"),
    (sts, {"encoder": "encoder"}, True, r"the modules differ; missing in the source: \[.encoder\.mixture\.subsampling"),
    (sts, {"decoder": "predictor"}, True, r"has no module 'predictor'"),
])
def test_a_mismatch_is_a_clear_error_and_loads_nothing(make_model, modules, tokens, message):
    from serac.train.partial_init import init_modules_from_state

    model = make_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kw = {"source_tokens": SOURCE_TOKENS, "target_tokens": TARGET_TOKENS} if tokens else {}
    with pytest.raises(ValueError, match=message):
        init_modules_from_state(model, single_talker().state_dict(), modules, **kw)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_the_trainer_initialises_the_asked_modules_from_the_checkpoint(tmp_path):
    """--init-from + train.init_modules + --init-lang-dir: at lr 0 the trained epoch-1 model still holds the
    single-talker encoder in its mixture encoder and the single-talker joiner rows under the same tokens."""
    pytest.importorskip("fast_rnnt")
    from serac.checkpoint import load_checkpoint, save_checkpoint
    from serac.data.tokenizer import Tokenizer, prepare_word_lang
    from serac.train.trainer import train

    torch.set_num_threads(1)
    convs = TinyConversations(tmp_path)
    src_lang = tmp_path / "lang_single"
    prepare_word_lang(["YES NO"], src_lang)
    src_tokens = Tokenizer(src_lang).id2token
    source = single_talker(len(src_tokens)).state_dict()
    save_checkpoint(tmp_path / "single.pt", model=source)
    cfg = convs.config(["optim.lr=0.0", "model.ctc_head=true"])
    cfg["model"]["separator"]["tail_encoder"]["output_dim"] = 16
    cfg["train"]["init_modules"] = MODULES
    args = Namespace(**{**vars(convs.args("exp")), "init_from": str(tmp_path / "single.pt"),
                        "init_lang_dir": str(src_lang)})
    train(args, cfg)
    state = load_checkpoint(tmp_path / "exp/epoch-1.pt")["model"]
    torch.testing.assert_close(state["encoder.mixture.lstm.weight_hh_l0"], source["encoder.lstm.weight_hh_l0"])
    target_tokens = Tokenizer(convs.lang).id2token
    for tok in ("YES", "NO"):
        torch.testing.assert_close(state["joiner.output_linear.weight"][target_tokens.index(tok)],
                                   source["joiner.output_linear.weight"][src_tokens.index(tok)], msg=tok)
    assert not torch.equal(state["feat_inv_std"], torch.ones(6))  # the training data's statistics, as from scratch

    cfg["train"]["init_modules"] = {"encoder.mixture": "encoder"}
    with pytest.raises(ValueError, match="needs --init-from"):
        train(Namespace(**{**vars(convs.args("exp2")), "init_lang_dir": None}), cfg)


def test_frozen_modules_get_no_update_for_the_first_steps(tmp_path):
    """train.init_freeze_modules / init_freeze_steps: the loaded mixture encoder stays the single-talker one while
    the fresh separator learns; without the freeze it moves."""
    pytest.importorskip("fast_rnnt")
    from serac.checkpoint import load_checkpoint, save_checkpoint
    from serac.train.trainer import train

    torch.set_num_threads(1)
    convs = TinyConversations(tmp_path)
    source = single_talker(len(SOURCE_TOKENS)).state_dict()
    source = {k: v for k, v in source.items() if k.startswith("encoder.")}
    save_checkpoint(tmp_path / "single.pt", model=source)
    states = {}
    for exp, steps in (("frozen", 1000), ("free", 0)):
        cfg = convs.config()
        cfg["model"]["separator"]["tail_encoder"]["output_dim"] = 16
        cfg["train"].update(init_modules={"encoder.mixture": "encoder"}, init_freeze_steps=steps,
                            init_freeze_modules=["encoder.mixture"] if steps else [])
        train(Namespace(**{**vars(convs.args(exp)), "init_from": str(tmp_path / "single.pt")}), cfg)
        states[exp] = load_checkpoint(tmp_path / f"{exp}/epoch-1.pt")["model"]
    for name, value in source.items():
        torch.testing.assert_close(states["frozen"]["encoder.mixture." + name[len("encoder."):]], value, msg=name)
    assert not torch.equal(states["free"]["encoder.mixture.lstm.weight_hh_l0"], source["encoder.lstm.weight_hh_l0"])

    cfg["train"].update(init_freeze_modules=["encoder.mixer"], init_freeze_steps=10)
    with pytest.raises(ValueError, match="no parameters under 'encoder.mixer'"):
        train(Namespace(**{**vars(convs.args("bad")), "init_from": str(tmp_path / "single.pt")}), cfg)
