"""Export serac transducers to sherpa-onnx (k2's deployment runtime) and decode with it.

* :mod:`serac.export.onnx_export`: encoder.onnx / decoder.onnx / joiner.onnx / tokens.txt, offline and streaming
  (sherpa-onnx model types ``lstm`` and ``conformer``), checked against PyTorch with onnxruntime.
* :mod:`serac.export.state`: how an encoder's streaming state is laid out in a sherpa type's state tensors.
* :mod:`serac.export.sherpa`: decode cut sets with sherpa-onnx's OfflineRecognizer / OnlineRecognizer.

The contract with sherpa-onnx (verified with sherpa-onnx 2.0.1 and torch 2.13) is written down in docs/export.md.
"""
