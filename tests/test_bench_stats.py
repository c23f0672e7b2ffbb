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
    assert vs_best.loc["quantum_q4_l2"].verdict == "lower"  # -0.03 on every seed
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
    assert "Low power" in text and "0.25" in text  # 3 seeds: Wilcoxon cannot reach 0.05


def test_figures_are_written_as_png(tmp_path):
    paths = plot_figures(_results(), tmp_path)
    names = sorted(p.name for p in paths)
    assert names == ["macro_f1_by_head.png", "macro_f1_vs_qubits.png"]  # no history.json: no curves
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
