"""Group-sequential comparisons of two heads: decide after each look, with the error rate kept at alpha.

Replicates arrive in *looks* (e.g. after 10, 20, 30 and 40 paired replicates). After each look a
comparison is tested for a difference (H0: Δ = 0, two-sided) and for equivalence within ±margin
(Schuirmann's TOST, H0: |Δ| ≥ margin); once either is rejected the comparison is *decided* and frozen.

**The rule: alpha spending (Lan & DeMets 1983).** Each one-sided test spends its level ``a`` over the
information fractions ``t_k = n_k / looks[-1]`` with a spending function ``f(t; a)``:

- ``"obrien_fleming"``: ``f(t) = 2 - 2 Φ(z_{1-a/2} / √t)``; almost nothing is spent early, so the
  last look keeps nearly the fixed-sample level (the default: little is lost if all looks are run);
- ``"pocock"``: ``f(t) = a ln(1 + (e - 1) t)``; equal-ish boundaries, earlier stops, a costlier end.

Boundaries ``c_k`` satisfy ``P(Z_1 < c_1, ..., Z_{k-1} < c_{k-1}, Z_k ≥ c_k) = f(t_k) - f(t_{k-1})``
under H0, for the *correlated* statistics of nested samples (``corr(Z_j, Z_k) = √(t_j / t_k)``). They
are found by the recursive numerical integration of Armitage, McPherson & Rowe (1969; Jennison &
Turnbull 2000, ch. 19), written out below because no well-kept Python library does it (R's gsDesign
and rpact do; the Python ports on the registry are 0.x releases with few users). The result is
checked in the tests against published boundaries and against ``scipy.stats.multivariate_normal``.

The variance of Δ is estimated, so each look's paired t statistic (``n_k - 1`` degrees of freedom) is
mapped to the normal scale through its p-value (the "significance level" approach, Jennison &
Turnbull 2000, §11.3) before it meets the boundary. In 20,000 simulated sequences with looks after 10,
20, 30 and 40 replicates the rejection rates at the null were 0.050-0.052 (alpha = 0.05) for both
tests and both methods; with a first look at 5 replicates the approximation gives about 0.054. An
outcome-independent stopping rule (e.g. "stop when the CI's half-width ≤ margin/2") would also be
valid, but cannot stop early on a clear difference; spending can, at the cost of a wider interval at
the last look.

- **Difference:** two one-sided tests at ``alpha/2`` each; ``p_difference = 2 min(p_greater, p_less)``.
- **Equivalence:** two one-sided tests at ``alpha`` each against ``-margin`` and ``+margin`` (an
  intersection-union test); ``p_equivalence = max(p_lower, p_upper)``.

Each p-value is a *repeated p-value*: the smallest level at which the sequential test would have
rejected at any look so far. It is valid across looks (``P(p ≤ a) ≤ a`` under H0 for every ``a``),
which is what lets :func:`decide_look` feed it to Holm or Benjamini-Hochberg at every look
(:func:`family_decisions`; the construction and why it is sound are in :func:`decide_look`).
``ci_low, ci_high`` is the *repeated confidence interval* at level ``1 - alpha`` (it covers Δ at every
look at once); it excludes 0 exactly when the difference test rejects at this look.

Example:
    >>> design = SequentialDesign(looks=(10, 20), alpha=0.05, margin=0.01)
    >>> d = sequential_test([0.002, -0.001, 0.001, 0.0, 0.003, -0.002, 0.001, 0.0, 0.002, -0.001], design)
    >>> d.verdict, d.look, d.n
    ('equivalent', 1, 10)
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import numpy as np

METHODS = ("obrien_fleming", "pocock")
FAMILIES = ("confirmatory", "exploratory")
DEFAULT_LOOKS = (10, 20, 30, 40)
# Repeated p-values below this floor are reported as the floor; above _P_CEIL as 1 (both conservative).
_P_FLOOR, _P_CEIL = 1e-9, 0.9
_LEVELS = np.geomspace(_P_FLOOR, _P_CEIL, 64)  # one-sided levels the boundary table is built on
_GRID_POINTS = 401  # per look, on the score scale (odd: Simpson's rule)


class SequentialDesignError(ValueError):
    """A sequential design that cannot run; ``key`` names the offending setting (e.g. ``looks``)."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True)
class SequentialDesign:
    """When to look and how to decide.

    Args:
        looks: cumulative numbers of paired replicates after which comparisons are tested
            (strictly increasing, the first at least 2); the last is the most a comparison gets.
        alpha: the error rate of each test (difference and equivalence), across all looks.
        margin: the equivalence margin ±margin on Δ (macro-F1 units).
        method: the spending function, one of :data:`METHODS`.

    Raises:
        SequentialDesignError: on a bad setting, naming it.

    Example:
        >>> SequentialDesign(looks=(10, 20, 30, 40)).fractions
        (0.25, 0.5, 0.75, 1.0)
        >>> SequentialDesign(looks=(20, 10))
        Traceback (most recent call last):
        ...
        qubert.bench.sequential.SequentialDesignError: looks: must be strictly increasing, got [20, 10]
    """

    looks: tuple[int, ...] = DEFAULT_LOOKS
    alpha: float = 0.05
    margin: float = 0.01
    method: str = "obrien_fleming"

    def __post_init__(self) -> None:
        try:
            looks = tuple(int(n) for n in self.looks)
        except (TypeError, ValueError):
            raise SequentialDesignError("looks", f"must be a list of replicate counts, got {self.looks!r}") from None
        if not looks or any(n != m for n, m in zip(looks, self.looks)):
            raise SequentialDesignError("looks", f"must be a non-empty list of whole numbers, got {list(self.looks)!r}")
        if any(b <= a for a, b in zip(looks, looks[1:])):
            raise SequentialDesignError("looks", f"must be strictly increasing, got {list(looks)}")
        if looks[0] < 2:
            raise SequentialDesignError("looks", f"the first look needs at least 2 replicates, got {looks[0]}")
        object.__setattr__(self, "looks", looks)
        if not (isinstance(self.alpha, (int, float)) and 0 < self.alpha < 0.5):
            raise SequentialDesignError("alpha", f"must lie in (0, 0.5), got {self.alpha!r}")
        if not (isinstance(self.margin, (int, float)) and self.margin > 0 and math.isfinite(self.margin)):
            raise SequentialDesignError("margin", f"must be > 0, got {self.margin!r}")
        if self.method not in METHODS:
            raise SequentialDesignError("method", f"unknown method {self.method!r}; expected one of {', '.join(METHODS)}")

    @property
    def fractions(self) -> tuple[float, ...]:
        """Information fractions ``n_k / looks[-1]`` of the planned looks."""
        return tuple(n / self.looks[-1] for n in self.looks)


@dataclass(frozen=True)
class Decision:
    """The state of one comparison after a look (Δ = head − reference).

    Attributes:
        decided: a test rejected (``verdict`` is ``better``, ``worse`` or ``equivalent``); frozen.
        verdict: ``better`` / ``worse`` (difference), ``equivalent`` (TOST; wins when both reject),
            or ``inconclusive``.
        final: no further look is planned (decided, or the last look reached).
        delta: mean Δ over the ``n`` replicates of look ``look``.
        ci_low, ci_high: repeated ``1 - alpha`` confidence interval of Δ at that look.
        p_difference, p_equivalence: repeated p-values (valid across looks).
        n: paired replicates used; look: 1-based index of the look the values are from (the look
            that decided, for a decided comparison).
        smallest_margin: the smallest margin whose equivalence test would have rejected at that look.
        prob_improvement: share of replicates with Δ > 0 (ties count half): the probability of
            improvement P(A > B) of Bouthillier et al. (2021).
    """

    decided: bool
    verdict: str
    final: bool
    delta: float
    ci_low: float
    ci_high: float
    p_difference: float
    p_equivalence: float
    n: int
    look: int
    smallest_margin: float
    prob_improvement: float


class ComparisonSpec(NamedTuple):
    """One comparison ``head − reference`` on one data set; ``family``: one of :data:`FAMILIES`."""

    dataset: str
    head: str
    reference: str
    kind: str
    family: str = "confirmatory"


# ----------------------------------------------------------------------------------------- boundaries


def spending(fractions: Sequence[float], level: float, method: str) -> np.ndarray:
    """Cumulative one-sided error spent by each information fraction (Lan-DeMets spending functions).

    Example:
        >>> spending([0.5, 1.0], 0.025, "pocock").round(4).tolist()
        [0.0155, 0.025]
    """
    from scipy.stats import norm

    t = np.clip(np.asarray(fractions, dtype=float), 0.0, 1.0)
    if method == "obrien_fleming":
        with np.errstate(divide="ignore"):
            return 2.0 * norm.sf(norm.isf(level / 2.0) / np.sqrt(t))
    if method == "pocock":
        return level * np.log1p((math.e - 1.0) * t)
    raise SequentialDesignError("method", f"unknown method {method!r}; expected one of {', '.join(METHODS)}")


def _simpson_weights(n: int) -> np.ndarray:
    w = np.ones(n)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return w / 3.0


@functools.lru_cache(maxsize=256)
def boundaries(fractions: tuple[float, ...], level: float, method: str) -> np.ndarray:
    """Upper one-sided z boundaries ``c_k`` of a level-``level`` test at the given information fractions.

    Numerical integration of the score process ``S_k = Z_k √t_k`` (a Brownian motion in ``t``): the
    sub-density of the paths that have not crossed is carried from look to look on a grid (Simpson's
    rule), and each ``c_k`` solves "crossing probability at look k = spending increment" (Brent).
    ``inf`` where nothing is left to spend.

    Example:
        >>> boundaries((0.25, 0.5, 0.75, 1.0), 0.025, "obrien_fleming").round(2).tolist()
        [4.33, 2.96, 2.36, 2.01]
    """
    from scipy.optimize import brentq
    from scipy.special import ndtr, ndtri

    t = np.asarray(fractions, dtype=float)
    if t.ndim != 1 or not t.size or (t <= 0).any() or (np.diff(t) <= 0).any():
        raise SequentialDesignError("looks", f"information fractions must increase from above 0, got {list(fractions)}")
    increments = np.diff(spending(t, level, method), prepend=0.0)
    out = np.full(t.size, np.inf)
    simpson = _simpson_weights(_GRID_POINTS)
    grid = mass = None  # the not-yet-crossed sub-density x quadrature weights on the score scale
    for k, (tk, inc) in enumerate(zip(t, increments)):
        root = math.sqrt(tk)
        step = math.sqrt(tk - t[k - 1]) if k else root
        if k == 0:
            out[0] = -ndtri(inc) if inc > 0 else np.inf
        elif inc > 1e-15:
            crossing = lambda c, g=grid, m=mass, s=step: float(m @ ndtr((g - c * root) / s))  # noqa: E731
            out[k] = brentq(lambda c: crossing(c) - inc, -12.0, 40.0, xtol=1e-8)
        new_grid = np.linspace(-9.0 * root, min(out[k] * root, 9.0 * root), _GRID_POINTS)
        if k == 0:
            density = np.exp(-0.5 * (new_grid / root) ** 2) / (root * math.sqrt(2 * math.pi))
        else:
            kernel = np.exp(-0.5 * ((new_grid[:, None] - grid[None, :]) / step) ** 2) / (step * math.sqrt(2 * math.pi))
            density = kernel @ mass
        grid, mass = new_grid, density * simpson * (new_grid[1] - new_grid[0])
    return out


@functools.lru_cache(maxsize=256)
def _boundary_table(fractions: tuple[float, ...], method: str) -> np.ndarray:
    """``c_k(a)`` for every level in :data:`_LEVELS`: shape (levels, looks), decreasing in ``a``."""
    return np.stack([boundaries(fractions, float(a), method) for a in _LEVELS])


def repeated_pvalues(z: np.ndarray, fractions: Sequence[float], method: str,
                     planned: Sequence[float] | None = None) -> np.ndarray:
    """One-sided repeated p-values of z paths: for each path and look, the smallest level whose
    boundaries the path crossed at that look or before.

    Args:
        z: shape (..., looks): the z statistic of each path at each look (``nan`` = not observed;
            ``+inf`` = certain rejection).
        fractions: the looks' information fractions.
        method: spending function.
        planned: the planned looks' fractions when ``fractions`` are their first looks: the boundaries
            of a look depend only on the looks up to it, so one table serves every look.

    Example:
        >>> repeated_pvalues(np.array([[1.0, 2.5]]), (0.5, 1.0), "obrien_fleming").round(4).tolist()
        [[0.3189, 0.0062]]
    """
    from scipy.interpolate import PchipInterpolator
    from scipy.stats import norm

    z = np.asarray(z, dtype=float)
    fractions = tuple(float(f) for f in fractions)
    if planned is not None and tuple(float(f) for f in planned)[: len(fractions)] == fractions:
        table = _boundary_table(tuple(float(f) for f in planned), method)[:, : len(fractions)]
    else:
        table = _boundary_table(fractions, method)
    p = np.ones(z.shape)
    for k in range(z.shape[-1]):
        c, zk = table[:, k], z[..., k]
        finite = np.isfinite(c)
        pk = np.where(zk == np.inf, 0.0, 1.0)
        if finite.sum() >= 2:
            # c_k(a) decreases in a. Interpolate on the normal scale u = z_{1-a} over c (monotone PCHIP):
            # c_k is nearly linear in u (exactly u itself for a single look), so few levels suffice.
            cs, us = c[finite][::-1], norm.isf(_LEVELS[finite][::-1])
            inside = np.isfinite(zk) & (zk > cs[0])
            pk = np.where(inside, norm.sf(PchipInterpolator(cs, us)(np.clip(zk, cs[0], cs[-1]))), pk)
        p[..., k] = np.where(np.isnan(zk), 1.0, pk)
    return np.minimum.accumulate(p, axis=-1)


# ----------------------------------------------------------------------------------------- one comparison


def _z_from_t(mean: np.ndarray, se: np.ndarray, null: float, df: np.ndarray) -> np.ndarray:
    """The paired t statistic of H0: Δ = null against Δ > null, mapped to the normal scale by its p-value."""
    from scipy.stats import norm
    from scipy.stats import t as student

    with np.errstate(divide="ignore", invalid="ignore"):
        tstat = (mean - null) / se
        # All Δ equal: a certain result, or a tie on the null value itself (t = 0).
        tstat = np.where(se == 0, np.where(mean == null, 0.0, np.sign(mean - null) * np.inf), tstat)
    z = norm.isf(student.sf(tstat, np.maximum(df, 1)))
    return np.where(np.isinf(tstat), tstat, z)


def _path_statistics(differences: np.ndarray, counts: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard error and degrees of freedom of the first ``n`` rows for each ``n`` in counts.

    ``differences`` has shape (paths, n_max); nan-free. Cumulative sums keep it vectorised.
    """
    x = np.asarray(differences, dtype=float)
    n = np.asarray(counts, dtype=float)
    idx = np.asarray(counts) - 1
    s1 = np.cumsum(x, axis=-1)[..., idx]
    mean = s1 / n
    # Centred second moment (a shift by the first value keeps cancellation away when Δ are ~equal).
    centred = x - x[..., :1]
    c1 = np.cumsum(centred, axis=-1)[..., idx]
    c2 = np.cumsum(centred**2, axis=-1)[..., idx]
    var = np.maximum(c2 - c1**2 / n, 0.0) / np.maximum(n - 1, 1)
    var = np.where(np.isclose(var, 0.0, atol=1e-30), 0.0, var)
    return mean, np.sqrt(var / n), n - 1


def sequential_pvalues(differences: np.ndarray, counts: Sequence[int], design: SequentialDesign,
                       margin: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Repeated p-values of the difference and the equivalence test at each look, for many paths at once.

    Args:
        differences: shape (paths, n) or (n,): paired Δ in replicate order.
        counts: replicates seen at each look so far (increasing, each ≤ n).
        design: the design (its last look fixes the information fractions ``count / looks[-1]``).
        margin: overrides ``design.margin``.

    Returns:
        ``(p_difference, p_equivalence)``, each shaped (paths, looks) (or (looks,)).

    Example:
        >>> design = SequentialDesign(looks=(5, 10))
        >>> pd_, pe = sequential_pvalues(np.linspace(0.02, 0.04, 10), [5, 10], design)
        >>> bool(pd_[-1] < 0.05), bool(pe[-1] > 0.05)
        (True, True)
    """
    margin = design.margin if margin is None else margin
    x = np.asarray(differences, dtype=float)
    fractions = tuple(min(int(c) / design.looks[-1], 1.0) for c in counts)
    mean, se, df = _path_statistics(x, counts)
    method, planned = design.method, design.fractions
    p_greater = repeated_pvalues(_z_from_t(mean, se, 0.0, df), fractions, method, planned)
    p_less = repeated_pvalues(_z_from_t(-mean, se, 0.0, df), fractions, method, planned)
    p_difference = np.minimum(2.0 * np.minimum(p_greater, p_less), 1.0)
    p_lower = repeated_pvalues(_z_from_t(mean, se, -margin, df), fractions, method, planned)   # H0: Δ ≤ -margin
    p_upper = repeated_pvalues(_z_from_t(-mean, se, -margin, df), fractions, method, planned)  # H0: Δ ≥ +margin
    return p_difference, np.maximum(p_lower, p_upper)


def _nominal_quantile(fractions: tuple[float, ...], level: float, method: str, df: float,
                      planned: tuple[float, ...] = ()) -> float:
    """The t quantile the repeated interval uses at the last of ``fractions`` (one-sided ``level``)."""
    from scipy.stats import norm
    from scipy.stats import t as student

    if planned[: len(fractions)] == fractions:  # a look's boundary depends only on the looks up to it
        c = boundaries(planned, float(level), method)[len(fractions) - 1]
    else:
        c = boundaries(fractions, float(level), method)[-1]
    if not np.isfinite(c):
        return math.inf
    return float(student.isf(norm.sf(c), max(df, 1)))


def _look_counts(n: int, design: SequentialDesign) -> list[int]:
    counts = [m for m in design.looks if m <= n]
    if not counts or counts[-1] != n:
        counts.append(n)  # an unplanned look (e.g. a run missing): Lan-DeMets spending allows it
    return counts


def sequential_test(differences: Sequence[float], design: SequentialDesign, alpha: float | None = None) -> Decision:
    """Test paired differences Δ_r (in replicate order) at every look of ``design`` they reach.

    The looks are the planned counts up to ``len(differences)`` (and ``len(differences)`` itself when
    it is not a planned count). The comparison is decided at the first look where the difference
    (``p_difference ≤ alpha``) or the equivalence test (``p_equivalence ≤ alpha``) rejects; the
    returned values are those of that look (frozen), else of the last one.

    Args:
        differences: paired Δ_r = score(head, r) − score(reference, r); at least 2, no NaN.
        design: looks, alpha, margin and method.
        alpha: overrides ``design.alpha`` (e.g. a multiplicity-adjusted level).

    Example:
        >>> design = SequentialDesign(looks=(10, 20))
        >>> sequential_test(np.full(10, 0.03) + np.linspace(-0.01, 0.01, 10), design).verdict
        'better'
    """
    x = np.asarray(differences, dtype=float)
    if x.ndim != 1 or x.size < 2:
        raise SequentialDesignError("replicates", f"need at least 2 paired replicates, got {x.size}")
    if np.isnan(x).any():
        raise ValueError("differences contain NaN")
    alpha = design.alpha if alpha is None else float(alpha)
    counts = _look_counts(x.size, design)
    p_difference, p_equivalence = sequential_pvalues(x, counts, design)
    decided = (p_difference <= alpha) | (p_equivalence <= alpha)
    k = int(np.argmax(decided)) if decided.any() else len(counts) - 1
    return _decision(x, counts[: k + 1], design, alpha, float(p_difference[k]), float(p_equivalence[k]),
                     bool(decided[k]))


def _decision(x: np.ndarray, counts: Sequence[int], design: SequentialDesign, alpha: float, p_difference: float,
              p_equivalence: float, decided: bool, look: int | None = None, margin_alpha: float | None = None) -> Decision:
    n = int(counts[-1])
    data = x[:n]
    mean = float(data.mean())
    sd = float(data.std(ddof=1))
    se = sd / math.sqrt(n) if sd > 1e-15 * max(1.0, abs(mean)) else 0.0
    fractions = tuple(min(c / design.looks[-1], 1.0) for c in counts)
    planned = design.fractions
    q_two = _nominal_quantile(fractions, alpha / 2, design.method, n - 1, planned) if se else 0.0
    q_one = _nominal_quantile(fractions, margin_alpha or alpha, design.method, n - 1, planned) if se else 0.0
    if p_equivalence <= alpha:
        verdict = "equivalent"
    elif p_difference <= alpha:
        verdict = "better" if mean > 0 else "worse"
    else:
        verdict = "inconclusive"
    return Decision(
        decided=decided, verdict=verdict if decided else "inconclusive",
        final=decided or n >= design.looks[-1], delta=mean, ci_low=mean - q_two * se, ci_high=mean + q_two * se,
        p_difference=p_difference, p_equivalence=p_equivalence, n=n,
        look=look if look is not None else _look_number(n, design),
        smallest_margin=abs(mean) + q_one * se, prob_improvement=probability_of_improvement(data),
    )


def _look_number(n: int, design: SequentialDesign) -> int:
    """1-based index of the look ``n`` replicates belong to (the first planned look ≥ n)."""
    return int(np.searchsorted(design.looks, n)) + 1


def probability_of_improvement(differences: Sequence[float]) -> float:
    """P(A > B) estimated from paired differences: the share with Δ > 0, ties counted half.

    Example:
        >>> probability_of_improvement([0.1, -0.2, 0.0, 0.3])
        0.625
    """
    x = np.asarray(differences, dtype=float)
    return float(((x > 0).sum() + 0.5 * (x == 0).sum()) / x.size) if x.size else math.nan


# ----------------------------------------------------------------------------------------- families


def holm_exclusive(p_difference: Sequence[float], p_equivalence: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down over the 2M hypotheses of M comparisons (difference and equivalence each),
    using that at most one of a comparison's two nulls can be true (Δ = 0 and |Δ| ≥ margin exclude
    each other; Shaffer 1986): at each step the divisor is the number of comparisons that still have
    an unrejected hypothesis, not the number of hypotheses. This bounds the chance of *any* false
    verdict (better, worse or equivalent) in the family by alpha. NaN p-values take no part.

    Proof sketch: at the first false rejection every true null is still open, each in its own
    comparison, so the divisor is at least the number of true nulls T and some true null has
    p ≤ alpha/T, which has probability ≤ alpha (Bonferroni).

    Returns:
        Adjusted ``(p_difference, p_equivalence)``.

    Example:
        >>> [a.round(3).tolist() for a in holm_exclusive([0.01, 0.5], [0.9, 0.02])]
        [[0.02, 1.0], [1.0, 0.04]]
    """
    pd_ = np.asarray(p_difference, dtype=float)
    pe = np.asarray(p_equivalence, dtype=float)
    m = pd_.size
    p = np.concatenate([pd_, pe])
    owner = np.concatenate([np.arange(m), np.arange(m)])
    valid = ~np.isnan(p)
    open_hypotheses = np.bincount(owner[valid], minlength=m)
    adjusted = np.full(p.size, np.nan)
    running = 0.0
    for i in np.argsort(np.where(valid, p, np.inf), kind="stable")[: int(valid.sum())]:
        divisor = int((open_hypotheses > 0).sum())
        running = max(running, min(1.0, divisor * p[i]))
        adjusted[i] = running
        open_hypotheses[owner[i]] -= 1
    return adjusted[:m], adjusted[m:]


def benjamini_hochberg(p_difference: Sequence[float], p_equivalence: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg over all 2M difference and equivalence p-values of a family (false discovery
    rate of the verdicts, under the usual positive dependence); ``scipy.stats.false_discovery_control``.

    Example:
        >>> [a.round(3).tolist() for a in benjamini_hochberg([0.01, 0.5], [0.9, 0.02])]
        [[0.04, 0.667], [0.9, 0.04]]
    """
    from scipy.stats import false_discovery_control

    p = np.concatenate([np.asarray(p_difference, dtype=float), np.asarray(p_equivalence, dtype=float)])
    m = p.size // 2
    out = np.full(p.size, np.nan)
    valid = ~np.isnan(p)
    if valid.any():
        out[valid] = false_discovery_control(p[valid], method="bh")
    return out[:m], out[m:]


DECISION_COLUMNS = ("dataset", "head", "reference", "kind", "family", *(f.name for f in fields(Decision)),
                    "p_difference_adjusted", "p_equivalence_adjusted", "open", "replicates_available")


# Long: the docstring carries the argument for correcting at every look with frozen decisions.
def decide_look(results: Any, comparisons: Sequence[ComparisonSpec | tuple], design: SequentialDesign, *,
                looks_done: int | None = None, metric: str = "test_macro_f1") -> Any:
    """Every comparison's state after the looks done so far, with the family corrections applied.

    Stateless and deterministic: it replays looks ``1..looks_done`` from ``results`` alone, so a
    resumed bench gets the same decisions. At look k a comparison uses the replicates with index
    ``< looks[k-1]`` that both heads finished (paired by ``replicate``). Per family at each look:

    - ``confirmatory``: :func:`holm_exclusive` over the comparisons' repeated p-values;
    - ``exploratory``: :func:`benjamini_hochberg` over them.

    A comparison whose adjusted difference or equivalence p-value is ≤ alpha is decided at that look
    and frozen (its p-values and estimates stay those of that look). Why this is sound: a repeated
    p-value only falls from look to look, and a frozen one is never below the value it would reach if
    its comparison went on, so every false verdict at any look implies one by the correction applied
    to the (hypothetical) p-values at the last look, which are valid p-values: Holm's family-wise
    error stays ≤ alpha over all looks together (BH's false discovery rate likewise, for the final
    decisions).

    Args:
        results: a table with columns ``dataset, head, replicate`` (or ``seed``) and ``metric``.
        comparisons: :class:`ComparisonSpec` (or tuples of its fields).
        design: the sequential design.
        looks_done: how many looks are complete; default: every look whose replicate indices
            ``0..looks[k]-1`` appear in ``results`` for the data set (the runner should pass it).
        metric: the score compared.

    Returns:
        One row per comparison: :data:`DECISION_COLUMNS` (``open``: still needs replicates;
        ``replicates_available``: pairs present in ``results``). ``smallest_margin`` is certified at
        the level the family's correction grants a comparison whatever the others show: alpha/M for
        Holm over M confirmatory comparisons, alpha/2M for BH over the 2M exploratory p-values. The
        CI is the comparison's own repeated ``1 - alpha`` interval (not multiplicity-adjusted).

    Example:
        >>> decide_look(results, [ComparisonSpec("sst2", "quantum_q4", "mlp", "matched_mlp")],
        ...             SequentialDesign())  # doctest: +SKIP
    """
    import pandas as pd

    specs = [c if isinstance(c, ComparisonSpec) else ComparisonSpec(*c) for c in comparisons]
    for spec in specs:
        if spec.family not in FAMILIES:
            raise SequentialDesignError("family", f"unknown family {spec.family!r}; expected one of {', '.join(FAMILIES)}")
    if looks_done is not None and not 0 <= looks_done <= len(design.looks):
        raise SequentialDesignError("looks_done", f"must lie in 0..{len(design.looks)}, got {looks_done}")
    if "replicate" not in results and "seed" in results:  # results.csv of a grid names the replicate "seed"
        results = results.rename(columns={"seed": "replicate"})
    scores = {key: g.set_index("replicate")[metric].astype(float)
              for key, g in results.groupby(["dataset", "head"], sort=False)} if len(results) else {}
    paired = []
    for spec in specs:
        a, b = scores.get((spec.dataset, spec.head)), scores.get((spec.dataset, spec.reference))
        if a is None or b is None:
            paired.append((np.array([], dtype=int), np.array([])))
            continue
        common = a.index.intersection(b.index).sort_values()
        diff = (a.loc[common] - b.loc[common]).to_numpy()
        keep = ~np.isnan(diff)
        paired.append((np.asarray(common, dtype=int)[keep], diff[keep]))
    if looks_done is None:
        seen = {d: int(g["replicate"].max()) + 1 for d, g in results.groupby("dataset")} if len(results) else {}
        looks_done = sum(1 for m in design.looks if all(seen.get(s.dataset, 0) >= m for s in specs)) if specs else 0

    # The level at which a smallest certifiable margin is certified whatever the rest of the family shows:
    # Holm never divides by more than the family's comparisons, BH never needs less than Bonferroni over 2M.
    family_size = {f: sum(s.family == f for s in specs) for f in FAMILIES}
    certifying = [design.alpha / (family_size[s.family] * (1 if s.family == "confirmatory" else 2)) for s in specs]
    # Each comparison's repeated p-values at every look done (NaN before it has 2 pairs).
    n_specs = len(specs)
    path_d = np.full((n_specs, looks_done), np.nan)
    path_e = np.full((n_specs, looks_done), np.nan)
    look_counts: list[list[int]] = []
    for i, (replicates, diff) in enumerate(paired):
        at_look = [int((replicates < m).sum()) for m in design.looks[:looks_done]]
        look_counts.append(at_look)
        counts = sorted(set(at_look) - {0, 1})
        if counts:
            p_diff, p_equiv = sequential_pvalues(diff, counts, design)
            for k, c in enumerate(at_look):
                if c >= 2:
                    path_d[i, k], path_e[i, k] = p_diff[counts.index(c)], p_equiv[counts.index(c)]
    decided_at, adjusted = family_decisions(path_d, path_e, [s.family for s in specs], design.alpha)
    state: list[Decision | None] = [None] * n_specs
    for i, (replicates, diff) in enumerate(paired):
        observed = [k for k in range(looks_done) if not np.isnan(path_d[i, k])]
        if not observed:
            continue
        k = decided_at[i] - 1 if decided_at[i] else observed[-1]
        counts = sorted(set(look_counts[i][: k + 1]) - {0, 1})
        s = _decision(diff, counts, design, design.alpha, float(path_d[i, k]), float(path_e[i, k]), False,
                      look=k + 1, margin_alpha=certifying[i])
        if decided_at[i]:
            d_adj, e_adj = adjusted[i]
            verdict = "equivalent" if e_adj <= design.alpha else ("better" if s.delta > 0 else "worse")
            s = _replace(s, decided=True, final=True, verdict=verdict)
        state[i] = s
    rows = []
    last_look_done = looks_done >= len(design.looks)
    for i, spec in enumerate(specs):
        s = state[i]
        available = int(paired[i][0].size)
        if s is None:
            values = {f.name: math.nan for f in fields(Decision)}
            values.update(decided=False, verdict="inconclusive", final=last_look_done, n=available, look=0)
        else:
            values = asdict(_replace(s, final=s.decided or last_look_done))
        rows.append({**spec._asdict(), **values, "p_difference_adjusted": adjusted[i, 0],
                     "p_equivalence_adjusted": adjusted[i, 1], "open": not values["final"],
                     "replicates_available": available})
    return pd.DataFrame(rows, columns=list(DECISION_COLUMNS))


def family_decisions(p_difference: np.ndarray, p_equivalence: np.ndarray, families: Sequence[str],
                     alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Replay the looks of a grid: the look at which each comparison is decided, with its adjusted p-values.

    At look k each family is corrected (:func:`holm_exclusive` for ``confirmatory``,
    :func:`benjamini_hochberg` for ``exploratory``) over its comparisons' current repeated p-values, a
    decided comparison taking part with the p-values of the look that decided it (frozen). A comparison
    whose adjusted difference or equivalence p-value is ≤ alpha is decided at look k.

    Args:
        p_difference, p_equivalence: shape (comparisons, looks): repeated p-values (NaN: no data yet).
        families: per comparison, one of :data:`FAMILIES`.
        alpha: the family's error rate.

    Returns:
        ``(decided_at, adjusted)``: the 1-based deciding look (0: undecided) per comparison, and its
        adjusted ``(difference, equivalence)`` p-values at that look (else at the last look).

    Example:
        >>> decided_at, adjusted = family_decisions(np.array([[0.2, 0.001], [0.5, 0.4]]),
        ...                                         np.array([[0.9, 0.9], [0.03, 0.01]]),
        ...                                         ["confirmatory", "confirmatory"], 0.05)
        >>> decided_at.tolist()
        [2, 2]
    """
    p_difference, p_equivalence = np.asarray(p_difference, dtype=float), np.asarray(p_equivalence, dtype=float)
    n, looks = p_difference.shape
    decided_at = np.zeros(n, dtype=int)
    adjusted = np.full((n, 2), np.nan)
    current = np.full((n, 2), np.nan)
    members = {f: np.array([i for i, g in enumerate(families) if g == f], dtype=int) for f in FAMILIES}
    for k in range(looks):
        open_ = decided_at == 0
        current[open_, 0], current[open_, 1] = p_difference[open_, k], p_equivalence[open_, k]
        for family, correct in (("confirmatory", holm_exclusive), ("exploratory", benjamini_hochberg)):
            index = members[family]
            if not index.size:
                continue
            adj_d, adj_e = correct(current[index, 0], current[index, 1])
            still = open_[index]
            adjusted[index[still], 0], adjusted[index[still], 1] = adj_d[still], adj_e[still]
            newly = still & ((adj_d <= alpha) | (adj_e <= alpha))
            decided_at[index[newly]] = k + 1
    return decided_at, adjusted


def _replace(decision: Decision, **changes: Any) -> Decision:
    return Decision(**{**asdict(decision), **changes})


def type_one_error(design: SequentialDesign, *, true_delta: float = 0.0, sd: float = 0.01, n_sequences: int = 4000,
                   seed: int = 0, test: str = "difference") -> float:
    """Simulated rejection rate of one test over all looks (normal Δ_r with mean ``true_delta``).

    With ``true_delta`` on the null (0 for ``difference``, ±margin for ``equivalence``) this is the
    test's type-I error, which the design keeps at ``design.alpha``.

    Example:
        >>> design = SequentialDesign(looks=(10, 20, 30, 40), margin=0.01)
        >>> type_one_error(design, true_delta=0.01, test="equivalence", n_sequences=2000) <= 0.06
        True
    """
    if test not in ("difference", "equivalence"):
        raise ValueError(f"test must be 'difference' or 'equivalence', got {test!r}")
    rng = np.random.default_rng(seed)
    x = rng.normal(true_delta, sd, size=(n_sequences, design.looks[-1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p_difference, p_equivalence = sequential_pvalues(x, list(design.looks), design)
    p = p_difference if test == "difference" else p_equivalence
    return float((p[:, -1] <= design.alpha).mean())
