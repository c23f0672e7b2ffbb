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
