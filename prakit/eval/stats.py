"""Statistics over seeds: a mean with its Student-t confidence interval, and the paired t-test of
one variant against another at the seeds both have. Values come keyed by seed, so pairs are
always the same seed's."""

from __future__ import annotations

import math
import statistics
from typing import Any, Mapping

#: The confidence of every interval.
CONFIDENCE = 0.95
#: How the intervals are computed, as the tables say it.
INTERVAL = "95% confidence interval, Student t with n-1 degrees of freedom"
#: The test behind every p-value, as the tables say it.
PAIRED_TEST = "two-sided paired t-test on the differences by seed"


def t_interval(values: list[float]) -> tuple[float, float]:
    """The Student-t confidence interval of the mean of two or more values."""
    from scipy.stats import t

    mean, n = statistics.fmean(values), len(values)
    half = t.ppf((1 + CONFIDENCE) / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return mean - half, mean + half


def describe(values: Mapping[str, float]) -> dict[str, Any] | None:
    """Values by seed as ``mean``, ``std`` (sample), ``n``, the interval ``ci_low``, ``ci_high``
    (``None`` with one value) and the ``values`` themselves; ``None`` without any."""
    if not values:
        return None
    listed = list(values.values())
    same = all(v == listed[0] for v in listed)  # keeps a parameter count an int
    low, high = t_interval(listed) if len(listed) > 1 else (None, None)
    return {"mean": listed[0] if same else statistics.fmean(listed),
            "std": statistics.stdev(listed) if len(listed) > 1 else 0.0, "n": len(listed),
            "ci_low": low, "ci_high": high, "values": dict(values)}


def paired(values: Mapping[str, float], reference: Mapping[str, float]) -> dict[str, Any]:
    """``values`` minus ``reference`` at the seeds both have: the ``differences`` by seed, their
    mean, std, n and interval as :func:`describe` gives them, the paired test's ``p_value``, and
    a ``note`` saying why there is none where there is none."""
    differences = {seed: values[seed] - reference[seed] for seed in values if seed in reference}
    summary = describe(differences) or {"mean": None, "std": None, "n": 0, "ci_low": None, "ci_high": None}
    summary.pop("values", None)
    n, p_value, note = len(differences), None, None
    if n < 2:
        note = "no seed in common" if n == 0 else "1 pair: no test"
    elif summary["std"] == 0:
        note = "the differences do not vary: no test"
    else:
        from scipy.stats import t

        statistic = summary["mean"] / (summary["std"] / math.sqrt(n))
        p_value = float(2 * t.sf(abs(statistic), n - 1))
    return {"differences": differences, **summary, "p_value": p_value, "note": note}


#: Bootstrap resamples behind a rank correlation's interval.
BOOTSTRAP_RESAMPLES = 2000


def rank_correlation(x: list[float], y: list[float], *, seed: int = 0) -> dict[str, Any]:
    """Spearman's rank correlation of paired values, with a percentile-bootstrap interval
    (``BOOTSTRAP_RESAMPLES`` resamples of the pairs, from ``seed``) and the test of no correlation's
    p-value; ``rho`` is None when fewer than three pairs or a constant side leave it undefined."""
    import numpy as np
    from scipy.stats import spearmanr

    if len(x) != len(y):
        raise ValueError(f"{len(x)} values against {len(y)}: a rank correlation needs pairs")
    x_arr, y_arr = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    result = {"n": len(x), "rho": None, "ci_low": None, "ci_high": None, "p_value": None,
              "interval": f"{CONFIDENCE:.0%} percentile bootstrap over pairs ({BOOTSTRAP_RESAMPLES} resamples)"}
    if len(x) < 3 or np.ptp(x_arr) == 0 or np.ptp(y_arr) == 0:
        return result
    rho, p_value = spearmanr(x_arr, y_arr)
    picks = np.random.default_rng(seed).integers(0, len(x), (BOOTSTRAP_RESAMPLES, len(x)))
    resampled = [spearmanr(x_arr[p], y_arr[p])[0] for p in picks if np.ptp(x_arr[p]) and np.ptp(y_arr[p])]
    low, high = np.quantile(resampled, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return {**result, "rho": float(rho), "ci_low": float(low), "ci_high": float(high), "p_value": float(p_value)}
