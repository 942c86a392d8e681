"""scikit-learn's bundled handwritten digits: 1,797 images of 8x8 grey levels, 10 classes."""

from __future__ import annotations

from typing import ClassVar

import attrs
import numpy as np

from prakit.plugin_api import Dataset, DatasetConfig, PrakitError


@attrs.frozen
class DigitsConfig(DatasetConfig):
    """No fields: the dataset is fixed; ``prepare``'s ``size`` upscales it (8 -> size)."""

    name: ClassVar[str] = "digits"


class Digits(Dataset):
    """scikit-learn's 1,797 handwritten digits, 8x8 greyscale, 10 classes (no download)."""

    class_names = tuple("0123456789")

    def __init__(self, cfg: DigitsConfig):
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise PrakitError("the digits dataset needs scikit-learn: pip install 'prakit[data]'") from None
        digits = load_digits()
        self.images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]  # 0..16 -> 0..255
        self.labels = digits.target.astype(np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.images[index], int(self.labels[index])
