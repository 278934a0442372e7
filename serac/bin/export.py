#!/usr/bin/env python3
"""Export a trained transducer to sherpa-onnx: encoder.onnx, decoder.onnx, joiner.onnx and tokens.txt.

Usage:
  # offline (any encoder): sherpa_onnx.OfflineRecognizer
  python -m serac.bin.export --exp-dir exp/lstm --lang-dir data/lang_word --epoch 60 --avg 10 \
      --out-dir exp/lstm/sherpa-onnx-epoch-60-avg-10/offline --sample-rate 8000
  # streaming: sherpa_onnx.OnlineRecognizer, chunks of 16 feature frames (160 ms); the sherpa model type is
  # 'conformer' for chunked-attention encoders and 'lstm' for the others unless --model-type says otherwise
  python -m serac.bin.export ... --mode streaming --chunk-frames 16 --out-dir .../streaming

Every file is checked against the PyTorch model with onnxruntime before the export counts as done; the metadata
sherpa-onnx reads is in each file's metadata_props (docs/export.md).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from serac.export.onnx_export import export_offline, export_streaming, load_averaged_model
from serac.utils import atomic_write_text, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--lang-dir", required=True)
    p.add_argument("--epoch", type=int, required=True)
    p.add_argument("--avg", type=int, default=1, help="average the last N epochs ending at --epoch")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--mode", choices=["offline", "streaming"], default="offline")
    p.add_argument("--model-type", choices=["auto", "lstm", "conformer"], default="auto",
                   help="sherpa-onnx online model type (streaming only); auto: conformer for chunked-attention "
                        "encoders, lstm otherwise")
    p.add_argument("--chunk-frames", type=int, default=16,
                   help="streaming: feature frames per encoder call (T = decode_chunk_len), a multiple of the "
                        "encoder's chunk_multiple")
    p.add_argument("--sample-rate", type=int, default=16000, help="sample rate of the training audio (metadata)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check against PyTorch")
    return p


def main() -> None:
    args = get_parser().parse_args()
    setup_logging()
    torch.set_num_threads(1)
    model, tokenizer, _ = load_averaged_model(args.exp_dir, args.lang_dir, args.epoch, args.avg)
    try:
        if args.mode == "offline":
            result = export_offline(model, tokenizer, args.out_dir, sample_rate=args.sample_rate,
                                    verify=not args.no_verify)
        else:
            result = export_streaming(model, tokenizer, args.out_dir, args.chunk_frames,
                                      model_type=None if args.model_type == "auto" else args.model_type,
                                      sample_rate=args.sample_rate, verify=not args.no_verify)
    except ValueError as e:
        raise SystemExit(f"{args.exp_dir} epoch {args.epoch} avg {args.avg}: {e}")
    info = {"exp_dir": args.exp_dir, "epoch": args.epoch, "avg": args.avg, "mode": args.mode,
            "model_type": result.model_type, "exporters": result.exporters, "max_abs_diff": result.max_abs_diff,
            "encoder_metadata": result.metadata}
    atomic_write_text(Path(args.out_dir) / "export.json", json.dumps(info, indent=2) + "\n")
    logging.info(f"exported {args.mode} model to {args.out_dir} (exporters {result.exporters}; onnxruntime vs torch "
                 f"max abs diff {result.max_abs_diff})")


if __name__ == "__main__":
    main()
