"""Statistics and reporting of `qubert bench`, checked against known values (no training here)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from qubert.bench import (
    PairedComparison,
    aggregate,
    bootstrap_ci,
    compare_heads,
    paired_comparison,
    plot_figures,
    write_summary,
)
from qubert.bench.stats import adjust_pvalues, tost_paired, verdict

# ---------------------------------------------------------------------------------------------
# bootstrap_ci
# ---------------------------------------------------------------------------------------------


def test_bootstrap_ci_matches_a_hand_computed_resampling():
    values = np.array([0.1, 0.5, 0.9])
    rng = np.random.default_rng(3)
    draws = rng.integers(0, 3, size=(5, 3))  # 5 resamples of 3 indices
    means = sorted(values[row].mean() for row in draws)
    # np.quantile's default (linear) rule at q = 0.025 and 0.975 over 5 sorted means:
    # position q * (5 - 1) = 0.1 and 3.9.
    expected_low = means[0] + 0.1 * (means[1] - means[0])
    expected_high = means[3] + 0.9 * (means[4] - means[3])
    low, high = bootstrap_ci(values, n_resamples=5, confidence=0.95, seed=3)
    assert low == pytest.approx(expected_low)
    assert high == pytest.approx(expected_high)


def test_bootstrap_ci_of_two_values_follows_the_exact_resampling_distribution():
    # Means of 2 draws from {0, 1}: 0 w.p. 1/4, 0.5 w.p. 1/2, 1 w.p. 1/4.
    assert bootstrap_ci([0.0, 1.0], n_resamples=20_000, confidence=0.95, seed=0) == (0.0, 1.0)
    # The central 40 % (quantiles 0.3 and 0.7) lies inside the mass at 0.5.
    assert bootstrap_ci([0.0, 1.0], n_resamples=20_000, confidence=0.40, seed=0) == (0.5, 0.5)


def test_bootstrap_ci_contains_the_mean_and_is_seeded():
    rng = np.random.default_rng(7)
    for n in (3, 5, 20):
        values = rng.normal(0.8, 0.05, size=n)
        low, high = bootstrap_ci(values, n_resamples=2000, seed=11)
        assert low <= values.mean() <= high
        assert values.min() <= low and high <= values.max()
        assert bootstrap_ci(values, n_resamples=2000, seed=11) == (low, high)


def test_bootstrap_ci_narrows_with_more_values():
    rng = np.random.default_rng(0)
    few, many = rng.normal(0, 1, 5), rng.normal(0, 1, 500)
    def width(values):
        low, high = bootstrap_ci(values, n_resamples=4000)
        return high - low

    assert width(many) < width(few) / 3


def test_bootstrap_ci_degenerate_and_bad_inputs():
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    assert bootstrap_ci([0.9, 0.9, 0.9, 0.9]) == (0.9, 0.9)
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([0.1, 0.2], confidence=1.0)


# ---------------------------------------------------------------------------------------------
# paired_comparison
# ---------------------------------------------------------------------------------------------


def test_paired_t_test_matches_the_textbook_formula():
    a = [0.91, 0.88, 0.93, 0.90]
    b = [0.89, 0.88, 0.90, 0.87]
    d = np.subtract(a, b)  # 0.02, 0.00, 0.03, 0.03
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    p = 2 * stats.t.sf(abs(t), df=len(d) - 1)
    c = paired_comparison(a, b, n_resamples=1000)
    assert c.n == 4
    assert c.mean_diff == pytest.approx(0.02)
    assert c.t_statistic == pytest.approx(t)
    assert c.t_pvalue == pytest.approx(p)
    assert c.ci_low <= c.mean_diff <= c.ci_high


def test_wilcoxon_exact_p_values_for_few_pairs():
    # All differences positive: the exact two-sided p-value is 2 / 2**n.
    three = paired_comparison([0.9, 0.8, 0.7], [0.8, 0.75, 0.6])
    assert three.w_pvalue == pytest.approx(0.25)
    assert three.min_wilcoxon_p == pytest.approx(0.25)
    five = paired_comparison([1, 2, 3, 4, 5], [0.5, 1.4, 2.2, 3.1, 4.0])
    assert five.w_pvalue == pytest.approx(0.0625)
    # The same as scipy on a mixed-sign sample.
    a, b = [0.81, 0.79, 0.86, 0.80, 0.83, 0.78], [0.80, 0.81, 0.82, 0.77, 0.84, 0.75]
    assert paired_comparison(a, b).w_pvalue == pytest.approx(stats.wilcoxon(a, b).pvalue)


def test_paired_comparison_degenerate_cases():
    same = paired_comparison([0.8, 0.7, 0.9], [0.8, 0.7, 0.9])
    assert same.mean_diff == 0 and (same.ci_low, same.ci_high) == (0.0, 0.0)
    assert math.isnan(same.w_pvalue)  # no non-zero difference to rank
    assert same.verdict() == "no clear difference"
    single = paired_comparison([0.9], [0.8])
    assert math.isnan(single.t_pvalue) and single.verdict() == "n/a"
    with pytest.raises(ValueError):
        paired_comparison([0.1, 0.2], [0.1])


def test_verdict_needs_both_the_ci_and_the_t_test():
    clearly_lower = paired_comparison([0.70, 0.71, 0.69, 0.70, 0.72], [0.80, 0.80, 0.81, 0.79, 0.81])
    assert clearly_lower.verdict() == "lower"
    clearly_higher = paired_comparison([0.80, 0.80, 0.81, 0.79, 0.81], [0.70, 0.71, 0.69, 0.70, 0.72])
    assert clearly_higher.verdict() == "higher"
    # Mean difference positive but noisy: no claim.
    noisy = paired_comparison([0.80, 0.70, 0.90], [0.78, 0.75, 0.82])
    assert noisy.verdict() == "no clear difference"
    # A CI that excludes 0 is not enough when the t-test disagrees (e.g. 3 seeds, one tiny gap).
    c = PairedComparison(n=3, mean_diff=0.01, ci_low=0.001, ci_high=0.02, t_statistic=2.0, t_pvalue=0.18,
                         w_statistic=0.0, w_pvalue=0.25, min_wilcoxon_p=0.25)
    assert c.verdict() == "no clear difference"


# ---------------------------------------------------------------------------------------------
# TOST, multiplicity, verdicts
# ---------------------------------------------------------------------------------------------


def test_tost_is_two_one_sided_t_tests_of_the_differences():
    a = [0.812, 0.798, 0.805, 0.801, 0.809, 0.796]
    b = [0.806, 0.801, 0.800, 0.799, 0.803, 0.800]
    d = np.subtract(a, b)
    lower = stats.ttest_1samp(d, -0.01, alternative="greater").pvalue
    upper = stats.ttest_1samp(d, 0.01, alternative="less").pvalue
    p, p_lower, p_upper = tost_paired(a, b, margin=0.01)
    assert (p_lower, p_upper) == (pytest.approx(lower), pytest.approx(upper))
    assert p == pytest.approx(max(lower, upper))
    # Swapping the heads mirrors the two one-sided tests.
    assert tost_paired(b, a, margin=0.01) == (pytest.approx(p), pytest.approx(p_upper), pytest.approx(p_lower))


def test_tost_textbook_example_with_hand_computed_t_values():
    # Differences -0.015, -0.005, 0.005, 0.015, 0.025: mean 0.005, sd 0.01 * sqrt(2.5), se 0.01 / sqrt(2).
    # Margin 0.02: t_lower = 0.025 / se = 2.5 * sqrt(2), t_upper = -0.015 / se = -1.5 * sqrt(2), df = 4.
    b = [0.8] * 5
    a = [0.8 + d for d in (-0.015, -0.005, 0.005, 0.015, 0.025)]

    def t4_sf(t):  # the closed form of Student's t survival function with 4 degrees of freedom
        x = 1 + t * t / 4
        return 0.5 - 3 / 8 * t / math.sqrt(x) * (1 - t * t / (12 * x))

    p, p_lower, p_upper = tost_paired(a, b, margin=0.02)
    assert p_lower == pytest.approx(t4_sf(2.5 * math.sqrt(2)))  # 0.0121
    assert p_upper == pytest.approx(t4_sf(1.5 * math.sqrt(2)))  # 0.0506
    # The one-sided 5 % critical value of t(4) is 2.132 > 1.5 * sqrt(2) = 2.121: equivalence just missed.
    assert p == p_upper and 0.05 < p < 0.051
    assert tost_paired(a, b, margin=0.021)[0] < 0.05  # a slightly wider margin is shown


def test_tost_degenerate_and_bad_inputs():
    assert tost_paired([0.8, 0.7], [0.8, 0.7], margin=0.01) == (0.0, 0.0, 0.0)  # identical: equivalent
    assert tost_paired([0.9, 0.8], [0.8, 0.7], margin=0.01)[0] == pytest.approx(1.0)  # a gap beyond the margin
    assert tost_paired([0.5, 0.75], [0.25, 0.5], margin=0.25)[0] == 1.0  # exactly on the margin: not inside
    assert all(math.isnan(v) for v in tost_paired([0.9], [0.8], margin=0.01))
    for bad in (0.0, -0.01, math.nan):
        with pytest.raises(ValueError, match="margin"):
            tost_paired([0.1, 0.2], [0.1, 0.2], margin=bad)
    with pytest.raises(ValueError, match="equal length"):
        tost_paired([0.1, 0.2, 0.3], [0.1], margin=0.01)  # no silent broadcasting


def test_holm_and_bh_against_hand_computed_values():
    p = [0.01, 0.04, 0.03, 0.005, math.nan]
    # Holm, m = 4 (NaN does not count): sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03,
    # 0.06, 0.04, then the running maximum: 0.02, 0.03, 0.06, 0.06.
    holm = adjust_pvalues(p, "holm")
    assert holm[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(holm[4])
    # BH: sorted times 4/1, 4/2, 4/3, 4/4 = 0.02, 0.02, 0.04, 0.04, then the running minimum from the top.
    bh = adjust_pvalues(p, "bh")
    assert bh[:4] == pytest.approx([0.02, 0.04, 0.04, 0.02]) and math.isnan(bh[4])
    assert bh[:4] == pytest.approx(stats.false_discovery_control(p[:4], method="bh"))
    none = adjust_pvalues(p, "none")
    assert none[:4] == pytest.approx(p[:4]) and math.isnan(none[4])
    assert adjust_pvalues([0.3, 0.5], "holm") == pytest.approx([0.6, 0.6])
    assert adjust_pvalues([0.9, 0.8], "holm") == pytest.approx([1.0, 1.0])  # capped at 1
    assert adjust_pvalues([], "holm").size == 0
    with pytest.raises(ValueError, match="unknown correction"):
        adjust_pvalues([0.1], "bonferroni")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        adjust_pvalues([1.5], "holm")


def test_holm_matches_scipy_bonferroni_bound_on_random_p_values():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 0.2, 12)
    holm = adjust_pvalues(p, "holm")
    # Holm never exceeds Bonferroni, never goes below the raw p, and keeps the order of the p-values.
    assert np.all(holm <= np.minimum(12 * p, 1) + 1e-12) and np.all(holm >= p)
    order = np.argsort(p)
    assert np.all(np.diff(holm[order]) >= 0)
    assert holm[order[0]] == pytest.approx(12 * p[order[0]])


@pytest.mark.parametrize(("mean_diff", "p_diff", "p_equiv", "expected"), [
    (0.004, 0.01, 0.02, "equivalent"),   # significant but inside the margin: equivalence wins
    (0.0, 0.9, 0.001, "equivalent"),
    (0.03, 0.001, 0.9, "better"),
    (-0.03, 0.001, 0.9, "worse"),
    (0.01, 0.3, 0.4, "inconclusive"),
    (0.01, 0.05, 0.05, "inconclusive"),  # p < alpha is strict
    (0.02, math.nan, math.nan, "inconclusive"),
    (-0.02, 0.01, math.nan, "worse"),
])
def test_verdict_table(mean_diff, p_diff, p_equiv, expected):
    assert verdict(mean_diff, p_diff, p_equiv, alpha=0.05) == expected


# ---------------------------------------------------------------------------------------------
# aggregate / compare_heads / summary
# ---------------------------------------------------------------------------------------------


def _results() -> pd.DataFrame:
    """A hand-made results table: one data set, 3 seeds, two classical heads, one quantum head with
    two controls. Quantum is 0.03 below the MLP on every seed and 0.01 above its frozen circuit."""
    rows = []
    f1 = {
        "linear": [0.80, 0.82, 0.81],
        "mlp": [0.85, 0.86, 0.84],
        "quantum_q4_l2": [0.82, 0.83, 0.81],
        "matched_mlp_q4_l2": [0.84, 0.86, 0.83],
        "quantum_q4_l2_frozen": [0.81, 0.82, 0.80],
    }
    kinds = {
        "linear": ("linear", "", ""),
        "mlp": ("mlp", "", ""),
        "quantum_q4_l2": ("quantum", "", ""),
        "matched_mlp_q4_l2": ("mlp", "matched_mlp", "quantum_q4_l2"),
        "quantum_q4_l2_frozen": ("quantum", "frozen_circuit", "quantum_q4_l2"),
    }
    for head, values in f1.items():
        head_type, control, base = kinds[head]
        for seed, value in enumerate(values):
            rows.append({
                "run_id": f"sms_spam/frozen/{head}/seed{seed}", "dataset": "sms_spam", "mode": "frozen",
                "head": head, "head_type": head_type, "control": control, "base_head": base, "seed": seed,
                "model": "default", "qubits": 4 if "q4" in head else None, "layers": 2 if "q4" in head else None,
                "test_macro_f1": value, "test_accuracy": value + 0.05, "test_weighted_f1": value + 0.04,
                "trainable_params": {"linear": 770, "mlp": 99_074}.get(head, 1_570), "train_runtime": 1.5,
                "run_dir": f"runs/sms_spam/frozen/{head}/seed{seed}",
            })
    return pd.DataFrame(rows)


def test_aggregate_mean_std_and_ci_per_head_in_grid_order():
    table = aggregate(_results(), n_resamples=2000)
    assert list(table["head"]) == ["linear", "mlp", "quantum_q4_l2", "matched_mlp_q4_l2", "quantum_q4_l2_frozen"]
    mlp = table.set_index("head").loc["mlp"]
    assert mlp.n_seeds == 3
    assert mlp.f1_mean == pytest.approx(0.85)
    assert mlp.f1_std == pytest.approx(0.01)
    assert mlp.f1_ci_low <= 0.85 <= mlp.f1_ci_high
    assert mlp.trainable_params == 99_074


def test_compare_heads_uses_the_best_classical_head_and_each_control():
    comparisons = compare_heads(_results(), n_resamples=2000)
    vs_best = comparisons[comparisons.reference_kind == "best_classical"].set_index("head")
    assert set(vs_best.reference) == {"mlp"}  # 0.85 beats linear's 0.81
    assert vs_best.loc["quantum_q4_l2"].mean_diff == pytest.approx(-0.03)
    assert vs_best.loc["quantum_q4_l2"].verdict == "worse"  # -0.03 on every seed
    assert "mlp" not in vs_best.index
    controls = comparisons[comparisons.reference_kind != "best_classical"].set_index("reference_kind")
    assert controls.loc["matched_mlp"]["head"] == "quantum_q4_l2"
    assert controls.loc["matched_mlp"].mean_diff == pytest.approx(-(0.02 + 0.03 + 0.02) / 3)
    assert controls.loc["frozen_circuit"].mean_diff == pytest.approx(0.01)


def test_compare_heads_pairs_only_common_seeds():
    results = _results()
    results = results[~((results["head"] == "quantum_q4_l2") & (results["seed"] == 2))]
    row = compare_heads(results, n_resamples=500).set_index(["head", "reference"]).loc[("quantum_q4_l2", "mlp")]
    assert row.n == 2
    assert row.mean_diff == pytest.approx(-0.03)


def test_summary_reports_numbers_controls_and_low_power(tmp_path):
    path = write_summary(_results(), tmp_path / "summary.md")
    text = path.read_text()
    assert "## sms_spam (frozen)" in text
    assert "Best classical head: **mlp**" in text
    assert "0.850 ± 0.010" in text  # mlp mean ± std
    assert "-0.030 [-0.030, -0.030]" in text  # quantum vs mlp: the same gap on every seed
    assert "| quantum_q4_l2 | frozen_circuit (quantum_q4_l2_frozen) | +0.010" in text
    assert "Low power" in text and "3 paired differences (2 degrees of freedom)" in text


def test_figures_are_written_as_png(tmp_path):
    paths = plot_figures(_results(), tmp_path)
    names = sorted(p.name for p in paths)
    # no history.json: no curves
    assert names == ["delta_vs_best_classical.png", "macro_f1_by_head.png", "macro_f1_vs_qubits.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _grid(eval_shift: dict[str, float] | None = None, datasets=("sms_spam", "yelp")) -> pd.DataFrame:
    """Two data sets of :func:`_results`, with validation scores (test + ``eval_shift[head]``)."""
    frames = []
    for dataset in datasets:
        frame = _results().assign(dataset=dataset)
        frame["eval_macro_f1"] = frame["test_macro_f1"] + frame["head"].map(eval_shift or {}).fillna(0.0)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_compare_heads_picks_the_reference_on_validation_not_test():
    # mlp is best on test (0.85 vs 0.81), linear best on validation (0.81 + 0.1): linear is the reference.
    comparisons = compare_heads(_grid({"linear": 0.1}), n_resamples=200)
    vs_best = comparisons[comparisons.reference_kind == "best_classical"]
    assert set(vs_best.reference) == {"linear"} and set(vs_best.selected_on) == {"eval_macro_f1"}
    assert "mlp" in set(vs_best["head"])
    # Without validation scores (old results.csv) it falls back to test, and says so.
    old = _results().drop(columns=[c for c in ("eval_macro_f1",) if c in _results()])
    vs_best = compare_heads(old, n_resamples=200).query("reference_kind == 'best_classical'")
    assert set(vs_best.reference) == {"mlp"} and set(vs_best.selected_on) == {"test_macro_f1"}


def test_logreg_counts_as_a_classical_reference():
    results = _results()
    logreg = results[results["head"] == "linear"].assign(head="logreg", head_type="logreg", test_macro_f1=0.9)
    results = pd.concat([results, logreg], ignore_index=True)
    results["eval_macro_f1"] = results["test_macro_f1"]
    vs_best = compare_heads(results, n_resamples=200).query("reference_kind == 'best_classical'")
    assert set(vs_best.reference) == {"logreg"}


def test_multiplicity_is_corrected_across_the_grid_within_each_family():
    comparisons = compare_heads(_grid(), n_resamples=200, correction="holm")
    family = comparisons.set_index(["dataset", "head", "reference"])["family"]
    # Per data set: quantum vs mlp, vs matched MLP, vs frozen circuit ask "does the quantum head help".
    quantum = comparisons[comparisons.family == "quantum"]
    assert len(quantum) == 2 * 3 and set(quantum["head"]) == {"quantum_q4_l2"}
    assert family[("sms_spam", "linear", "mlp")] == "other"
    assert family[("sms_spam", "matched_mlp_q4_l2", "mlp")] == "other"
    assert (comparisons.family == "other").sum() == 2 * 3
    for name, group in comparisons.groupby("family"):
        m = len(group)
        for raw, adjusted in (("t_pvalue", "p_difference_adjusted"), ("tost_pvalue", "p_equivalence_adjusted")):
            smallest = group[raw].idxmin()  # Holm multiplies the smallest p by the family size
            assert group.loc[smallest, adjusted] == pytest.approx(min(1.0, m * group.loc[smallest, raw]))
            assert group[adjusted].to_numpy() == pytest.approx(adjust_pvalues(group[raw].to_numpy(), "holm"))
    # A quantum comparison's correction does not depend on the other family: drop it, nothing changes.
    alone = compare_heads(_grid()[lambda r: ~r["head"].isin(["linear"])], n_resamples=200)
    same = alone[alone.family == "quantum"].set_index(["dataset", "reference"])["p_difference_adjusted"]
    before = quantum.set_index(["dataset", "reference"])["p_difference_adjusted"]
    assert same.sort_index().to_numpy() == pytest.approx(before.sort_index().to_numpy())
    none = compare_heads(_grid(), n_resamples=200, correction="none")
    assert none["p_difference_adjusted"].to_numpy() == pytest.approx(none["t_pvalue"].to_numpy(), nan_ok=True)


def test_compare_heads_verdicts_use_the_adjusted_p_values():
    comparisons = compare_heads(_grid(), n_resamples=200)
    row = comparisons.set_index(["dataset", "head", "reference"]).loc[("sms_spam", "quantum_q4_l2", "mlp")]
    assert row.verdict == "worse"
    assert row.verdict == verdict(row.mean_diff, row.p_difference_adjusted, row.p_equivalence_adjusted)
    # With a margin wider than the constant gap of 0.03, the same comparison is an equivalence.
    wide = compare_heads(_grid(), n_resamples=200, margin=0.05).set_index(["dataset", "head", "reference"])
    assert wide.loc[("sms_spam", "quantum_q4_l2", "mlp")].verdict == "equivalent"


def test_aggregate_counts_how_runs_stopped():
    results = _results()
    results["eval_macro_f1"] = results["test_macro_f1"] - 0.01
    results["stopped_by"] = "patience"
    results["epochs_trained"] = 12
    results["best_epoch"] = 7
    linear = results["head"] == "linear"
    results.loc[linear, "stopped_by"] = ["epoch_cap", "epoch_cap", "patience"]
    results.loc[linear, "best_epoch"] = [12, 9, 7]  # the first capped run was still improving
    table = aggregate(results, n_resamples=100).set_index("head")
    assert table.loc["linear", "stopped_by_cap"] == 2
    assert table.loc["linear", "stopped_by_patience"] == 1
    assert table.loc["linear", "capped_while_improving"] == 1
    assert table.loc["mlp", "stopped_by_patience"] == 3 and table.loc["mlp", "stopped_by_cap"] == 0
    assert table.loc["mlp", "eval_f1_mean"] == pytest.approx(0.84)
    old = aggregate(_results(), n_resamples=100)  # results.csv without the new columns
    assert old["stopped_by_cap"].isna().all() and old["eval_f1_mean"].isna().all()


# ---------------------------------------------------------------------------------------------
# joint bootstrap over replicates and test rows (v3)
# ---------------------------------------------------------------------------------------------

from sklearn.metrics import f1_score  # noqa: E402

from qubert.bench.stats import joint_bootstrap  # noqa: E402


def _predictions(replicates: int, rows: int, shared: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    first = rng.integers(0, 3, rows)
    labels = [first if shared else rng.integers(0, 3, rows) for _ in range(replicates)]
    noisy = [lambda y, acc: np.where(rng.random(rows) < acc, y, rng.integers(0, 3, rows))][0]
    a = [noisy(y, 0.8) for y in labels]
    b = [noisy(y, 0.75) for y in labels]
    return labels, a, b


@pytest.mark.parametrize("shared", [True, False])
def test_joint_bootstrap_point_estimates_are_sklearns(shared):
    labels, a, b = _predictions(6, 80, shared)
    boot = joint_bootstrap(labels, [np.eye(3)[p].astype(np.float16) for p in a], b, n_resamples=500,
                           row_ids=[np.arange(80)] * 6 if shared else None)
    diffs = [f1_score(y, p, average="macro") - f1_score(y, q, average="macro") for y, p, q in zip(labels, a, b)]
    assert boot.delta == pytest.approx(np.mean(diffs))
    assert boot.prob_improvement == pytest.approx((np.sum(np.array(diffs) > 0) + 0.5 * np.sum(np.array(diffs) == 0)) / 6)
    assert boot.rows == ("shared" if shared else "per_replicate") and boot.n_replicates == 6
    assert boot.ci_low < boot.delta < boot.ci_high and boot.smallest_margin <= max(abs(boot.ci_low), abs(boot.ci_high))


@pytest.mark.parametrize("shared", [True, False])
def test_joint_bootstrap_matches_a_naive_resampling_loop(shared):
    """The vectorised resampling (multinomial counts) against the textbook loop with sklearn's
    macro-F1: resample replicates, then rows (once for all replicates when the test set is shared)."""
    labels, a, b = _predictions(5, 40, shared, seed=3)
    rng = np.random.default_rng(11)

    def macro_f1(y, p):  # the textbook formula on a confusion matrix (sklearn agrees: test above)
        confusion = np.bincount(y * 3 + p, minlength=9).reshape(3, 3)
        tp, support, predicted = np.diag(confusion), confusion.sum(1), confusion.sum(0)
        present = (support + predicted) > 0
        return np.mean(2 * tp[present] / (support + predicted)[present])

    naive = []
    for _ in range(1500):
        picks = rng.integers(0, 5, 5)
        rows = rng.integers(0, 40, 40)
        total = 0.0
        for r in picks:
            idx = rows if shared else rng.integers(0, 40, 40)
            total += macro_f1(labels[r][idx], a[r][idx]) - macro_f1(labels[r][idx], b[r][idx])
        naive.append(total / 5)
    boot = joint_bootstrap(labels, a, b, n_resamples=4000, seed=5, row_ids=[np.arange(40)] * 5 if shared else None)
    low, high = np.quantile(naive, [0.025, 0.975])
    spread = high - low
    assert boot.ci_low == pytest.approx(low, abs=0.08 * spread)
    assert boot.ci_high == pytest.approx(high, abs=0.08 * spread)


def test_joint_bootstrap_shared_rows_are_wider_than_independent_ones_and_bad_input():
    # Deterministic heads on one test set: the replicates agree, and only the test rows vary. Shared
    # resampling keeps that noise whole; resampling each replicate on its own averages it away (~1/sqrt(20)).
    labels, a, b = _predictions(1, 100, shared=True, seed=4)
    labels, a, b = labels * 20, a * 20, b * 20
    shared = joint_bootstrap(labels, a, b, n_resamples=2000, row_ids=[np.arange(100)] * 20)
    independent = joint_bootstrap(labels, a, b, n_resamples=2000)
    assert shared.ci_high - shared.ci_low > 3 * (independent.ci_high - independent.ci_low)
    with pytest.raises(ValueError, match="same non-zero number of replicates"):
        joint_bootstrap(labels, a[:3], b)
    with pytest.raises(ValueError, match="replicate 0"):
        joint_bootstrap([labels[0][:5]], [a[0]], [b[0]])
