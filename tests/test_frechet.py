"""prakit's Fréchet distance (FID and sFID) against closed forms and scipy's matrix square root, the
formula the ADM suite computes; and no evaluation code importing a library's private functions."""

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from prakit.errors import PrakitError
from prakit.eval.features import Moments, moments
from prakit.eval.frechet import frechet_distance

ROOT = Path(__file__).resolve().parents[1]


def scipy_fid(a: Moments, b: Moments) -> float:
    """The ADM suite's formula: scipy's matrix square root of the covariance product."""
    covmean = scipy.linalg.sqrtm(a.sigma @ b.sigma).real
    return float(np.sum((a.mu - b.mu) ** 2) + np.trace(a.sigma + b.sigma - 2 * covmean))


def gaussian(rng, n, dim, shift=0.0, scale=1.0) -> np.ndarray:
    mixing = rng.normal(size=(dim, dim)) * scale
    return rng.normal(size=(n, dim)) @ mixing + shift


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), dim=st.integers(2, 24), shift=st.floats(-3, 3), scale=st.floats(0.2, 3))
def test_matches_the_scipy_matrix_square_root_formula(seed, dim, shift, scale):
    rng = np.random.default_rng(seed)
    a, b = moments(gaussian(rng, 400, dim)), moments(gaussian(rng, 300, dim, shift, scale))
    assert frechet_distance(a, b) == pytest.approx(scipy_fid(a, b), rel=1e-6, abs=1e-6)
    assert frechet_distance(b, a) == pytest.approx(frechet_distance(a, b), rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6 * max(1.0, np.trace(a.sigma)))


def test_matches_scipy_on_covariances_the_size_of_inception_features():
    rng = np.random.default_rng(0)
    a, b = moments(gaussian(rng, 600, 256)), moments(gaussian(rng, 500, 256, 0.3, 1.4))
    assert frechet_distance(a, b) == pytest.approx(scipy_fid(a, b), rel=1e-6)


def test_commuting_covariances_give_the_closed_form():
    """Diagonal covariances: d² = |mu_a - mu_b|² + sum (sqrt(a_i) - sqrt(b_i))²."""
    rng = np.random.default_rng(1)
    mu_a, mu_b, var_a, var_b = rng.normal(size=6), rng.normal(size=6), rng.uniform(0.1, 4, 6), rng.uniform(0.1, 4, 6)
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    rotation = np.linalg.qr(rng.normal(size=(6, 6)))[0]  # a common rotation keeps them commuting
    a = Moments(rotation @ mu_a, rotation @ np.diag(var_a) @ rotation.T, 0)
    b = Moments(rotation @ mu_b, rotation @ np.diag(var_b) @ rotation.T, 0)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_against_the_identity_the_trace_term_is_that_of_the_square_root():
    """S_a = I: tr((S_a S_b)^½) = sum sqrt(eigenvalues of S_b), whatever S_b's eigenvectors."""
    rng = np.random.default_rng(2)
    sigma_b = np.cov(rng.normal(size=(50, 5)) @ rng.normal(size=(5, 5)), rowvar=False)
    expected = 5 + np.trace(sigma_b) - 2 * np.sqrt(np.linalg.eigvalsh(sigma_b)).sum()
    assert frechet_distance(Moments(np.zeros(5), np.eye(5), 0), Moments(np.zeros(5), sigma_b, 0)) == pytest.approx(
        expected, rel=1e-9)


def test_singular_covariances_need_no_offset():
    """Fewer images than features: exact zeros in the covariances still give the closed form."""
    var_a, var_b = np.array([2.0, 0.0, 1.0, 0.0]), np.array([0.5, 3.0, 0.0, 0.0])
    a, b = Moments(np.zeros(4), np.diag(var_a), 0), Moments(np.ones(4), np.diag(var_b), 0)
    assert frechet_distance(a, b) == pytest.approx(4 + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2), rel=1e-9)
    rng = np.random.default_rng(3)  # 20 images, 64 features: rank 19, as FID of a few images is
    few, other = moments(rng.normal(size=(20, 64))), moments(rng.normal(size=(20, 64)) + 0.5)
    distance = frechet_distance(few, other)
    assert np.isfinite(distance) and distance > 64 * 0.25
    offset = np.eye(64) * 1e-6  # the ADM suite's retry, on this product that scipy finds too singular
    covmean = scipy.linalg.sqrtm((few.sigma + offset) @ (other.sigma + offset)).real
    adm = np.sum((few.mu - other.mu) ** 2) + np.trace(few.sigma + other.sigma - 2 * covmean)
    assert distance == pytest.approx(adm, rel=1e-4)


def test_moments_of_different_dimensions_are_refused_in_one_line():
    rng = np.random.default_rng(4)
    a, b = moments(rng.normal(size=(10, 3))), moments(rng.normal(size=(10, 4)))
    with pytest.raises(PrakitError, match=r"means of shapes \(3,\) and \(4,\)") as error:
        frechet_distance(a, b)
    assert "\n" not in str(error.value)


def test_no_evaluation_code_imports_a_private_function_of_another_library():
    private = re.compile(r"^\s*from\s+(?!prakit)[\w.]+\s+import\s+.*\b_[a-z]\w*", re.M)
    sources = [path for folder in ("prakit", "plugins") for path in (ROOT / folder).rglob("*.py")]
    assert len(sources) > 50
    assert [str(path.relative_to(ROOT)) for path in sources if private.search(path.read_text())] == []
