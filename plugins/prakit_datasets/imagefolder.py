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

from prakit.plugin_api import Dataset, DatasetConfig, PrakitError


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
        kinds = {e.name: kind(e) for e in os.scandir(root) if not e.name.startswith(".")}
        classes = sorted(name for name, what in kinds.items() if what == "folder")
        if not classes:
            raise PrakitError(f"imagefolder: {root} has no class folders; expected {root}/<class>/<image files>")
        self.root, self.class_names = root, tuple(classes)
        self.files: list[str] = []
        self.labels: list[int] = []
        #: What the listing left out; ``prepare`` adds these lines to its report.
        self.notes: list[str] = []
        stray = sorted(name for name, what in kinds.items() if what != "folder")
        if stray:
            self.notes.append(f"not read, as they lie directly in {root} and so in no class ({len(stray)}): {', '.join(stray[:5])}")
        for label, name in enumerate(classes):
            for entry in sorted(os.scandir(root / name), key=lambda e: e.name):
                if entry.name.startswith("."):
                    continue
                what = kind(entry)
                if what == "file":
                    self.files.append(f"{name}/{entry.name}")
                    self.labels.append(label)
                elif what == "folder":
                    self.notes.append(f"{name}/{entry.name}/ is a folder inside a class folder; its contents were not read")
                else:
                    self.notes.append(f"{name}/{entry.name} is {what}; it was not read")

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


def kind(entry: os.DirEntry) -> str:
    """'file', 'folder', or what else the entry is (a link that does not resolve, a socket, ...)."""
    try:
        if entry.is_dir():
            return "folder"
        if entry.is_file():
            return "file"
        return "a link to nothing (its target is missing)" if entry.is_symlink() else "not a regular file"
    except OSError as exc:  # a link to itself or in a loop
        return f"a link that does not resolve ({exc.strerror})"


#: Pillow's modes of greyscale images with more than 8 bits per pixel (16-bit PNGs open as these).
WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I")


def eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit greyscale image scaled to 8 bits (``convert`` would saturate it); others as they are."""
    if image.mode not in WIDE_GREY_MODES:
        return image
    values = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.clip(np.rint(values / 257), 0, 255).astype(np.uint8), mode="L")
