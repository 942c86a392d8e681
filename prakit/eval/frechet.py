"""The Fréchet distance between two Gaussians given by their moments: what FID and sFID report.

    d² = |mu_a - mu_b|² + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^½)

The ADM suite takes scipy's ``sqrtm`` of the non-symmetric product ``S_a S_b``, drops the imaginary
round-off and retries with ``1e-6`` added to both diagonals when the product is too singular. Here
the trace comes from symmetric eigenvalue problems instead: with ``R = S_a^½``, ``S_a S_b = R (R S_b)``
has the eigenvalues of ``(R S_b) R = R S_b R``, which is symmetric positive semi-definite, so
``tr((S_a S_b)^½)`` is the sum of the square roots of its eigenvalues. Nothing is complex, and a
singular covariance (fewer images than features) needs no offset: eigenvalues that round-off
pushes below zero count as zero.
"""

from __future__ import annotations

import numpy as np

from prakit.errors import PrakitError
from prakit.eval.features import Moments


def frechet_distance(a: Moments, b: Moments) -> float:
    """The Fréchet distance between the Gaussians of moments ``a`` and ``b``, in float64."""
    mu_a, mu_b = (np.asarray(m.mu, np.float64) for m in (a, b))
    sigma_a, sigma_b = (np.asarray(m.sigma, np.float64) for m in (a, b))
    dim = mu_a.shape[0] if mu_a.ndim == 1 else -1
    if mu_b.shape != (dim,) or sigma_a.shape != (dim, dim) or sigma_b.shape != (dim, dim):
        raise PrakitError(f"the Fréchet distance compares moments of one dimension, got means of shapes {mu_a.shape} "
                          f"and {mu_b.shape} and covariances {sigma_a.shape} and {sigma_b.shape}")
    if not all(np.isfinite(x).all() for x in (mu_a, mu_b, sigma_a, sigma_b)):  # before LAPACK, which NaN can crash
        raise PrakitError("the Fréchet distance needs finite moments, got NaN or infinity in a mean or covariance")
    root = psd_sqrt(sigma_a)
    product = root @ sigma_b @ root
    trace_sqrt = np.sqrt(np.linalg.eigvalsh((product + product.T) / 2).clip(min=0)).sum()
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2 * trace_sqrt)


def psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """The symmetric square root of a covariance, its eigenvalues below zero (round-off) taken as zero."""
    values, vectors = np.linalg.eigh((sigma + sigma.T) / 2)
    return (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
