"""TensorFlow's FID Inception-v3 (the 2015-12-05 graph) with its TensorFlow 1 preprocessing.

FID, KID, precision/recall and the Inception score are conventionally measured with the
Inception-v3 graph TensorFlow published on 2015-12-05, as the original FID code and the ADM
evaluation suite run it. pytorch-fid (``fid_inception_v3``) and torch-fidelity
(``FeatureExtractorInceptionV3``) ported it to PyTorch; this is the same network, loading the same
weights file. It differs from torchvision's Inception-v3 in: 1008 classes, no auxiliary
classifier, BatchNorm eps 0.001, average pools that leave the padding out of the mean
(``count_include_pad=False``, TensorFlow's ``SAME`` pooling) and a max pool, not an average pool,
in the last block's pool branch.

Preprocessing is torch-fidelity's, which follows the TensorFlow graph (the ADM suite's): uint8 ->
float32, :func:`resize_bilinear_tf1` to 299x299, then ``(x - 128) / 128``. The weights file is not
downloaded: :class:`Inception` reads it from a path and checks its SHA-256.

The spatial features of the ADM suite's sFID are the graph's tensor ``mixed_6/conv``, first 7
channels. The graph names its eleven mixed blocks in order, ``mixed``, ``mixed_1`` ... ``mixed_10``
(torchvision's Mixed_5b-d, Mixed_6a-e, Mixed_7a-c: ``mixed_3`` and ``mixed_8`` are the reductions;
torch-fidelity's conversion of the weights maps ``mixed_6/conv/*`` to ``Mixed_6d.branch1x1.*``),
and in each block ``conv`` is the 1x1 branch, the op of that name its output after BatchNorm and
ReLU (what the block concatenates). So ``mixed_6/conv`` is the output of ``Mixed_6d.branch1x1``,
192 channels at 17x17 (not the last 17x17 block, Mixed_6e, which is ``mixed_7``). The suite keeps
channels 0-6 of the NHWC map and flattens each image row by row, feature ``(h * 17 + w) * 7 + c``:
2023 features, in the order of the ``mu_s`` and ``sigma_s`` of its reference batches, as
:meth:`InceptionV3.forward_with_spatial` gives them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import ClassVar, Iterator, Mapping

import attrs
import torch
import torch.nn.functional as F
from attrs.validators import min_len, optional
from torch import nn

from prakit.plugin_api import FeatureNetwork, FeatureNetworkConfig, PrakitError

#: Where the weights file is when the config names none; when it is set, inception is the
#: evaluation's default feature network (:meth:`Inception.default_rank`).
WEIGHTS_ENV = "PRAKIT_INCEPTION_WEIGHTS"
WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_NAME}"
WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
WEIGHTS_BYTES = 95_628_359
INPUT_SIZE = 299
#: sFID's features: the first SPATIAL_CHANNELS channels of SPATIAL_BLOCK's 1x1 branch, SPATIAL_SIDE x SPATIAL_SIDE.
SPATIAL_BLOCK, SPATIAL_CHANNELS, SPATIAL_SIDE = "Mixed_6d", 7, 17
#: Names the preprocessing in :meth:`InceptionV3.fingerprint`: change it whenever the preprocessing changes.
PREPROCESSING = "tf1-bilinear-299/(x-128)/128/v1"

_HOW_TO_GET = (
    f"download {WEIGHTS_NAME} from {WEIGHTS_URL} (torch-fidelity's weights-inception-2015-12-05-6726825d.pth "
    f'is the same file) and give its path as eval.features.weights = "..." or in ${WEIGHTS_ENV}'
)


@attrs.frozen
class InceptionConfig(FeatureNetworkConfig):
    """``weights``: the path of the published weights file; None: ``$PRAKIT_INCEPTION_WEIGHTS``."""

    name: ClassVar[str] = "inception"
    weights: str | None = attrs.field(default=None, validator=optional(min_len(1)))


def resize_bilinear_tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W) floats as TensorFlow 1.x ``ResizeBilinear(align_corners=False)``.

    Output pixel ``i`` reads the source at ``i * in / out`` (in float32, no half-pixel offset, so
    unlike ``F.interpolate(align_corners=False)``), interpolating between the pixel below and the
    next one, clamped to the edge.
    """

    def taps(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scale = torch.tensor(n_in / n_out, dtype=torch.float32, device=x.device)
        pos = torch.arange(n_out, dtype=torch.float32, device=x.device) * scale
        lower = pos.floor()
        low = lower.long()
        return low, (low + 1).clamp_max(n_in - 1), (pos - lower).to(x.dtype)

    y0, y1, dy = taps(x.shape[-2], size[0])
    x0, x1, dx = taps(x.shape[-1], size[1])

    def lerp_columns(rows: torch.Tensor) -> torch.Tensor:
        left = rows[..., x0]
        return left + (rows[..., x1] - left) * dx

    top, bottom = lerp_columns(x[..., y0, :]), lerp_columns(x[..., y1, :])
    return top + (bottom - top) * dy[:, None]


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """Within the block, CUDA convolutions and matmuls compute in float32, not TF32.

    cuDNN allows TF32 convolutions by default, which moves the features by far more than the
    reference ports differ. Uses torch's per-backend precision settings where they exist
    (torch >= 2.9, where mixing them with the older ``allow_tf32`` flags is an error).
    """
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    if hasattr(cudnn, "conv"):
        saved = cudnn.conv.fp32_precision, matmul.fp32_precision
        cudnn.conv.fp32_precision = matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            cudnn.conv.fp32_precision, matmul.fp32_precision = saved
        return
    saved_matmul, matmul.allow_tf32 = matmul.allow_tf32, False
    try:
        with cudnn.flags(
            enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic, allow_tf32=False
        ):
            yield
    finally:
        matmul.allow_tf32 = saved_matmul


class ConvBN(nn.Module):
    """Every convolution of the network: no bias, then BatchNorm (TensorFlow's eps) and ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int | tuple[int, int], stride: int = 1, padding: int | tuple = 0):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def avg_pool_same(x: torch.Tensor) -> torch.Tensor:
    """TensorFlow's 3x3 ``SAME`` average pool: the mean of the taps inside the image."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


# The blocks, named as torchvision names them (so are the weights); (1, 7) and (7, 1) pairs
# are a factorised 7x7, likewise for 3x3.


class InceptionA(nn.Module):
    """35x35 block (Mixed_5b-d): 1x1, 5x5, double 3x3 and pool branches."""

    def __init__(self, c_in: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBN(c_in, 64, 1)
        self.branch5x5_1 = ConvBN(c_in, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(c_in, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(avg_pool_same(x)),
            ],
            1,
        )


class InceptionB(nn.Module):
    """Reduction 35x35 -> 17x17 (Mixed_6a)."""

    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3 = ConvBN(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, 3, stride=2),
            ],
            1,
        )


class InceptionC(nn.Module):
    """17x17 block (Mixed_6b-e): 1x1, 7x7, double 7x7 and pool branches; ``c7`` inner channels."""

    def __init__(self, c_in: int, c7: int):
        super().__init__()
        self.branch1x1 = ConvBN(c_in, 192, 1)
        self.branch7x7_1 = ConvBN(c_in, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(c_in, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = x
        for i in range(1, 6):
            double = getattr(self, f"branch7x7dbl_{i}")(double)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
                double,
                self.branch_pool(avg_pool_same(x)),
            ],
            1,
        )


class InceptionD(nn.Module):
    """Reduction 17x17 -> 8x8 (Mixed_7a)."""

    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(c_in, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(c_in, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch3x3_2(self.branch3x3_1(x)),
                self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x)))),
                F.max_pool2d(x, 3, stride=2),
            ],
            1,
        )


class InceptionE(nn.Module):
    """8x8 block (Mixed_7b, Mixed_7c): 1x1, split 3x3, split double 3x3 and pool branches.

    The pool branch averages in Mixed_7b and takes the maximum in Mixed_7c (``max_pool``), as
    the TensorFlow graph does (other Inception-v3s average in both).
    """

    def __init__(self, c_in: int, *, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = ConvBN(c_in, 320, 1)
        self.branch3x3_1 = ConvBN(c_in, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(c_in, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else avg_pool_same(x)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(split),
                self.branch3x3_2b(split),
                self.branch3x3dbl_3a(double),
                self.branch3x3dbl_3b(double),
                self.branch_pool(pooled),
            ],
            1,
        )


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names and tensor bytes, in order."""
    digest = hashlib.sha256()
    for key, tensor in state.items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class InceptionV3(FeatureNetwork):
    """The FID Inception-v3 holding the weights it is given: :class:`Inception` loads the published ones.

    ``forward`` returns the 2048 pool3 features and the 1008 unbiased logits ``pool3 @ fc.weight.T``
    (torch-fidelity's ``logits_unbiased``, what the ADM suite's Inception score reads);
    ``forward_with_spatial`` adds the 2023 spatial features of sFID (the module docstring says which).
    The network stays in eval mode: its BatchNorms always use their stored statistics.
    """

    num_features = 2048
    num_logits = 1008
    num_spatial = SPATIAL_CHANNELS * SPATIAL_SIDE**2
    predicts_labels = False

    def __init__(self, *, weights_id: str):
        """``weights_id`` identifies the weights in :meth:`fingerprint`."""
        super().__init__()
        self.weights_id = weights_id
        layers = {  # spatial size for a 299x299 input
            "Conv2d_1a_3x3": ConvBN(3, 32, 3, stride=2),  # 149
            "Conv2d_2a_3x3": ConvBN(32, 32, 3),  # 147
            "Conv2d_2b_3x3": ConvBN(32, 64, 3, padding=1),
            "MaxPool_1": nn.MaxPool2d(3, stride=2),  # 73
            "Conv2d_3b_1x1": ConvBN(64, 80, 1),
            "Conv2d_4a_3x3": ConvBN(80, 192, 3),  # 71
            "MaxPool_2": nn.MaxPool2d(3, stride=2),  # 35
            "Mixed_5b": InceptionA(192, pool_features=32),
            "Mixed_5c": InceptionA(256, pool_features=64),
            "Mixed_5d": InceptionA(288, pool_features=64),
            "Mixed_6a": InceptionB(288),  # 17
            "Mixed_6b": InceptionC(768, c7=128),
            "Mixed_6c": InceptionC(768, c7=160),
            "Mixed_6d": InceptionC(768, c7=160),
            "Mixed_6e": InceptionC(768, c7=192),
            "Mixed_7a": InceptionD(768),  # 8
            "Mixed_7b": InceptionE(1280, max_pool=False),
            "Mixed_7c": InceptionE(2048, max_pool=True),
        }
        for name, layer in layers.items():
            self.add_module(name, layer)
        self.trunk = tuple(layers)
        self.fc = nn.Linear(2048, 1008)
        self.requires_grad_(False).eval()

    @staticmethod
    def with_random_weights(seed: int = 0, device: torch.device | str | None = None) -> InceptionV3:
        """The same network with seeded random weights, for tests and speed benchmarks: its numbers mean nothing.

        Convolutions are He-normal so activations keep their scale through the network (the
        BatchNorms stay at their defaults, the identity up to eps). ``weights_id``, and so the
        fingerprint, is derived from the random state dict: ``random:`` and its SHA-256.
        """
        net = InceptionV3(weights_id="")
        generator = torch.Generator().manual_seed(seed)
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
        nn.init.normal_(net.fc.weight, std=2048**-0.5, generator=generator)
        nn.init.zeros_(net.fc.bias)
        net.weights_id = "random:" + state_dict_sha256(net.state_dict())
        return net.to(device)

    def train(self, mode: bool = True) -> InceptionV3:
        """Stays in eval mode whatever ``mode`` says: the BatchNorms must keep their statistics."""
        return super().train(False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, C), C 1 (repeated to RGB) or 3 -> the network's input (B, 3, 299, 299) in [-1, 1)."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise PrakitError(
                f"Inception reads uint8 images (B, H, W, C) with C 1 or 3, got {images.dtype} {tuple(images.shape)}"
            )
        x = images.to(self.fc.weight.device).permute(0, 3, 1, 2).float()
        x = resize_bilinear_tf1(x, (INPUT_SIZE, INPUT_SIZE))
        return ((x - 128) / 128).expand(-1, 3, -1, -1)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (B, H, W, C) -> pool3 features (B, 2048) and unbiased logits (B, 1008), float32."""
        return self._run(images, spatial=False)[:2]

    @torch.no_grad()
    def forward_with_spatial(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`forward`'s pool3 features and logits, and the spatial features (B, 2023) of the same pass."""
        return self._run(images, spatial=True)

    def _run(self, images: torch.Tensor, *, spatial: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        x = self.preprocess(images)
        taps = None
        with no_tf32():
            for name in self.trunk:
                if spatial and name == SPATIAL_BLOCK:  # its 1x1 branch again, on the block's input (1% more work)
                    taps = getattr(self, name).branch1x1(x)[:, :SPATIAL_CHANNELS].permute(0, 2, 3, 1).flatten(1)
                x = getattr(self, name)(x)
            pool3 = F.adaptive_avg_pool2d(x, 1).flatten(1)
            return pool3, pool3 @ self.fc.weight.T, taps

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.weights_id}|{PREPROCESSING}".encode()).hexdigest()[:16]


class Inception(InceptionV3):
    """TensorFlow's FID Inception-v3 (2015-12-05): 2048 pool3 features, 1008 logits and sFID's 2023
    spatial features, TF1 resize to 299."""

    reads_adm_statistics = True

    @classmethod
    def default_rank(cls) -> int | None:
        """The default wherever ``$PRAKIT_INCEPTION_WEIGHTS`` names its weights."""
        return 2 if os.environ.get(WEIGHTS_ENV) else None

    def __init__(
        self,
        cfg: InceptionConfig,
        *,
        store: object = None,
        device: torch.device | str | None = None,
        progress: bool = False,
    ):
        """Loads the published weights file (see :func:`published_weights`); ``store`` and ``progress`` are unused."""
        state, digest = published_weights(cfg.weights)
        super().__init__(weights_id=digest)
        # The file was converted from the TensorFlow graph's constants, which have no BatchNorm batch
        # counters (num_batches_tracked); nothing reads them in eval mode. Zeros stand in for any it lacks.
        counters = [key for key in self.state_dict() if key.endswith(".num_batches_tracked")]
        self.load_state_dict(dict.fromkeys(counters, torch.tensor(0)) | state)
        self.to(device)


def published_weights(path: str | None) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict in the weights file at ``path`` (None: ``$PRAKIT_INCEPTION_WEIGHTS``) and its SHA-256.

    Refuses a missing file and any file but the published one (by its SHA-256).
    """
    path = path or os.environ.get(WEIGHTS_ENV)
    if not path:
        raise PrakitError(f"the Inception feature network needs its weights file and none was given: {_HOW_TO_GET}")
    file = Path(path).expanduser()
    if not file.is_file():
        raise PrakitError(f"Inception weights file {file} does not exist: {_HOW_TO_GET}")
    with file.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    if digest != WEIGHTS_SHA256:
        raise PrakitError(
            f"{file} is not the Inception weights file {WEIGHTS_NAME}: its SHA-256 is {digest} "
            f"({file.stat().st_size:,} bytes), expected {WEIGHTS_SHA256} ({WEIGHTS_BYTES:,} bytes); {_HOW_TO_GET}"
        )
    return torch.load(file, map_location="cpu", weights_only=True), digest
