"""The default (``tokens``) trained otherwise, on real MVTec-layout categories (issue 24: tire and screw): twice the
optimiser steps or fewer, no augmentation (as Dinomaly and PatchCore read their images) or no flips, more dropout in
the noisy bottleneck, a deeper decoder, more groups of blocks, other blocks of the encoder, more cached views, or the
map and loss over all channels, each against the default as it is.

    python benchmarks/token_training.py --data ../shared/data/mvtec --categories tire,screw \\
        --settings default,steps-1200,no-augment,dropout-0.4 --seeds 0 --runs RUNS

Each setting x seed is one ``anovit benchmark`` folder under RUNS (finished runs are kept, so the script resumes),
made and tabled as ``benchmarks/resolution.py`` does (``--table``, default token_training, in
benchmarks/resolution/): image / pixel AUROC (AUPRO), training minutes and scoring seconds per category.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import resolution  # noqa: E402

# name -> options over the default preset (the keywords of anovit.resolve.resolve_config)
SETTINGS: dict[str, dict] = {
    "default": {},
    "steps-1200": dict(min_steps=1200),  # twice the preset's 600 (the learning rate's decay stretched over them)
    "no-augment": dict(augment=False),  # --no-augment: no random affine, no flips; one cached view of each image
    "dropout-0.4": dict(token_dropout=0.4),  # --token-dropout 0.4: twice Dinomaly's 0.2
    "no-flips": dict(augment_flips=False),  # the random affine without the flips (a flip mirrors the lighting)
    "depth-8": dict(token_depth=8),  # --token-depth 8: Dinomaly's eight decoder blocks for its eight target blocks
    "groups-4": dict(token_groups=4),  # blocks 2-3, 4-5, 6-7, 8-9, each against one decoder block
    "steps-400": dict(min_steps=400, epochs=20),  # two thirds of the preset's 600 steps
    "depth-8-steps-400": dict(token_depth=8, min_steps=400, epochs=20),  # the deeper decoder in the default's time
    # --token-map-channels all: the map and the loss over all channels, the massive activations too (the default
    # until the split; anovit.models.tokens)
    "map-all": dict(token_map_channels="all"),
    "views-16": dict(token_views=16),  # --token-views 16: twice the cached augmented views of each training image
    # --feature-layers: which of the ViT-Ti's 12 blocks the decoder gives back (the default: 2-9, two groups of four)
    "layers-1-8": dict(feature_layers=tuple(range(1, 9))),  # one block earlier: groups 1-4 and 5-8
    "layers-2-7": dict(feature_layers=tuple(range(2, 8))),  # the last two dropped: groups 2-4 and 5-7
}

if __name__ == "__main__":
    resolution.main(SETTINGS, __doc__, "default,steps-1200,no-augment,dropout-0.4", table="token_training")
