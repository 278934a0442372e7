"""Multi-talker recognition: simulated conversations, separator-transducer-segmenter (STS) targets with turn tokens
(``<sot>`` / ``<eot>``), the separator model and multi-talker scoring (cpWER / ORC-WER through meeteval, turn
counting, turn-boundary emission latency). See docs/sts.md."""
