"""Statistics over seeds and replicates: bootstrap CIs, paired tests, per-head aggregates, head
comparisons, the joint bootstrap over replicates and test rows, and the summary across data sets.

The sequential decisions themselves (looks, alpha spending, families) live in
:mod:`qubert.bench.sequential`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np



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


# ------------------------------------------------------------------------------- equivalence, multiplicity

VERDICTS = ("better", "worse", "equivalent", "inconclusive")
CORRECTIONS = ("holm", "bh", "none")


def tost_paired(a: Sequence[float], b: Sequence[float], margin: float) -> tuple[float, float, float]:
    """Two one-sided paired t-tests of equivalence within ``±margin`` (Schuirmann's TOST).

    Tests H0: mean(a - b) <= -margin and H0: mean(a - b) >= +margin, each with a one-sided paired
    t-test (``scipy.stats.ttest_1samp`` of the differences against -margin / +margin). Equivalence
    is shown at level alpha when both are rejected, i.e. when ``p = max(p_lower, p_upper) < alpha``.

    Returns:
        ``(p, p_lower, p_upper)``; NaN with fewer than 2 pairs (or a NaN value). Differences that
        are all equal give p = 0 when they lie strictly inside the margin and 1 otherwise (the t
        statistic is infinite, or 0/0 on the margin itself).

    Example:
        >>> p, _, _ = tost_paired([0.801, 0.799, 0.800, 0.802], [0.800, 0.800, 0.801, 0.801], margin=0.01)
        >>> p < 0.05
        True
    """
    from scipy import stats

    if not margin > 0:  # also rejects NaN
        raise ValueError(f"the equivalence margin must be > 0, got {margin}")
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:  # no broadcasting of a scalar or a short sample
        raise ValueError(f"paired samples must be 1-d and of equal length, got shapes {x.shape} and {y.shape}")
    diff = x - y
    if diff.size < 2 or np.isnan(diff).any():
        return math.nan, math.nan, math.nan
    if np.all(diff == diff[0]):  # zero variance: scipy's t is 0/0 on the margin itself
        d = diff[0]
        p_lower, p_upper = float(d <= -margin), float(d >= margin)
        return max(p_lower, p_upper), p_lower, p_upper
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "catastrophic cancellation" on nearly equal differences
        p_lower = float(stats.ttest_1samp(diff, -margin, alternative="greater").pvalue)
        p_upper = float(stats.ttest_1samp(diff, margin, alternative="less").pvalue)
    return max(p_lower, p_upper), p_lower, p_upper


def adjust_pvalues(pvalues: Sequence[float], method: str = "holm") -> np.ndarray:
    """P-values adjusted for multiple comparisons: ``holm`` (family-wise error, Holm 1979), ``bh``
    (false discovery rate, Benjamini-Hochberg 1995) or ``none``; NaN entries stay NaN and do not count.

    Uses ``scipy.stats.false_discovery_control`` for BH; Holm's step-down is written out below
    because scipy has none (statsmodels' ``multipletests`` would be a dependency for ten lines).

    Example:
        >>> adjust_pvalues([0.01, 0.04, 0.03], "holm").round(3).tolist()
        [0.03, 0.06, 0.06]
        >>> adjust_pvalues([0.01, 0.04, 0.03], "bh").round(3).tolist()
        [0.03, 0.04, 0.04]
    """
    from scipy import stats

    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; expected one of {', '.join(CORRECTIONS)}")
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"adjust_pvalues needs a 1-d sequence of p-values, got shape {p.shape}")
    valid = ~np.isnan(p)
    if ((p[valid] < 0) | (p[valid] > 1)).any():
        raise ValueError("p-values must lie in [0, 1]")
    out = np.full_like(p, np.nan)
    if method == "none" or not valid.any():
        out[valid] = p[valid]
        return out
    q = p[valid]
    if method == "bh":
        out[valid] = stats.false_discovery_control(q, method="bh")
        return out
    m = q.size
    order = np.argsort(q, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * q[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    out[valid] = adjusted
    return out


def verdict(mean_diff: float, p_difference: float, p_equivalence: float, alpha: float = 0.05) -> str:
    """One of :data:`VERDICTS` from (adjusted) p-values of a difference test and a TOST.

    ``equivalent`` when the TOST rejects non-equivalence (it wins over a difference that is
    significant but smaller than the margin); else ``better`` / ``worse`` when the difference test
    is significant; else ``inconclusive``.

    Example:
        >>> verdict(0.004, 0.01, 0.02), verdict(0.03, 0.001, 0.9), verdict(0.01, 0.3, 0.4)
        ('equivalent', 'better', 'inconclusive')
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not math.isnan(p_equivalence) and p_equivalence < alpha:
        return "equivalent"
    if not math.isnan(p_difference) and p_difference < alpha:
        return "better" if mean_diff > 0 else "worse"
    return "inconclusive"


STATISTICS_DEFAULTS: dict[str, Any] = {"n_resamples": 10_000, "confidence": 0.95, "seed": 0,
                                       "margin": 0.01, "alpha": 0.05, "correction": "holm"}
_BOOTSTRAP_KEYS = ("n_resamples", "confidence", "seed")
# Outcomes of ``stopped_by`` in results.csv, and the aggregate column that counts each.
STOP_REASONS = {"patience": "stopped_by_patience", "epoch_cap": "stopped_by_cap",
                "max_steps": "stopped_by_max_steps", "converged": "stopped_by_converged"}


def statistics_options(config: Any = None) -> dict[str, Any]:
    """The statistics settings of a bench config (``config.statistics``) over :data:`STATISTICS_DEFAULTS`.

    Example:
        >>> statistics_options()["margin"], statistics_options()["correction"]
        (0.01, 'holm')
    """
    return {**STATISTICS_DEFAULTS, **(getattr(config, "statistics", None) or {})}


def is_classical(head_type: Any, control: Any) -> bool:
    """A classical yardstick (linear, MLP, logistic regression, ...): any non-quantum head that is not a control."""
    return head_type != "quantum" and not (isinstance(control, str) and control)


def aggregate(results: Any, *, n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0,
              **_: Any) -> Any:
    """Per (dataset, mode, head): seeds, mean +- std and bootstrap CI of test macro-F1, mean
    validation macro-F1 (``eval_f1_mean``), and how the runs stopped.

    ``stopped_by_patience`` / ``stopped_by_cap`` / ``stopped_by_max_steps`` / ``stopped_by_converged``
    count the runs per ``stopped_by`` value; ``capped_while_improving`` counts the runs that hit the
    epoch cap with their best validation score in the last epoch (``best_epoch == epochs_trained``),
    i.e. that might have gone on improving. All are NaN for results without a ``stopped_by`` column.
    Other keyword arguments (the rest of ``config.statistics``) are ignored. Rows keep the order in
    which heads first appear in ``results`` (the grid order).

    Example:
        >>> aggregate(pd.read_csv("results.csv"))[["head", "f1_mean", "f1_ci_low"]]  # doctest: +SKIP
    """
    import pandas as pd

    rows = []
    for (dataset, mode, head), group in results.groupby(["dataset", "mode", "head"], sort=False):
        f1 = group["test_macro_f1"].astype(float).to_numpy()
        low, high = bootstrap_ci(f1, n_resamples=n_resamples, confidence=confidence, seed=seed)
        # The mean of equal floats can be 1 ulp off them: the interval must still hold the mean.
        low, high = min(low, float(f1.mean())), max(high, float(f1.mean()))
        first = group.iloc[0]
        rows.append({
            "dataset": dataset, "mode": mode, "head": head, "head_type": first["head_type"],
            "control": first["control"] if isinstance(first["control"], str) else "",
            "base_head": first["base_head"] if isinstance(first["base_head"], str) else "",
            "qubits": first.get("qubits"), "layers": first.get("layers"), "n_seeds": len(group),
            "trainable_params": int(group["trainable_params"].median()) if group["trainable_params"].notna().any() else None,
            "f1_mean": float(f1.mean()), "f1_std": float(f1.std(ddof=1)) if len(f1) > 1 else math.nan,
            "f1_ci_low": low, "f1_ci_high": high,
            "accuracy_mean": float(group["test_accuracy"].astype(float).mean()),
            "weighted_f1_mean": float(group["test_weighted_f1"].astype(float).mean()),
            "eval_f1_mean": _mean(group, "eval_macro_f1"),
            "train_runtime_mean": _mean(group, "train_runtime"),
            **_stop_counts(group),
        })
    return pd.DataFrame(rows)


def _mean(group: Any, column: str) -> float:
    if column not in group or not group[column].notna().any():
        return math.nan
    return float(group[column].astype(float).mean())


def _stop_counts(group: Any) -> dict[str, float]:
    names = [*STOP_REASONS.values(), "capped_while_improving"]
    if "stopped_by" not in group or not group["stopped_by"].notna().any():
        return dict.fromkeys(names, math.nan)
    stopped = group["stopped_by"].fillna("")
    counts: dict[str, float] = {name: int((stopped == reason).sum()) for reason, name in STOP_REASONS.items()}
    capped = group[stopped == "epoch_cap"]
    improving = 0
    if len(capped) and {"best_epoch", "epochs_trained"} <= set(capped.columns):
        best, trained = capped["best_epoch"].astype(float), capped["epochs_trained"].astype(float)
        improving = int(np.isclose(best, trained).sum())  # NaN on either side never counts
    counts["capped_while_improving"] = improving
    return counts


COMPARISON_COLUMNS = ("dataset", "mode", "head", "reference", "reference_kind", "family",
                      *(f.name for f in dataclasses.fields(PairedComparison)),
                      "tost_pvalue", "p_difference_adjusted", "p_equivalence_adjusted", "verdict", "selected_on")


def compare_heads(results: Any, *, n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0,
                  margin: float = 0.01, alpha: float = 0.05, correction: str = "holm") -> Any:
    """Paired comparisons on the same seeds, per (dataset, mode), with equivalence tests and a
    multiplicity correction across the whole grid.

    - every head against the best classical head, ``reference_kind == "best_classical"``: the
      non-control, non-quantum head (linear, MLP, logistic regression) with the highest mean
      **validation** macro-F1 (``eval_macro_f1``; test macro-F1 only where no validation score was
      recorded), so that the test split plays no part in picking the reference;
    - every quantum head against each of its controls, ``reference_kind == <control>``
      (the difference is quantum minus control).

    Each row has the paired t-test (``t_pvalue``), Schuirmann's TOST within ``±margin``
    (``tost_pvalue``), both adjusted by ``correction`` (:func:`adjust_pvalues`) across the grid
    within a ``family``: ``quantum`` holds the comparisons that ask whether a quantum head helps
    (a non-control quantum head against the best classical head or one of its controls), ``other``
    the rest (classical heads and controls against the best classical head). ``verdict`` is
    :func:`verdict` of the adjusted p-values at ``alpha``; ``selected_on`` names the column the
    reference was chosen on (``eval_macro_f1``, or ``test_macro_f1`` for old results without it).

    Example:
        >>> compare_heads(results)[["head", "reference", "mean_diff", "verdict"]]  # doctest: +SKIP
    """
    import pandas as pd

    rows = []
    for (dataset, mode), block in results.groupby(["dataset", "mode"], sort=False):
        control = block["control"].fillna("")
        by_head = {head: g.set_index("seed")["test_macro_f1"].astype(float) for head, g in block.groupby("head", sort=False)}
        quantum_heads = set(block.loc[(block["head_type"] == "quantum") & (control == ""), "head"])
        best, selected_on = _best_classical(block)
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
            x, y = a.loc[common].to_numpy(), b.loc[common].to_numpy()
            c = paired_comparison(x, y, n_resamples=n_resamples, confidence=confidence, seed=seed)
            rows.append({"dataset": dataset, "mode": mode, "head": head, "reference": reference,
                         "reference_kind": kind, "family": "quantum" if head in quantum_heads else "other",
                         "selected_on": selected_on if kind == "best_classical" else "",
                         **dataclasses.asdict(c), "tost_pvalue": tost_paired(x, y, margin)[0]})
    table = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    for column, raw in (("p_difference_adjusted", "t_pvalue"), ("p_equivalence_adjusted", "tost_pvalue")):
        table[column] = math.nan
        for _, index in table.groupby("family", sort=False).groups.items():
            table.loc[index, column] = adjust_pvalues(table.loc[index, raw].astype(float).to_numpy(), correction)
    table["verdict"] = [verdict(r.mean_diff, r.p_difference_adjusted, r.p_equivalence_adjusted, alpha)
                        for r in table.itertuples()]
    return table


def _best_classical(block: Any) -> tuple[str | None, str]:
    """The classical head of one (dataset, mode) block with the highest mean validation macro-F1,
    and the column it was chosen on (``test_macro_f1`` only when a classical head has no validation score)."""
    classical = block[[is_classical(t, c) for t, c in zip(block["head_type"], block["control"])]]
    if not len(classical):
        return None, ""
    metric = "eval_macro_f1"
    if metric not in classical or not classical.groupby("head", sort=False)[metric].count().gt(0).all():
        metric = "test_macro_f1"
    return str(classical.groupby("head", sort=False)[metric].mean().idxmax()), metric


# ------------------------------------------------------------------------------- joint bootstrap (v3)


@dataclass(frozen=True)
class JointBootstrap:
    """A paired comparison of two heads from their per-example predictions (Δ = A − B, macro-F1).

    Attributes:
        delta: mean over replicates of macro-F1(A) − macro-F1(B) on the stored test rows.
        ci_low, ci_high: percentile interval of Δ from the joint bootstrap (replicates, then test rows).
        prob_improvement: P(A > B), the share of replicates where A's macro-F1 beats B's (ties half;
            Bouthillier et al. 2021); pi_ci_low, pi_ci_high: its joint-bootstrap interval.
        smallest_margin: the smallest margin m whose equivalence the bootstrap would certify: the
            largest |end| of the ``1 - 2 alpha`` interval (the TOST duality).
        n_replicates: replicates; n_rows: test rows per replicate (median); rows: ``shared`` (one test
            set, resampled once per bootstrap draw for every replicate: the multi-bootstrap of Sellam et
            al. 2022) or ``per_replicate`` (each replicate's own test draw resampled on its own).
    """

    delta: float
    ci_low: float
    ci_high: float
    prob_improvement: float
    pi_ci_low: float
    pi_ci_high: float
    smallest_margin: float
    n_replicates: int
    n_rows: int
    rows: str


def _predicted(scores: Any) -> np.ndarray:
    """Class predictions from probabilities (n, C) or predictions (n,)."""
    s = np.asarray(scores)
    return s.argmax(axis=1) if s.ndim == 2 else s.astype(np.int64)


def _macro_f1_from_counts(tp: np.ndarray, predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Macro-F1 over the last axis (classes) from per-class counts, averaged over the classes present
    in the labels or the predictions (``sklearn.metrics.f1_score(average="macro")``'s default)."""
    present = (predicted + true) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(present, 2.0 * tp / np.where(present, predicted + true, 1.0), 0.0)
    return f1.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


@functools.lru_cache(maxsize=1)
def _row_weights(n_resamples: int, n_rows: int, seed: int) -> np.ndarray:
    """How often each row is drawn in each resample of a shared test set (cached: every comparison on a
    data set resamples the same rows, which keeps them paired across comparisons and saves the draw)."""
    rng = np.random.default_rng([seed, n_rows])
    weights = rng.multinomial(n_rows, np.full(n_rows, 1.0 / n_rows), size=n_resamples).astype(np.float32)
    weights.flags.writeable = False
    return weights


# Long: the docstring states the resampling scheme; the body is one vectorised pass per case.
def joint_bootstrap(labels: Sequence[Any], scores_a: Sequence[Any], scores_b: Sequence[Any], *,
                    row_ids: Sequence[Any] | None = None, n_resamples: int = 10_000, confidence: float = 0.95,
                    alpha: float = 0.05, seed: int = 0) -> JointBootstrap:
    """The joint bootstrap of Δ macro-F1 over replicates and test rows, and P(A > B).

    Each bootstrap draw resamples the replicates with replacement, then the test rows: with one test set
    shared by every replicate (``row_ids`` equal across replicates) one row resample serves all of them
    (the test rows' error is common to all replicates); otherwise each chosen replicate's rows are
    resampled on their own. Δ of the draw is the mean over its replicates of macro-F1(A) − macro-F1(B).
    With fresh test draws per replicate the replicate resampling already carries the test-draw noise,
    so the row resampling counts it twice: the interval is conservative there.

    Vectorised: the macro-F1 of a resample depends only on how often each (label, prediction A,
    prediction B) combination is drawn, which is multinomial; a shared resample is a (draws x rows)
    weight matrix applied to per-class indicators with one matrix product per replicate.

    Args:
        labels: per replicate, the true labels (n_r,).
        scores_a, scores_b: per replicate, class probabilities (n_r, C) (float16 is fine) or labels (n_r,).
        row_ids: per replicate, the test rows' indices into the test pool (to detect a shared test set).
        n_resamples, confidence, seed: the bootstrap.
        alpha: level for :attr:`JointBootstrap.smallest_margin`.

    Example:
        >>> y = [np.array([0, 1, 1, 0])] * 3
        >>> b = joint_bootstrap(y, y, [np.array([0, 1, 0, 0])] * 3, n_resamples=200)
        >>> round(b.delta, 3), b.prob_improvement, b.rows
        (0.267, 1.0, 'per_replicate')
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    y = [np.asarray(v, dtype=np.int64) for v in labels]
    pa, pb = [_predicted(v) for v in scores_a], [_predicted(v) for v in scores_b]
    n_rep = len(y)
    if n_rep == 0 or len(pa) != n_rep or len(pb) != n_rep:
        raise ValueError(f"need the same non-zero number of replicates for labels and both heads, got "
                         f"{len(y)}, {len(pa)} and {len(pb)}")
    for r, (yr, ar, br) in enumerate(zip(y, pa, pb)):
        if not (yr.shape == ar.shape == br.shape) or yr.ndim != 1 or yr.size == 0:
            raise ValueError(f"replicate {r}: labels and predictions must be 1-d of one length, got "
                             f"{yr.shape}, {ar.shape} and {br.shape}")
    n_classes = int(max(max(v.max() for v in y), max(v.max() for v in pa), max(v.max() for v in pb))) + 1
    eye = np.eye(n_classes)

    def f1_pair(yr: np.ndarray, ar: np.ndarray, br: np.ndarray) -> tuple[float, float]:
        true = eye[yr].sum(0)
        return tuple(float(_macro_f1_from_counts(eye[yr][p == yr].sum(0), eye[p].sum(0), true)) for p in (ar, br))

    point = np.array([f1_pair(*v) for v in zip(y, pa, pb)])
    diffs = point[:, 0] - point[:, 1]
    shared = row_ids is not None and len(row_ids) == n_rep and all(
        np.array_equal(np.asarray(row_ids[0]), np.asarray(ids)) for ids in row_ids[1:]) and all(
        v.size == y[0].size for v in y)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_rep, size=(n_resamples, n_rep))
    fa = np.empty((n_resamples, n_rep))
    fb = np.empty((n_resamples, n_rep))
    if shared:
        weights = _row_weights(n_resamples, y[0].size, seed)
        # One matrix product for every replicate and head (a product per replicate would re-read the
        # (draws x rows) weights 4R times): columns = [true | (tp, predicted) of A, of B per replicate].
        onehot = [eye[p] for p in (*pa, *pb)]
        columns = np.concatenate([eye[y[0]], *[np.concatenate([o * (p == y[0])[:, None], o], axis=1)
                                                for o, p in zip(onehot, (*pa, *pb))]], axis=1)
        counts = (weights @ columns.astype(np.float32)).astype(np.float64)
        true = counts[:, :n_classes]
        per_head = counts[:, n_classes:].reshape(n_resamples, 2 * n_rep, 2, n_classes)
        scores = _macro_f1_from_counts(per_head[:, :, 0], per_head[:, :, 1], true[:, None, :])
        fa = np.take_along_axis(scores[:, :n_rep], picks, axis=1)
        fb = np.take_along_axis(scores[:, n_rep:], picks, axis=1)
    else:
        for r in range(n_rep):
            where = np.nonzero(picks == r)
            if not where[0].size:
                continue
            code = (y[r] * n_classes + pa[r]) * n_classes + pb[r]
            codes, counts = np.unique(code, return_counts=True)
            hist = rng.multinomial(y[r].size, counts / counts.sum(), size=where[0].size)
            cy, rest = np.divmod(codes, n_classes * n_classes)
            ca, cb = np.divmod(rest, n_classes)
            true = hist @ eye[cy]
            fa[where] = _macro_f1_from_counts(hist @ (eye[ca] * (ca == cy)[:, None]), hist @ eye[ca], true)
            fb[where] = _macro_f1_from_counts(hist @ (eye[cb] * (cb == cy)[:, None]), hist @ eye[cb], true)
    delta = (fa - fb).mean(axis=1)
    wins = ((fa > fb) + 0.5 * (fa == fb)).mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(delta, [tail, 1 - tail])
    pi_low, pi_high = np.quantile(wins, [tail, 1 - tail])
    m_low, m_high = np.quantile(delta, [alpha, 1 - alpha])
    return JointBootstrap(
        delta=float(diffs.mean()), ci_low=float(low), ci_high=float(high),
        prob_improvement=float(((diffs > 0) + 0.5 * (diffs == 0)).mean()),
        pi_ci_low=float(pi_low), pi_ci_high=float(pi_high),
        smallest_margin=float(max(abs(m_low), abs(m_high))), n_replicates=n_rep,
        n_rows=int(np.median([v.size for v in y])), rows="shared" if shared else "per_replicate",
    )


# ------------------------------------------------------------------------------- across data sets (v3)

CROSS_DATASET_COLUMNS = ("head", "kind", "datasets", "better", "worse", "equivalent", "inconclusive",
                         "median_delta", "wilcoxon_p", "p_head_better", "p_rope", "p_reference_better", "method")


def cross_dataset_summary(decisions: Any, margin: float, *, seed: int = 0, n_samples: int = 20_000) -> Any:
    """One line per comparison type (head, kind) over the data sets it was run on.

    - verdict counts and the median Δ across data sets;
    - ``wilcoxon_p``: the two-sided Wilcoxon signed-rank test of the per-data-set Δ against 0
      (``scipy.stats.wilcoxon``, exact for few data sets; NaN below 2 data sets or when every Δ is 0);
    - ``p_head_better``, ``p_rope``, ``p_reference_better``: the Bayesian signed-rank test of Benavoli
      et al. (2014, 2017) with a region of practical equivalence ±margin (``baycomp.SignedRankTest``):
      the posterior probability that the head is better by more than the margin, within it, or worse.
      NaN, with ``method`` saying so, when baycomp (extra ``qubert[stats]``) is not installed.
      ``n_samples`` posterior draws (20,000: probabilities to about ±0.005, ~1 s per line).

    Each data set counts once (its Δ at the look that decided it, or its last look), so the tests see
    independent units.

    Example:
        >>> cross_dataset_summary(decide_look(...), margin=0.01)  # doctest: +SKIP
    """
    import pandas as pd
    from scipy import stats

    try:
        import baycomp
    except ImportError:
        baycomp = None
    rows = []
    usable = decisions[decisions["delta"].notna()] if len(decisions) else decisions
    for (head, kind), group in usable.groupby(["head", "kind"], sort=False):
        delta = group["delta"].astype(float).to_numpy()
        counts = group["verdict"].value_counts()
        wilcoxon_p = math.nan
        if delta.size >= 2 and np.any(delta != 0):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                wilcoxon_p = float(stats.wilcoxon(delta).pvalue)
        p_better = p_rope = p_worse = math.nan
        method = "Wilcoxon signed-rank (scipy)"
        if baycomp is not None and delta.size >= 2:
            # baycomp orders its probabilities (left, rope, right) with "left" = its first argument better.
            p_better, p_rope, p_worse = baycomp.SignedRankTest.probs(delta, np.zeros_like(delta), rope=margin,
                                                                     nsamples=n_samples, random_state=seed)
            method += f" + Bayesian signed-rank, ROPE ±{margin:g} (baycomp)"
        elif baycomp is None:
            method += "; Bayesian signed-rank skipped: pip install 'qubert[stats]'"
        rows.append({"head": head, "kind": kind, "datasets": int(delta.size),
                     **{v: int(counts.get(v, 0)) for v in VERDICTS}, "median_delta": float(np.median(delta)),
                     "wilcoxon_p": wilcoxon_p, "p_head_better": float(p_better), "p_rope": float(p_rope),
                     "p_reference_better": float(p_worse), "method": method})
    return pd.DataFrame(rows, columns=list(CROSS_DATASET_COLUMNS))


BOOTSTRAP_COLUMNS = ("boot_delta", "boot_ci_low", "boot_ci_high", "boot_prob_improvement", "boot_pi_ci_low",
                     "boot_pi_ci_high", "boot_smallest_margin", "boot_replicates", "boot_rows")


def bootstrap_decisions(decisions: Any, predictions: Any, looks: Sequence[int], *, n_resamples: int = 10_000,
                        confidence: float = 0.95, alpha: float = 0.05, seed: int = 0) -> Any:
    """``decisions`` (one row per comparison, as :func:`qubert.bench.sequential.decide_look` gives)
    with the :func:`joint_bootstrap` of each comparison added as :data:`BOOTSTRAP_COLUMNS`.

    A comparison uses the replicates its decision used (index below the deciding look's count) for
    which both heads have predictions. ``predictions(row, head, replicate)`` gets the comparison's row
    of ``decisions`` (a named tuple: ``row.dataset``, ``row.mode`` when there is that column, ...), a
    head name and a replicate index, and returns a mapping with ``labels``, ``probabilities`` and
    ``test_index`` (a run's ``predictions.npz``), or None when missing. Comparisons without two such
    replicates get NaN.

    Example:
        >>> bootstrap_decisions(decisions, lambda row, head, r: read_predictions(run_dir(row.dataset, head, r)),
        ...                     looks=(10, 20, 30, 40))  # doctest: +SKIP
    """
    out = decisions.copy()
    values: dict[str, list[Any]] = {c: [] for c in BOOTSTRAP_COLUMNS}
    for row in decisions.itertuples(index=False):
        look = int(row.look) if isinstance(row.look, (int, np.integer, float)) and row.look == row.look else 0
        limit = looks[min(look, len(looks)) - 1] if look >= 1 else 0
        labels, a, b, ids = [], [], [], []
        for r in range(limit):
            pa, pb = predictions(row, row.head, r), predictions(row, row.reference, r)
            if pa is None or pb is None:
                continue
            if not np.array_equal(pa["labels"], pb["labels"]):
                raise ValueError(f"{row.dataset}: {row.head} and {row.reference} were scored on different test rows "
                                 f"in replicate {r}")
            labels.append(pa["labels"])
            a.append(np.asarray(pa["probabilities"], dtype=np.float32))
            b.append(np.asarray(pb["probabilities"], dtype=np.float32))
            ids.append(pa.get("test_index"))
        if len(labels) >= 2:
            boot = joint_bootstrap(labels, a, b, row_ids=None if any(i is None for i in ids) else ids,
                                   n_resamples=n_resamples, confidence=confidence, alpha=alpha, seed=seed)
            found = [boot.delta, boot.ci_low, boot.ci_high, boot.prob_improvement, boot.pi_ci_low, boot.pi_ci_high,
                     boot.smallest_margin, boot.n_replicates, boot.rows]
        else:
            found = [math.nan] * 7 + [len(labels), ""]
        for column, value in zip(BOOTSTRAP_COLUMNS, found):
            values[column].append(value)
    for column in BOOTSTRAP_COLUMNS:
        out[column] = values[column]
    return out
