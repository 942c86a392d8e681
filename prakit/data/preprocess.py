"""The ADM preprocessing (guided-diffusion's ``center_crop_arr``), used by the ImageNet-256
generation papers: halve with BOX filters while the shorter side is at least twice the target,
resize the shorter side to the target with BICUBIC, crop the centre."""

from __future__ import annotations

import numpy as np
from PIL import Image

METHOD = "adm-center-crop"


def center_crop(image: np.ndarray, size: int, channels: int = 3) -> np.ndarray:
    """(H, W, C) uint8, C in (1, 3) -> (size, size, channels) uint8.

    The channels are converted first (greyscale is repeated, RGB -> luma), as ADM converts to
    RGB before resizing.
    """
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    pil = pil.convert("RGB" if channels == 3 else "L")
    while min(pil.size) >= 2 * size:
        pil = pil.resize(tuple(x // 2 for x in pil.size), resample=Image.BOX)
    scale = size / min(pil.size)
    pil = pil.resize(tuple(round(x * scale) for x in pil.size), resample=Image.BICUBIC)
    arr = np.asarray(pil)
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    arr = arr[top:top + size, left:left + size]
    return arr[..., None] if channels == 1 else arr
