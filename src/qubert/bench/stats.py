"""Statistics over seeds: bootstrap CIs, paired tests, per-head aggregates and head comparisons."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from qubert.bench.config import CLASSICAL_HEADS


def bootstrap_ci(values: Sequence[float], *, n_resamples: int = 10_000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean.

    Resamples ``values`` with replacement ``n_resamples`` times (``numpy.random.default_rng(seed)``,
    one ``integers(0, n, (n_resamples, n))`` draw) and returns the ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` quantiles of the resampled means. With very few values (e.g. 3 seeds)
    the interval is too narrow: it cannot see variation the values do not show.

    Example:
        >>> bootstrap_ci([0.8, 0.8, 0.8])
        (0.8, 0.8)
        >>> low, high = bootstrap_ci([0.70, 0.75, 0.80, 0.85], seed=1)
        >>> 0.70 <= low < 0.775 < high <= 0.85
        True
    """
    data = np.asarray(values, dtype=float)
    if data.ndim != 1 or data.size == 0:
        raise ValueError("bootstrap_ci needs a non-empty 1-d sequence of values")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if np.all(data == data[0]):  # nothing varies (also: a single value)
        return float(data[0]), float(data[0])
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n_resamples, data.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedComparison:
    """A paired comparison of two heads over the same seeds (``a - b``).

    Attributes:
        n: number of pairs.
        mean_diff: mean of ``a - b``.
        ci_low, ci_high: bootstrap confidence interval of the mean difference.
        t_statistic, t_pvalue: paired t-test (``scipy.stats.ttest_rel``); NaN when n < 2.
        w_statistic, w_pvalue: Wilcoxon signed-rank test; NaN when n < 2 or all differences are 0.
        min_wilcoxon_p: the smallest two-sided Wilcoxon p-value n pairs can give (``2 / 2**n``).
    """

    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    t_statistic: float
    t_pvalue: float
    w_statistic: float
    w_pvalue: float
    min_wilcoxon_p: float

    def verdict(self, alpha: float = 0.05) -> str:
        """``higher`` / ``lower`` when the CI excludes 0 and the t-test agrees at ``alpha``, else ``no clear difference``."""
        if self.n < 2:
            return "n/a"
        significant = not math.isnan(self.t_pvalue) and self.t_pvalue < alpha
        if self.ci_low > 0 and significant:
            return "higher"
        if self.ci_high < 0 and significant:
            return "lower"
        return "no clear difference"


def paired_comparison(a: Sequence[float], b: Sequence[float], *, n_resamples: int = 10_000,
                      confidence: float = 0.95, seed: int = 0) -> PairedComparison:
    """Compare paired samples ``a`` and ``b`` (e.g. macro-F1 of two heads on the same seeds).

    Example:
        >>> c = paired_comparison([0.9, 0.8, 0.85], [0.85, 0.78, 0.80])
        >>> round(c.mean_diff, 4), c.n, c.min_wilcoxon_p
        (0.04, 3, 0.25)
    """
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"paired samples must be non-empty and of equal length, got {x.size} and {y.size}")
    diff = x - y
    n = int(diff.size)
    ci_low, ci_high = bootstrap_ci(diff, n_resamples=n_resamples, confidence=confidence, seed=seed)
    t_stat = t_p = w_stat = w_p = math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on degenerate samples; NaN/inf say it already
        if n >= 2:
            t = stats.ttest_rel(x, y)
            t_stat, t_p = float(t.statistic), float(t.pvalue)
            if np.any(diff != 0):
                w = stats.wilcoxon(x, y)
                w_stat, w_p = float(w.statistic), float(w.pvalue)
    return PairedComparison(n=n, mean_diff=float(diff.mean()), ci_low=ci_low, ci_high=ci_high,
                            t_statistic=t_stat, t_pvalue=t_p, w_statistic=w_stat, w_pvalue=w_p,
                            min_wilcoxon_p=2.0 / 2**n)


def aggregate(results: Any, *, n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0) -> Any:
    """Per (dataset, mode, head): seeds, mean +- std and bootstrap CI of macro-F1, and more.

    Rows keep the order in which heads first appear in ``results`` (the grid order).

    Example:
        >>> aggregate(pd.read_csv("results.csv"))[["head", "f1_mean", "f1_ci_low"]]  # doctest: +SKIP
    """
    import pandas as pd

    rows = []
    for (dataset, mode, head), group in results.groupby(["dataset", "mode", "head"], sort=False):
        f1 = group["test_macro_f1"].astype(float).to_numpy()
        low, high = bootstrap_ci(f1, n_resamples=n_resamples, confidence=confidence, seed=seed)
        first = group.iloc[0]
        rows.append({
            "dataset": dataset, "mode": mode, "head": head, "head_type": first["head_type"],
            "control": first["control"] if isinstance(first["control"], str) else "",
            "base_head": first["base_head"] if isinstance(first["base_head"], str) else "",
            "qubits": first["qubits"], "layers": first["layers"], "n_seeds": len(group),
            "trainable_params": int(group["trainable_params"].median()) if group["trainable_params"].notna().any() else None,
            "f1_mean": float(f1.mean()), "f1_std": float(f1.std(ddof=1)) if len(f1) > 1 else math.nan,
            "f1_ci_low": low, "f1_ci_high": high,
            "accuracy_mean": float(group["test_accuracy"].astype(float).mean()),
            "weighted_f1_mean": float(group["test_weighted_f1"].astype(float).mean()),
            "train_runtime_mean": float(group["train_runtime"].astype(float).mean()),
        })
    return pd.DataFrame(rows)


def compare_heads(results: Any, *, n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0) -> Any:
    """Paired comparisons on the same seeds, per (dataset, mode).

    - every head against the best classical head (``linear``/``mlp``, not a control; highest
      mean macro-F1), ``reference_kind == "best_classical"``;
    - every quantum head against each of its controls, ``reference_kind == <control>``
      (the difference is quantum minus control).

    Example:
        >>> compare_heads(results)[["head", "reference", "mean_diff", "verdict"]]  # doctest: +SKIP
    """
    import pandas as pd

    rows = []
    for (dataset, mode), block in results.groupby(["dataset", "mode"], sort=False):
        control = block["control"].fillna("")
        by_head = {head: g.set_index("seed")["test_macro_f1"].astype(float) for head, g in block.groupby("head", sort=False)}
        classical = block[block["head_type"].isin(CLASSICAL_HEADS) & (control == "")]
        best = None
        if len(classical):
            best = classical.groupby("head", sort=False)["test_macro_f1"].mean().idxmax()
        pairs: list[tuple[str, str, str]] = []
        if best is not None:
            pairs += [(head, best, "best_classical") for head in by_head if head != best]
        controls = block[control != ""][["head", "control", "base_head"]].drop_duplicates()
        pairs += [(row.base_head, row.head, row.control) for row in controls.itertuples() if row.base_head in by_head]
        for head, reference, kind in pairs:
            a, b = by_head[head], by_head[reference]
            common = sorted(set(a.index) & set(b.index))
            if not common:
                continue
            c = paired_comparison(a.loc[common].to_numpy(), b.loc[common].to_numpy(), n_resamples=n_resamples,
                                  confidence=confidence, seed=seed)
            rows.append({"dataset": dataset, "mode": mode, "head": head, "reference": reference,
                         "reference_kind": kind, **dataclasses.asdict(c), "verdict": c.verdict()})
    columns = ["dataset", "mode", "head", "reference", "reference_kind"] + \
              [f.name for f in dataclasses.fields(PairedComparison)] + ["verdict"]
    return pd.DataFrame(rows, columns=columns)
