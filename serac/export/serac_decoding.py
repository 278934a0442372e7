"""serac's own decoding, as the export and sherpa-onnx code uses it: the one place that imports it.

The model loading with checkpoint averaging and the decoding drivers live in serac/bin/decode.py and
serac/bin/decode_streaming.py today and are moving into serac/decode/: repoint these imports when they do.
"""
from serac.bin.decode import decode_cuts, decode_suffix, load_model, write_results  # noqa: F401
from serac.bin.decode_streaming import (  # noqa: F401
    decode_cuts_streaming,
    format_ms,
    latency_summary,
    streaming_suffix,
)
