# local/db.sh: where the corpora live on this machine or cluster; recipes source it to find
# them. Edit the paths for your site (or set the variables in the environment: these are only
# defaults). A corpus that is not where it is said to be is downloaded by the recipes that can
# (where the licence allows) into that path, which must then be writable.
#
# On a Slurm cluster these paths must be visible from every compute node (a shared filesystem),
# since the jobs read the audio directly.

# Kaldi's yes/no corpus (60 wav files, 8 kHz): "lhotse download yesno <dir>" fetches it.
YESNO=${YESNO:-/export/corpora/yesno}

# LibriSpeech (OpenSLR 12): the directory that holds LibriSpeech/train-clean-100, dev-clean, ...
LIBRISPEECH=${LIBRISPEECH:-/export/corpora/LibriSpeech}

# MUSAN noises (OpenSLR 17), used by the data augmentation of the larger recipes.
MUSAN=${MUSAN:-/export/corpora/musan}

# LibriCSS (Chen et al. 2020): the directory that holds for_release/ (0L, 0S, OV10 ... OV40 sessions);
# "lhotse download libricss <dir>" fetches it.
LIBRICSS=${LIBRICSS:-/export/corpora/LibriCSS}
