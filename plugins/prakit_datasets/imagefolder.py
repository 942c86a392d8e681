"""An ImageNet-style tree: ``ROOT/<class>/<image file>``, one folder per class."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import ClassVar

import attrs
import numpy as np
from attrs.validators import min_len
from PIL import Image

from prakit.components import Dataset, DatasetConfig
from prakit.errors import PrakitError


@attrs.frozen
class ImageFolderConfig(DatasetConfig):
    """``root`` holds one folder per class; classes are numbered in sorted folder-name order."""

    name: ClassVar[str] = "imagefolder"
    root: str = attrs.field(validator=min_len(1))


class ImageFolder(Dataset):
    """Images from a class-per-folder tree (ImageNet layout), decoded to RGB as ADM does."""

    def __init__(self, cfg: ImageFolderConfig):
        root = Path(cfg.root).expanduser()
        if not root.is_dir():
            raise PrakitError(f"imagefolder: {root} is not a folder; pass the folder that holds one folder per class")
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
        if not classes:
            raise PrakitError(f"imagefolder: {root} has no class folders; expected {root}/<class>/<image files>")
        self.root, self.class_names = root, tuple(classes)
        self.files: list[str] = []
        self.labels: list[int] = []
        #: What the listing left out; ``prepare`` adds these lines to its report.
        self.notes: list[str] = []
        stray = sorted(e.name for e in os.scandir(root) if e.is_file() and not e.name.startswith("."))
        if stray:
            self.notes.append(f"{len(stray)} file(s) directly in {root} belong to no class and were not read: {', '.join(stray[:5])}")
        for label, name in enumerate(classes):
            for entry in sorted(os.scandir(root / name), key=lambda e: e.name):
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    self.notes.append(f"{name}/{entry.name}/ is a folder inside a class folder; its contents were not read")
                else:
                    self.files.append(f"{name}/{entry.name}")
                    self.labels.append(label)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        """The image converted to RGB (CMYK, greyscale, 16-bit, palette and alpha images included).

        Raises ``ValueError`` naming the file when it is not a readable image.
        """
        path = self.root / self.files[index]
        try:
            with warnings.catch_warnings():  # EXIF and palette warnings are noise here
                warnings.simplefilter("ignore")
                with Image.open(path) as image:
                    image.load()
                    rgb = eight_bit(image).convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ValueError(f"{self.files[index]}: not a readable image ({exc})") from None
        return np.asarray(rgb), self.labels[index]


#: Pillow's modes of greyscale images with more than 8 bits per pixel (16-bit PNGs open as these).
WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I")


def eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit greyscale image scaled to 8 bits (``convert`` would saturate it); others as they are."""
    if image.mode not in WIDE_GREY_MODES:
        return image
    values = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.clip(np.rint(values / 257), 0, 255).astype(np.uint8), mode="L")
