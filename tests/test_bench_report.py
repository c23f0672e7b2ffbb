"""summary.md and figures of `qubert bench` v2: verdicts, protocol, stops, tuning, forest plot (no training)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest

from qubert.bench import compare_heads, plot_figures, write_summary
from test_bench_stats import _results


def _v2_results() -> pd.DataFrame:
    """:func:`_results` with the v2 columns: validation scores (linear best on validation) and stops."""
    results = _results()
    results["eval_macro_f1"] = results["test_macro_f1"] + results["head"].map({"linear": 0.1}).fillna(0.0)
    results["stopped_by"] = "patience"
    results["epochs_trained"] = 20
    results["best_epoch"] = 15
    quantum = results["head"] == "quantum_q4_l2"
    results.loc[quantum, "stopped_by"] = ["epoch_cap", "epoch_cap", "patience"]
    results.loc[quantum, "best_epoch"] = [20, 18, 15]
    return results


def _tuning() -> pd.DataFrame:
    return pd.DataFrame([
        {"dataset": "sms_spam", "mode": "frozen", "head": head, "trials": 8,
         "space": "learning_rate: log-uniform [1e-4, 1e-1]; weight_decay: {0, 0.01}",
         "best_params": json.dumps({"learning_rate": 0.0031234, "weight_decay": 0.01}),
         "best_eval_macro_f1": 0.861, "failed_trials": 1 if head == "mlp" else 0}
        for head in ("linear", "mlp", "quantum_q4_l2")
    ])


def test_summary_has_verdicts_protocol_stops_and_tuning(tmp_path):
    config = SimpleNamespace(name="v2", description="", online=False,
                             statistics={"n_resamples": 500, "margin": 0.02, "alpha": 0.05, "correction": "bh"})
    text = write_summary(_v2_results(), tmp_path / "summary.md", config=config, tuning=_tuning()).read_text()
    assert "Best classical head: **linear** (chosen on validation macro-F1)" in text
    # The head table: validation F1 and how runs stopped.
    assert "| 0.820 | patience 1/3, cap 2/3 (1 still improving) |" in text  # quantum_q4_l2: val. F1, stops
    assert "| patience 3/3 |" in text
    # Verdict tally with the stated margin, and the protocol in words.
    assert "## Verdicts" in text and "| quantum head against | better | worse | equivalent within ±0.02 | inconclusive |" in text
    comparisons = compare_heads(_v2_results(), n_resamples=500, margin=0.02, correction="bh")
    n_quantum = int((comparisons.family == "quantum").sum())
    assert n_quantum == 3
    assert f"holds {n_quantum} comparisons" in text
    assert "Benjamini-Hochberg" in text and "α = 0.05" in text and "δ = 0.02" in text
    assert "**validation** macro-F1" in text and "*not shown either way*" in text
    # Every verdict of the quantum family appears in the per-data-set table.
    row = comparisons.set_index(["head", "reference"]).loc[("quantum_q4_l2", "linear")]
    assert f"| sms_spam (frozen) | quantum_q4_l2 | {row.verdict} ({row.mean_diff:+.3f} vs linear) |" in text
    # Tuning: what was searched and chosen, equal budgets stated.
    assert "## Tuning" in text and "Every head had the same budget: 8 trials" in text
    assert "learning_rate=0.00312, weight_decay=0.01" in text
    assert "| sms_spam (frozen) | mlp | 8 | 1 |" in text


def test_summary_flags_unequal_tuning_budgets(tmp_path):
    tuning = _tuning()
    tuning.loc[2, "trials"] = 4
    text = write_summary(_v2_results(), tmp_path / "summary.md", tuning=tuning).read_text()
    assert "**Unequal budgets:**" in text


def test_summary_of_old_results_without_v2_columns(tmp_path):
    text = write_summary(_results(), tmp_path / "summary.md").read_text()
    assert "Best classical head: **mlp** (chosen on test (no validation scores) macro-F1)" in text
    assert "had no validation scores, so the reference there was chosen on test" in text
    assert "## Tuning" not in text
    assert "| linear |  | 770 | 0.810 ± 0.010 |" in text


def test_forest_plot_is_written_and_listed_in_the_summary(tmp_path):
    paths = plot_figures(_v2_results(), tmp_path)
    forest = tmp_path / "figures" / "delta_vs_best_classical.png"
    assert forest in paths and forest.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = write_summary(_v2_results(), tmp_path / "summary.md", figures=paths).read_text()
    assert "![delta_vs_best_classical](figures/delta_vs_best_classical.png)" in text


def test_no_forest_plot_without_quantum_heads(tmp_path):
    classical = _v2_results()[lambda r: r["head"].isin(["linear", "mlp"])]
    names = [p.name for p in plot_figures(classical, tmp_path)]
    assert names == ["macro_f1_by_head.png"]


@pytest.mark.parametrize("correction", ["holm", "none"])
def test_summary_names_the_correction(tmp_path, correction):
    config = SimpleNamespace(name="c", description="", online=False, statistics={"correction": correction})
    text = write_summary(_v2_results(), tmp_path / "summary.md", config=config).read_text()
    assert {"holm": "Holm's step-down", "none": "no correction"}[correction] in text


# ---------------------------------------------------------------------------------------------
# bench v3: sequential decisions in summary.md and the forest plot
# ---------------------------------------------------------------------------------------------

import math  # noqa: E402

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from qubert.bench.sequential import ComparisonSpec, SequentialDesign, decide_look  # noqa: E402
from qubert.bench.stats import bootstrap_decisions, cross_dataset_summary  # noqa: E402

_KINDS = {"linear": ("linear", "", ""), "quantum_q4": ("quantum", "", ""),
          "matched_mlp_q4": ("mlp", "matched_mlp", "quantum_q4")}


def _v3_results(f1: dict[str, list[float]], dataset: str = "sst2") -> pd.DataFrame:
    rows = []
    for head, values in f1.items():
        head_type, control, base = _KINDS[head]
        for r, value in enumerate(values):
            rows.append({"run_id": f"{dataset}/frozen/{head}/seed{r}", "dataset": dataset, "mode": "frozen",
                         "head": head, "head_type": head_type, "control": control, "base_head": base, "seed": r,
                         "replicate": r, "model": "default", "qubits": 4 if "q4" in head else None,
                         "layers": 1 if "q4" in head else None, "test_macro_f1": value, "test_accuracy": value,
                         "test_weighted_f1": value, "trainable_params": 100, "train_runtime": 0.1,
                         "eval_macro_f1": value, "run_dir": f"runs/{dataset}/{head}/seed{r}"})
    return pd.DataFrame(rows)


def _specs(dataset: str = "sst2") -> list[ComparisonSpec]:
    return [ComparisonSpec(dataset, "quantum_q4", "linear", "best_classical", "confirmatory"),
            ComparisonSpec(dataset, "quantum_q4", "matched_mlp_q4", "matched_mlp", "confirmatory")]


def test_sequential_summary_numbers_against_hand_computations(tmp_path):
    """Four replicates, one look: every number of the comparison table by hand (scipy for quantiles only)."""
    f1 = {"linear": [0.80, 0.82, 0.81, 0.787], "quantum_q4": [0.83, 0.84, 0.80, 0.82],
          "matched_mlp_q4": [0.830, 0.845, 0.805, 0.815]}
    results = _v3_results(f1)
    design = SequentialDesign(looks=(4,), alpha=0.05, margin=0.01)
    decisions = decide_look(results, _specs(), design)
    # vs linear: Δ = 0.03, 0.02, -0.01, 0.033; mean 0.01825, 3 degrees of freedom.
    d = np.array([0.03, 0.02, -0.01, 0.033])
    mean, se = d.mean(), d.std(ddof=1) / 2
    t_two = stats.t.isf(0.025, 3)
    t_cert = stats.t.isf(0.05 / 2, 3)  # the smallest margin is certified at alpha / (2 confirmatory comparisons)
    p_diff = 2 * stats.t.sf(mean / se, 3)
    p_lower, p_upper = stats.t.sf((mean + 0.01) / se, 3), stats.t.cdf((mean - 0.01) / se, 3)
    # vs matched MLP: Δ = 0, -0.005, -0.005, 0.005: mean -0.00125.
    e = np.array([0.0, -0.005, -0.005, 0.005])
    e_mean, e_se = e.mean(), e.std(ddof=1) / 2
    e_diff = 2 * stats.t.sf(abs(e_mean) / e_se, 3)
    e_equiv = max(stats.t.sf((e_mean + 0.01) / e_se, 3), stats.t.cdf((e_mean - 0.01) / e_se, 3))
    # Holm over 4 hypotheses of 2 comparisons (at most 2 true nulls): sorted e_equiv, p_diff, e_diff,
    # p_equiv; divisors 2, 2, 2 (both comparisons still have an open null when e_diff is tested), then 1.
    p_equiv = max(p_lower, p_upper)
    assert e_equiv < p_diff < e_diff < p_equiv
    adj = np.maximum.accumulate([2 * e_equiv, 2 * p_diff, min(1.0, 2 * e_diff), p_equiv])
    row, eq = decisions.iloc[0], decisions.iloc[1]
    assert row["delta"] == pytest.approx(mean) and row["n"] == 4
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((mean - t_two * se, mean + t_two * se), rel=1e-3)
    assert row["p_difference"] == pytest.approx(p_diff, rel=2e-3)
    assert row["p_equivalence"] == pytest.approx(p_equiv, rel=2e-3)
    assert row["prob_improvement"] == 0.75
    assert row["smallest_margin"] == pytest.approx(abs(mean) + t_cert * se, rel=1e-3)
    assert row["p_difference_adjusted"] == pytest.approx(adj[1], rel=2e-3)
    assert row["p_equivalence_adjusted"] == pytest.approx(adj[3], rel=2e-3)
    assert row["verdict"] == "inconclusive" and not row["decided"]
    assert eq["p_equivalence_adjusted"] == pytest.approx(adj[0], rel=2e-3) and adj[0] < 0.05
    assert eq["verdict"] == "equivalent" and eq["prob_improvement"] == pytest.approx(0.375)

    text = write_summary(results, tmp_path / "summary.md", decisions=decisions, design=design,
                         test_draws={"sst2": None}).read_text()
    assert "**1 of 2 confirmatory comparisons decided**" in text
    assert (f"| sst2 | quantum_q4 | linear (best classical head) | confirmatory | 4 | {mean:+.3f} "
            f"| [{mean - t_two * se:+.3f}, {mean + t_two * se:+.3f}] | 0.75 | {adj[1]:.3f} | {adj[3]:.3f} "
            f"| inconclusive | {abs(mean) + t_cert * se:.3f} |") in text
    assert f"| sst2 | quantum_q4 | matched_mlp_q4 (matched MLP) | confirmatory | 4 | {e_mean:+.3f} |" in text
    assert "| equivalent (look 1) | – |" in text
    assert "*whole test pool*" in text and "Holm's step-down" in text and "O'Brien-Fleming-type" in text
    # The per-head table: mean ± std over the replicates by hand.
    q = np.array(f1["quantum_q4"])
    assert f"| sst2 | quantum_q4 |  | 100 | 4 | {q.mean():.3f} ± {q.std(ddof=1):.3f} |" in text


def test_sequential_summary_with_zero_variance_heads_and_figures(tmp_path):
    """A head with bit-identical scores on every replicate (here a sum that is not exact in binary):
    the report and the figures must still be written (the v2 crash: a negative error bar)."""
    constant = 0.1 + 0.2 + 1 / 3
    f1 = {"linear": [constant] * 10, "quantum_q4": [constant] * 10, "matched_mlp_q4": [constant + 0.02] * 10}
    results = _v3_results(f1)
    design = SequentialDesign(looks=(5, 10), margin=0.01)
    decisions = decide_look(results, _specs(), design)
    assert decisions["verdict"].tolist() == ["equivalent", "worse"]
    paths = plot_figures(results, tmp_path, decisions=decisions, margin=0.01)
    names = [p.name for p in paths]
    assert "delta_by_comparison.png" in names and "macro_f1_by_head.png" in names
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = write_summary(results, tmp_path / "summary.md", decisions=decisions, design=design, figures=paths).read_text()
    assert "**2 of 2 confirmatory comparisons decided**" in text
    assert "![delta_by_comparison](figures/delta_by_comparison.png)" in text
    # v2 path too (bench --report-only on an old grid).
    v2 = write_summary(results, tmp_path / "summary_v2.md").read_text()
    assert f"| {constant:.3f} ± 0.000 | [{constant:.3f}, {constant:.3f}]" in v2
    assert plot_figures(results, tmp_path / "v2")


def test_zero_variance_mean_outside_its_interval_no_longer_crashes(tmp_path):
    # Found by search: a value whose mean over 5 copies is 1 ulp away from the value itself.
    value = next(v for v in np.linspace(0.1, 0.9, 2000) + 1 / 3 if np.full(5, v).mean() != v)
    results = _v3_results({"linear": [value] * 5, "quantum_q4": [0.8] * 5, "matched_mlp_q4": [0.8] * 5})
    row = aggregate_row = None
    from qubert.bench import aggregate

    aggregate_row = aggregate(results).set_index("head").loc["linear"]
    assert aggregate_row.f1_ci_low <= aggregate_row.f1_mean <= aggregate_row.f1_ci_high
    assert row is None
    assert plot_figures(results, tmp_path)
    assert write_summary(results, tmp_path / "summary.md").is_file()


def _predictions(f1_gap: float, n_rows: int = 200, replicates: int = 20, seed: int = 0):
    """Stored predictions of two heads on a shared test set: head A right on 85 % of rows, B on 85 % - gap."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n_rows)
    store = {}
    for r in range(replicates):
        for head, accuracy in (("quantum_q4", 0.85), ("linear", 0.85 - f1_gap)):
            predicted = np.where(rng.random(n_rows) < accuracy, labels, rng.integers(0, 3, n_rows))
            store[("sst2", head, r)] = {"labels": labels, "probabilities": np.eye(3)[predicted].astype(np.float16),
                                        "test_index": np.arange(n_rows)}
    return store


def test_joint_bootstrap_columns_reach_the_report(tmp_path):
    from sklearn.metrics import f1_score

    store = _predictions(0.05)
    f1 = {head: [f1_score(store[("sst2", head, r)]["labels"], store[("sst2", head, r)]["probabilities"].argmax(1),
                          average="macro") for r in range(20)] for head in ("quantum_q4", "linear")}
    f1["matched_mlp_q4"] = f1["quantum_q4"]
    results = _v3_results(f1)
    design = SequentialDesign(looks=(10, 20), margin=0.01)
    decisions = decide_look(results, _specs()[:1], design)
    with_boot = bootstrap_decisions(decisions, lambda row, h, r: store.get((row.dataset, h, r)), design.looks,
                                    n_resamples=2000)
    row = with_boot.iloc[0]
    # The bootstrap's point estimate is the mean of sklearn's per-replicate macro-F1 differences.
    n = int(row["n"])
    assert row["boot_delta"] == pytest.approx(np.mean(np.subtract(f1["quantum_q4"], f1["linear"])[:n]))
    assert row["boot_delta"] == pytest.approx(row["delta"])
    assert row["boot_ci_low"] < row["boot_delta"] < row["boot_ci_high"] and row["boot_rows"] == "shared"
    text = write_summary(results, tmp_path / "summary.md", decisions=with_boot, design=design).read_text()
    assert "joint bootstrap |" in text
    assert f"[{row['boot_ci_low']:+.3f}, {row['boot_ci_high']:+.3f}]" in text


def test_cross_dataset_summary_counts_verdicts_and_uses_signed_ranks():
    decisions = pd.DataFrame({"dataset": list("abcdefg"), "head": "q", "reference": "mlp", "kind": "matched_mlp",
                              "family": "confirmatory", "delta": [0.05, 0.04, 0.06, 0.03, 0.05, 0.07, 0.02],
                              "verdict": ["better"] * 6 + ["inconclusive"], "decided": [True] * 6 + [False]})
    table = cross_dataset_summary(decisions, margin=0.01, n_samples=2000)
    row = table.iloc[0]
    assert (row["datasets"], row["better"], row["inconclusive"]) == (7, 6, 1)
    assert row["wilcoxon_p"] == pytest.approx(stats.wilcoxon(decisions["delta"]).pvalue)
    assert row["wilcoxon_p"] == pytest.approx(2 / 2**7)  # all 7 positive: the exact two-sided minimum
    pytest.importorskip("baycomp")
    # Every Δ is above the margin: the head is better with high posterior probability, not the reference.
    assert row["p_head_better"] > 0.9 and row["p_reference_better"] < 0.01
    assert "baycomp" in row["method"]
