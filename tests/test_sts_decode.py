"""Decoding an STS model through the usual entry points (serac/decode + serac/multitalker/decode.py): rows
b*C+c mapped back to (conversation, channel), emission times, the hyps file, streaming == offline, and
steps/decode.sh with shards."""
from __future__ import annotations

import subprocess

import pytest
import torch

from sts_utils import TinyConversations

pytest.importorskip("fast_rnnt")


def test_rows_map_back_to_conversation_and_channel():
    from serac.multitalker.decode import conversation_hyps

    rows = [[1, 3], [], [4], [1, 5, 2]]            # b0c0, b0c1, b1c0, b1c1
    frames = [[0, 2], [], [7], [1, 3, 4]]
    convs = conversation_hyps(["x", "y"], rows, frames, 2, subsampling_factor=4, frame_shift_s=0.01)
    assert [c.cut_id for c in convs] == ["x", "y"]
    assert convs[0].channels[0].ids == [1, 3] and convs[0].channels[1].ids == []
    assert convs[1].channels[0].ids == [4] and convs[1].channels[1].ids == [1, 5, 2]
    assert convs[1].channels[1].times == [0.08, 0.16, 0.2]   # (t + 1) * 4 * 10 ms
    with pytest.raises(ValueError, match="2 conversations x 2 channels, but 3 token rows"):
        conversation_hyps(["x", "y"], rows[:3], frames[:3], 2, 4, 0.01)


def test_channel_results_use_the_target_assignment(tmp_path):
    from lhotse import load_manifest

    from serac.data.tokenizer import Tokenizer
    from serac.multitalker.decode import ChannelHyp, ConversationHyp, channel_results

    convs = TinyConversations(tmp_path, num_train=2, num_valid=1)
    tok = Tokenizer(convs.lang)
    cut = load_manifest(convs.train_cuts)[0]      # turn 2 overlaps turn 1: channels 0 and 1 both hold turns
    sups = sorted(cut.supervisions, key=lambda s: s.start)
    hyp = ConversationHyp(cut.id, [ChannelHyp([tok.token2id["<sot>"], tok.token2id["YES"]], [0.1, 0.2]),
                                   ChannelHyp([], [])])
    res = channel_results(cut, hyp, tok)
    assert res[0] == (f"{cut.id}-ch0", " ".join(s.text for s in sups if s is not sups[1]).split(), ["YES"])
    assert res[1] == (f"{cut.id}-ch1", sups[1].text.split(), [])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from serac.train.trainer import train

    torch.set_num_threads(1)
    convs = TinyConversations(tmp_path_factory.mktemp("stsdec"), num_train=6, num_valid=3)
    train(convs.args("exp"), convs.config(["train.num_epochs=2"]))
    return convs


def test_streaming_equals_offline_and_hyps_are_written(trained):
    from serac.decode.offline import decode_set
    from serac.decode.streaming import decode_set_streaming
    from serac.multitalker.decode import read_hyps
    from serac.scoring.wer import load_transcripts

    exp, lang, cuts = trained.tmp_path / "exp", trained.lang, trained.valid_cuts
    recogs = decode_set(str(exp), str(lang), str(cuts), "valid", epoch=2, avg=2)
    assert sorted(r[0] for r in load_transcripts(recogs)) == [f"c1-{i}-ch{c}" for i in range(3) for c in (0, 1)]
    dec = exp / "decode/valid"
    offline = read_hyps(dec / "hyps-valid-greedy_search-epoch-2-avg-2.jsonl")
    assert sorted(offline) == ["c1-0", "c1-1", "c1-2"] and all(len(h.channels) == 2 for h in offline.values())
    decode_set_streaming(str(exp), str(lang), str(cuts), "valid", epoch=2, avg=2, chunk_frames=16)
    streamed = read_hyps(dec / "hyps-valid-streaming_greedy_search-chunk-160ms-epoch-2-avg-2.jsonl")
    assert streamed == offline            # tokens and emission times, channel by channel
    assert any(ch.ids for h in offline.values() for ch in h.channels)  # something was emitted
    for h in offline.values():
        for ch in h.channels:
            assert ch.times == sorted(ch.times)
    decode_set(str(exp), str(lang), str(cuts), "valid", epoch=2, avg=1, method="modified_beam_search", beam=2)
    beam = read_hyps(dec / "hyps-valid-modified_beam_search-epoch-2-avg-1-beam-2.jsonl")
    assert sorted(beam) == sorted(offline)


def test_steps_decode_sh_with_shards(trained):
    from recipe_utils import ROOT, recipe_env

    from serac.multitalker.decode import read_hyps

    exp = trained.tmp_path / "exp"
    out = subprocess.run(["bash", str(ROOT / "steps/decode.sh"), "--epoch", "2", "--avg", "1", "--nj", "2",
                          str(exp), str(trained.lang), str(trained.valid_cuts), "valid"],
                         cwd=ROOT, env=recipe_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    dec = exp / "decode/valid"
    merged = read_hyps(dec / "hyps-valid-greedy_search-epoch-2-avg-1.jsonl")
    assert sorted(merged) == ["c1-0", "c1-1", "c1-2"]
    assert not list(dec.glob("*.shard-*"))


def save_single_talker_model(exp, lang, epoch: int = 3) -> None:
    """An (untrained) single-talker transducer of the tiny conversations' features and lang as ``exp/epoch-N.pt``,
    saved as the trainer saves one (its config inside)."""
    from serac.checkpoint import save_checkpoint
    from serac.config import load_config
    from serac.data.tokenizer import Tokenizer
    from serac.transducer.model import build_model

    cfg = load_config(None, ["model.encoder.hidden_dim=16", "model.encoder.num_layers=1",
                             "model.encoder.output_dim=8", "model.encoder.subsampling_factor=4",
                             "model.decoder_dim=8", "model.joiner_dim=8"])
    tok = Tokenizer(lang)
    torch.manual_seed(0)
    model = build_model(cfg["model"], num_features=6, vocab_size=tok.vocab_size, blank_id=tok.blank_id)
    exp.mkdir(parents=True, exist_ok=True)
    save_checkpoint(exp / f"epoch-{epoch}.pt", model=model.state_dict(), config=cfg, epoch=epoch)


def test_a_single_talker_model_decodes_each_conversation_as_one_stream(tmp_path):
    """--conversations: the single-speaker floor of the STS recipe. Each conversation is decoded whole as one
    channel (offline == streaming), its channel WER reference is every turn in start order (overlapping ones
    too); without the option a conversation (several supervisions) is refused, naming the file and the cut."""
    from lhotse import load_manifest

    from serac.decode.offline import decode_set
    from serac.decode.streaming import decode_set_streaming
    from serac.multitalker.decode import read_hyps
    from serac.multitalker.simulate import conversation_turns
    from serac.scoring.wer import load_transcripts

    torch.set_num_threads(1)
    convs = TinyConversations(tmp_path, num_train=1, num_valid=3)
    exp = tmp_path / "exp"
    save_single_talker_model(exp, convs.lang)
    cuts = str(convs.valid_cuts)
    with pytest.raises(ValueError, match=r"conv_valid.jsonl.gz: cut c1-\d has [23] supervisions: .*--conversations"):
        decode_set(str(exp), str(convs.lang), cuts, "valid", epoch=3, avg=1)
    with pytest.raises(ValueError, match=r"conv_valid.jsonl.gz: cut c1-\d has [23] supervisions"):
        decode_set_streaming(str(exp), str(convs.lang), cuts, "valid", epoch=3, avg=1, chunk_frames=16)

    recogs = decode_set(str(exp), str(convs.lang), cuts, "valid", epoch=3, avg=1, as_conversations=True)
    refs = {f"{cut.id}-ch0": " ".join(t.text for t in conversation_turns(cut)).split()
            for cut in load_manifest(convs.valid_cuts)}
    assert {r[0]: r[1] for r in load_transcripts(recogs)} == refs   # c1-0's two turns overlap: both are there
    dec = exp / "decode/valid"
    offline = read_hyps(dec / "hyps-valid-greedy_search-epoch-3-avg-1.jsonl")
    assert sorted(offline) == ["c1-0", "c1-1", "c1-2"] and all(len(h.channels) == 1 for h in offline.values())
    assert any(h.channels[0].ids for h in offline.values())    # the random model emits something to compare
    decode_set_streaming(str(exp), str(convs.lang), cuts, "valid", epoch=3, avg=1, chunk_frames=16,
                         as_conversations=True)
    assert read_hyps(dec / "hyps-valid-streaming_greedy_search-chunk-160ms-epoch-3-avg-1.jsonl") == offline
