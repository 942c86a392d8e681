"""What an evaluator reads: samples, features, the reference, real images and the model.

Everything is produced on first use and kept for the next evaluator: the sample store is drawn
(or resumed) only when an evaluator asks for it, each feature network is built once, and the
features of each (image set, network) pair are extracted once and cached on disk.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Literal

import torch

from prakit import registry
from prakit.components import FeatureNetwork
from prakit.config import EvalConfig, SampleConfig
from prakit.data.store import Store, open_store
from prakit.errors import PrakitError
from prakit.eval.features import Features, Moments, cached_features, moments
from prakit.eval.reference import Reference, StoreImages
from prakit.kinds import FeatureNetworkConfig

Which = Literal["samples", "reference"]


def default_features(eval_cfg: EvalConfig) -> FeatureNetworkConfig:
    """``eval.features``; else the installed network of the highest :meth:`FeatureNetwork.default_rank`
    (inception where its weights are named by the environment, else featnet)."""
    if eval_cfg.features is not None:
        return eval_cfg.features
    networks = registry.get("features")
    ranked = {entry.name: rank for entry in networks.entries()
              if (rank := getattr(entry.builder, "default_rank", lambda: None)()) is not None}
    if not ranked:
        raise PrakitError("no installed feature network offers itself as the default: set eval.features")
    return networks.config(max(ranked, key=ranked.get))


class EvalContext:
    """The inputs of one evaluation, each made on first use.

    ``samples`` is a finished sample store or a function that draws one; ``model`` an
    :class:`prakit.model.ARModel` or a function that loads one; ``real`` a store (or its path)
    of real labelled images, used when the reference is not a store itself.
    """

    def __init__(
        self,
        eval_cfg: EvalConfig,
        *,
        reference: Reference,
        samples: Store | Callable[[], Store] | None = None,
        model: Any = None,
        real: Store | str | os.PathLike | None = None,
        sample_options: SampleConfig = SampleConfig(),
        device: torch.device | None = None,
        progress: bool = False,
    ):
        self.eval, self.reference, self.sample_options = eval_cfg, reference, sample_options
        self.device = device or torch.device("cpu")
        self.progress = progress
        self._samples, self._model, self._real = samples, model, real
        self._networks: dict[FeatureNetworkConfig, FeatureNetwork] = {}
        self.default_features = default_features(eval_cfg)

    @functools.cached_property
    def samples(self) -> Store:
        """The sample store being evaluated (drawn on first use when the evaluation made it)."""
        if self._samples is None:
            raise PrakitError("this evaluation has no samples: evaluate a run directory or a sample store")
        return self._samples if isinstance(self._samples, Store) else self._samples()

    def drawn_samples(self) -> Store | None:
        """The sample store if an evaluator has read it, else None."""
        return self.__dict__.get("samples")

    @functools.cached_property
    def model(self) -> Any:
        """The model that drew the samples (eval mode, on ``device``)."""
        if self._model is None:
            raise PrakitError("this evaluation has no model: evaluate a run directory, or a sample store "
                              "whose checkpoint still exists")
        return self._model if isinstance(self._model, torch.nn.Module) else self._model()

    @functools.cached_property
    def real(self) -> Store:
        """Real labelled images: the reference if it is a store, else the run's training store."""
        if self.reference.store is not None:
            return self.reference.store
        if self._real is None:
            raise PrakitError("this evaluation has no real images: give a store of real images as the reference")
        return self._real if isinstance(self._real, Store) else open_store(self._real)

    def features_config(self, cfg: FeatureNetworkConfig | None = None) -> FeatureNetworkConfig:
        """``cfg``, or the evaluation's feature network when None."""
        return cfg or self.default_features

    def network(self, cfg: FeatureNetworkConfig | None = None) -> FeatureNetwork:
        """The feature network of ``cfg`` (default: the evaluation's), built once."""
        cfg = self.features_config(cfg)
        if cfg not in self._networks:
            self._networks[cfg] = registry.build(cfg, store=self._real_or_none(), device=self.device,
                                                 progress=self.progress)
        return self._networks[cfg]

    def networks(self) -> dict[str, dict]:
        """Every feature network used so far: its fingerprint and what it reports about itself."""
        return {cfg.name: {"fingerprint": net.fingerprint(), **net.describe()} for cfg, net in self._networks.items()}

    def features(self, which: Which, cfg: FeatureNetworkConfig | None = None, *, spatial: bool = False) -> Features:
        """Features of the samples (all of them) or of the reference (``eval.reference_num`` images);
        with ``spatial``, their spatial features too."""
        cfg = self.features_config(cfg)
        network, extract = self.network(cfg), self._extract_options()
        if which == "samples":
            return cached_features(StoreImages(self.samples), network, cfg.name, spatial=spatial, **extract)
        return self.reference.features(network, cfg.name, count=self.eval.reference_num, spatial=spatial, **extract)

    def moments(self, which: Which, cfg: FeatureNetworkConfig | None = None, *, spatial: bool = False) -> Moments:
        """Feature mean and covariance of the samples or of the reference (a reference file's own);
        with ``spatial``, those of the spatial features (sFID's)."""
        cfg = self.features_config(cfg)
        if which == "samples":
            features = self.features("samples", cfg, spatial=spatial)
            return moments(features.spatial if spatial else features.features, of=f"the samples {self.samples.path}",
                           fix="evaluate more of them (--num)")
        return self.reference.moments(self.network(cfg), cfg.name, count=self.eval.reference_num, spatial=spatial,
                                      **self._extract_options())

    def _extract_options(self) -> dict:
        return {"batch_size": self.eval.batch_size, "device": self.device, "progress": self.progress}

    def _real_or_none(self) -> Store | None:
        try:
            return self.real
        except PrakitError:
            return None
