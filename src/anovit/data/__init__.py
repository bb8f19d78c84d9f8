"""Data: the MVTec AD layout, in-memory datasets, augmentations and the built-in synthetic set."""

from .datasets import ImageDataset, split_train_val
from .images import load_image, load_mask
from .mvtec import Sample, labelled_folder_samples, mvtec_samples
from .synthetic import make_synthetic_mvtec

__all__ = ["ImageDataset", "Sample", "load_image", "load_mask", "labelled_folder_samples", "make_synthetic_mvtec", "mvtec_samples", "split_train_val"]
