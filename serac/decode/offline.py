"""Offline decoding: whole utterances in batches, greedy or modified beam search (with an optional token n-gram LM
in shallow fusion), written as the files of :mod:`serac.decode.results` (or one shard's, :mod:`serac.decode.shards`).

    from serac.decode.offline import decode_set
    decode_set("exp/lstm", "data/lang_bpe_64", "data/fbank/synth_cuts_test.jsonl.gz", "test", epoch=15, avg=5)
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from serac.data.dataset import eval_dataloader
from serac.data.tokenizer import Tokenizer
from serac.decode.job import load_model, open_cuts, set_threads
from serac.decode.naming import decode_suffix
from serac.decode.results import result_path, write_compute, write_results
from serac.decode.shards import hyps_path, shard_of, shard_paths, write_shard
from serac.lm.ngram import NgramLm, load_lm
from serac.multitalker.decode import ConversationHyp, channel_results, conversation_hyps, write_hyps
from serac.multitalker.training import batch_conversations, num_output_channels
from serac.scoring.wer import Result
from serac.transducer.search import greedy_search_batch, modified_beam_search


@torch.no_grad()
def decode_cuts(model, tokenizer: Tokenizer, cuts, method: str, beam: int, max_duration: float,
                compute: Optional[Dict[str, Any]] = None, lm: Optional[NgramLm] = None, lm_scale: float = 0.0,
                blank_penalty: float = 0.0, conversations: Optional[List[ConversationHyp]] = None,
                as_conversations: bool = False) -> Tuple[List[Result], float, float]:
    """Returns (results, audio seconds, decoding seconds). With a ``compute`` dict, also fills in
    ``encoder_seconds`` (process CPU time in the encoder) and, when the encoder counts its FLOPs
    (``last_flops`` / ``last_dense_flops`` after each forward), ``rows``: (cut_id, frames, flops, dense_flops,
    per block [MHA frames, FFN frames] from ``last_module_frames``, or None).
    A multi-channel (STS) model's results are per channel, and ``conversations`` (a list) receives each
    conversation's channel tokens and emission times (serac/multitalker/decode.py). ``as_conversations`` does the
    same for a single-talker model: each cut (a conversation, one supervision per turn) is decoded whole as one
    stream, a one-channel conversation (the single-speaker floor of the STS recipe)."""
    results, audio_s, t0 = [], 0.0, time.time()
    compute = {} if compute is None else compute
    compute.setdefault("encoder_seconds", 0.0)
    channels = num_output_channels(model)
    by_conversation = channels > 1 or as_conversations
    for batch in eval_dataloader(cuts, max_duration):
        feats = batch["inputs"]
        if by_conversation:
            conv_cuts, x_lens = batch_conversations(batch)
        else:
            for cut in batch["supervisions"]["cut"]:
                check_one_supervision(cut)
            x_lens = batch["supervisions"]["num_frames"]
        cohorts = (model.cohort_ids(batch["supervisions"]["cut"]) if getattr(model, "cohort_key", None) is not None
                   else None)  # a model with a cohort embedding: each utterance's cohort (cut attribute)
        c0 = time.process_time()
        enc, enc_lens = model.encode(feats, x_lens, cohorts)
        compute["encoder_seconds"] += time.process_time() - c0
        flops = getattr(model.encoder, "last_flops", None)
        if flops is not None:
            dense = model.encoder.last_dense_flops
            modules = getattr(model.encoder, "last_module_frames", None)
            modules = modules.tolist() if modules is not None else [None] * len(flops)
            compute.setdefault("rows", []).extend(
                (cut.id, int(n), float(f), float(d), m) for cut, n, f, d, m in
                zip(batch["supervisions"]["cut"], enc_lens.tolist(), flops.tolist(), dense.tolist(), modules))
        frames: List[List[int]] = [[] for _ in range(enc.size(0))]
        if method == "greedy_search":
            hyps = greedy_search_batch(model, enc, enc_lens, frames=frames)
        else:
            hyps, frames = zip(*modified_beam_search(model, enc, enc_lens, beam=beam, lm=lm, lm_scale=lm_scale,
                                                     blank_penalty=blank_penalty, return_frames=True))
        if by_conversation:
            convs = conversation_hyps([c.id for c in conv_cuts], hyps, frames, channels,
                                      int(model.encoder.subsampling_factor), float(conv_cuts[0].frame_shift))
            for cut, conv in zip(conv_cuts, convs):
                results.extend(channel_results(cut, conv, tokenizer))
                audio_s += cut.duration
            if conversations is not None:
                conversations.extend(convs)
            continue
        for cut, text, hyp in zip(batch["supervisions"]["cut"], batch["supervisions"]["text"], hyps):
            results.append((cut.id, text.split(), tokenizer.decode(hyp).split()))
            audio_s += cut.duration
    return results, audio_s, time.time() - t0


def check_one_supervision(cut: Any, where: str = "") -> None:
    """A single-talker decode reads one utterance per cut; a cut with several supervisions (a conversation) would
    be decoded once per supervision from its first frame. ValueError naming the cut (after ``where``)."""
    if len(cut.supervisions) > 1:
        raise ValueError(f"{where}cut {cut.id} has {len(cut.supervisions)} supervisions: a single-talker decode "
                         f"takes one utterance per cut; decode conversations as one stream with --conversations")


def write_conversation_hyps(out: Path, set_name: str, suffix: str, shard: int, num_shards: int,
                            convs: List[ConversationHyp], tokenizer: Tokenizer, stats: Dict[str, Any]) -> None:
    """A conversation decode's ``hyps-<set>-<suffix>.jsonl`` (a shard's: ``.shard-J.jsonl``), and what the stats
    say about its per-channel WER; nothing for a single-talker decode of utterances."""
    if not convs:
        return
    write_hyps(hyps_path(out, set_name, suffix, shard if num_shards > 1 else None), convs, tokenizer)
    channels = len(convs[0].channels)
    against = ("the one stream against every turn in start order" if channels == 1
               else "each channel against the turns the training targets put on it")
    stats.update(num_output_channels=channels, num_conversations=len(convs),
                 wer_kind=f"channel WER ({against}); the multi-talker WERs: serac.bin.score_multitalker")


def check_search_options(method: str, lm: Optional[str], blank_penalty: float) -> None:
    """An LM and a blank penalty need modified_beam_search (ValueError otherwise)."""
    if lm and method != "modified_beam_search":
        raise ValueError(f"--lm needs --method modified_beam_search, not {method}")
    if blank_penalty and method != "modified_beam_search":
        raise ValueError(f"--blank-penalty needs --method modified_beam_search, not {method}")


def decode_set(exp_dir: str, lang_dir: str, cuts_path: str, set_name: str, epoch: int, avg: int = 1,
               method: str = "greedy_search", beam: int = 4, lm: Optional[str] = None, lm_scale: float = 0.3,
               blank_penalty: float = 0.0, max_duration: float = 300.0, out_dir: Optional[str] = None,
               num_shards: int = 1, shard: int = 1, num_threads: int = 1, as_conversations: bool = False) -> Path:
    """Decode ``cuts_path`` (or shard ``shard`` of ``num_shards`` of it) with the model of ``exp_dir`` averaged over
    ``avg`` epochs ending at ``epoch``; returns the recogs file written (a shard's with ``num_shards`` > 1).
    ``as_conversations``: a single-talker model decodes each conversation cut as one stream (:func:`decode_cuts`).
    Bad input raises ValueError naming the file."""
    set_threads(num_threads)
    check_search_options(method, lm, blank_penalty)
    out = Path(out_dir) if out_dir else Path(exp_dir) / "decode" / set_name
    cuts, first = open_cuts(cuts_path)
    model, tokenizer, _ = load_model(Path(exp_dir), Path(lang_dir), epoch, avg, first.num_features)
    ngram = load_lm(lm, tokenizer.id2token) if lm else None
    suffix = decode_suffix(method, epoch, avg, beam, lm_scale if ngram else None, blank_penalty)
    cuts = shard_of(cuts, shard, num_shards)
    compute: Dict[str, Any] = {}
    convs: List[ConversationHyp] = []
    try:
        results, audio_s, dec_s = decode_cuts(model, tokenizer, cuts, method, beam, max_duration, compute, lm=ngram,
                                              lm_scale=lm_scale, blank_penalty=blank_penalty, conversations=convs,
                                              as_conversations=as_conversations)
    except ValueError as e:
        raise ValueError(f"{cuts_path}: {e}") from e
    stats = {"audio_seconds": audio_s, "decode_seconds": dec_s, "rtf": dec_s / max(audio_s, 1e-9),
             "num_threads": num_threads, "method": method, "epoch": epoch, "avg": avg,
             "encoder_seconds": compute["encoder_seconds"]}
    write_conversation_hyps(out, set_name, suffix, shard, num_shards, convs, tokenizer, stats)
    if ngram is not None:
        stats.update(lm=str(lm), lm_order=ngram.order, lm_scale=lm_scale)
    if blank_penalty:
        stats["blank_penalty"] = blank_penalty
    if compute.get("rows"):
        shard_tag = f".shard-{shard}" if num_shards > 1 else ""
        stats.update(write_compute(out / f"compute-{set_name}-{suffix}{shard_tag}.tsv", compute["rows"]))
    if num_shards > 1:
        write_shard(out, set_name, suffix, shard, num_shards, results, stats)
        return shard_paths(out, set_name, suffix, shard)["recogs"]
    write_results(out, set_name, suffix, results, stats)
    return result_path(out, "recogs", set_name, suffix)
