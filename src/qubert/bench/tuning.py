"""Equal-budget hyperparameter search: every head of a grid gets the same number of Optuna trials.

For each (data set, mode, head), controls included, :func:`tune_grid` trains ``trials`` runs on
the tuning seed, each scored by **validation** macro-F1 (test is never looked at), with Optuna's
TPE sampler. The best trial's values then run on every seed and are scored on test.

- **Same budget.** Every head, classical, quantum, control or yardstick, gets exactly ``trials``
  trials. Trials that fail (a diverged run) count against the budget.
- **Reproducible.** The sampler is seeded, and trials are asked ``batch`` at a time: in process
  they run one after another, on Ray side by side, and both see the same suggestions.
- **Resumable.** Every trial is a run directory under ``<output_dir>/tuning/``. A rerun replays
  finished trials from their metrics (the seeded sampler asks the same values again) and trains
  only what is missing.
- **Recorded.** ``tuning.csv`` holds one row per trial (values, validation macro-F1, state) and
  :func:`describe_space` says what was searched.

Search spaces (``tuning.space`` in a bench config) map a TrainingConfig field to a list of choices
or a range ``{low, high, log: true, int: true}``. The spaces that apply to a head are merged in
this order: ``common``, its head type (``linear``, ``mlp``, ``quantum``, ``logreg``), then
``fine_tuned`` for modes other than ``frozen``. Keys a head entry sets itself are not searched,
and neither is a matched MLP's width (it is set by the match).

Example:
    >>> space = parse_space({"common": {"learning_rate": {"low": 1e-4, "high": 0.1, "log": True}}})
    >>> sorted(space_for(space, "linear", "frozen", fixed=()))
    ['learning_rate']
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_SPACE",
    "TuningConfig",
    "TuningResult",
    "describe_space",
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
_TUNING_KEYS = ("trials", "batch", "seed", "run_seed", "space")
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

    def describe(self) -> str:
        if self.choices:
            return "{" + ", ".join(json.dumps(c) for c in self.choices) + "}"
        kind = "log-uniform" if self.log else "uniform"
        return f"{kind} [{self.low:g}, {self.high:g}]" + (" (integers)" if self.integer else "")


@dataclass(frozen=True)
class TuningConfig:
    """The ``tuning`` section of a bench config.

    Attributes:
        trials: trials per (data set, mode, head); 0 turns tuning off.
        batch: trials asked from the sampler at once (run side by side on Ray).
        seed: the sampler's seed.
        run_seed: the training seed of every trial (default: the grid's first seed).
        space: group -> {field: :class:`Dimension`}.
    """

    trials: int = 8
    batch: int = 2
    seed: int = 0
    run_seed: int | None = None
    space: Mapping[str, Mapping[str, Dimension]] = dataclasses.field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.trials > 0

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``bench_config.yaml``: the budget and every group's search space in words."""
        return {"trials": self.trials, "batch": self.batch, "seed": self.seed, "run_seed": self.run_seed,
                "space": {group: describe_space(dims) for group, dims in self.space.items()}}


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
    trials = data.get("trials", 8)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 0:
        raise TuningError(f"tuning.trials must be an integer >= 1 (or 0 to turn tuning off), got {trials!r}")
    for key in ("batch", "seed", "run_seed"):
        value = data.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or (key == "batch" and value < 1)):
            raise TuningError(f"tuning.{key} must be an integer" + (" >= 1" if key == "batch" else "") + f", got {value!r}")
    space = {**DEFAULT_SPACE}
    if "space" in data:
        given = data["space"] or {}
        space = {**space, **given}  # a group given replaces that group's default
    return TuningConfig(
        trials=int(trials), batch=int(data.get("batch", 2)), seed=int(data.get("seed", 0)),
        run_seed=int(data.get("run_seed", run_seed)), space=parse_space(space),
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


def tune_grid(
    groups: Sequence[tuple[Any, dict[str, Dimension]]],
    tuning: TuningConfig,
    run_trials: Callable[[list[tuple[Any, int, dict[str, Any]]]], list[dict[str, Any] | None]],
    *,
    log: Callable[[str], None] | None = None,
) -> list[TuningResult]:
    """Tune every group with the same budget; ``run_trials`` trains a list of ``(spec, trial index,
    params)`` (in process or on Ray) and returns each one's metrics (``None`` for a failed trial).

    ``groups`` pairs a base :class:`~qubert.bench.grid.RunSpec` (its settings and the tuning seed)
    with the dimensions to search. Rounds ask ``batch`` trials of every group, run them all, then
    tell the values: the same rounds in process and on Ray, so the same suggestions.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    log = log or (lambda line: None)
    studies = []
    for spec, dims in groups:
        sampler = optuna.samplers.TPESampler(seed=tuning.seed, n_startup_trials=max(2, tuning.trials // 2), multivariate=True)
        studies.append((spec, dims, optuna.create_study(direction="maximize", sampler=sampler), []))
    done = 0
    while done < tuning.trials:
        size = min(tuning.batch, tuning.trials - done)
        asked = []
        for spec, dims, study, records in studies:
            for k in range(done, done + size):
                trial = study.ask()
                params = {name: dim.suggest(trial) for name, dim in dims.items()}
                asked.append((study, records, trial, spec, k, params))
        started = time.perf_counter()
        outcomes = run_trials([(spec, k, params) for _, _, _, spec, k, params in asked])
        for (study, records, trial, spec, k, params), metrics in zip(asked, outcomes):
            value = None if metrics is None else metrics.get("eval_macro_f1")
            ok = isinstance(value, (int, float)) and math.isfinite(value)
            if ok:
                study.tell(trial, float(value))
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            records.append({"trial": k, "params": params, "value": float(value) if ok else math.nan,
                            "state": "complete" if ok else "failed",
                            "epochs_trained": (metrics or {}).get("epochs_trained"), "stopped_by": (metrics or {}).get("stopped_by")})
        done += size
        log(f"tuning: {done}/{tuning.trials} trials of {len(studies)} head(s) done ({time.perf_counter() - started:.0f} s)")
    results = []
    for spec, dims, study, records in studies:
        complete = [r for r in records if r["state"] == "complete"]
        best = max(complete, key=lambda r: (r["value"], -r["trial"])) if complete else None
        results.append(TuningResult(
            dataset=spec.dataset, mode=spec.mode, head=spec.head, space=dims,
            best_params=dict(best["params"]) if best else {}, best_value=best["value"] if best else math.nan, trials=records,
        ))
    return results


def trials_table(results: Sequence[TuningResult]) -> Any:
    """One row per trial of every head (what ``tuning.csv`` holds)."""
    import pandas as pd

    rows = []
    for r in results:
        for t in r.trials:
            rows.append({"dataset": r.dataset, "mode": r.mode, "head": r.head, "trial": t["trial"],
                         "params": json.dumps(t["params"], sort_keys=True), "eval_macro_f1": t["value"], "state": t["state"],
                         "epochs_trained": t["epochs_trained"], "stopped_by": t["stopped_by"],
                         "chosen": bool(r.best_params) and t["params"] == r.best_params and t["value"] == r.best_value})
    return pd.DataFrame(rows, columns=["dataset", "mode", "head", "trial", "params", "eval_macro_f1", "state",
                                       "epochs_trained", "stopped_by", "chosen"])

