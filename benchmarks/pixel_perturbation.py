"""How far PRA's state noise moves the pixels, and the pixel-space noise that moves them as far.

On a trained run's model (its EMA weights) and ``--num`` real images of its dataset, each row is
one way of making the backbone's inputs: ``perturbation_rms`` is the RMS of the tokens it makes
minus the clean tokens it perturbs (the decoded states ``states_to_tokens(z)`` for state noise and
the head's samples, the true tokens for pixel noise), ``from_truth_rms`` minus the true tokens.
Rows: the decoder's reconstruction (sigma 0); PRA's state noise at the run's own setting and at
fixed sigmas, made by the ``pra`` rollout itself (decoded and clamped as at inference); the
head's own unguided samples on teacher-forced inputs (the perturbation inference brings); and
``noise_injection`` with sigma per position ~ U[0, s], clamped, with s chosen by bisection so
that its applied RMS matches PRA's ``perturbation_rms`` at the run's setting (without the clamp,
U[0, s] noise has RMS s/sqrt(3); the clamp makes it smaller where pixels sit at the range's ends).
Usage: python benchmarks/pixel_perturbation.py [RUN_DIR=runs/quickstart] [--num 1000] [--sigmas 0.1,0.25,0.5]
(runs/quickstart: `prakit train experiments/quickstart.toml`, which `make quickstart` runs).
"""

from __future__ import annotations

import argparse
import math

import torch
from common import report

from prakit import registry
from prakit.data import open_store, to_model_input
from prakit.eval.features import spread
from prakit.run import load_model, resolve_checkpoint


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).float().square().mean().sqrt().item()


def pixel_noise(x: torch.Tensor, s: float, seed: int) -> torch.Tensor:
    """``x`` through ``noise_injection`` with sigma ~ U[0, s] per position, clamped."""
    torch.manual_seed(seed)
    rollout = registry.build(registry.get("rollout").config(
        "noise_injection", schedule="uniform", sigma_min=0.0, sigma_max=s, per="position", clamp=True))
    return rollout(x, None, None, model=None, step=0)


def matched_noise_sigma(x: torch.Tensor, target: float, seed: int, iterations: int = 30) -> float:
    """The s for which :func:`pixel_noise` perturbs ``x`` by ``target`` RMS (bisection: it grows with s)."""
    def applied(s: float) -> float:
        return rms(pixel_noise(x, s, seed), x)

    low, high = 0.0, 2 * math.sqrt(3) * target
    while applied(high) < target:
        high *= 2
    for _ in range(iterations):
        low, high = (low, (low + high) / 2) if applied((low + high) / 2) >= target else ((low + high) / 2, high)
    return (low + high) / 2


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default="runs/quickstart", help="a trained run directory or checkpoint")
    parser.add_argument("--num", type=int, default=1000, help="real images measured")
    parser.add_argument("--sigmas", default="0.1,0.25,0.5", help="fixed PRA sigmas tabulated besides the run's own")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    checkpoint = resolve_checkpoint(args.run)
    model, cfg, ema = load_model(checkpoint, None, torch.device("cpu"))
    store = open_store(cfg.data.store)
    images, labels = store.read(spread(len(store), args.num))
    x = model.patchify(to_model_input(torch.from_numpy(images), torch.device("cpu")))
    labels = torch.from_numpy(labels)
    z = model.decoder.encode(x)
    decoded = model.states_to_tokens(z)

    def row(setting: str, tokens: torch.Tensor, clean: torch.Tensor = decoded) -> dict:
        return {"setting": setting, "perturbation_rms": round(rms(tokens, clean), 4),
                "from_truth_rms": round(rms(tokens, x), 4)}

    def pra(rollout_cfg) -> torch.Tensor:
        torch.manual_seed(args.seed)
        return registry.build(rollout_cfg)(x, z, labels, model=model, step=0)

    own = cfg.model.rollout
    if own.name != "pra" or own.sigma == "calibrated":
        raise SystemExit(f"{args.run} trains with rollout {own}; this measures a pra rollout with a uniform or "
                         "fixed sigma")
    own_tokens = pra(own)
    target = rms(own_tokens, decoded)
    rows = [row("reconstruction (sigma 0)", decoded),
            row(f"pra, run's own: {own.sigma} [{own.sigma_min}, {own.sigma_max}]", own_tokens)]
    for sigma in (float(s) for s in args.sigmas.split(",")):
        rows.append(row(f"pra, fixed {sigma}", pra(registry.get("rollout").config("pra", sigma="fixed", sigma_max=sigma))))
    torch.manual_seed(args.seed)
    h = model.backbone(x[:, :-1], labels)
    z_hat = model.generator.sample(h, steps=cfg.sample.steps, temperature=cfg.sample.temperature)
    rows.append(row(f"head samples, teacher-forced, unguided, {cfg.sample.steps or 'default'} steps",
                    model.states_to_tokens(z_hat)))
    matched = matched_noise_sigma(x, target, args.seed)
    rows.append(row(f"noise_injection, U[0, {matched:.4f}] per position, clamped", pixel_noise(x, matched, args.seed), x))
    report("pixel_perturbation", rows, settings={"run": str(args.run), "num": args.num, "seed": args.seed},
           checkpoint=str(checkpoint), description=cfg.description, ema=ema, target_pixel_rms=round(target, 4),
           matched_noise_sigma_max=round(matched, 4), unclamped_uniform_sigma_max=round(math.sqrt(3) * target, 4))


if __name__ == "__main__":
    main()
