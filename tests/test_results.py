"""Spreads with 95 % t-intervals, paired differences, and the ± convention of every table."""
import math

import pytest

from dipddpm_lib import results


def test_spread_has_the_t_interval_of_the_mean():
    s = results.spread([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t_{0.975, 2} · std / √n
    assert s["mean"] == 2.0 and s["std"] == 1.0 and s["n"] == 3
    assert s["ci95"] == pytest.approx(half) and s["ci_lo"] == pytest.approx(2 - half)
    assert results.spread([5.0])["ci95"] == 0.0  # one value: no interval


def test_fmt_prints_the_interval_not_the_std():
    assert results.fmt(results.spread([1.0, 2.0, 3.0])) == "2.00 ± 2.48"
    assert "95 %" in results.CI_NOTE and "t-interval" in results.CI_NOTE


def test_paired_difference_resolves_a_consistent_small_gain():
    a, b = [10.1, 12.1, 14.1], [10.0, 12.0, 14.0]
    d = results.paired_difference(a, b)
    assert d["mean"] == pytest.approx(0.1) and d["resolved"]
    assert not results.paired_difference([11.0, 13.5, 13.0], [10.0, 12.0, 14.0])["resolved"]


def test_a_zero_width_interval_from_two_values_is_not_evidence():
    assert not results.paired_difference([1.5, 2.5], [1.0, 2.0])["resolved"]
    assert results.paired_difference([1.5, 2.5, 3.5], [1.0, 2.0, 3.0])["resolved"]


@pytest.mark.parametrize("a,b", [([1.0, 2.0], [1.0]), ([], [])])
def test_paired_difference_bad_inputs(a, b):
    with pytest.raises(ValueError, match="same non-zero length"):
        results.paired_difference(a, b)


def test_scaled_spread():
    s = results.scaled(results.spread([0.001, 0.002, 0.003]), 1e3)
    assert s["mean"] == pytest.approx(2.0) and s["ci95"] == pytest.approx(2.4841377)
    with pytest.raises(ValueError, match="positive"):
        results.scaled(s, 0)
