"""Per-cohort WER with speaker-level bootstrap confidence intervals.

A *cohort* is the set of utterances sharing one value of an attribute (``accent``,
``gender``, ``age_band``, ``state``, an automatically discovered ``auto_cohort``, ...).
Attributes travel with the supervisions of a lhotse cuts manifest, so any decode of any
lhotse corpus can be scored per cohort::

    from serac.fairness.cohort_metrics import load_cut_attributes, cohort_wer, write_cohort_report
    attrs = load_cut_attributes("data/fbank/synth_cuts_test.jsonl.gz")
    report = cohort_wer("exp/x/decode/test/recogs-test-greedy_search.txt", attrs, "accent")
    write_cohort_report(report, "exp/x/decode/test/cohorts")

Definitions (what the numbers in the tables mean):

- cohort WER = (ins + del + sub) / reference words of the cohort's utterances, in percent
  (pooled over utterances, not a mean of per-utterance WERs).
- confidence interval: percentile bootstrap that resamples the cohort's *speakers* with
  replacement (utterances of one speaker are correlated, so resampling utterances would give
  intervals that are too narrow).  The WER of one resample is total errors / total reference
  words of the drawn speakers' utterances.  Each cohort draws from its own random stream,
  seeded by ``(seed, crc32(cohort name))``, so its interval depends neither on the other
  cohorts nor on their order.
- summary statistics (mean, min, max, variance, std) are over the cohort WERs, each cohort
  weighted equally; variance and std are *population* statistics (``ddof=0``): the cohorts
  are the whole population being compared, not a sample of one.
- top cohort = lowest WER, bottom cohort = highest WER (ties broken by cohort name; when every
  cohort ties, top is the first and bottom the last by name, and the tables say "no gap: all
  cohorts tie" instead of a gap); relative gap = (bottom - top) / top * 100, undefined (None) when
  the top cohort's WER is 0.
- too small to judge: a cohort with fewer speakers than ``min_speakers`` (3 by default).  A
  speaker bootstrap of one speaker gives a zero-width interval ([2.00, 2.00]) that looks precise
  and is not; the tables print "too small to judge (N speakers)" instead of its interval and the
  summary lists such cohorts (``too_small_cohorts``).
- bottom share = the bottom cohort's speakers (utterances) as a percentage of all distinct
  speakers (utterances) that were scored.
- cohorts whose utterances have no reference words have no WER: they are left out of the
  table and summary with a warning and listed in ``excluded_cohorts``; their utterances still
  count in the overall WER, which is always that of the whole decode.
"""
from serac.fairness.cohort_reports import (COHORT_TSV_COLUMNS, cohort_markdown, read_cohort_tsv, safe_key_name,
                                          write_cohort_json, write_cohort_markdown, write_cohort_report,
                                          write_cohort_tsv, write_speaker_tsv)
from serac.fairness.cohort_stats import (CohortReport, CohortStats, ScoredUtterances, SpeakerPoint, UtteranceErrors,
                                        bootstrap_wer_interval, cohort_wer, score_utterances, speaker_wer)
from serac.fairness.cohorts import (MAX_SENSIBLE_COHORTS, SUPERVISION_ATTRIBUTE_FIELDS, CohortMap, CutAttributes,
                                    apply_cohort_maps, cohort_keys_available, cut_attributes, load_cohort_map,
                                    load_cut_attributes)

__all__ = [
    "COHORT_TSV_COLUMNS", "MAX_SENSIBLE_COHORTS", "SUPERVISION_ATTRIBUTE_FIELDS", "CohortMap", "CohortReport",
    "CohortStats", "CutAttributes", "ScoredUtterances", "SpeakerPoint", "UtteranceErrors", "apply_cohort_maps",
    "bootstrap_wer_interval", "cohort_keys_available", "cohort_markdown", "cohort_wer", "cut_attributes",
    "load_cohort_map", "load_cut_attributes", "read_cohort_tsv", "safe_key_name", "score_utterances", "speaker_wer",
    "write_cohort_json", "write_cohort_markdown", "write_cohort_report", "write_cohort_tsv", "write_speaker_tsv",
]
