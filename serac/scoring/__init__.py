"""WER scoring in icefall's file formats (recogs, errs, wer-summary) with sclite's alignment."""
from serac.scoring.wer import (
    Result,
    align,
    error_counts,
    load_transcripts,
    store_transcripts,
    wer_stats,
    write_error_stats,
    write_trn,
    write_wer_summary,
)

__all__ = [
    "Result",
    "align",
    "error_counts",
    "load_transcripts",
    "store_transcripts",
    "wer_stats",
    "write_error_stats",
    "write_trn",
    "write_wer_summary",
]
