"""Presets (``paper``, ``small``, ``scratch``, ``tiny``, ``tokens``): whole run configurations, and the constants of
the default's method. Torch-free; :func:`anovit.resolve.resolve_config` applies a user's options to one."""

from __future__ import annotations

from dataclasses import replace

from anovit.config import DataConfig, ModelConfig, RunConfig, ScoreConfig, TrainConfig

DEFAULT_PRESET = "tokens"  # the CPU default; the README's knn section compares it with tiny and knn
DEFAULT_TEST_MASKS = 4
DEFAULT_FEATURE_LAYERS = (2, 5, 8)
# --objective tokens: the middle blocks whose tokens the decoder gives back (Dinomaly's 2 to 9 of 12), and its depth
TOKEN_LAYERS = tuple(range(2, 10))
TOKEN_DECODER_DEPTH = 4
# how the token map merges its groups of blocks (anovit.models.tokens): the larger of each over its normal peak level
TOKEN_MERGE = "max"
# the token decoder's attention (anovit.models.attention): linear, Dinomaly's; level with softmax on the real sets at
# about 60 % of its training time (benchmarks/linear_attention)
TOKEN_ATTENTION = "linear"
# the channels the token map localises with: all but the encoder's massive activations (anovit.models.tokens), a
# finer map on real defects; the image score reads all channels
TOKEN_MAP_CHANNELS = "ordinary"
# --objective tokens on a small set: augmented views of each training image encoded once (anovit.training.token_cache)
TOKEN_VIEWS = 8
# the tokens' test-time shift (ScoreConfig.test_shift): a quarter of the ViT's 16-px patch, so the four shifted views
# sample the 14 x 14 patch grid between its cells
TOKEN_TEST_SHIFT = 4
KNN_SIGMA = 4.0  # PatchCore's smoothing of its distance map
# the share of the map's side at each edge that the image score of the CPU defaults leaves out (and the token groups'
# peak levels with it): the ViT's corner patches are given back worst on the normal images of every set (README, "The
# image score leaves out the border"), and a defect wholly inside the outer 5 % is rare on parts framed for inspection
IMAGE_SCORE_BORDER = 0.05

# paper: the published setting for MVTec AD: ViT-B/16 (ImageNet-21k, fine-tuned on 1k) at 384 px, reconstruct, L2.
#        Needs the pretrained weights (the hub or --encoder-weights) and a GPU.
# small: a 4-block ViT with 8-px patches at 64 px from scratch; trains in a minute on 2 CPU cores (tests, trials).
# scratch: ``tiny`` without its pretrained weights: small's ViT at 128 px restoring synthetic anomalies, scored by
#        gradient-magnitude similarity and the segmentation head; about 10 minutes per ~200 images on 2 CPU cores.
#        Where the default's weights cannot be found, the default trains as this preset.
# tiny: the pretrained ViT-Ti/16 at 224 px fine-tuned to restore synthetic anomalies, scored by a frozen copy's
#        features and the segmentation head at half resolution; about 10 minutes per ~200 images on 2 CPU cores. The
#        finest localisation on real tire; the one-class rule's pixel variant (anovit.one_class_rule).
# small's and scratch's model: the ViT-Ti architecture narrowed to 4 blocks of 128-d tokens, and a 64-d l2-CAE
SMALL_VIT = ModelConfig(
    encoder="vit_tiny_patch16_224",
    patch_size=8,
    encoder_overrides={"embed_dim": 128, "depth": 4, "num_heads": 4},
    pretrained=False,
    decoder_channels=(128, 64, 32, 32, 16),
    cae_base_channels=32,
    cae_latent_dim=64,
)
PRESETS: dict[str, RunConfig] = {
    "paper": RunConfig(
        model=ModelConfig(
            image_size=384,
            encoder="vit_base_patch16_384",
            patch_size=16,
            pretrained=True,
            decoder_channels=(512, 256, 128, 64, 32),
            cae_base_channels=32,
            cae_latent_dim=100,
        ),
        data=DataConfig(image_size=384),
        train=TrainConfig(epochs=100, batch_size=8, lr=1e-4),
        score=ScoreConfig(sigma=4.0),
        preset="paper",
    ),
    "small": RunConfig(
        model=replace(SMALL_VIT, image_size=64),
        data=DataConfig(image_size=64),
        train=TrainConfig(epochs=80, batch_size=16, lr=1e-3),
        score=ScoreConfig(sigma=2.0),
        preset="small",
    ),
    "scratch": RunConfig(
        model=replace(SMALL_VIT, image_size=128),
        data=DataConfig(image_size=128),
        train=TrainConfig(epochs=70, batch_size=16, lr=1e-3, objective="restore"),
        score=ScoreConfig(sigma=2.0, kinds=("gms", "segment"), image_score="top1", test_flips="hv"),
        preset="scratch",
    ),
    "tiny": RunConfig(
        model=ModelConfig(
            image_size=224,
            encoder="vit_tiny_patch16_224.augreg_in21k_ft_in1k",
            patch_size=16,
            pretrained=True,
            decoder_channels=(128, 64, 32, 16, 16),
            cae_base_channels=32,
            cae_latent_dim=100,
            reference_layers=DEFAULT_FEATURE_LAYERS,
            segment_head=True,
            segment_scale=2,
        ),
        data=DataConfig(image_size=224),
        train=TrainConfig(epochs=30, batch_size=16, lr=2e-4, objective="restore", feature_loss=0.5, min_steps=300),
        # top1: the mean of the map's highest 1 %, steadier than one pixel; hv: the maps of the image and its three
        # flips averaged; segment: the head outlines what the 16-px feature cells blur
        score=ScoreConfig(
            sigma=2.0, kinds=("feature", "segment"), border=IMAGE_SCORE_BORDER, image_score="top1", test_flips="hv"
        ),
        preset="tiny",
    ),
}
# The l2-CAE of a preset whose AnoViT reconstructs no pixels trains as in this preset (its rate and steps suit a
# pixel decoder; tokens' 1e-3 with a cosine decay cost the demo's l2-CAE 0.23 image AUROC).
CAE_PRESET = {"tokens": "tiny"}
# tokens: the CPU default: the tiny preset's pretrained ViT-Ti at 224 px, frozen; a 4-block decoder with linear
#        attention gives back its tokens of blocks 2 to 9 through a noisy bottleneck (after Dinomaly), scored by their
#        cosine distance (blocks 2-5 and 6-9, each over its peak level on normal images, the larger of the two; the map
#        localises without the encoder's massive activations, the image score reads all channels); 600
#        steps with a cosine decay of the learning rate (about 5 minutes on 2 CPU cores in fp32), on views turned,
#        moved and scaled a little but not flipped; at test time, the mean map of four views shifted by a quarter
#        patch; the image score asks for a peak (the top 1 %) that stands out of the map around it (its spread):
#        their geometric mean, over the map but its outer 5 % at each edge.
PRESETS["tokens"] = RunConfig(
    model=replace(
        PRESETS["tiny"].model,
        reference_layers=TOKEN_LAYERS,
        token_decoder_depth=TOKEN_DECODER_DEPTH,
        token_merge=TOKEN_MERGE,
        token_attention=TOKEN_ATTENTION,
        token_map_channels=TOKEN_MAP_CHANNELS,
        segment_head=False,
    ),
    # the paper's random affine without its flips: a flip mirrors the light falling on a part and the hand of its
    # threads, views a line never shows, and the decoder would learn to give them back too (README, "Training without
    # flips")
    data=DataConfig(image_size=224, hflip=False, vflip=False),
    train=TrainConfig(
        epochs=30,
        batch_size=16,
        lr=1e-3,
        lr_schedule="cosine",
        objective="tokens",
        min_steps=600,
        token_views=TOKEN_VIEWS,
    ),
    score=ScoreConfig(
        sigma=4.0, kinds=("tokens",), border=IMAGE_SCORE_BORDER, image_score="top1+std", test_shift=TOKEN_TEST_SHIFT
    ),
    preset="tokens",
)
