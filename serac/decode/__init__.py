"""Decoding as a library (the ``serac/bin`` entry points only parse arguments and call these):

* :mod:`serac.decode.naming`    the one place decode suffixes are named (``greedy_search-epoch-E-avg-N`` ...)
* :mod:`serac.decode.job`       model averaging over epochs, opening the cuts
* :mod:`serac.decode.offline`   batched greedy / modified beam search (+ token n-gram LM shallow fusion)
* :mod:`serac.decode.streaming` chunk-by-chunk streaming greedy search, latency and RTF
* :mod:`serac.decode.shards`    one shard of N, and merging shards into the files of one job
* :mod:`serac.decode.results`   recogs / errs / wer-summary / stats / compute / streaming-summary files
"""
