"""Random square crops of scikit-image's bundled photographs; the class is the source photo."""

from __future__ import annotations

from typing import ClassVar

import attrs
import numpy as np
from attrs.validators import deep_iterable, ge, gt, in_, le, min_len

from prakit.plugin_api import Dataset, DatasetConfig, PrakitError

#: ``skimage.data`` images that ship with scikit-image (no download), at least 300 pixels a side.
PHOTOS = (
    "astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass",
    "gravel", "hubble_deep_field", "immunohistochemistry", "logo", "moon", "retina", "rocket",
)
MAX_CROP = 300  # the shortest side among PHOTOS


def _distinct(instance, attribute, value):
    if len(set(value)) != len(value):
        raise ValueError(f"'{attribute.name}' must not repeat a photo, got {value!r}")


@attrs.frozen
class PhotoCropsConfig(DatasetConfig):
    """``per_photo`` crops of ``crop`` x ``crop`` pixels from each photo, placed at random from ``seed``.

    ``crop`` is the field of view in the photo; ``prepare``'s ``size`` resizes it (sizes up to
    ``crop`` are downscales of the same crops).
    """

    name: ClassVar[str] = "photo_crops"
    photos: tuple[str, ...] = attrs.field(
        default=("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina", "rocket"),
        validator=[deep_iterable(in_(PHOTOS)), min_len(1), _distinct],
    )
    per_photo: int = attrs.field(default=256, validator=gt(0))
    crop: int = attrs.field(default=64, validator=[gt(0), le(MAX_CROP)])
    seed: int = attrs.field(default=0, validator=ge(0))


class PhotoCrops(Dataset):
    """Random RGB crops of scikit-image's photographs, one class per photo (no download)."""

    def __init__(self, cfg: PhotoCropsConfig):
        try:
            from skimage import data
        except ImportError:
            raise PrakitError("the photo_crops dataset needs scikit-image: pip install 'prakit[data]'") from None
        self.cfg, self.class_names = cfg, cfg.photos
        self.photos = [_rgb(getattr(data, name)()) for name in cfg.photos]

    def __len__(self) -> int:
        return len(self.photos) * self.cfg.per_photo

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        label = index // self.cfg.per_photo
        photo, crop = self.photos[label], self.cfg.crop
        top, left = np.random.default_rng([self.cfg.seed, index]).integers(
            0, (photo.shape[0] - crop + 1, photo.shape[1] - crop + 1)
        )
        return photo[top:top + crop, left:left + crop], label


def _rgb(photo: np.ndarray) -> np.ndarray:
    """Greyscale -> 3 channels; RGBA -> RGB (alpha dropped)."""
    return np.repeat(photo[..., None], 3, axis=-1) if photo.ndim == 2 else photo[..., :3]
