"""Equal-budget hyperparameter search: every head of a grid gets the same number of Optuna trials.

For each (data set, mode, head), controls included, :func:`tune_grid` trains ``trials`` runs on
the tuning seed, each scored by **validation** macro-F1 (test is never looked at; with
:func:`cross_validated_score` a trial's score is the mean over k folds of the training pool). The
best trial's values then run on every seed and are scored on test.

- **What each head tries.** Trial 0 is the head's documented defaults (:func:`head_defaults`: what
  its run would use untuned), so a search can only improve on the head as shipped. Trials 1 to
  ``startup - 1`` are a scrambled Sobol sequence (:class:`scipy.stats.qmc.Sobol`) over the space:
  quasi-random points that cover every range evenly and every choice of a categorical (8 points
  put at most one learning rate in each eighth of its log range, and every one of three scalings at
  least twice). Each head's scramble is seeded by the tuning seed and the head's own name, so no
  head of a grid shares another's luck. The remaining ``trials - startup`` trials come from Optuna's
  multivariate TPE (``n_startup_trials = startup``: it models from the first trial after the
  start-up), seeded the same way. Defaults: 16 trials, 8 of them start-up, 8 TPE.
- **Same budget.** Every head, classical, quantum, control or yardstick, gets exactly ``trials``
  trials. Trials that fail (a diverged run) count against the budget. There is no pruning: every
  trial trains until its own early stopping (or the epoch cap), so the budget is counted in trials.
- **Reproducible.** The samplers are seeded, and trials are asked ``batch`` at a time: in process
  they run one after another, on Ray side by side (frozen heads' cross-validated trials too), and
  both see the same suggestions.
- **Resumable.** Every trial is a run directory under ``<output_dir>/tuning/``. A rerun replays
  finished trials from their metrics (the seeded sampler asks the same values again) and trains
  only what is missing.
- **Recorded.** ``tuning.csv`` holds one row per trial (values, where they came from: ``defaults``,
  ``sobol`` or ``tpe``, validation macro-F1, state); :func:`describe_space` says what was searched
  and :meth:`TuningConfig.describe` how.

Search spaces (``tuning.space`` in a bench config) map a TrainingConfig field to a list of choices
or a range ``{low, high, log: true, int: true}``. The spaces that apply to a head are merged in
this order: ``common``, its head type (``linear``, ``mlp``, ``quantum``, ``logreg``), then
``fine_tuned`` for modes other than ``frozen``. Keys a head entry sets itself are not searched,
and neither is a matched MLP's width (it is set by the match).

Example:
    >>> space = parse_space({"common": {"learning_rate": {"low": 1e-4, "high": 0.1, "log": True}}})
    >>> sorted(space_for(space, "linear", "frozen", fixed=()))
    ['learning_rate']
    >>> print(parse_tuning(None, run_seed=0).describe())
    16 trials per head: trial 0 the head's defaults, 7 scrambled-Sobol trials, 8 multivariate-TPE trials; no pruning
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_SPACE",
    "CrossValidation",
    "TuningConfig",
    "TuningResult",
    "cross_validated_score",
    "describe_space",
    "head_defaults",
    "parse_space",
    "parse_tuning",
    "space_for",
    "tune_grid",
]

# What is searched by default. The ranges are the usual ones for each kind of parameter (a head's
# learning rate over three decades, weight decay off to strong, MLP widths around the encoder's
# size, 1-4 circuit layers, the three angle scalings); none was fitted to a data set.
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "common": {
        "learning_rate": {"low": 1e-4, "high": 1e-1, "log": True},
        "weight_decay": [0.0, 1e-4, 1e-2],
    },
    "mlp": {"hidden_sizes": [[64], [256], [1024]]},
    "quantum": {"layers": [1, 2, 4], "scaling": ["tanh_pi_2", "tanh_pi", "pi"]},
    "logreg": {"C": {"low": 1e-3, "high": 1e3, "log": True}},
    "fine_tuned": {
        "learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
        "encoder_learning_rate": {"low": 1e-5, "high": 1e-4, "log": True},
    },
}
SPACE_GROUPS = ("common", "linear", "mlp", "quantum", "logreg", "fine_tuned")
_TUNING_KEYS = ("trials", "startup", "batch", "seed", "run_seed", "space")
DEFAULT_TRIALS = 16
DEFAULT_STARTUP = 8  # trial 0 (the defaults) + 7 Sobol points; TPE models from trial 8 on
# Bumped when the way trials are proposed changes, so finished searches of the old way are redone.
SAMPLER_VERSION = "defaults+sobol+tpe/1"
LOGREG_DEFAULT_C = 1.0  # scikit-learn's LogisticRegression default, as the yardstick uses it untuned
_EXTRA_KEYS = {"C"}  # searchable keys that are not TrainingConfig fields (the logistic-regression yardstick)


class TuningError(ValueError):
    """An invalid ``tuning`` section; the message names the key."""


@dataclass(frozen=True)
class Dimension:
    """One searched parameter: ``choices`` (categorical) or a ``low``..``high`` range."""

    name: str
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    def suggest(self, trial: Any) -> Any:
        if self.choices:
            # Optuna's categoricals take scalars only; an index also carries lists such as hidden_sizes.
            return self.choices[trial.suggest_categorical(self.name, list(range(len(self.choices))))]
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def internal(self, value: Any) -> Any:
        """``value`` as Optuna stores it (a choice's index), or ``None`` when it lies outside the space."""
        if self.choices:
            matches = [i for i, c in enumerate(self.choices) if c == value and type(c) is type(value) or _same_number(c, value)]
            return matches[0] if matches else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            return None
        return int(value) if self.integer else float(value)

    def from_unit(self, u: float) -> Any:
        """The point at fraction ``u`` in [0, 1) of the space, as Optuna stores it (log ranges in log space)."""
        if self.choices:
            return min(int(u * len(self.choices)), len(self.choices) - 1)
        if self.integer:  # equal-width bins over low..high+1 (log: over their logarithms), floored
            lo, hi = int(self.low), int(self.high)
            x = math.exp(math.log(lo) + u * (math.log(hi + 1) - math.log(lo))) if self.log else lo + u * (hi + 1 - lo)
            return min(int(math.floor(x)), hi)
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return min(math.exp(lo + u * (hi - lo)), self.high)
        return self.low + u * (self.high - self.low)

    def value(self, internal: Any) -> Any:
        """The setting for an Optuna-stored value (a choice's index becomes the choice)."""
        return self.choices[internal] if self.choices else internal

    def describe(self) -> str:
        if self.choices:
            return "{" + ", ".join(json.dumps(c) for c in self.choices) + "}"
        kind = "log-uniform" if self.log else "uniform"
        return f"{kind} [{self.low:g}, {self.high:g}]" + (" (integers)" if self.integer else "")


def _same_number(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return (isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool)
            and float(a) == float(b))


@dataclass(frozen=True)
class TuningConfig:
    """The ``tuning`` section of a bench config.

    Attributes:
        trials: trials per (data set, mode, head); 0 turns tuning off.
        startup: trials before TPE models: trial 0 (the head's defaults) and ``startup - 1``
            scrambled-Sobol points (capped at ``trials``).
        batch: trials asked from the sampler at once (run side by side on Ray).
        seed: the samplers' seed (each head's is derived from it and the head's name).
        run_seed: the training seed of every trial (default: the grid's first seed).
        space: group -> {field: :class:`Dimension`}.
    """

    trials: int = DEFAULT_TRIALS
    batch: int = 2
    seed: int = 0
    run_seed: int | None = None
    space: Mapping[str, Mapping[str, Dimension]] = dataclasses.field(default_factory=dict)
    startup: int = DEFAULT_STARTUP

    @property
    def enabled(self) -> bool:
        return self.trials > 0

    @property
    def startup_trials(self) -> int:
        """Trials before TPE: the defaults and the Sobol points (never more than ``trials``)."""
        return min(self.startup, self.trials)

    @property
    def tpe_trials(self) -> int:
        return self.trials - self.startup_trials

    def describe(self) -> str:
        """How each head's trials are proposed, in one line (for ``bench_config.yaml`` and reports)."""
        if not self.enabled:
            return "no tuning"
        parts = ["trial 0 the head's defaults"]
        if self.startup_trials > 1:
            parts.append(f"{self.startup_trials - 1} scrambled-Sobol trial{'s' * (self.startup_trials > 2)}")
        if self.tpe_trials:
            parts.append(f"{self.tpe_trials} multivariate-TPE trial{'s' * (self.tpe_trials > 1)}")
        return f"{self.trials} trial{'s' * (self.trials > 1)} per head: " + ", ".join(parts) + "; no pruning"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``bench_config.yaml``: the budget, how trials are proposed, every group's space in words."""
        return {"trials": self.trials, "startup": self.startup, "batch": self.batch, "seed": self.seed, "run_seed": self.run_seed,
                "plan": self.describe(), "space": {group: describe_space(dims) for group, dims in self.space.items()}}


def _dimension(name: str, spec: Any, where: str, fields: Mapping[str, Any]) -> Dimension:
    if name not in fields and name not in _EXTRA_KEYS:
        import difflib

        close = difflib.get_close_matches(name, [*fields, *_EXTRA_KEYS], n=1)
        raise TuningError(f"{where}: unknown search key {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise TuningError(f"{where}.{name}: empty list of choices")
        return Dimension(name, choices=tuple(spec))
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"low", "high", "log", "int"}
        if unknown:
            raise TuningError(f"{where}.{name}: unknown range key {sorted(unknown)[0]!r}; use low, high, log, int")
        low, high = spec.get("low"), spec.get("high")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
            raise TuningError(f"{where}.{name}: a range needs numbers low and high, got {low!r} and {high!r}")
        if not low < high:
            raise TuningError(f"{where}.{name}: empty range (low {low} is not below high {high})")
        log = bool(spec.get("log", False))
        if log and low <= 0:
            raise TuningError(f"{where}.{name}: a log range needs low > 0, got {low}")
        return Dimension(name, low=float(low), high=float(high), log=log, integer=bool(spec.get("int", False)))
    raise TuningError(f"{where}.{name}: expected a list of choices or a range {{low, high}}, got {spec!r}")


def parse_space(data: Mapping[str, Any] | None, where: str = "tuning.space") -> dict[str, dict[str, Dimension]]:
    """Search-space groups from config data (see the module docstring); unknown keys are errors."""
    from qubert.training import TrainingConfig

    fields = {f.name: f for f in dataclasses.fields(TrainingConfig)}
    space: dict[str, dict[str, Dimension]] = {}
    for group, entries in (data or {}).items():
        if group not in SPACE_GROUPS:
            raise TuningError(f"{where}: unknown group {group!r}; expected one of {', '.join(SPACE_GROUPS)}")
        if not isinstance(entries, Mapping):
            raise TuningError(f"{where}.{group}: expected a mapping of field: choices or range")
        space[group] = {name: _dimension(name, spec, f"{where}.{group}", fields) for name, spec in (entries or {}).items()}
    return space


def parse_tuning(data: Any, *, run_seed: int) -> TuningConfig:
    """The ``tuning`` section (``None``: the defaults, :data:`DEFAULT_SPACE`; ``trials: 0``: off)."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise TuningError("tuning: expected a mapping (trials, batch, seed, run_seed, space)")
    unknown = sorted(set(data) - set(_TUNING_KEYS))
    if unknown:
        raise TuningError(f"tuning: unknown key {unknown[0]!r}; expected {', '.join(_TUNING_KEYS)}")
    trials = data.get("trials", DEFAULT_TRIALS)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 0:
        raise TuningError(f"tuning.trials must be an integer >= 1 (or 0 to turn tuning off), got {trials!r}")
    for key in ("batch", "startup", "seed", "run_seed"):
        value = data.get(key)
        positive = key in ("batch", "startup")
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or (positive and value < 1)):
            raise TuningError(f"tuning.{key} must be an integer" + (" >= 1" if positive else "") + f", got {value!r}")
    space = {**DEFAULT_SPACE}
    if "space" in data:
        given = data["space"] or {}
        space = {**space, **given}  # a group given replaces that group's default
    return TuningConfig(
        trials=int(trials), batch=int(data.get("batch", 2)), seed=int(data.get("seed", 0)),
        run_seed=int(data.get("run_seed", run_seed)), space=parse_space(space),
        startup=int(data.get("startup", DEFAULT_STARTUP)),
    )


def space_for(space: Mapping[str, Mapping[str, Dimension]], head_type: str, mode: str, *, fixed: Sequence[str] = (),
              control: str = "") -> dict[str, Dimension]:
    """The dimensions searched for one head: groups merged in order, minus what its entry fixes."""
    groups = ["logreg"] if head_type == "logreg" else ["common", head_type]
    if mode != "frozen" and head_type != "logreg":
        groups.append("fine_tuned")
    merged: dict[str, Dimension] = {}
    for group in groups:
        merged.update(space.get(group, {}))
    skip = set(fixed) | ({"hidden_sizes"} if control == "matched_mlp" else set())
    return {k: v for k, v in merged.items() if k not in skip}


def describe_space(dimensions: Mapping[str, Dimension]) -> str:
    """``learning_rate log-uniform [0.0001, 0.1]; weight_decay {0.0, 0.0001, 0.01}``."""
    return "; ".join(f"{name} {dim.describe()}" for name, dim in dimensions.items()) or "(nothing searched)"


@dataclass
class TuningResult:
    """What the search chose for one (data set, mode, head)."""

    dataset: str
    mode: str
    head: str
    space: dict[str, Dimension]
    best_params: dict[str, Any]
    best_value: float
    trials: list[dict[str, Any]]


def head_defaults(dimensions: Mapping[str, Dimension], spec: Any) -> dict[str, Any]:
    """The values a head's run would use untuned, for each searched setting (its trial 0).

    A value the head's settings give is taken as it is (e.g. ``training.learning_rate`` of a bench
    config); otherwise the documented default of :class:`qubert.training.TrainingConfig` (the
    resolved one where it depends on the mode, e.g. learning rate 1e-2 frozen, 1e-3 otherwise), and
    ``C = 1`` for the logistic-regression yardstick.

    Args:
        dimensions: the settings searched.
        spec: the head's :class:`~qubert.bench.grid.RunSpec` (anything with ``settings`` and
            ``training_config(output_dir)``).

    Example:
        >>> from qubert.bench import parse_bench_config
        >>> from qubert.bench.grid import expand_grid
        >>> c = parse_bench_config({"datasets": ["sms_spam"], "heads": [{"head": "quantum", "qubits": 2}]}, online=False)
        >>> spec = expand_grid(c)[0]
        >>> head_defaults(space_for(c.tuning.space, "quantum", "frozen"), spec)
        {'learning_rate': 0.01, 'weight_decay': 0.0, 'layers': 2, 'scaling': 'tanh_pi_2'}
    """
    config = spec.training_config(".")
    defaults = {}
    for name in dimensions:
        given = spec.settings.get(name)
        if given is not None:
            defaults[name] = given
        elif name == "C":
            defaults[name] = LOGREG_DEFAULT_C
        else:
            defaults[name] = getattr(config, f"resolved_{name}", getattr(config, name, None))
    return defaults


def head_seed(seed: int, key: str) -> int:
    """A head's own sampler seed: the tuning seed mixed with the head's name (stable across runs and machines).

    Example:
        >>> head_seed(0, "trec/frozen/linear") == head_seed(0, "trec/frozen/linear") != head_seed(0, "trec/frozen/mlp")
        True
    """
    return (int(seed) * 1_000_003 + zlib.crc32(key.encode("utf-8"))) % 2**32


def sobol_points(n: int, d: int, seed: int) -> Any:
    """``n`` points of a scrambled Sobol sequence in [0, 1)^d (the first ``n`` of the next power of two)."""
    import numpy as np
    from scipy.stats import qmc

    if n <= 0 or d <= 0:
        return np.zeros((max(n, 0), max(d, 0)))
    try:
        engine = qmc.Sobol(d, scramble=True, rng=np.random.default_rng(seed))
    except TypeError:  # SciPy < 1.15 names the generator `seed`
        engine = qmc.Sobol(d, scramble=True, seed=np.random.default_rng(seed))
    return engine.random_base2(max(0, math.ceil(math.log2(n))))[:n]


def _key(spec: Any) -> str:
    return "/".join(str(getattr(spec, field, "")) for field in ("dataset", "mode", "head"))


def tune_grid(
    groups: Sequence[tuple[Any, dict[str, Dimension]]],
    tuning: TuningConfig,
    run_trials: Callable[[list[tuple[Any, int, dict[str, Any]]]], list[dict[str, Any] | None]],
    *,
    defaults: Sequence[Mapping[str, Any]] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[TuningResult]:
    """Tune every group with the same budget; ``run_trials`` trains a list of ``(spec, trial index,
    params)`` (in process or on Ray) and returns each one's metrics (``None`` for a failed trial).

    ``groups`` pairs a base :class:`~qubert.bench.grid.RunSpec` (its settings and the tuning seed)
    with the dimensions to search. Each group's trial 0 is its ``defaults`` (default:
    :func:`head_defaults`; a default outside the space is left to the sampler), trials 1 to
    ``startup - 1`` are scrambled-Sobol points, the rest TPE (see the module docstring). Rounds ask
    ``batch`` trials of every group, run them all, then tell the values: the same rounds in process
    and on Ray, so the same suggestions.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    log = log or (lambda line: None)
    if defaults is not None and len(defaults) != len(groups):
        raise ValueError(f"defaults: expected one mapping per group ({len(groups)}), got {len(defaults)}")
    studies = []
    for g, (spec, dims) in enumerate(groups):
        seed = head_seed(tuning.seed, _key(spec))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # multivariate, constant_liar
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=tuning.startup_trials, multivariate=True,
                                                 constant_liar=True)
            study = optuna.create_study(direction="maximize", sampler=sampler)
        origins = []
        if tuning.trials:
            given = defaults[g] if defaults is not None else head_defaults(dims, spec)
            first = {name: dims[name].internal(value) for name, value in given.items() if name in dims}
            study.enqueue_trial({k: v for k, v in first.items() if v is not None})
            origins.append("defaults")
        names = list(dims)
        for point in sobol_points(tuning.startup_trials - 1, len(names), seed):
            study.enqueue_trial({name: dims[name].from_unit(float(u)) for name, u in zip(names, point)})
            origins.append("sobol")
        studies.append((spec, dims, study, [], origins))
    done = 0
    while done < tuning.trials:
        size = min(tuning.batch, tuning.trials - done)
        asked = []
        for spec, dims, study, records, origins in studies:
            for k in range(done, done + size):
                trial = study.ask()
                params = {name: dim.suggest(trial) for name, dim in dims.items()}
                asked.append((study, records, trial, spec, k, params, origins[k] if k < len(origins) else "tpe"))
        started = time.perf_counter()
        outcomes = run_trials([(spec, k, params) for _, _, _, spec, k, params, _ in asked])
        for (study, records, trial, spec, k, params, origin), metrics in zip(asked, outcomes):
            value = None if metrics is None else metrics.get("eval_macro_f1")
            ok = isinstance(value, (int, float)) and math.isfinite(value)
            if ok:
                study.tell(trial, float(value))
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            records.append({"trial": k, "origin": origin, "params": params, "value": float(value) if ok else math.nan,
                            "state": "complete" if ok else "failed",
                            "epochs_trained": (metrics or {}).get("epochs_trained"), "stopped_by": (metrics or {}).get("stopped_by")})
        done += size
        log(f"tuning: {done}/{tuning.trials} trials of {len(studies)} head(s) done ({time.perf_counter() - started:.0f} s)")
    results = []
    for spec, dims, study, records, _ in studies:
        complete = [r for r in records if r["state"] == "complete"]
        best = max(complete, key=lambda r: (r["value"], -r["trial"])) if complete else None
        results.append(TuningResult(
            dataset=spec.dataset, mode=spec.mode, head=spec.head, space=dims,
            best_params=dict(best["params"]) if best else {}, best_value=best["value"] if best else math.nan, trials=records,
        ))
    return results


@dataclass(frozen=True)
class CrossValidation:
    """A trial's k-fold score on the training pool.

    Attributes:
        score: mean validation macro-F1 over the folds (what the trial reports as ``eval_macro_f1``).
        fold_scores: each fold's validation macro-F1.
        folds: the number of folds.
    """

    score: float
    fold_scores: tuple[float, ...]
    folds: int

    def metrics(self) -> dict[str, Any]:
        """``{"eval_macro_f1": score, "cv_folds": k, "cv_fold_scores": [...]}`` as a trial returns it."""
        return {"eval_macro_f1": self.score, "cv_folds": self.folds, "cv_fold_scores": list(self.fold_scores)}


def cross_validated_score(
    trainer: Callable[..., Sequence[Any]],
    features: Any,
    labels: Any,
    *,
    folds: int = 5,
    seed: int = 0,
) -> CrossValidation:
    """Score one trial by stratified k-fold cross-validation on the training pool (no test row is seen).

    The pool is cut into ``folds`` stratified folds (:class:`sklearn.model_selection.StratifiedKFold`,
    shuffled with ``seed``); fold j trains on the others and is scored on fold j. All folds go to
    ``trainer`` in one call, so a batched trainer trains them at once as replicates:
    ``trainer(train=[(X, y), ...], validation=[(Xv, yv), ...], seeds=[...])`` returns one result per
    fold, a number or an object with ``eval_macro_f1`` (e.g. :func:`qubert.lean.train_replicates`
    with its head and settings bound). A trainer that stops early on its validation fold scores the
    epoch it picked there: the same mild optimism for every head.

    Args:
        trainer: trains one model per fold, see above.
        features: ``(n, d)`` array or tensor of the pool's features.
        labels: ``(n,)`` integer labels.
        folds: k (at least 2; every class needs at least k rows).
        seed: shuffles the folds; fold j trains with seed ``seed + j``.

    Raises:
        ValueError: ``folds`` below 2, or a class with fewer rows than folds (the message names it).

    Example:
        >>> import numpy as np
        >>> X = np.r_[np.zeros((6, 2)), np.ones((6, 2))]; y = np.r_[np.zeros(6, int), np.ones(6, int)]
        >>> def nearest_mean(train, validation, seeds):  # a stand-in trainer: validation accuracy
        ...     return [float(((Xv.mean(1) > 0.5) == yv).mean()) for Xv, yv in validation]
        >>> cross_validated_score(nearest_mean, X, y, folds=3).score
        1.0
    """
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2, got {folds!r}")
    y = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels)
    classes, counts = np.unique(y, return_counts=True)
    if len(y) == 0:
        raise ValueError("cross-validation needs a non-empty training pool")
    if counts.min() < folds:
        rare = classes[counts.argmin()].tolist()  # a Python int or str, as the user wrote the label
        raise ValueError(f"folds: class {rare!r} has {counts.min()} row(s) in the training pool, fewer than {folds} folds")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    train, validation = [], []
    for train_idx, val_idx in splitter.split(np.zeros(len(y)), y):
        train.append((_take(features, train_idx), _take(labels, train_idx)))
        validation.append((_take(features, val_idx), _take(labels, val_idx)))
    results = trainer(train=train, validation=validation, seeds=[seed + j for j in range(folds)])
    scores = tuple(float(r if isinstance(r, (int, float)) else r.eval_macro_f1) for r in results)
    if len(scores) != folds:
        raise ValueError(f"the trainer returned {len(scores)} result(s) for {folds} folds")
    return CrossValidation(score=float(np.mean(scores)), fold_scores=scores, folds=folds)


def _take(values: Any, index: Any) -> Any:
    """Rows of a NumPy array or a torch tensor, keeping its type."""
    if hasattr(values, "index_select"):  # torch
        import torch

        return values.index_select(0, torch.as_tensor(index, dtype=torch.long, device=values.device))
    return values[index]


def trials_table(results: Sequence[TuningResult]) -> Any:
    """One row per trial of every head (what ``tuning.csv`` holds)."""
    import pandas as pd

    rows = []
    for r in results:
        for t in r.trials:
            rows.append({"dataset": r.dataset, "mode": r.mode, "head": r.head, "trial": t["trial"], "origin": t.get("origin"),
                         "params": json.dumps(t["params"], sort_keys=True), "eval_macro_f1": t["value"], "state": t["state"],
                         "epochs_trained": t["epochs_trained"], "stopped_by": t["stopped_by"],
                         "chosen": bool(r.best_params) and t["params"] == r.best_params and t["value"] == r.best_value})
    return pd.DataFrame(rows, columns=["dataset", "mode", "head", "trial", "origin", "params", "eval_macro_f1", "state",
                                       "epochs_trained", "stopped_by", "chosen"])

