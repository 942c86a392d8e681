"""Built-in dataset sources for ``prakit data prepare``: an ImageNet-style image folder, and two
datasets that ship inside packages (no download): scikit-learn's digits and crops of
scikit-image's photographs (both need the ``data`` extra: ``pip install 'prakit[data]'``)."""

from prakit.plugin_api import hookimpl
from prakit_datasets.digits import Digits, DigitsConfig
from prakit_datasets.imagefolder import ImageFolder, ImageFolderConfig
from prakit_datasets.photo_crops import PhotoCrops, PhotoCropsConfig


@hookimpl
def register_datasets(registrar):
    registrar.add(ImageFolderConfig, ImageFolder)
    registrar.add(DigitsConfig, Digits)
    registrar.add(PhotoCropsConfig, PhotoCrops)
