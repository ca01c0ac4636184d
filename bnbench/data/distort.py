"""Photometric distortions (Sec. 4.2.1, modification 7), applied batched on the training device.

The paper gives no strengths. The baseline recipe holds them (brightness, contrast, and for
RGB saturation and hue, in torchvision/kornia ColorJitter units); `distort=reduced` scales
all of them by a stated fraction. Each example draws its own factors.
"""

from __future__ import annotations

from torch import nn


def build_distortion(channels: int, brightness: float, contrast: float, saturation: float, hue: float) -> nn.Module | None:
    """A per-example random colour jitter for [0, 1] images, or None when every strength is 0."""
    if channels != 3:
        saturation = hue = 0.0  # grayscale has neither
    if not any((brightness, contrast, saturation, hue)):
        return None
    import kornia.augmentation as K  # ~0.3 s of start-up: only for runs that distort

    return K.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue, p=1.0)
