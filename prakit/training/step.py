"""One training step, as ``prakit train`` runs it and the benchmarks time it: the learning rate
of the step, the loss over the micro-batches (bf16 autocast on CUDA), backward, clipping, AdamW
and the EMA updates."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator

import attrs
import torch

from prakit.config import ExperimentConfig
from prakit.data.loader import to_model_input
from prakit.errors import PrakitError
from prakit.model import ARModel
from prakit.training.checkpoint import finite, last_finite_checkpoint
from prakit.training.distributed import Distributed
from prakit.training.ema import EMA, ema_name
from prakit.training.schedule import learning_rate


class NonFiniteLossError(PrakitError):
    """The loss went NaN or infinite."""


@attrs.frozen
class StepResult:
    """What one step did: its learning rate, the losses (total, head, reconstruction) averaged
    over its micro-batches on this rank, and the gradient norm before clipping."""

    lr: float
    losses: torch.Tensor
    grad_norm: torch.Tensor


@attrs.define(eq=False)
class TrainingStep:
    """A model of ``cfg``, its optimizer and EMAs, and :meth:`__call__`, one step of training them."""

    cfg: ExperimentConfig
    env: Distributed
    model: ARModel
    optimizer: torch.optim.AdamW
    emas: dict[str, EMA]
    #: The model as the step calls it: wrapped for several ranks and compiled, by :meth:`distribute`.
    forward: Callable[..., Any] | None = None
    ddp: torch.nn.Module | None = None
    #: The last checkpoint written, which a non-finite loss's error names.
    last_checkpoint: Path | None = None

    @classmethod
    def create(cls, cfg: ExperimentConfig, env: Distributed) -> TrainingStep:
        """The model's initial weights come from ``train.seed`` (the same on every rank)."""
        torch.manual_seed(cfg.train.seed)
        model = ARModel.from_config(cfg).to(env.device)
        if cfg.train.activation_checkpointing:
            model.backbone.enable_activation_checkpointing()
        return cls(cfg, env, model, make_optimizer(model, cfg), {ema_name(d): EMA(model, d) for d in cfg.optim.ema_decays})

    def distribute(self) -> TrainingStep:
        """Wrap the model for data parallelism over the ranks and compile it (``train.compile``):
        after any weights are restored."""
        self.ddp = torch.nn.parallel.DistributedDataParallel(self.model) if self.env.world_size > 1 else self.model
        self.forward = torch.compile(self.ddp) if self.cfg.train.compile else self.ddp
        return self

    def __call__(self, step: int, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> StepResult:
        """Training step ``step`` on ``train.grad_accum`` micro-batches of uint8 (B, H, W, C) images
        and their labels; a non-finite loss on any rank raises :class:`NonFiniteLossError`."""
        if self.forward is None:
            self.distribute()
        cfg, env = self.cfg, self.env
        accum = cfg.train.grad_accum
        lr = learning_rate(cfg.optim, step, cfg.train.steps, cfg.train.batch_size)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        totals = torch.zeros(3, device=env.device)
        autocast = precision_context(cfg.train.precision, env.device)
        for micro in range(accum):
            images, labels = next(batches)
            images, labels = to_model_input(images, env.device), labels.to(env.device)
            sync = micro == accum - 1 or env.world_size == 1
            with (contextlib.nullcontext() if sync else self.ddp.no_sync()), autocast:
                losses = self.forward(images, labels, step)
            if not env.all_finite(losses.total):
                raise self.non_finite(images, labels, step)
            (losses.total / accum).backward()
            totals += torch.stack([losses.total, losses.head, losses.reconstruction]).detach() / accum
        grad_norm = clip_gradients(self.model, cfg.optim.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        for ema in self.emas.values():
            ema.update(self.model, step)
        return StepResult(lr, totals, grad_norm)

    def non_finite(self, images: torch.Tensor, labels: torch.Tensor, step: int) -> NonFiniteLossError:
        """The error for a non-finite loss at ``step`` on some rank, naming the component that caused it here."""
        env = self.env
        component = self.model.first_non_finite(images, labels, step)
        if component:
            kind = component.split(".")[0]
            where = (f"the first non-finite output came from {component} "
                     f"(model.{kind} = {getattr(self.cfg.model, kind).name!r})")
        elif env.world_size > 1:
            where = "another rank's loss went non-finite, this rank's outputs are finite"
        else:
            where = "every component's output was finite on a recomputation"
        rank = f" on rank {env.rank} of {env.world_size}" if env.world_size > 1 else ""
        return NonFiniteLossError(f"non-finite loss at step {step}{rank}: {where}; {self.last_good()}")

    def last_good(self) -> str:
        """Which checkpoint holds the last finite weights; read back only when the model's are not finite."""
        last = self.last_checkpoint
        if last is None:
            return "no checkpoint was written yet"
        parameters = dict(self.model.named_parameters())
        good = last if finite(parameters) else last_finite_checkpoint(last, parameters)
        if good is None:
            return f"every checkpoint holds non-finite weights, up to {last}: train again with --no-resume"
        newer = "" if good == last else ", the newer ones hold non-finite weights: delete them to resume from it"
        return f"the last good checkpoint is {good}{newer}"


def make_optimizer(model: torch.nn.Module, cfg: ExperimentConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on biases, norms or 1-d embeddings)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.optim.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=0.0, betas=cfg.optim.betas)


def clip_gradients(model: torch.nn.Module, max_norm: float) -> torch.Tensor:
    params = [p for p in model.parameters() if p.grad is not None]
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])) if params else torch.zeros(())


def precision_context(precision: str, device: torch.device):
    """bf16 autocast on CUDA (``auto`` or ``bf16``), full precision on the CPU."""
    if device.type == "cuda" and precision in ("auto", "bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
