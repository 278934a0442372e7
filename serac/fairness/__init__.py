"""ASR fairness: who the speakers are, how WER differs between them, and what is done about it.

* :mod:`~serac.fairness.cohorts`         cohort attributes of the cuts, cohort maps, sensible cohort keys
* :mod:`~serac.fairness.cohort_stats`    per-cohort WER with speaker-bootstrap intervals, per-speaker WER
* :mod:`~serac.fairness.cohort_reports`  the tsv / json / md report files
* :mod:`~serac.fairness.cohort_metrics`  the definitions of every number, and the public names of the three above
* :mod:`~serac.fairness.discovery`       cohort discovery: :mod:`~serac.fairness.geo_tree` (lon/lat tree),
  :mod:`~serac.fairness.geodemographic`, :mod:`~serac.fairness.auto_cohorts` (speaker-embedding k-means)
* :mod:`~serac.fairness.oversample`      oversampling the worst cohorts in training
* :mod:`~serac.fairness.plots`           cohort bar charts and the speaker WER map

Elastic weight consolidation (EWC) is :mod:`serac.fairness.ewc` (moving to ``serac/train``). Adversarial
reweighting (ARW) is not implemented yet.

Submodules are imported explicitly (``from serac.fairness.cohort_metrics import cohort_wer``)
so that importing one method never pulls in the dependencies of another.
"""
