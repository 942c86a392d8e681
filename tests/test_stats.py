"""The statistics over seeds against scipy's own on known data."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from prakit.eval.stats import describe, paired, rank_correlation

FIDS = {"0": 12.1, "1": 10.4, "2": 14.9, "3": 11.7, "4": 13.2}
BASELINE = {"0": 15.0, "1": 11.1, "2": 17.3, "3": 15.9, "4": 13.0, "7": 40.0}


def test_the_interval_of_a_mean_is_students_t():
    values = list(FIDS.values())
    summary = describe(FIDS)
    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=scipy_stats.sem(values))
    assert (summary["ci_low"], summary["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert summary["mean"] == pytest.approx(np.mean(values)) and summary["std"] == pytest.approx(np.std(values, ddof=1))
    assert summary["n"] == 5 and summary["values"] == FIDS


def test_one_value_has_no_interval_and_none_no_summary():
    assert describe({"3": 9.5}) == {"mean": 9.5, "std": 0.0, "n": 1, "ci_low": None, "ci_high": None,
                                    "values": {"3": 9.5}}
    assert describe({}) is None


def test_the_paired_test_pairs_by_seed_and_is_scipys_ttest_rel():
    result = paired(FIDS, BASELINE)  # seed 7 has no partner: it is left out
    seeds = list(FIDS)
    mine, theirs = [FIDS[s] for s in seeds], [BASELINE[s] for s in seeds]
    differences = np.subtract(mine, theirs)
    assert result["differences"] == pytest.approx(dict(zip(seeds, differences))) and result["n"] == 5
    assert result["p_value"] == pytest.approx(scipy_stats.ttest_rel(mine, theirs).pvalue)
    low, high = scipy_stats.t.interval(0.95, 4, loc=differences.mean(), scale=scipy_stats.sem(differences))
    assert (result["mean"], result["ci_low"], result["ci_high"]) == tuple(
        map(pytest.approx, (differences.mean(), low, high)))
    # the pairing is by seed, not by order
    shuffled = dict(reversed(list(BASELINE.items())))
    assert paired(FIDS, shuffled)["p_value"] == pytest.approx(result["p_value"])


def test_too_few_pairs_or_no_spread_give_no_p_value_and_say_why():
    one = paired({"0": 1.0, "1": 2.0}, {"1": 3.0, "2": 4.0})
    assert (one["n"], one["mean"], one["ci_low"], one["p_value"], one["note"]) == (1, -1.0, None, None, "1 pair: no test")
    none = paired({"0": 1.0}, {"1": 3.0})
    assert (none["n"], none["mean"], none["p_value"], none["note"]) == (0, None, None, "no seed in common")
    constant = paired({"0": 5, "1": 6}, {"0": 4, "1": 5})
    assert (constant["mean"], constant["p_value"]) == (1, None) and "do not vary" in constant["note"]


def test_the_rank_correlation_is_scipys_spearman_with_a_bootstrap_interval_around_it():
    gaps = [0.12, 0.30, 0.08, 0.25, 0.19, 0.40, 0.11, 0.05]
    fids = [9.0, 21.0, 8.5, 14.0, 16.0, 30.0, 7.0, 6.0]
    result = rank_correlation(gaps, fids)
    rho, p_value = scipy_stats.spearmanr(gaps, fids)
    assert (result["rho"], result["p_value"]) == (pytest.approx(rho), pytest.approx(p_value))
    assert result["n"] == 8 and result["ci_low"] <= result["rho"] <= result["ci_high"] <= 1.0
    assert result == rank_correlation(gaps, fids)  # the bootstrap is seeded
    unrelated = rank_correlation(gaps, [3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.0, 6.0][::-1])
    assert unrelated["ci_low"] < 0 < unrelated["ci_high"] or unrelated["ci_high"] < result["ci_low"]


def test_a_rank_correlation_of_too_few_or_constant_values_is_undefined():
    assert rank_correlation([1.0, 2.0], [3.0, 4.0])["rho"] is None
    assert rank_correlation([1.0, 1.0, 1.0], [3.0, 4.0, 5.0])["rho"] is None
    with pytest.raises(ValueError, match="needs pairs"):
        rank_correlation([1.0, 2.0, 3.0], [1.0, 2.0])
