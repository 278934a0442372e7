"""A tiny trainer for the tests of serac/train: random 6-dim "features" with YES/NO transcripts, a 1-layer LSTM
transducer, one epoch in a second or two (used by test_fairness.py's EWC / distillation tests and test_train.py)."""
from __future__ import annotations

from argparse import Namespace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pytest


def write_feature_cuts(path: Path, feats_dir: Path, n: int, seed: int,
                       texts: Optional[Sequence[str]] = None) -> None:
    """``n`` cuts of 30-49 frames of 6-dim features; transcripts 1-3 random YES/NO words, or ``texts[i]``."""
    from lhotse import CutSet, MonoCut, SupervisionSegment
    from lhotse.features import Features
    from lhotse.features.io import NumpyFilesWriter

    rng = np.random.default_rng(seed)
    cuts = []
    with NumpyFilesWriter(str(feats_dir)) as writer:
        for i in range(n):
            cut_id = f"u{seed}-{i}"
            frames = int(rng.integers(30, 50))
            key = writer.write(cut_id, rng.normal(size=(frames, 6)).astype(np.float32))
            feats = Features(type="fbank", num_frames=frames, num_features=6, frame_shift=0.01, sampling_rate=16000,
                             start=0.0, duration=frames * 0.01, storage_type=writer.name,
                             storage_path=str(feats_dir), storage_key=key, channels=0,
                             recording_id=cut_id)
            text = " ".join(rng.choice(["YES", "NO"], size=int(rng.integers(1, 4))))
            if texts is not None:
                text = texts[i]
            sup = SupervisionSegment(id=cut_id, recording_id=cut_id, start=0.0, duration=frames * 0.01, text=text,
                                     speaker=f"s{i % 2}")
            cuts.append(MonoCut(id=cut_id, start=0.0, duration=frames * 0.01, channel=0, supervisions=[sup],
                                features=feats))
    CutSet.from_cuts(cuts).to_file(path)


class TinyTrainer:
    """A 1-layer LSTM transducer trained on write_feature_cuts' YES/NO cuts (8 training, 2 validation):
    ``run(exp, overrides, init_from)`` trains exp_dir ``tmp_path/exp`` and returns its last checkpoint;
    ``valid[exp]`` keeps the last validation losses of each run. Skips the test without an RNN-T backend."""

    BASE = ["train.num_epochs=1", "train.tensorboard=false", "train.progress_bar=false", "data.max_duration=0.5",
            "data.num_buckets=2", "optim.warmup_steps=0", "optim.lr=0.01", "loss.warm_step=0",
            "model.encoder.hidden_dim=12", "model.encoder.num_layers=1", "model.encoder.output_dim=10",
            "model.encoder.subsampling_factor=2", "model.encoder.dropout=0.0", "model.decoder_dim=8",
            "model.joiner_dim=8"]

    def __init__(self, tmp_path: Path, valid_texts: Optional[Sequence[str]] = None,
                 train_texts: Optional[Sequence[str]] = None) -> None:
        from serac.data.tokenizer import prepare_word_lang
        from serac.transducer.loss import backend

        if backend is None:
            pytest.skip("no RNN-T backend")
        self.tmp_path, self.lang = tmp_path, tmp_path / "lang"
        prepare_word_lang(["YES NO"], self.lang)
        self.train_cuts, self.valid_cuts = tmp_path / "train.jsonl.gz", tmp_path / "valid.jsonl.gz"
        write_feature_cuts(self.train_cuts, tmp_path / "ftr", len(train_texts or []) or 8, 0, train_texts)
        write_feature_cuts(self.valid_cuts, tmp_path / "fva", len(valid_texts or []) or 2, 1, valid_texts)
        self.valid: Dict[str, Dict[str, float]] = {}

    def args(self, exp: str, init_from: Optional[str] = None, start_epoch: int = 0) -> Namespace:
        return Namespace(exp_dir=str(self.tmp_path / exp), lang_dir=str(self.lang), train_cuts=str(self.train_cuts),
                         valid_cuts=str(self.valid_cuts), init_from=init_from, start_epoch=start_epoch)

    def config(self, extra: List[str]) -> Dict:
        from serac.config import load_config

        return load_config(None, self.BASE + extra)

    def run(self, exp: str, extra: List[str], init_from: Optional[str] = None) -> Dict:
        from serac.checkpoint import last_epoch, load_checkpoint
        from serac.train.trainer import train

        result = train(self.args(exp, init_from), self.config(extra))
        if result.get("valid"):
            self.valid[exp] = result["valid"][-1]
        exp_dir = self.tmp_path / exp
        return load_checkpoint(exp_dir / f"epoch-{last_epoch(exp_dir)}.pt")
