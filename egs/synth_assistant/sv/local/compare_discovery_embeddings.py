#!/usr/bin/env python3
"""How do automatic cohorts change when the speaker embedding changes? For each extractor (fbank-stats, serac's
speaker model, resemblyzer when importable), embed the speakers of a cut manifest (mean of up to N utterances),
cluster them with the fairness recipe's k-means (serac.fairness.auto_cohorts.fit_auto_cohorts, k clusters), and
measure how much each speaker attribute explains the clusters (adjusted mutual information, 0 = unrelated,
1 = the same partition). Attributes: accent, gender, region, age band, and the speaker's most frequent recording
condition (clean / noisy / reverb / telephone: the channel).

Usage:
  local/compare_discovery_embeddings.py --cuts data/fbank/synth_cuts_test.jsonl.gz --checkpoint exp/none/model.pt \
      --out exp/discovery-embeddings.md
"""
from __future__ import annotations

import argparse
from collections import Counter, defaultdict

from lhotse import load_manifest_lazy
from sklearn.metrics import adjusted_mutual_info_score

from serac.fairness.auto_cohorts import fit_auto_cohorts
from serac.speaker.embeddings import get_extractor, resemblyzer_available, speaker_embeddings
from serac.utils import atomic_write_text, setup_logging

ATTRIBUTES = ("accent", "gender", "region", "age_band", "condition")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cuts", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--num-clusters", type=int, default=6)
    p.add_argument("--max-utts-per-speaker", type=int, default=8)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    setup_logging()
    cuts = list(load_manifest_lazy(args.cuts))
    attrs: dict = {}
    conditions = defaultdict(Counter)
    for c in cuts:
        s = c.supervisions[0]
        attrs.setdefault(s.speaker, {"accent": s.custom.get("accent"), "gender": s.gender,
                                     "region": s.custom.get("region"), "age_band": s.custom.get("age_band")})
        conditions[s.speaker][s.custom.get("condition")] += 1
    for spk, cnt in conditions.items():
        attrs[spk]["condition"] = cnt.most_common(1)[0][0]
    names = ["fbank-stats", "serac"] + (["resemblyzer"] if resemblyzer_available() else [])
    lines = [f"Automatic cohorts (k-means, k = {args.num_clusters}) over the {len(attrs)} speakers of `{args.cuts}`: "
             "adjusted mutual information between the clusters and each speaker attribute (0 = unrelated, "
             "1 = identical partition).", "",
             "| embedding | " + " | ".join(ATTRIBUTES) + " |", "|---|" + "---|" * len(ATTRIBUTES)]
    for name in names:
        ex = get_extractor(name, checkpoint=args.checkpoint if name == "serac" else None)
        speakers, x = speaker_embeddings(cuts, ex, max_utts_per_speaker=args.max_utts_per_speaker)
        cohorts = fit_auto_cohorts(speakers, x, None, num_clusters=args.num_clusters, standardize=not ex.unit_norm)
        labels = cohorts.predict(x)
        row = [f"{adjusted_mutual_info_score([attrs[s][a] for s in speakers], labels):.3f}" for a in ATTRIBUTES]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
