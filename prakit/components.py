"""The interface of each swappable component kind (the kinds and their config bases are
:mod:`prakit.kinds`).

A plugin provides a component by subclassing a config base (a frozen attrs class whose
``name`` class variable is the registry key and the tag in config files) and an interface,
then registering the pair through the hook of that kind (see :mod:`prakit.hookspecs`).

Shapes: ``x`` are pixel tokens ``(B, L, token_dim)`` in [-1, 1] in raster order, ``z`` are
intermediate states ``(B, L, state_dim)``, ``h`` are backbone outputs ``(B, L, width)`` where
``h[:, i]`` predicts token ``i``, and ``labels`` are class indices ``(B,)`` (``num_classes`` is
the null class used for classifier-free guidance).
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Mapping, Protocol, Sequence

import attrs
import numpy as np
import torch
from torch import nn

from prakit.errors import PrakitError
from prakit.kinds import EvaluatorConfig, TrackerConfig
from prakit.random import Generators

if TYPE_CHECKING:
    from prakit.config import SampleConfig
    from prakit.eval.context import EvalContext

__all__ = [
    "Backbone",
    "StateGenerator",
    "PixelDecoder",
    "RolloutApproximator",
    "RolloutModel",
    "Evaluator",
    "FeatureNetwork",
    "Dataset",
    "Curve",
]


class Backbone(nn.Module, abc.ABC):
    """Causal transformer over pixel tokens, with a KV cache for sampling.

    Built as ``build(cfg, token_dim=, seq_len=, num_classes=, grid=)``; ``grid`` is the
    (rows, columns) layout of the ``seq_len`` raster-order tokens.
    """

    width: int
    #: Blocks :meth:`hidden_states` can stop after (0: it exposes none).
    depth: int = 0

    @abc.abstractmethod
    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Read ``[start(labels), tokens[:, 0], ..., tokens[:, T-1]]``; return ``h`` of shape (B, T+1, width)."""

    def hidden_states(self, tokens: torch.Tensor, labels: torch.Tensor, layer: int) -> torch.Tensor:
        """What ``forward`` reads, stopped after block ``layer`` (1..depth): (B, T+1, width), for linear probes."""
        raise PrakitError(f"backbone {type(self).__name__} does not expose its hidden states; "
                          "the linear_probe evaluator needs Backbone.hidden_states")

    @abc.abstractmethod
    def start(self, labels: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Begin cached decoding: ``h`` of the start token (B, width) and a fresh cache."""

    @abc.abstractmethod
    def step(self, token: torch.Tensor, cache: Any) -> torch.Tensor:
        """Append one token (B, token_dim) to the cache; return its ``h`` (B, width)."""

    def prefill(self, tokens: torch.Tensor, cache: Any) -> torch.Tensor:
        """Append ``tokens`` (B, T, token_dim) to the cache; return the last one's ``h`` (B, width).
        One :meth:`step` per token by default; a backbone that can read them in one parallel pass
        overrides it."""
        for token in tokens.unbind(1):
            h = self.step(token, cache)
        return h

    def compile_decoding(self, mode: str) -> None:
        """Compile :meth:`step`'s work in place with torch.compile ``mode`` (``sample.compile``)."""
        raise PrakitError(f"backbone {type(self).__name__} does not compile its decoding; set sample.compile = \"off\"")

    def enable_activation_checkpointing(self) -> None:
        """Recompute activations in the backward pass instead of storing them (``train.activation_checkpointing``)."""
        raise PrakitError(
            f"backbone {type(self).__name__} does not support activation checkpointing; "
            "set train.activation_checkpointing = false"
        )


class StateGenerator(nn.Module, abc.ABC):
    """Per-token model of p(z_i | h_i): the head that generates intermediate states.

    Built as ``build(cfg, state_dim=, cond_dim=, state_bound=)``: ``state_bound`` is the
    decoder's :attr:`PixelDecoder.state_bound` (None: unbounded), the range a sampler may clip to.
    """

    state_dim: int
    #: Steps a sample takes when ``sample`` is given none (``sample.steps`` unset).
    default_steps: int = 1

    def network_evaluations(self, steps: int) -> int:
        """Evaluations of the head's network per token in a ``steps``-step sample (a guided
        evaluation counts once: its conditional and null rows run as one batch)."""
        return steps

    @abc.abstractmethod
    def loss(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Per-token training loss of shape ``h.shape[:-1]`` for targets ``z``."""

    @abc.abstractmethod
    def sample(
        self,
        h: torch.Tensor,
        *,
        temperature: float = 1.0,
        steps: int | None = None,
        rng: Generators = None,
        cfg_scale: float = 1.0,
        h_uncond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Draw float32 states of shape ``h.shape[:-1] + (state_dim,)``, whatever ``h``'s dtype
        (under bf16 autocast the networks run in bf16, the sampler's state stays in fp32).

        ``rng`` is one torch generator or one per row of ``h`` (draw noise with
        :func:`prakit.random.randn`). With ``h_uncond`` (the null-class condition, same shape as
        ``h``) the prediction is guided: ``uncond + cfg_scale * (cond - uncond)``; at
        ``cfg_scale == 1`` the result equals unguided sampling with the same noise.
        """

    def compile_sampling(self, mode: str) -> None:
        """Compile what :meth:`sample` repeats in place with torch.compile ``mode`` (``sample.compile``)."""
        raise PrakitError(f"head {type(self).__name__} does not compile its sampling; set sample.compile = \"off\"")


class PixelDecoder(nn.Module, abc.ABC):
    """Maps pixel tokens to intermediate states (``encode``) and back (``decode``), per token.

    Built as ``build(cfg, token_dim=, patch_size=, channels=)``: a token holds a ``patch_size`` x
    ``patch_size`` patch of ``channels`` channels, laid out ``(p, p, C)`` (``token_dim = p * p * C``).
    """

    token_dim: int
    state_dim: int
    #: Every component of an encoded state lies in [-state_bound, state_bound] (None: unbounded);
    #: the head clips its clean-state estimate to it.
    state_bound: float | None = None

    @abc.abstractmethod
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(..., token_dim) -> (..., state_dim)."""

    @abc.abstractmethod
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(..., state_dim) -> (..., token_dim)."""

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """Map a generated state onto the set ``encode`` produces (applied after guidance, before
        decoding); the identity by default."""
        return z

    def reconstruction_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Scalar loss that trains the encoder/decoder pair; mean squared error by default."""
        return torch.mean((self.decode(self.encode(x)) - x) ** 2)


class RolloutModel(Protocol):
    """What a rollout approximator may use of the model it trains (:class:`prakit.model.ARModel`)."""

    backbone: Backbone
    generator: StateGenerator
    decoder: PixelDecoder
    seq_len: int
    #: The run's ``sample`` section: how inference draws tokens.
    sampling: SampleConfig
    training: bool

    def train(self, mode: bool = True) -> Any: ...

    def states_to_tokens(self, z: torch.Tensor) -> torch.Tensor:
        """Generated states (..., state_dim) -> the pixel tokens inference feeds back."""

    def sample_tokens(
        self,
        labels: torch.Tensor,
        options: SampleConfig,
        *,
        rng: Generators = None,
        prefix: torch.Tensor | None = None,
        length: int | None = None,
    ) -> torch.Tensor:
        """Tokens (B, length, token_dim) as inference draws them, after the ground-truth ``prefix``."""


class RolloutApproximator(nn.Module, abc.ABC):
    """Builds the backbone's training inputs ``x~`` from a batch.

    Built as ``build(cfg)``. ``model`` is the model being trained, seen through
    :class:`RolloutModel`.
    """

    @abc.abstractmethod
    def forward(
        self, x: torch.Tensor, z: torch.Tensor, labels: torch.Tensor, *, model: RolloutModel, step: int
    ) -> torch.Tensor:
        """Return ``x~`` with the shape and dtype of ``x``; ``step`` is the training step."""

    def measurements(self) -> dict[str, float]:
        """What the approximator measured of its own inputs at its latest step (a calibrated
        sigma, the share of inputs the model generated, ...): logged to ``metrics.jsonl`` with
        every training row, each name prefixed ``rollout/``. None by default."""
        return {}


@attrs.frozen
class Curve:
    """A curve ``prakit compare`` draws for every row, averaged over its seeds: ``of`` makes it
    from the curves an evaluation returned (by name)."""

    title: str
    ylabel: str
    of: Callable[[Mapping[str, Sequence[float]]], Sequence[float]]
    xlabel: str = "token position"


class Evaluator(abc.ABC):
    """Turns generated images, real images and the run's model into named numbers. Built as ``build(cfg)``.

    ``evaluate`` reads what it needs from the :class:`prakit.eval.EvalContext`: the sample store
    (``ctx.samples``), cached features of the samples and of the reference (``ctx.features``),
    real images (``ctx.real``) and the model (``ctx.model``). Each is produced on first use, so an
    evaluator that never touches the samples never makes anyone draw them.
    """

    #: For each number ``evaluate`` returns: True if higher is better, False if lower is. The
    #: guidance search and ``prakit compare`` use it to name the best setting or run.
    higher_is_better: ClassVar[Mapping[str, bool]] = {}
    #: False for numbers that change from run to run (timings): the contract then checks only their names.
    deterministic: ClassVar[bool] = True
    #: The curves ``prakit compare`` draws across runs, by the name of their chart (``NAME.png``, ``.svg``).
    compared_curves: ClassVar[Mapping[str, Curve]] = {}
    #: Whether ``prakit eval`` computes it when neither the command nor the config names evaluators.
    in_default_set: ClassVar[bool] = False
    #: The number a guidance search ranks settings by when ``--select`` names none (None: it
    #: offers none; the first evaluator that offers one decides).
    primary: ClassVar[str | None] = None

    def __init__(self, cfg: EvaluatorConfig):
        self.cfg = cfg

    @abc.abstractmethod
    def evaluate(self, ctx: EvalContext) -> Mapping[str, float | Sequence[float]]:
        """Named numbers; a sequence is a curve (plotted and kept in ``eval.json``, not tabulated)."""


class FeatureNetwork(nn.Module, abc.ABC):
    """Maps images to the features that distribution metrics (FID, KID, IS, precision/recall) compare.

    Built as ``build(cfg, store=, device=, progress=)``: ``store`` is a :class:`prakit.data.Store`
    of real labelled images that a network may be fitted to (None if there is none), ``device``
    where to compute. Features are cached under :meth:`fingerprint`, so it must change whenever
    the weights or the preprocessing do.
    """

    num_features: int
    #: Columns of the logits ``forward`` returns (0: it returns none).
    num_logits: int = 0
    #: Whether logit ``k`` scores the dataset's own class ``k`` (what ``class_consistency`` needs).
    predicts_labels: bool = False
    #: Columns of the spatial features :meth:`forward_with_spatial` adds (0: it gives none), what sFID compares.
    num_spatial: int = 0
    #: Whether the ADM suite's reference statistics (``VIRTUAL_imagenet256_labeled.npz``) are of this network.
    reads_adm_statistics: ClassVar[bool] = False

    @classmethod
    def default_rank(cls) -> int | None:
        """How strongly this network asks to be the evaluation's default when ``eval.features`` is
        unset: the highest rank of the installed networks wins; None: never the default."""
        return None

    @abc.abstractmethod
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """uint8 images (B, H, W, C) -> features (B, num_features) and logits (B, num_logits) or None, float32."""

    def forward_with_spatial(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """:meth:`forward`'s features and logits and, from the same pass, the spatial features
        (B, num_spatial) float32; only a network with ``num_spatial`` gives them."""
        raise NotImplementedError(f"{type(self).__name__} gives no spatial features")

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """A short hex digest of the weights and the preprocessing."""

    def describe(self) -> dict[str, Any]:
        """Facts ``eval.json`` records beside the fingerprint (a fitted network's held-out accuracy, ...)."""
        return {}


class Dataset(abc.ABC):
    """A source of labelled images for ``prakit data prepare``. Built as ``build(cfg)``."""

    class_names: tuple[str, ...]

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        """Image (H, W, C) uint8 and its class index."""

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        return (self[i] for i in range(len(self)))


class Tracker(abc.ABC):
    """Sends a run to an experiment tracker (TensorBoard, Weights & Biases, MLflow) beside
    ``metrics.jsonl``, which stays the record of truth. Built as ``build(cfg, run_dir=...)``.

    ``start`` comes first: with the resolved config (plain data) and the step training starts
    or resumes at (``None`` when only evaluation numbers follow, appended to the run's record).
    A tracker that resumes keeps to the same run of its service across restarts (see
    :func:`prakit.tracking.remembered_id`).
    """

    def __init__(self, cfg: TrackerConfig, run_dir: Path):
        self.cfg, self.run_dir = cfg, Path(run_dir)

    @abc.abstractmethod
    def start(self, config: Mapping[str, Any], resume_step: int | None) -> None: ...

    @abc.abstractmethod
    def log_scalars(self, values: Mapping[str, float], step: int) -> None:
        """Numbers by name at ``step``: training's (``loss``, ``lr``, ...) and evaluations' (``eval/fid``)."""

    @abc.abstractmethod
    def log_image(self, name: str, image: np.ndarray, step: int) -> None:
        """An (H, W, C) uint8 picture at ``step``: the sample grids drawn during training."""

    def finish(self) -> None:
        """Flush and close; nothing is logged after it."""
