"""Replicates in looks: train what is open, test every open comparison, stop what is decided.

For each look ``n`` (``looks:`` in the config, e.g. 10, 20, 30, 40) every head that still has an
undecided comparison trains replicates ``0..n-1`` (those not finished yet); then every comparison
whose two heads have all ``n`` replicates is tested with the sequential rule
(:func:`qubert.bench.sequential.decide_look`). A decided comparison keeps the verdict of the look
that decided it; a head all of whose comparisons are decided trains no more replicates.

Comparisons, per data set and mode, for every quantum head ``q`` (not a control):

- ``matched_mlp``, ``no_entanglement``, ``frozen_circuit``: ``q`` against its control of that kind;
- ``best_classical``: ``q`` against the classical head (linear, MLP, logistic regression) with the best
  validation macro-F1 (from the tuning when every classical head was tuned, else the mean over the
  first look's replicates: validation rows only, chosen before any test score is read);
- ``classical``: ``q`` against each other classical head (always exploratory).

Kinds listed in the config's ``confirmatory:`` form the confirmatory family; the rest are
exploratory. Frozen heads train through :func:`qubert.bench.frozen.run_frozen_task` on the pools'
cached features (one task per data set, head and look; a Ray task with ``--ray``); other modes run
each replicate through :func:`qubert.training.run_training` on the replicate's rows.

Because every decision is recomputed from the stored replicates, a rerun redoes nothing that
finished and reaches the same decisions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qubert.bench.config import BenchConfig
from qubert.bench.data import DataEntry, Pools, build_pools, encode_pool, stratified_sample
from qubert.bench.frozen import FrozenTask, ReplicateOutcome, cross_validate_head, run_frozen_task
from qubert.bench.grid import RunSpec
from qubert.bench.predictions import write_predictions
from qubert.bench.replicates import ReplicateDraw, draw_replicate
from qubert.bench.results import RUN_MARKER, collect_results, is_finished, write_json_sorted
from qubert.files import write_text

__all__ = ["DECISIONS_FILE", "POOLS_FILE", "Comparison", "LookRunner", "plan_comparisons", "read_test_draws"]

DECISIONS_FILE = "decisions.csv"
POOLS_FILE = "pools.json"  # per data set: pool sizes and test rows per replicate (what a verdict generalises to)
CLASSICAL = ("linear", "mlp", "logreg")


@dataclass(frozen=True)
class Comparison:
    """``head`` minus ``reference`` on one data set and mode; ``kind`` says why, ``family`` how it is corrected."""

    dataset: str
    mode: str
    head: str
    reference: str
    kind: str
    family: str

    @property
    def cell(self) -> str:
        return self.dataset if self.mode == "frozen" else f"{self.dataset}/{self.mode}"


def plan_comparisons(specs: Sequence[RunSpec], config: BenchConfig, best_classical: Mapping[tuple[str, str], str]
                     ) -> list[Comparison]:
    """Every comparison of the grid (see the module docstring); ``best_classical``: (dataset, mode) -> head."""
    heads: dict[tuple[str, str], dict[str, RunSpec]] = defaultdict(dict)
    for spec in specs:
        heads[(spec.dataset, spec.mode)].setdefault(spec.head, spec)
    out = []
    for (dataset, mode), by_head in heads.items():
        classical = [h for h, s in by_head.items() if s.head_type in CLASSICAL and not s.control]
        best = best_classical.get((dataset, mode))
        for head, spec in by_head.items():
            if spec.head_type != "quantum" or spec.control:
                continue
            for control in by_head.values():
                if control.base_head == head and control.control:
                    out.append(_comparison(config, dataset, mode, head, control.head, control.control))
            if best is not None:
                out.append(_comparison(config, dataset, mode, head, best, "best_classical"))
            for other in classical:
                if other != best:
                    out.append(Comparison(dataset, mode, head, other, "classical", "exploratory"))
    return out


def _comparison(config: BenchConfig, dataset: str, mode: str, head: str, reference: str, kind: str) -> Comparison:
    family = "confirmatory" if kind in config.confirmatory else "exploratory"
    return Comparison(dataset, mode, head, reference, kind, family)


class LookRunner:
    """Runs a grid's replicates look by look (see the module docstring).

    Args:
        config: the bench config.
        specs: the grid's runs (tuned settings in place).
        execute_all: ``(specs, where, on_done, overrides)`` runs non-frozen specs (in process or on Ray).
        on_done: ``(spec, metrics, error, seconds)`` after every replicate.
        use_ray: frozen tasks go to Ray (running already).
        lean: frozen heads train on the pools' cached features; False: every replicate goes through
            ``execute_all`` (a custom ``run_fn``) on files holding its rows.
        log: one line per event.
        tuned_eval: (dataset, mode, head) -> best validation macro-F1 of its tuning (to pick the best classical head).
    """

    def __init__(self, config: BenchConfig, specs: Sequence[RunSpec], *, execute_all: Callable, on_done: Callable,
                 use_ray: bool = False, log: Callable[[str], None] = lambda line: None,
                 tuned_eval: Mapping[tuple[str, str, str], float] | None = None, lean: bool = True) -> None:
        self.config, self.specs, self.execute_all, self.on_done = config, list(specs), execute_all, on_done
        self.use_ray, self.log, self.tuned_eval, self.lean = use_ray, log, dict(tuned_eval or {}), lean
        self.output_dir = Path(config.output_dir)
        self.entries = {e["dataset"]: e for e in config.datasets}
        self._pools: dict[str, Pools] = {}
        self._features: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self._cv_rows: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self.latest: dict[Comparison, dict[str, Any]] = {}

    # ---------------------------------------------------------------- data
    def share_data(self, other: "LookRunner") -> None:
        """Use the pools and features ``other`` already built (the tuning's)."""
        self._pools, self._features, self._cv_rows = other._pools, other._features, other._cv_rows

    def pools(self, dataset: str) -> Pools:
        if dataset not in self._pools:
            entry = DataEntry(**self.entries[dataset]["data"])
            pool = self.config.pool
            drop_empty = bool({**self.config.training, **self.entries[dataset]}.get("drop_empty", False))
            self._pools[dataset] = pools = build_pools(entry, train_size=pool["train"], test_size=pool["test"],
                                                       seed=pool["seed"], drop_empty=drop_empty)
            test_draw = self.config.draws["test"]
            whole = test_draw is None or test_draw >= len(pools.test_labels)
            recorded = _read_json(self.output_dir / POOLS_FILE)
            recorded[dataset] = {"train_pool": len(pools.train_labels), "test_pool": len(pools.test_labels),
                                 "test_pool_is_whole_test_split": pools.test_is_whole_split,
                                 "test_rows_per_replicate": None if whole else int(test_draw)}
            write_json_sorted(self.output_dir / POOLS_FILE, recorded)
        return self._pools[dataset]

    def draw(self, dataset: str, replicate: int) -> ReplicateDraw:
        pools, draws = self.pools(dataset), self.config.draws
        return draw_replicate(pools.train_labels, pools.test_labels, replicate, n_train=draws["train"],
                              n_validation=draws["validation"], n_test=draws["test"], seed=self.config.pool["seed"])

    def features(self, spec: RunSpec) -> tuple[np.ndarray, np.ndarray]:
        """The training and test pools' frozen features for this spec's encoder settings (encoded once)."""
        key = _features_key(spec)
        if key not in self._features:
            pools = self.pools(spec.dataset)
            start = time.perf_counter()
            settings = {**spec.settings, "progress": spec.settings.get("progress", False)}
            train = encode_pool(pools.train_texts, pools.train_labels, settings, split="train", label_names=pools.label_names)
            test = encode_pool(pools.test_texts, pools.test_labels, settings, split="test", label_names=pools.label_names)
            self._features[key] = (train, test)
            self.log(f"{spec.dataset}: pools of {len(train)} training and {len(test)} test rows encoded or read from "
                     f"the cache ({time.perf_counter() - start:.1f} s)")
        return self._features[key]

    def cross_validate(self, spec: RunSpec, folds: int = 5) -> dict[str, Any]:
        """A frozen tuning trial: k-fold cross-validated macro-F1 on a stratified subset of the training
        pool the size of one replicate's training + validation draws (no test row is seen)."""
        function, args, _ = self._cv_job(spec, folds)
        return function(*args)

    def cross_validate_all(self, specs: Sequence[RunSpec], on_result: Callable, folds: int = 5) -> None:
        """:meth:`cross_validate` every spec (one tuning round's frozen trials): in process one after
        another, or side by side as Ray tasks with ``use_ray`` (each data set's rows shipped once).
        ``on_result(spec, metrics, error, seconds)`` follows each trial; a trial that raises gives
        its one-line error (the same in process and on Ray) and the others go on.

        Example:
            >>> runner.cross_validate_all(trials, lambda spec, metrics, error, s: print(spec.run_id, error))  # doctest: +SKIP
        """
        jobs, members = [], []
        for spec in specs:
            start = time.perf_counter()
            try:
                jobs.append(self._cv_job(spec, folds))
            except Exception as err:  # noqa: BLE001 - e.g. a data set that cannot be read: this trial fails
                on_result(spec, None, _one_line(err), time.perf_counter() - start)
                continue
            members.append(spec)
        self._dispatch(jobs, lambda i, metrics, error, seconds: on_result(members[i], metrics, error, seconds))

    def _cv_job(self, spec: RunSpec, folds: int) -> tuple[Callable, tuple, dict[str, float]]:
        pools = self.pools(spec.dataset)
        key = _features_key(spec)
        if key not in self._cv_rows:  # the same rows for every trial: one array per data set to ship
            train_x, _ = self.features(spec)
            draws = self.config.draws
            size = None if draws["train"] is None or draws["validation"] is None else draws["train"] + draws["validation"]
            rows = stratified_sample(pools.train_labels, size, np.random.default_rng([self.config.pool["seed"], 3]))
            self._cv_rows[key] = (train_x[rows], pools.train_labels[rows])
        x, y = self._cv_rows[key]
        args = (spec.head_type, dict(spec.settings), pools.n_classes, x, y, folds, spec.seed, int(spec.resources.num_cpus or 1))
        return cross_validate_head, args, spec.resources.ray_options()

    def _dispatch(self, jobs: Sequence[tuple[Callable, tuple, Mapping[str, Any]]], on_result: Callable) -> None:
        """``function(*args)`` of every ``(function, args, ray options)`` job, in process in order or
        as Ray tasks; ``on_result(index, value, error, seconds)`` after each."""
        if self.use_ray:
            _run_on_ray(jobs, on_result)
            return
        for i, (function, args, _) in enumerate(jobs):
            on_result(i, *_catching(function, *args))

    # ---------------------------------------------------------------- the looks
    def run(self) -> Any:
        """Run every look; returns the decisions table (also written to ``decisions.csv``)."""
        import pandas as pd

        groups = {s.group for s in self.specs}
        open_groups = set(groups)
        decided: dict[Comparison, dict[str, Any]] = {}
        comparisons: list[Comparison] | None = None
        rows: list[dict[str, Any]] = []
        for k, n in enumerate(self.config.looks):
            replicates = set(self.config.seeds[:n])
            todo = [s for s in self.specs if s.group in open_groups and s.seed in replicates
                    and not is_finished(s, self.output_dir)]
            skipped = len(groups) - len(open_groups)
            self.log(f"look {k + 1}/{len(self.config.looks)}: {n} replicates; {len(open_groups)} head(s) open"
                     + (f", {skipped} stopped" if skipped else "") + f"; {len(todo)} run(s) to do")
            self._train(todo)
            results = collect_results(self.specs, self.output_dir)
            if comparisons is None:
                comparisons = plan_comparisons(self.specs, self.config, self._best_classical(results))
            rows = self._decide(results, comparisons, decided, k, n)
            open_groups = {g for g in open_groups if self._still_needed(g, comparisons, decided)}
            if not open_groups:
                break
        table = pd.DataFrame(rows)
        write_text(self.output_dir / DECISIONS_FILE, table.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
        return table

    def _still_needed(self, group: str, comparisons: Sequence[Comparison], decided: Mapping[Comparison, Any]) -> bool:
        dataset, mode, head = group.split("/", 2)
        involved = [c for c in comparisons if c.dataset == dataset and c.mode == mode and head in (c.head, c.reference)]
        return any(c not in decided for c in involved)

    def _best_classical(self, results: Any) -> dict[tuple[str, str], str]:
        """(dataset, mode) -> the classical head with the best validation macro-F1 (tuning, else first look)."""
        out = {}
        first = set(self.config.seeds[: self.config.looks[0]])
        by_cell: dict[tuple[str, str], list[RunSpec]] = defaultdict(list)
        for spec in self.specs:
            if spec.head_type in CLASSICAL and not spec.control and spec.seed == self.config.seeds[0]:
                by_cell[(spec.dataset, spec.mode)].append(spec)
        for cell, specs in by_cell.items():
            tuned = [self.tuned_eval.get((*cell, s.head)) for s in specs]
            if all(v is not None for v in tuned):
                scores = dict(zip((s.head for s in specs), tuned))
            else:
                block = results[(results["dataset"] == cell[0]) & (results["mode"] == cell[1]) & results["seed"].isin(first)]
                scores = block.groupby("head")["eval_macro_f1"].mean().to_dict()
            scores = {h: v for h, v in scores.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
            if scores:
                out[cell] = max(scores, key=lambda h: (scores[h], h))
        return out

    def _decide(self, results: Any, comparisons: Sequence[Comparison], decided: dict[Comparison, dict[str, Any]],
                k: int, n: int) -> list[dict[str, Any]]:
        """Replay looks ``1..k+1`` over the stored replicates (:func:`decide_look` is stateless); a
        comparison decided at an earlier look keeps that look's verdict. One row per comparison."""
        if not comparisons:
            return []
        frame = results[results["seed"].isin(set(self.config.seeds[:n]))].copy()
        frame["replicate"] = [self.config.seeds.index(int(s)) for s in frame["seed"]]
        frame["dataset"] = [d if m == "frozen" else f"{d}/{m}" for d, m in zip(frame["dataset"], frame["mode"])]
        table = decide_comparisons(frame, comparisons, self.config, looks_done=k + 1)
        rows = []
        for c, row in zip(comparisons, table.to_dict("records")):
            row = {**_identity(c), **row}
            if row.get("decided"):
                decided[c] = row
            rows.append(row)
        return rows

    def _train(self, todo: Sequence[RunSpec]) -> None:
        frozen = [s for s in todo if s.mode == "frozen" and self.lean]
        other = [s for s in todo if s not in frozen]
        if frozen:
            self._train_frozen(frozen)
        if other:
            self._train_other(other)

    def _train_frozen(self, specs: Sequence[RunSpec]) -> None:
        by_group: dict[str, list[RunSpec]] = defaultdict(list)
        for spec in specs:
            by_group[spec.group].append(spec)
        tasks = []
        for group, members in by_group.items():
            first = members[0]
            train_x, test_x = self.features(first)
            pools = self.pools(first.dataset)
            tasks.append((members, FrozenTask(
                head_type=first.head_type, settings={k: v for k, v in first.settings.items() if k != "seed"},
                n_classes=pools.n_classes, train_features=train_x, train_labels=pools.train_labels,
                test_features=test_x, test_labels=pools.test_labels,
                draws=[self.draw(first.dataset, s.seed) for s in members],
                num_threads=max(1, int(first.resources.num_cpus or 1)))))
        # Ray resolves object references given as arguments, not those inside a dataclass: the
        # pool features travel as arguments (one object-store copy of each pool).
        jobs = [(_frozen_task_with, (dataclasses.replace(task, train_features=None, test_features=None),
                                     task.train_features, task.test_features), members[0].resources.ray_options())
                for members, task in tasks]

        def on_result(i: int, outcomes: Any, error: str | None, seconds: float) -> None:
            members = tasks[i][0]
            if error is not None:
                for spec in members:
                    self.on_done(spec, None, error, seconds)
            else:
                self._record(members, outcomes, seconds)

        self._dispatch(jobs, on_result)

    def _record(self, members: Sequence[RunSpec], outcomes: Sequence[ReplicateOutcome], seconds: float) -> None:
        import shutil

        by_replicate = {o.replicate: o for o in outcomes}
        for spec in members:
            outcome = by_replicate[spec.seed]
            run_dir = spec.run_dir(self.output_dir)
            if run_dir.exists():
                shutil.rmtree(run_dir)
            write_predictions(run_dir, outcome.test_index, outcome.test_labels, outcome.probabilities)
            write_json_sorted(run_dir / "metrics.json", _plain(outcome.metrics))
            write_json_sorted(run_dir / RUN_MARKER, {"run_id": spec.run_id, "settings": spec.semantic_settings()})
            self.on_done(spec, outcome.metrics, None, seconds / max(1, len(members)))

    def _train_other(self, specs: Sequence[RunSpec]) -> None:
        """Full / top<k> modes: each replicate through run_training on files holding its rows."""
        overrides = {}
        for spec in specs:
            pools = self.pools(spec.dataset)
            folder = self.output_dir / "replicate_data" / spec.dataset / f"r{spec.seed}"
            files = _write_replicate_files(pools, self.draw(spec.dataset, spec.seed), folder)
            overrides[spec.run_id] = {"dataset": None, "data_dir": None, "max_train_samples": None, "max_eval_samples": None,
                                      "data_seed": None, **files}
        self.execute_all(list(specs), self.output_dir, self.on_done, overrides)


def _features_key(spec: RunSpec) -> tuple[str, str]:
    """Specs with the same key share the pools' frozen features (the encoder settings that shape them)."""
    keys = ("model", "pooling", "max_length", "precision", "cache_dir")
    return spec.dataset, json.dumps({k: spec.settings.get(k) for k in keys}, sort_keys=True, default=str)


def _frozen_task_with(task: FrozenTask, train_features: Any, test_features: Any) -> list[ReplicateOutcome]:
    """A frozen task whose pool features arrive as arguments (so Ray resolves their object references)."""
    return run_frozen_task(dataclasses.replace(task, train_features=train_features, test_features=test_features))


def _catching(function: Callable, *args: Any) -> tuple[Any, str | None, float]:
    """``(value, None, seconds)`` or ``(None, one-line error, seconds)``: a job never raises, so one
    bad head or trial cannot stop the others, and its error reads the same in process and on Ray."""
    start = time.perf_counter()
    try:
        return function(*args), None, time.perf_counter() - start
    except Exception as err:  # noqa: BLE001 - reported per job
        return None, _one_line(err), time.perf_counter() - start


def _run_on_ray(jobs: Sequence[tuple[Callable, tuple, Mapping[str, Any]]], on_result: Callable) -> None:
    """Every ``(function, args, ray options)`` job as a Ray task (Ray is running), each array argument
    put into the object store once for all the jobs that pass it; ``on_result(index, value, error,
    seconds)`` as each finishes."""
    import ray

    remote = ray.remote(max_retries=0)(_catching)
    shared: dict[int, tuple[Any, Any]] = {}  # id -> (array, reference): the array is held so its id stays its own

    def put(value: Any) -> Any:
        if not isinstance(value, np.ndarray):
            return value
        if id(value) not in shared:
            shared[id(value)] = (value, ray.put(value))
        return shared[id(value)][1]

    in_flight = {}
    for i, (function, args, options) in enumerate(jobs):
        ref = remote.options(**options).remote(function, *(put(a) for a in args))
        in_flight[ref] = (i, time.perf_counter())
    while in_flight:
        done, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in done:
            i, start = in_flight.pop(ref)
            try:
                value, error, seconds = ray.get(ref)
            except Exception as err:  # noqa: BLE001 - a worker that died
                value, error, seconds = None, _one_line(err), time.perf_counter() - start
            on_result(i, value, error, seconds)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def read_test_draws(output_dir: str | Path) -> dict[str, int | None]:
    """Data set -> test rows each replicate is scored on (None: the whole test pool), from ``pools.json``."""
    return {name: entry.get("test_rows_per_replicate") for name, entry in _read_json(Path(output_dir) / POOLS_FILE).items()}


def _identity(c: Comparison) -> dict[str, Any]:
    return {"dataset": c.dataset, "mode": c.mode, "head": c.head, "reference": c.reference, "kind": c.kind, "family": c.family}


def _plain(metrics: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())}"[:500]


def _write_replicate_files(pools: Pools, draw: ReplicateDraw, folder: Path) -> dict[str, str]:
    """The replicate's rows as ``train/validation/test.csv.gz`` (text, integer label); their paths as settings."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, texts, labels, index in (("train", pools.train_texts, pools.train_labels, draw.train),
                                         ("validation", pools.train_texts, pools.train_labels, draw.validation),
                                         ("test", pools.test_texts, pools.test_labels, draw.test)):
        path = folder / f"{split}.csv"
        if not path.is_file():
            frame = pd.DataFrame({"text": [texts[i] for i in index], "label": [int(labels[i]) for i in index]})
            write_text(path, frame.to_csv(index=False, lineterminator="\n"))
        out[f"{split}_file"] = str(path)
    return out


def decide_comparisons(results: Any, comparisons: Sequence[Comparison], config: BenchConfig, *,
                       looks_done: int | None = None) -> Any:
    """One row per comparison (same order) after ``looks_done`` looks: :data:`qubert.bench.sequential.DECISION_COLUMNS`
    less the identity columns, from :func:`qubert.bench.sequential.decide_look` with the config's looks,
    alpha, margin and method. ``results`` has ``dataset`` (the comparison's cell), ``head``, ``replicate``
    (the position in the config's replicate list) and ``test_macro_f1``."""
    import pandas as pd

    from qubert.bench.sequential import ComparisonSpec, decide_look

    specs = [ComparisonSpec(dataset=c.cell, head=c.head, reference=c.reference, kind=c.kind, family=c.family) for c in comparisons]
    table = decide_look(results, specs, sequential_design(config), looks_done=looks_done)
    drop = ("dataset", "head", "reference", "kind", "family")
    return pd.DataFrame([{k: v for k, v in row.items() if k not in drop} for row in table.to_dict("records")])


def sequential_design(config: BenchConfig) -> Any:
    """The :class:`qubert.bench.sequential.SequentialDesign` of a bench config."""
    from qubert.bench.sequential import SequentialDesign

    stats = config.statistics
    return SequentialDesign(looks=tuple(config.looks), alpha=stats["alpha"], margin=stats["margin"], method=stats["method"])
