"""serac.bin.score_multitalker on fixtures: numbers equal meeteval's own, turn counting and latency known answers,
overlap-ratio bins, silence segmentation for a model without turn tokens, paired differences."""
from __future__ import annotations

import json

import pytest

from sts_utils import TinyConversations

pytest.importorskip("meeteval")


@pytest.fixture
def scored(tmp_path):
    """Conversation c1-0 decoded perfectly (<sot> 100 ms late, <eot> 200 ms late), c1-1 with one word wrong
    and its channels swapped, c1-2 with nothing emitted."""
    from lhotse import load_manifest

    from serac.data.tokenizer import Tokenizer
    from serac.multitalker.decode import ChannelHyp, ConversationHyp, write_hyps
    from serac.multitalker.simulate import conversation_turns
    from serac.multitalker.targets import assign_channels

    convs = TinyConversations(tmp_path, num_train=1, num_valid=3)
    tok = Tokenizer(convs.lang)
    cuts = load_manifest(convs.valid_cuts)
    hyps = []
    for n, cut in enumerate(cuts):
        turns = conversation_turns(cut)
        channels = [ChannelHyp(), ChannelHyp()]
        if n < 2:
            for turn, c in zip(turns, assign_channels(turns, cut.id)):
                ch = channels[1 - c if n == 1 else c]
                words = turn.text.split()
                if n == 1 and turn is turns[0]:
                    words[0] = "NO" if words[0] == "YES" else "YES"
                ids = [tok.token2id["<sot>"]] + [tok.token2id[w] for w in words] + [tok.token2id["<eot>"]]
                times = [turn.start + 0.1] + [turn.start + 0.1 + 0.01 * (k + 1) for k in range(len(words))] + \
                    [turn.end + 0.2]
                ch.ids += ids
                ch.times += [round(t, 4) for t in times]
        hyps.append(ConversationHyp(cut.id, channels))
    path = tmp_path / "dec/hyps-valid-greedy_search-epoch-1-avg-1.jsonl"
    path.parent.mkdir()
    write_hyps(path, hyps, tok)
    from entry_points import run_entry_point

    assert run_entry_point("score_multitalker", ["--hyps", str(path), "--cuts", str(convs.valid_cuts), "--lang-dir",
                                                 str(convs.lang), "--n-bootstrap", "200"]) == 0
    result = json.loads((tmp_path / "dec/multitalker-valid-greedy_search-epoch-1-avg-1.json").read_text())
    return cuts, hyps, tok, result, tmp_path


def test_wers_equal_meeteval_and_known_turn_answers(scored):
    from meeteval.wer.wer.cp import cp_word_error_rate
    from meeteval.wer.wer.orc import orc_word_error_rate

    from serac.multitalker.simulate import conversation_turns

    cuts, hyps, tok, result, tmp_path = scored
    per = result["conversations"]
    totals = {"cpwer": [0, 0], "orcwer": [0, 0]}
    for cut, hyp in zip(cuts, hyps):
        turns = conversation_turns(cut)
        by_spk = {}
        for t in turns:
            by_spk.setdefault(t.speaker, []).append(t.text)
        streams = [tok.decode([i for i in ch.ids if tok.id2token[i] not in ("<sot>", "<eot>")]) for ch in hyp.channels]
        streams = [s for s in streams if s] or [""]
        cp = cp_word_error_rate([" ".join(v) for _, v in sorted(by_spk.items())], streams)
        orc = orc_word_error_rate([t.text for t in turns], streams)
        assert per[cut.id]["cpwer"] == [cp.errors, cp.length]
        assert per[cut.id]["orcwer"] == [orc.errors, orc.length]
        for m, r in (("cpwer", cp), ("orcwer", orc)):
            totals[m][0] += r.errors
            totals[m][1] += r.length
    for m in ("cpwer", "orcwer"):
        assert result["overall"][m]["wer"] == pytest.approx(100.0 * totals[m][0] / totals[m][1])
        low, high = result["overall"][m]["ci"]
        assert low <= result["overall"][m]["wer"] <= high
    ids = [c.id for c in cuts]
    assert per[ids[0]]["orcwer"][0] == 0 and per[ids[1]]["orcwer"][0] == 1   # the swap costs ORC-WER nothing
    assert result["overall"]["turn_counting"]["accuracy"] == pytest.approx(200.0 / 3)
    lat = result["overall"]["latency"]
    assert lat["start_median_ms"] == pytest.approx(100.0) and lat["end_median_ms"] == pytest.approx(200.0)
    assert lat["matched_turns"] == len(conversation_turns(cuts[0])) + len(conversation_turns(cuts[1]))
    assert sum(b["conversations"] for b in result["bins"].values()) == 3
    table = (tmp_path / "dec/multitalker-valid-greedy_search-epoch-1-avg-1.md").read_text()
    assert table.startswith("| set | conversations | cpWER %") and "| all | 3 |" in table


def test_paired_differences_of_a_system_with_itself_are_zero(scored):
    from serac.multitalker.scoring import paired_differences

    *_, result, _ = scored
    diff = paired_differences(result, result, n_bootstrap=100)
    assert diff["cpwer"]["diff"] == 0 and diff["cpwer"]["ci"] == [0.0, 0.0]
    assert diff["turn_counting"]["ci"] == [0.0, 0.0] and diff["end_latency_median_ms"]["diff"] == 0


def test_silence_segmentation_for_a_model_without_turn_tokens():
    from serac.multitalker.scoring import gap_turns

    turns = gap_turns([5, 6, 9, 7, 8], [0.2, 0.4, 0.5, 1.5, 1.6], gap_s=0.5, skip=[9])
    assert [t.token_ids for t in turns] == [[5, 6], [7, 8]]
    assert [(t.sot_s, t.eot_s) for t in turns] == [(0.2, 0.9), (1.5, 2.1)]


def test_claim_verdicts_come_from_the_interval():
    from serac.multitalker.report import verdict

    assert verdict([-3.0, -1.0], "lower") == "holds"
    assert verdict([1.0, 3.0], "lower") == "does not hold"
    assert verdict([-1.0, 1.0], "lower") == "undecided"
    assert verdict([0.5, 2.0], "higher") == "holds" and verdict([-2.0, -0.5], "higher") == "does not hold"
    assert verdict([float("nan")] * 2, "higher").startswith("undecided")


def test_claims_are_read_per_family_of_systems(monkeypatch):
    """sts - mt_rnnt and sts_init - mt_rnnt_init each get a row; a claim no family ran is one "not run" row; a
    pair with an untrained system is not testable, whatever its interval."""
    from serac.multitalker import report

    monkeypatch.setattr(report, "paired_differences",
                        lambda a, b, n: {k: {"diff": a["v"] - b["v"], "ci": [a["v"] - b["v"] - 1, a["v"] - b["v"] + 1]}
                                         for k in ("turn_counting", "orcwer", "cpwer", "end_latency_median_ms",
                                                   "start_latency_median_ms")})
    scores = {"sts": {"v": 10.0}, "mt_rnnt": {"v": 0.0}, "sts_init": {"v": -5.0}, "mt_rnnt_init": {"v": 0.0}}
    rows = report.claim_rows(scores, untrained=["mt_rnnt"], n_bootstrap=10)
    orc = [r for r in rows if r[0].endswith("ORC-WER")]
    assert [r[1] for r in orc] == ["`sts` - `mt_rnnt`", "`sts_init` - `mt_rnnt_init`"]
    assert orc[0][4].startswith("not testable here") and orc[1][4] == "holds"     # -5 [-6, -4]: lower
    latency = [r for r in rows if "latency penalty" in r[0]]
    assert latency == [[latency[0][0], "`sts` - `sts_no_penalty`", "not run", "-", "-"]]


def test_fastemit_claims_are_filled_for_the_init_family(monkeypatch):
    """conf/sts_no_fastemit_init.yaml is sts_init without FastEmit (nothing else differs), and with both scored the
    two FastEmit rows read sts_init - sts_no_fastemit_init instead of "not run"."""
    from serac.config import load_config
    from serac.multitalker import report

    from recipe_utils import ROOT

    conf = ROOT / "egs/synth_assistant/sts/conf"
    ablation, init = load_config(conf / "sts_no_fastemit_init.yaml"), load_config(conf / "sts_init.yaml")
    assert init["sts"]["fastemit_lambda"] > 0 and ablation["sts"]["fastemit_lambda"] == 0
    ablation["sts"]["fastemit_lambda"] = init["sts"]["fastemit_lambda"]
    assert ablation == init
    assert "sts_no_fastemit_init" in report.SYSTEM_NAMES

    monkeypatch.setattr(report, "paired_differences",
                        lambda a, b, n: {k: {"diff": a["v"] - b["v"], "ci": [a["v"] - b["v"] - 1, a["v"] - b["v"] + 1]}
                                         for k in ("turn_counting", "orcwer", "cpwer", "end_latency_median_ms",
                                                   "start_latency_median_ms")})
    scores = {"sts_init": {"v": -40.0}, "sts_no_fastemit_init": {"v": 0.0}}
    fastemit = [r for r in report.claim_rows(scores, untrained=[], n_bootstrap=10) if r[0].startswith("FastEmit")]
    assert [r[1:] for r in fastemit] == [["`sts_init` - `sts_no_fastemit_init`", "-40.00 ms", "[-41.00, -39.00]",
                                          "holds"]] * 2
