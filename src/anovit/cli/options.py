"""Option groups that several commands share (cache, backend, the method), and :func:`method_options`, which
turns the method's options back into :func:`anovit.resolve.resolve_config`'s keywords."""

from __future__ import annotations

import argparse
from pathlib import Path

from anovit.config import (
    ANOMALY_FILLS,
    CACHE_MODES,
    OBJECTIVES,
    SCORE_KINDS,
    TEST_FLIPS,
    TOKEN_ATTENTIONS,
    TOKEN_MAP_CHANNELS,
    TOKEN_MERGES,
)
from anovit.deploy.backends import BACKENDS


def add_cache(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache",
        default="auto",
        choices=list(CACHE_MODES),
        help="decoded images in memory (memory), or decoded from disk in DataLoader workers every epoch (none); "
        "auto: memory while they fit in a quarter of the free RAM (at most 4 GiB)",
    )


def add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        default="torch",
        choices=list(BACKENDS),
        help="what runs the model: torch (the run's weights), "
        "or a file from 'anovit export' on ONNX Runtime / OpenVINO",
    )
    p.add_argument(
        "--model",
        type=Path,
        dest="model_file",
        metavar="FILE",
        help="the exported file to run (default: RUN/model.onnx or RUN/model.xml); e.g. RUN/model-int8.xml",
    )


def _plus_list(text: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in text.split("+") if k.strip())


def _layers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected block indices separated by commas, e.g. 2,5,8; got {text!r}"
        ) from None


def add_method(p: argparse.ArgumentParser) -> None:
    """Objective and score: shared by train and benchmark."""
    p.add_argument(
        "--objective",
        choices=list(OBJECTIVES),
        help="reconstruct: the paper; inpaint: hidden patches filled in from context; "
        "restore: synthetic anomalies removed; tokens: the frozen encoder's middle-block tokens given back through "
        "a noisy bottleneck (after Dinomaly; scored by their cosine distance)",
    )
    p.add_argument(
        "--score",
        type=_plus_list,
        metavar="KIND[+KIND...]",
        help=f"score map(s) averaged after scaling, from {', '.join(SCORE_KINDS)}; e.g. l2+gms+feature "
        "(default: the preset's); segment adds a segmentation head trained on restore's synthetic anomalies",
    )
    p.add_argument(
        "--test-masks", type=int, metavar="K", help="inpaint: K complementary patch masks at test time (default 4)"
    )
    p.add_argument(
        "--border", type=float, help="share of the image size at each edge that the image score ignores, e.g. 0.05"
    )
    p.add_argument(
        "--image-score",
        metavar="max|mean|topP|std|A+B",
        help="image score from the map: max (the paper; paper and small presets), mean, "
        "topP = mean of its highest P%% pixels, e.g. top1 (the tiny and scratch presets'), "
        "std = the map's spread, blind to an offset of the whole map, or several joined by '+', "
        "whose geometric mean is the score",
    )
    p.add_argument(
        "--test-flips",
        choices=list(TEST_FLIPS),
        help="also score the image flipped (h: horizontally, v: vertically, hv: each of the three flips) and average "
        "the maps; costs 2x / 4x the scoring (tiny and scratch presets: hv; paper and small: none)",
    )
    p.add_argument(
        "--test-shift",
        type=int,
        metavar="PX",
        help="also score the image shifted diagonally by PX pixels each way (four views) and average the maps, "
        "sampling the ViT's patch grid between its cells; costs 4x the scoring (the default tokens preset: 4, a "
        "quarter of its 16-px patch; 0: off)",
    )
    p.add_argument(
        "--feature-layers",
        type=_layers,
        metavar="I,J,...",
        help="blocks of the frozen encoder: --score feature's, or the tokens the default's decoder gives back in two "
        "groups (default 2-9)",
    )
    p.add_argument(
        "--feature-loss",
        type=float,
        metavar="W",
        help="add W x the reference encoder's feature distance (output vs target) to the L2 loss; 0: L2 alone",
    )
    p.add_argument(
        "--anomalies",
        type=_plus_list,
        metavar="FILL[+FILL...]",
        help=f"restore: what the synthetic anomalies are made of, from {', '.join(ANOMALY_FILLS)} (default: all)",
    )
    p.add_argument("--sigma", type=float, help="Gaussian smoothing sigma of the score map, in pixels")
    p.add_argument(
        "--brightness",
        type=float,
        metavar="B",
        help="training augmentation: scale each image's brightness by a factor from [1-B, 1+B] (default 0: off)",
    )
    p.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        default=None,
        help="train on the images as they are: no random affine, no flips (default: the preset's augmentation)",
    )
    p.add_argument(
        "--train-flips",
        dest="augment_flips",
        action=argparse.BooleanOptionalAction,
        help="training augmentation: random horizontal and vertical flips (default: the preset's; off in the default "
        "tokens preset, where a flip mirrors a part's lighting and threads)",
    )
    p.add_argument(
        "--position-norm",
        action=argparse.BooleanOptionalAction,
        help="read the image score from the map standardised at each pixel by its mean and spread on the normal "
        "hold-out, measured after training (default: off; benchmarks/position_norm.md)",
    )
    p.add_argument(
        "--token-merge",
        choices=TOKEN_MERGES,
        help="--objective tokens: merge the two groups of blocks' distances by their sum, or by the larger of each "
        "over its peak level on the normal hold-out (default: max; benchmarks/token_groups.md)",
    )
    p.add_argument(
        "--token-attention",
        choices=TOKEN_ATTENTIONS,
        help="--objective tokens: the decoder's attention, softmax or linear (Dinomaly's: about 60 %% of softmax's "
        "training time; default: linear; benchmarks/linear_attention)",
    )
    p.add_argument(
        "--token-views",
        type=int,
        metavar="V",
        help="--objective tokens: where training reads each image more than V times, encode V augmented views of "
        "each once and train on them; 0: run the frozen encoder at every step (default: 8)",
    )
    p.add_argument(
        "--token-dropout",
        type=float,
        metavar="P",
        help="--objective tokens: the dropout probability of the decoder's noisy bottleneck, on its inputs and hidden "
        "units (default 0.2, Dinomaly's)",
    )
    p.add_argument(
        "--token-depth",
        type=int,
        metavar="N",
        help="--objective tokens: the decoder's transformer blocks (default 4; Dinomaly's 8 give back its 8 blocks)",
    )
    p.add_argument(
        "--token-groups",
        type=int,
        metavar="K",
        help="--objective tokens: compare the blocks in K consecutive groups, each scored on its own (default 2, "
        "Dinomaly's; at most the decoder's blocks)",
    )
    p.add_argument(
        "--token-map-channels",
        choices=TOKEN_MAP_CHANNELS,
        help="--objective tokens: the channels the map localises with: all, or the ordinary ones, without the "
        "encoder's few massive activations (over 1,000x the median channel's energy on normal tokens); the image "
        "score reads all in both (default: ordinary)",
    )
    p.add_argument(
        "--tiles",
        type=int,
        metavar="K",
        help="knn and --objective tokens: the frozen encoder sees the --image-size image as K x K tiles, each at "
        "image-size / K, their patch grids side by side (K times the patches per side, for small defects; "
        "default 1)",
    )
    p.add_argument(
        "--patch-stride",
        type=int,
        metavar="S",
        help="knn and --objective tokens: the frozen encoder reads its patches every S px, overlapping where S is "
        "below the patch size (8: a grid twice as fine on each side at 4x the tokens; default: the patch size)",
    )
    p.add_argument(
        "--coreset",
        type=float,
        metavar="SHARE",
        help="--model knn: the share of the training patches its memory bank keeps (greedy coreset; default 0.1)",
    )


def method_options(args: argparse.Namespace) -> dict:
    """The objective and scoring options shared by train and benchmark, for :func:`resolve_config`."""
    return dict(
        objective=args.objective,
        score=args.score,
        test_masks=args.test_masks,
        border=args.border,
        feature_layers=args.feature_layers,
        feature_loss=args.feature_loss,
        image_score=args.image_score,
        anomaly_fills=args.anomalies,
        test_flips=args.test_flips,
        test_shift=args.test_shift,
        coreset=args.coreset,
        sigma=args.sigma,
        position_norm=args.position_norm,
        brightness=args.brightness,
        augment=args.augment,
        augment_flips=args.augment_flips,
        token_merge=args.token_merge,
        token_views=args.token_views,
        token_attention=args.token_attention,
        token_dropout=args.token_dropout,
        token_depth=args.token_depth,
        token_groups=args.token_groups,
        token_map_channels=args.token_map_channels,
        tiles=args.tiles,
        patch_stride=args.patch_stride,
    )
