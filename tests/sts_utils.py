"""Tiny two-talker conversations with features for the STS trainer / decoder / scoring tests: random 6-dim
"features" in which each talker lights its own dims while talking, YES/NO turns, a word lang with <sot>/<eot>, and
a tiny STS config. One epoch of a few conversations trains in a second or two."""
from __future__ import annotations

from argparse import Namespace
from pathlib import Path
from typing import Dict, List

import numpy as np

FRAME_S = 0.01

STS_BASE = ["train.num_epochs=1", "train.tensorboard=false", "train.progress_bar=false", "train.num_threads=1",
            "data.max_duration=5", "data.num_buckets=2", "optim.warmup_steps=0", "optim.lr=0.01",
            "loss.warm_step=0", "loss.prune_range=3"]


def sts_model_section(turn_tokens: bool = True) -> Dict:
    return {"model": {"separator": {
        "mixture_encoder": {"name": "lstm", "hidden_dim": 16, "num_layers": 1, "output_dim": 16, "dropout": 0.0,
                            "subsampling_factor": 4, "subsampling": "stack"},
        "tail_encoder": {"name": "lstm", "hidden_dim": 16, "num_layers": 1, "output_dim": 12, "dropout": 0.0,
                         "subsampling_factor": 1},
        "separator_dim": 12}, "decoder_dim": 8, "joiner_dim": 8},
        "sts": {"turn_tokens": turn_tokens, "fastemit_lambda": 0.01, "eot_penalty": 0.1, "eot_tolerance_frames": 1,
                "start_margin_frames": 1}}


def write_conversation_cuts(path: Path, feats_dir: Path, n: int, seed: int) -> None:
    """``n`` conversations of 2-3 turns by speakers a/b (turn 2 overlaps turn 1 in every other one)."""
    from lhotse import CutSet, MonoCut, SupervisionSegment
    from lhotse.features import Features
    from lhotse.features.io import NumpyFilesWriter

    rng = np.random.default_rng(seed)
    cuts = []
    with NumpyFilesWriter(str(feats_dir)) as writer:
        for i in range(n):
            cut_id = f"c{seed}-{i}"
            turns = []
            t = 0.05
            for k in range(int(rng.integers(2, 4))):
                dur = round(float(rng.uniform(0.4, 0.6)), 2)
                turns.append((("a", "b")[k % 2], round(t, 2), dur))
                overlap = k == 0 and i % 2 == 0
                t += dur * (0.5 if overlap else 1.0) + (0.0 if overlap else 0.2)
            frames = int(round((max(s + d for _, s, d in turns) + 0.1) / FRAME_S))
            x = 0.3 * rng.normal(size=(frames, 6)).astype(np.float32)
            sups = []
            for k, (spk, start, dur) in enumerate(turns):
                a, b = int(start / FRAME_S), int((start + dur) / FRAME_S)
                x[a:b, 0:3] += (1.0 if spk == "a" else -1.0)
                x[a:b, 3:6] += float(rng.choice([1.0, -1.0]))
                text = " ".join(rng.choice(["YES", "NO"], size=int(rng.integers(1, 3))))
                sups.append(SupervisionSegment(id=f"{cut_id}-t{k}", recording_id=cut_id, start=start, duration=dur,
                                               text=text, speaker=f"{spk}{i % 3}"))
            key = writer.write(cut_id, x)
            feats = Features(type="fbank", num_frames=frames, num_features=6, frame_shift=FRAME_S,
                             sampling_rate=16000, start=0.0, duration=frames * FRAME_S, storage_type=writer.name,
                             storage_path=str(feats_dir), storage_key=key, channels=0, recording_id=cut_id)
            cuts.append(MonoCut(id=cut_id, start=0.0, duration=frames * FRAME_S, channel=0, supervisions=sups,
                                features=feats))
    CutSet.from_cuts(cuts).to_file(path)


class TinyConversations:
    """Training / validation conversations and a word lang with the turn tokens under ``tmp_path``."""

    def __init__(self, tmp_path: Path, num_train: int = 6, num_valid: int = 2) -> None:
        from serac.data.tokenizer import prepare_word_lang

        self.tmp_path, self.lang = tmp_path, tmp_path / "lang"
        prepare_word_lang(["YES NO"], self.lang, extra_symbols=["<sot>", "<eot>"])
        self.train_cuts, self.valid_cuts = tmp_path / "conv_train.jsonl.gz", tmp_path / "conv_valid.jsonl.gz"
        write_conversation_cuts(self.train_cuts, tmp_path / "ftr", num_train, 0)
        write_conversation_cuts(self.valid_cuts, tmp_path / "fva", num_valid, 1)

    def args(self, exp: str, start_epoch: int = 0) -> Namespace:
        return Namespace(exp_dir=str(self.tmp_path / exp), lang_dir=str(self.lang), train_cuts=str(self.train_cuts),
                         valid_cuts=str(self.valid_cuts), init_from=None, start_epoch=start_epoch)

    def config(self, extra: List[str] = (), turn_tokens: bool = True) -> Dict:
        from serac.config import deep_update, load_config

        return deep_update(load_config(None, STS_BASE + list(extra)), sts_model_section(turn_tokens))
