"""The paper's published numbers (Lee & Kang, 2022, Tables 1-5), shown beside ours in benchmark reports.

Each table maps a class or category to (l2-CAE AUROC, AnoViT AUROC).
"""

from __future__ import annotations

# Table 1: overall performance, mean AUROC.
TABLE1: dict[str, tuple[float, float]] = {
    "mnist/detection": (0.908, 0.924),
    "cifar10/detection": (0.569, 0.601),
    "mvtec/detection": (0.730, 0.780),
    "mvtec/localisation": (0.810, 0.830),
}

# Table 2: MNIST, image AUROC per normal class.
MNIST: dict[str, tuple[float, float]] = {
    "0": (0.938, 0.980),
    "1": (0.994, 0.986),
    "2": (0.853, 0.911),
    "3": (0.880, 0.838),
    "4": (0.878, 0.913),
    "5": (0.899, 0.924),
    "6": (0.949, 0.975),
    "7": (0.925, 0.914),
    "8": (0.834, 0.838),
    "9": (0.926, 0.958),
}

# Table 3: CIFAR-10, image AUROC per normal class.
CIFAR10: dict[str, tuple[float, float]] = {
    "airplane": (0.597, 0.664),
    "automobile": (0.525, 0.464),
    "bird": (0.585, 0.639),
    "cat": (0.525, 0.550),
    "deer": (0.644, 0.743),
    "dog": (0.547, 0.542),
    "frog": (0.638, 0.700),
    "horse": (0.428, 0.509),
    "ship": (0.675, 0.697),
    "truck": (0.526, 0.502),
}

# Table 4: MVTec AD detection (image AUROC).
MVTEC_DETECTION: dict[str, tuple[float, float]] = {
    "bottle": (0.77, 0.83),
    "cable": (0.66, 0.74),
    "capsule": (0.67, 0.73),
    "hazelnut": (0.88, 0.88),
    "metal_nut": (0.42, 0.86),
    "pill": (0.68, 0.72),
    "screw": (1.00, 1.00),
    "toothbrush": (0.41, 0.74),
    "transistor": (0.88, 0.83),
    "zipper": (0.71, 0.73),
    "carpet": (0.54, 0.50),
    "grid": (0.78, 0.52),
    "leather": (0.77, 0.85),
    "tile": (0.85, 0.89),
    "wood": (0.98, 0.95),
}

# Table 5: MVTec AD localisation (pixel AUROC).
MVTEC_LOCALISATION: dict[str, tuple[float, float]] = {
    "bottle": (0.83, 0.86),
    "cable": (0.85, 0.89),
    "capsule": (0.91, 0.91),
    "hazelnut": (0.95, 0.94),
    "metal_nut": (0.86, 0.88),
    "pill": (0.85, 0.86),
    "screw": (0.92, 0.92),
    "toothbrush": (0.85, 0.90),
    "transistor": (0.77, 0.80),
    "zipper": (0.74, 0.76),
    "carpet": (0.71, 0.65),
    "grid": (0.67, 0.83),
    "leather": (0.82, 0.89),
    "tile": (0.59, 0.57),
    "wood": (0.82, 0.85),
}

MODEL_COLUMN = {"cae": 0, "anovit": 1}


def paper_value(dataset: str, metric: str, category: str, model: str) -> float | None:
    """The paper's AUROC for one cell, or None where the paper has no such number."""
    table = {
        ("mnist", "image_auroc"): MNIST,
        ("cifar10", "image_auroc"): CIFAR10,
        ("mvtec", "image_auroc"): MVTEC_DETECTION,
        ("mvtec", "pixel_auroc"): MVTEC_LOCALISATION,
    }.get((dataset, metric))
    if table is None or category not in table or model not in MODEL_COLUMN:
        return None
    return table[category][MODEL_COLUMN[model]]
