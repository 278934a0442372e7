"""Speaker representations: embedding extractors (for automatic cohort discovery) and, later, verification.

``from serac.speaker.embeddings import get_extractor, speaker_embeddings``
"""
