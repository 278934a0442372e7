"""ASR fairness: cohort discovery, per-cohort metrics, EWC, ARW, oversampling.

Submodules are imported explicitly (``from serac.fairness.cohort_metrics import cohort_wer``)
so that importing one method never pulls in the dependencies of another.
"""
