"""A small synthetic data set with CIFAR's shapes that a network can learn in a few epochs."""

from __future__ import annotations

import torch


def make_fake(num_classes: int, train_size: int, test_size: int, image_size: int = 32,
              noise: float = 0.5, seed: int = 1234) -> dict:
    """uint8 images: a fixed smooth random template per class (low-frequency colour blobs) plus noise."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(num_classes, 3, 4, 4, generator=g)
    templates = torch.nn.functional.interpolate(low, size=(image_size, image_size), mode="bilinear",
                                                align_corners=False)

    def draw(n: int):
        y = torch.arange(n) % num_classes                    # balanced, so stratified splits are exact
        y = y[torch.randperm(n, generator=g)]
        x = templates[y] + noise * 0.25 * torch.randn(n, 3, image_size, image_size, generator=g)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), y

    return {"train": draw(train_size), "test": draw(test_size),
            "classes": [f"class_{i}" for i in range(num_classes)]}
