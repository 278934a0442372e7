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


def fake_differences(monkeypatch, report) -> None:
    """Every paired difference of systems scored ``{"v": x}`` is ``x_a - x_b`` with the interval +-1 around it."""
    monkeypatch.setattr(report, "paired_differences",
                        lambda a, b, n: {k: {"diff": a["v"] - b["v"], "ci": [a["v"] - b["v"] - 1, a["v"] - b["v"] + 1]}
                                         for k in ("turn_counting", "orcwer", "cpwer", "end_latency_median_ms",
                                                   "start_latency_median_ms")})


def test_claims_are_read_per_family_of_systems(monkeypatch):
    """sts - mt_rnnt and sts_init - mt_rnnt_init each get a row; a claim no family ran is one "not run" row; a
    pair with an untrained system is not testable, whatever its interval."""
    from serac.multitalker import report

    fake_differences(monkeypatch, report)
    scores = {"sts": {"v": 10.0}, "mt_rnnt": {"v": 0.0}, "sts_init": {"v": -5.0}, "mt_rnnt_init": {"v": 0.0}}
    rows = report.claim_rows(scores, untrained=["mt_rnnt"], n_bootstrap=10)
    orc = [r for r in rows if r[0].startswith("-17%") and r[0].endswith("ORC-WER")]
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

    fake_differences(monkeypatch, report)
    scores = {"sts_init": {"v": -40.0}, "sts_no_fastemit_init": {"v": 0.0}}
    fastemit = [r for r in report.claim_rows(scores, untrained=[], n_bootstrap=10) if r[0].startswith("FastEmit")]
    assert [r[1:] for r in fastemit] == [["`sts_init` - `sts_no_fastemit_init`", "-40.00 ms", "[-41.00, -39.00]",
                                          "holds"]] * 2


def test_speech_activity_claims_read_the_activity_system_against_its_family(monkeypatch):
    """conf/sts_activity_init.yaml is sts_init plus the activity head and term (nothing else differs); the three
    speech-activity rows read sts_activity_init - sts_init, and say "not run" where no family has the system."""
    from serac.config import load_config
    from serac.multitalker import report

    from recipe_utils import ROOT

    conf = ROOT / "egs/synth_assistant/sts/conf"
    activity, init = load_config(conf / "sts_activity_init.yaml"), load_config(conf / "sts_init.yaml")
    assert activity["model"]["separator"].pop("activity_head") is True and activity["sts"]["activity_scale"] > 0
    assert init["sts"]["activity_scale"] == 0
    activity["sts"]["activity_scale"] = 0.0
    assert activity == init
    assert "sts_activity_init" in report.SYSTEM_NAMES

    fake_differences(monkeypatch, report)

    def activity_rows(scores):
        return [r[1:] for r in report.claim_rows(scores, untrained=[], n_bootstrap=10)
                if r[0].startswith("speech activity")]

    rows = activity_rows({"sts_init": {"v": 50.0}, "sts_activity_init": {"v": 47.0}})
    assert rows == [["`sts_activity_init` - `sts_init`", "-3.00 points", "[-4.00, -2.00]", "holds"],
                    ["`sts_activity_init` - `sts_init`", "-3.00 points", "[-4.00, -2.00]", "holds"],
                    ["`sts_activity_init` - `sts_init`", "-3.00 points", "[-4.00, -2.00]", "does not hold"]]
    assert [r[1] for r in activity_rows({"sts_init": {"v": 50.0}})] == ["not run"] * 3


def test_one_stream_decode_is_scored_as_meeteval_scores_it(tmp_path):
    """The single-speaker floor: a single-talker model's one output stream per conversation. ORC-WER puts every
    reference turn on that stream; cpWER maps it to one reference speaker and scores the other against nothing
    (meeteval's cp_word_error_rate with two references and one hypothesis). Known answers: a perfect stream has
    ORC-WER 0 and cpWER errors twice the smaller speaker's words (the other speaker's words are insertions
    against the one and deletions for the other); turns are read by silence (--gap-s)."""
    from lhotse import load_manifest
    from meeteval.wer.wer.cp import cp_word_error_rate
    from meeteval.wer.wer.orc import orc_word_error_rate

    from entry_points import run_entry_point
    from serac.data.tokenizer import Tokenizer
    from serac.multitalker.decode import ChannelHyp, ConversationHyp, write_hyps
    from serac.multitalker.simulate import conversation_turns

    convs = TinyConversations(tmp_path, num_train=1, num_valid=3)
    tok = Tokenizer(convs.lang)
    cuts = list(load_manifest(convs.valid_cuts))
    hyps, turns_of, words_of = [], {}, {}
    for n, cut in enumerate(cuts):      # c1-0 perfect, c1-1 one word wrong, c1-2 nothing emitted
        turns = turns_of[cut.id] = conversation_turns(cut)
        stream = ChannelHyp()
        for turn in turns if n < 2 else []:
            words = turn.text.split()
            if n == 1 and turn is turns[0]:
                words[0] = "NO" if words[0] == "YES" else "YES"
            stream.ids += [tok.token2id[w] for w in words]
            stream.times += [round(turn.start + 0.01 * (k + 1), 4) for k in range(len(words))]
        hyps.append(ConversationHyp(cut.id, [stream]))
        by_speaker = {}
        for t in turns:
            by_speaker[t.speaker] = by_speaker.get(t.speaker, 0) + len(t.text.split())
        words_of[cut.id] = by_speaker
    path = tmp_path / "dec/hyps-valid-greedy_search-epoch-3-avg-1.jsonl"
    path.parent.mkdir()
    write_hyps(path, hyps, tok)
    assert run_entry_point("score_multitalker", ["--hyps", str(path), "--cuts", str(convs.valid_cuts), "--lang-dir",
                                                 str(convs.lang), "--n-bootstrap", "50", "--gap-s", "0.1"]) == 0
    result = json.loads((tmp_path / "dec/multitalker-valid-greedy_search-epoch-3-avg-1.json").read_text())
    per = result["conversations"]
    for cut, hyp in zip(cuts, hyps):
        turns = turns_of[cut.id]
        by_spk = {}
        for t in turns:
            by_spk.setdefault(t.speaker, []).append(t.text)
        stream = [tok.decode(hyp.channels[0].ids)]
        cp = cp_word_error_rate([" ".join(v) for _, v in sorted(by_spk.items())], stream)
        orc = orc_word_error_rate([t.text for t in turns], stream)
        assert per[cut.id]["cpwer"] == [cp.errors, cp.length] and per[cut.id]["orcwer"] == [orc.errors, orc.length]
    total = {c: sum(w.values()) for c, w in words_of.items()}
    ids = [c.id for c in cuts]
    assert [per[c]["orcwer"][0] for c in ids] == [0, 1, total[ids[2]]]
    assert len(words_of[ids[0]]) == 2 and per[ids[0]]["cpwer"][0] == 2 * min(words_of[ids[0]].values())
    assert per[ids[2]]["cpwer"][0] == total[ids[2]]
    # every turn is its own silence-separated run of words here (gaps > 0.1 s), so the counts are right for the
    # two decoded conversations and the starts 10 ms late
    assert result["overall"]["turn_counting"]["accuracy"] == pytest.approx(200.0 / 3)
    assert result["overall"]["latency"]["start_median_ms"] == pytest.approx(10.0)


def test_results_show_the_floor_in_every_table(scored):
    """write_results with the floor decoded at its own checkpoint (--suffix-of): its row is marked "floor" in the
    systems, per-bin and streaming tables, its epochs say it was not trained here, and the claims read each family's
    STS against it."""
    import yaml

    from serac.multitalker.decode import ChannelHyp, ConversationHyp
    from serac.multitalker.report import write_results
    from serac.multitalker.scoring import ScoreOptions, score_decode

    cuts, hyps, tok, two_channels, tmp_path = scored
    # the floor: both channels of the fixture's decode merged into one stream in time order
    one = {}
    for h in hyps:
        pairs = sorted((t, i) for ch in h.channels for i, t in zip(ch.ids, ch.times) if tok.id2token[i] not in
                       ("<sot>", "<eot>"))
        one[h.cut_id] = ConversationHyp(h.cut_id, [ChannelHyp([i for _, i in pairs], [t for t, _ in pairs])])
    floor = score_decode(cuts, one, tok, ScoreOptions(gap_s=0.5, n_bootstrap=50))
    exp = tmp_path / "exp"
    for system, result, suffix, cfg in (
            ("sts_init", two_channels, "greedy_search-epoch-6-avg-2",
             {"model": {"separator": {}}, "train": {"num_epochs": 6}, "env": {"num_params": 3.5e6}}),
            ("single_talker", floor, "greedy_search-epoch-15-avg-1",
             {"model": {"encoder": {"name": "lstm"}}, "train": {"num_epochs": 15}, "env": {"num_params": 2.9e6}})):
        (exp / system / "decode/test").mkdir(parents=True)
        (exp / system / "decode/test" / f"multitalker-test-{suffix}.json").write_text(json.dumps(result))
        (exp / system / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match=r"suffixes given for systems \['sts'\]"):
        write_results(["sts_init", "single_talker"], exp, "test", "greedy_search-epoch-6-avg-2", tmp_path / "R.md",
                      n_bootstrap=20, suffixes={"sts": "x"})
    text = write_results(["sts_init", "single_talker"], exp, "test", "greedy_search-epoch-6-avg-2", tmp_path / "R.md",
                         n_bootstrap=20, suffixes={"single_talker": "greedy_search-epoch-15-avg-1"})
    assert "`greedy_search-epoch-6-avg-2`; `single_talker`: `greedy_search-epoch-15-avg-1`)" in text
    assert "| `single_talker` (floor): the single-talker asr model" in text and "| 0 (+15 single-talker) |" in text
    assert "| `sts_init`: STS initialised" in text and "| 6 |" in text
    assert "| `single_talker` (floor) | 0% |" in text or "| `single_talker` (floor) | 10% |" in text
    floor_rows = [line for line in text.splitlines() if "single-speaker floor" in line and line.startswith("|")]
    assert len(floor_rows) == 3 and all("`sts_init` - `single_talker`" in line for line in floor_rows)
    # the fixture's two-channel decode and its merge have the same words: ORC-WER equal, so "undecided"
    orc = next(line for line in floor_rows if line.split("|")[1].strip().endswith("ORC-WER"))
    assert "| 0.00 points" in orc and orc.rstrip(" |").endswith("undecided")
