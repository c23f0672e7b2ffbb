"""The sequential rule of `qubert bench`: boundaries, repeated p-values, type-I error across looks, families."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from qubert.bench.sequential import (
    METHODS,
    ComparisonSpec,
    SequentialDesign,
    SequentialDesignError,
    benjamini_hochberg,
    boundaries,
    decide_look,
    family_decisions,
    holm_exclusive,
    probability_of_improvement,
    sequential_pvalues,
    sequential_test,
    spending,
    type_one_error,
)
from qubert.bench.stats import tost_paired

FOUR = (0.25, 0.5, 0.75, 1.0)

# ---------------------------------------------------------------------------------------------
# boundaries
# ---------------------------------------------------------------------------------------------


def test_obrien_fleming_boundaries_match_published_values():
    # Lan-DeMets O'Brien-Fleming-type spending, 4 equally spaced looks, one-sided 0.025
    # (Jennison & Turnbull 2000, Table 7.6; R gsDesign sfLDOF): 4.333, 2.963, 2.359, 2.014.
    assert boundaries(FOUR, 0.025, "obrien_fleming") == pytest.approx([4.333, 2.963, 2.359, 2.014], abs=2e-3)


def test_a_single_look_is_the_fixed_sample_test():
    for method in METHODS:
        assert boundaries((1.0,), 0.025, method)[0] == pytest.approx(stats.norm.isf(0.025), abs=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_boundaries_spend_exactly_the_increments_for_correlated_looks(method):
    """Checked independently of the grid integration: scipy's multivariate normal (Genz) integrates
    the joint law of the correlated z statistics (corr = sqrt(t_j / t_k))."""
    t = np.array([0.3, 0.6, 1.0])
    c = boundaries(tuple(t), 0.025, method)
    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    mvn = stats.multivariate_normal
    # P(no crossing at any look) = P(Z_1 < c_1, Z_2 < c_2, Z_3 < c_3) = 1 - total spent.
    never = mvn.cdf(c, mean=np.zeros(3), cov=cov, abseps=1e-7, releps=1e-7, rng=0)
    assert 1 - never == pytest.approx(0.025, abs=2e-5)
    first_two = mvn.cdf(c[:2], mean=np.zeros(2), cov=cov[:2, :2], abseps=1e-7, releps=1e-7, rng=0)
    assert 1 - first_two == pytest.approx(spending(t[:2], 0.025, method)[-1], abs=2e-5)


def test_pocock_spends_earlier_than_obrien_fleming():
    of, pocock = boundaries(FOUR, 0.025, "obrien_fleming"), boundaries(FOUR, 0.025, "pocock")
    assert pocock[0] < of[0] and pocock[-1] > of[-1]
    assert np.ptp(pocock) < 0.05  # nearly flat


# ---------------------------------------------------------------------------------------------
# one comparison
# ---------------------------------------------------------------------------------------------


def test_one_look_gives_the_ordinary_t_test_and_tost():
    rng = np.random.default_rng(1)
    x = rng.normal(0.004, 0.01, 12)
    design = SequentialDesign(looks=(12,), margin=0.01)
    p_difference, p_equivalence = sequential_pvalues(x, [12], design)
    assert p_difference[-1] == pytest.approx(stats.ttest_1samp(x, 0.0).pvalue, rel=2e-3)
    assert p_equivalence[-1] == pytest.approx(tost_paired(x, np.zeros(12), 0.01)[0], rel=2e-3)
    d = sequential_test(x, design)
    half = stats.t.isf(0.025, 11) * x.std(ddof=1) / math.sqrt(12)
    assert (d.ci_low, d.ci_high) == pytest.approx((x.mean() - half, x.mean() + half), rel=1e-3)
    assert d.smallest_margin == pytest.approx(abs(x.mean()) + stats.t.isf(0.05, 11) * x.std(ddof=1) / math.sqrt(12),
                                              rel=1e-3)
    # The smallest certifiable margin is the margin at which TOST's p-value is alpha.
    assert tost_paired(x, np.zeros(12), d.smallest_margin)[0] == pytest.approx(0.05, rel=1e-3)


def test_repeated_pvalues_fall_across_looks_and_the_ci_is_wider_than_fixed_sample():
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 0.01, 40)
    design = SequentialDesign()
    p_difference, p_equivalence = sequential_pvalues(x, [10, 20, 30, 40], design)
    assert (np.diff(p_difference) <= 0).all() and (np.diff(p_equivalence) <= 0).all()
    d = sequential_test(x, SequentialDesign(looks=(10, 20, 30, 40), margin=0.001))
    fixed_half = stats.t.isf(0.025, 39) * x.std(ddof=1) / math.sqrt(40)
    assert d.n == 40 and d.look == 4 and d.final and not d.decided
    assert d.ci_high - d.ci_low > 2 * fixed_half  # the price of looking four times


def test_a_clear_difference_stops_early_and_is_frozen():
    rng = np.random.default_rng(3)
    x = rng.normal(0.03, 0.01, 40)
    d = sequential_test(x, SequentialDesign())
    assert (d.verdict, d.decided, d.final) == ("better", True, True)
    assert d.look < 4 and d.n == (10, 20, 30, 40)[d.look - 1]
    assert d.delta == pytest.approx(x[: d.n].mean())
    assert d.ci_low > 0 and d.p_difference <= 0.05
    assert sequential_test(-x, SequentialDesign()).verdict == "worse"


def test_equivalence_wins_over_a_small_significant_difference():
    x = np.full(20, 0.004) + np.linspace(-0.0005, 0.0005, 20)
    d = sequential_test(x, SequentialDesign(looks=(10, 20), margin=0.01))
    assert d.verdict == "equivalent" and d.look == 1 and d.p_difference <= 0.05 and d.p_equivalence <= 0.05


def test_zero_variance_differences():
    design = SequentialDesign(looks=(5, 10), margin=0.01)
    assert sequential_test(np.zeros(5), design).verdict == "equivalent"
    assert sequential_test(np.full(5, 0.05), design).verdict == "better"
    d = sequential_test(np.full(5, 0.01), design)  # exactly on the margin: a sure difference, no equivalence
    assert d.verdict == "better" and d.p_difference == 0.0 and d.p_equivalence > 0.5
    assert (d.ci_low, d.ci_high, d.smallest_margin) == pytest.approx((0.01, 0.01, 0.01))


def test_an_unplanned_look_is_tested_at_its_own_information_fraction():
    rng = np.random.default_rng(4)
    x = rng.normal(0.0, 0.01, 15)
    d = sequential_test(x, SequentialDesign(looks=(10, 20), margin=0.001))
    assert d.n == 15 and d.look == 2 and not d.final


def test_probability_of_improvement():
    assert probability_of_improvement([0.1, -0.2, 0.0, 0.3]) == 0.625
    assert sequential_test([0.1, 0.2, -0.1, 0.0], SequentialDesign(looks=(4,), margin=0.01)).prob_improvement == 0.625


# ---------------------------------------------------------------------------------------------
# type-I error across looks (simulation)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("test", "true_delta"), [("difference", 0.0), ("equivalence", 0.01), ("equivalence", -0.01)])
def test_type_one_error_stays_at_alpha_across_looks(method, test, true_delta):
    n = 4000
    design = SequentialDesign(looks=(10, 20, 30, 40), alpha=0.05, margin=0.01, method=method)
    rate = type_one_error(design, true_delta=true_delta, sd=0.01, n_sequences=n, test=test, seed=7)
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / n)
    # Looking four times without spending would not: the naive repeated t-test rejects far more often.
    if test == "difference":
        x = np.random.default_rng(7).normal(0.0, 0.01, (n, 40))
        naive = np.zeros(n, dtype=bool)
        for m in (10, 20, 30, 40):
            naive |= stats.ttest_1samp(x[:, :m], 0.0, axis=1).pvalue <= 0.05
        assert naive.mean() > 0.08


def test_power_is_not_thrown_away():
    # At Δ = 0.02, sd 0.01 a fixed 40-replicate t-test almost always rejects; the sequential one must too.
    design = SequentialDesign()
    assert type_one_error(design, true_delta=0.02, sd=0.01, n_sequences=1000) > 0.99
    # And TOST at ±0.01 with Δ = 0, sd 0.01 (about 11 replicates needed for 80 % fixed-sample power).
    assert type_one_error(design, true_delta=0.0, sd=0.01, n_sequences=1000, test="equivalence") > 0.95


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"method": "haybittle"}, "method"),
    ({"looks": (10, 10, 20)}, "looks"),
    ({"looks": (20, 10)}, "looks"),
    ({"looks": (1, 10)}, "looks"),
    ({"looks": ()}, "looks"),
    ({"margin": 0.0}, "margin"),
    ({"margin": -0.01}, "margin"),
    ({"alpha": 0.0}, "alpha"),
])
def test_bad_designs_are_refused_naming_the_key(kwargs, key):
    with pytest.raises(SequentialDesignError) as info:
        SequentialDesign(**kwargs)
    assert info.value.key == key and str(info.value).startswith(f"{key}: ") and "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_fewer_than_two_replicates_are_refused():
    with pytest.raises(SequentialDesignError, match=r"^replicates: need at least 2"):
        sequential_test([0.01], SequentialDesign())


# ---------------------------------------------------------------------------------------------
# families
# ---------------------------------------------------------------------------------------------


def test_holm_exclusive_by_hand():
    # Comparisons 0, 1, 2: difference p (0.001, 0.04, 0.3), equivalence p (0.5, 0.02, 0.01).
    # Sorted: d0 0.001 (3 comparisons open: x3 = 0.003), e2 0.01 (x3 = 0.03), e1 0.02 (x3 = 0.06),
    # d1 0.04 (every comparison still has an open null: x3 = 0.12; comparison 1 is now closed),
    # d2 0.3 (comparisons 0 and 2 open: x2 = 0.6), e0 0.5 (x1 = 0.5 -> running max 0.6).
    adj_d, adj_e = holm_exclusive([0.001, 0.04, 0.3], [0.5, 0.02, 0.01])
    assert adj_d.tolist() == pytest.approx([0.003, 0.12, 0.6])
    assert adj_e.tolist() == pytest.approx([0.6, 0.06, 0.03])
    # It never rejects less than Bonferroni over comparisons, nor more than unadjusted tests.
    nan = holm_exclusive([math.nan, 0.01], [math.nan, 0.2])
    assert math.isnan(nan[0][0]) and nan[0][1] == pytest.approx(0.01)


def test_holm_exclusive_keeps_the_family_wise_error_with_nulls_of_both_kinds():
    # 2 comparisons with Δ = 0 (difference null true), 2 with Δ = +margin (equivalence null true).
    rng = np.random.default_rng(5)
    design = SequentialDesign(looks=(10, 20, 30, 40), margin=0.01)
    n = 2000
    false = np.zeros(n, dtype=bool)
    pvals = [sequential_pvalues(rng.normal(delta, 0.01, (n, 40)), [10, 20, 30, 40], design)
             for delta in (0.0, 0.0, 0.01, 0.01)]
    p_difference = np.stack([p[0][:, -1] for p in pvals], axis=1)
    p_equivalence = np.stack([p[1][:, -1] for p in pvals], axis=1)
    for i in range(n):
        adj_d, adj_e = holm_exclusive(p_difference[i], p_equivalence[i])
        false[i] = (adj_d[:2] <= 0.05).any() or (adj_e[2:] <= 0.05).any()
    assert false.mean() <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / n)


@pytest.mark.parametrize("method", METHODS)
def test_the_confirmatory_family_keeps_its_error_rate_across_looks_with_frozen_decisions(method):
    """The whole rule: four comparisons looked at after 10, 20, 30 and 40 replicates, Holm at every look,
    decided comparisons frozen. Two have Δ = 0 (a better/worse verdict is false), two Δ = +margin (an
    equivalent verdict is false), and one Δ = 0.03 that is decided early and frees alpha for the rest."""
    rng = np.random.default_rng(11)
    design = SequentialDesign(looks=(10, 20, 30, 40), margin=0.01, method=method)
    n = 2000
    deltas = (0.0, 0.0, 0.01, 0.01, 0.03)
    paths = [sequential_pvalues(rng.normal(delta, 0.01, (n, 40)), list(design.looks), design) for delta in deltas]
    p_difference = np.stack([p[0] for p in paths], axis=1)  # (simulations, comparisons, looks)
    p_equivalence = np.stack([p[1] for p in paths], axis=1)
    false = np.zeros(n, dtype=bool)
    early = 0
    for i in range(n):
        decided_at, adjusted = family_decisions(p_difference[i], p_equivalence[i], ["confirmatory"] * 5, 0.05)
        rejected_difference = (decided_at > 0) & (adjusted[:, 0] <= 0.05)
        rejected_equivalence = (decided_at > 0) & (adjusted[:, 1] <= 0.05)
        false[i] = rejected_difference[:2].any() or rejected_equivalence[2:4].any()
        early += 0 < decided_at[4] < 4
    assert false.mean() <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / n)
    assert early > 0.5 * n  # the clear difference mostly stops before the last look


def test_benjamini_hochberg_uses_scipy():
    adj_d, adj_e = benjamini_hochberg([0.01, 0.5], [0.9, 0.02])
    expected = stats.false_discovery_control([0.01, 0.5, 0.9, 0.02])
    assert np.concatenate([adj_d, adj_e]) == pytest.approx(expected)


def _table(deltas: dict[str, float], n: int = 40, seed: int = 0, sd: float = 0.01) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = rng.normal(0.8, 0.02, n)
    rows = [{"dataset": "d", "head": "ref", "replicate": r, "test_macro_f1": base[r]} for r in range(n)]
    for head, delta in deltas.items():
        noise = rng.normal(delta, sd, n)
        rows += [{"dataset": "d", "head": head, "replicate": r, "test_macro_f1": base[r] + noise[r]} for r in range(n)]
    return pd.DataFrame(rows)


def test_decide_look_pairs_by_replicate_freezes_and_replays():
    results = _table({"big": 0.04, "same": 0.0, "small": 0.005}, sd=0.01)
    specs = [ComparisonSpec("d", "big", "ref", "best_classical"),
             ComparisonSpec("d", "same", "ref", "matched_mlp"),
             ("d", "small", "ref", "no_entanglement", "exploratory")]
    design = SequentialDesign()
    first = decide_look(results[results["replicate"] < 10], specs, design)
    assert first["look"].tolist() == [1, 1, 1] and first["n"].tolist() == [10, 10, 10]
    big = first.iloc[0]
    assert big["verdict"] == "better" and big["decided"] and not big["open"]
    diff = (results[results["head"] == "big"]["test_macro_f1"].to_numpy()
            - results[results["head"] == "ref"]["test_macro_f1"].to_numpy())
    assert big["delta"] == pytest.approx(diff[:10].mean())
    # Shuffled rows, all 40 replicates: the decided comparison stays frozen at look 1.
    final = decide_look(results.sample(frac=1.0, random_state=0), specs, design)
    assert final.iloc[0][["look", "n", "verdict"]].tolist() == [1, 10, "better"]
    assert final.iloc[0]["delta"] == pytest.approx(big["delta"])
    assert not final["open"].any() and final["final"].all()
    assert set(final["verdict"]) <= {"better", "equivalent", "inconclusive"}
    # Equal to a replay with the looks given explicitly, and adjusted p-values never below the raw ones.
    again = decide_look(results.rename(columns={"replicate": "seed"}), specs, design, looks_done=4)
    pd.testing.assert_frame_equal(final, again)
    assert (final["p_difference_adjusted"] >= final["p_difference"] - 1e-12).all()


def test_decide_look_with_missing_runs_and_an_open_comparison():
    results = _table({"q": 0.0}, sd=0.02)
    results = results[~((results["head"] == "q") & results["replicate"].isin([3, 4]))]  # two failed runs
    design = SequentialDesign(margin=0.001)
    out = decide_look(results[results["replicate"] < 20], [ComparisonSpec("d", "q", "ref", "best_classical")], design)
    row = out.iloc[0]
    assert row["n"] == 18 and row["look"] == 2 and row["open"] and not row["final"]
    assert row["replicates_available"] == 18


def test_decide_look_without_data_and_with_a_bad_family():
    design = SequentialDesign()
    out = decide_look(_table({}), [ComparisonSpec("d", "missing", "ref", "best_classical")], design)
    assert out.iloc[0]["verdict"] == "inconclusive" and out.iloc[0]["n"] == 0
    with pytest.raises(SequentialDesignError, match="^family: "):
        decide_look(_table({}), [ComparisonSpec("d", "x", "ref", "k", "main")], design)
