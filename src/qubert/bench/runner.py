"""Running a grid: tuning every head with the same budget, then the replicates look by look
(:mod:`qubert.bench.looks`), in process or as Ray tasks, resuming where it stopped, then reporting.

Layout added by tuning (see :mod:`qubert.bench.tuning`)::

    <output_dir>/tuning/runs/<dataset>/<mode>/<head>/trial<k>/   one run per trial (validation only)
    <output_dir>/tuning.csv                                      one row per trial
    <output_dir>/tuning_choices.json                             what each head's search chose
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from qubert.bench.config import BenchConfig, BenchConfigError
from qubert.bench.grid import RunSpec, expand_grid
from qubert.bench.looks import DECISIONS_FILE, LookRunner, read_test_draws, sequential_design
from qubert.bench.plots import plot_figures
from qubert.bench.report import SUMMARY_FILE, write_summary
from qubert.files import write_text
from qubert.bench.results import (
    RESULTS_FILE,
    RUN_MARKER,
    jsonable,
    write_json_sorted,
    write_results,
    yaml_dump,
    is_finished,
)

TUNING_DIR = "tuning"
TUNING_FILE = "tuning.csv"
CHOICES_FILE = "tuning_choices.json"

# Environment variables a Ray worker needs to see the same data, models and offline switches.
_FORWARDED_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME",
                  "HF_ENDPOINT", "QUBERT_DATA_DIR", "QUBERT_CACHE_DIR")


@dataclass
class BenchResult:
    """What :func:`run_bench` did.

    Attributes:
        results: one row per finished run (the content of ``results.csv``).
        ran: run ids trained in this call.
        skipped: run ids already finished before this call.
        failed: run id -> one-line error for runs that raised.
        results_csv, summary, figures: the files written.
    """

    results: Any
    ran: list[str]
    skipped: list[str]
    failed: dict[str, str]
    results_csv: Path
    summary: Path | None
    figures: list[Path]


def execute_run(spec: RunSpec, output_dir: str, run_fn: Callable[[Any], Mapping[str, Any]] | None = None,
                overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train one run into a clean run directory and mark it finished.

    Anything left in the run directory by an unfinished or outdated run is removed first.
    ``overrides`` replace TrainingConfig settings of this execution only (e.g. a replicate's data
    files); the run is marked finished with the spec's own settings. Returns the run's metrics.
    """
    if run_fn is None and spec.head_type == "logreg":
        from qubert.bench.yardsticks import run_logistic_regression

        C = float(spec.settings.get("C", 1.0))
        run_fn = lambda config: run_logistic_regression(config, C=C)  # noqa: E731
    elif run_fn is None:
        from qubert.training import run_training as run_fn
    run_dir = spec.run_dir(output_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    if not spec.settings.get("progress", True):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" / "Writing model shards" bars
    config = spec.training_config(output_dir)
    if overrides:
        config = dataclasses.replace(config, **overrides)
    metrics = dict(run_fn(config))
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "metrics.json").is_file():  # a run_fn that only returns its metrics
        write_json_sorted(run_dir / "metrics.json", metrics)
    # A finished run needs no checkpoints (they only serve to resume); models are kept on request.
    for heavy in ("checkpoints",) if spec.keep_model else ("checkpoints", "model"):
        shutil.rmtree(run_dir / heavy, ignore_errors=True)
    write_json_sorted(run_dir / RUN_MARKER, {"run_id": spec.run_id, "settings": spec.semantic_settings()})
    return metrics


def _ray_task(spec: RunSpec, output_dir: str, run_fn: Callable | None, overrides: Mapping[str, Any] | None = None
              ) -> tuple[str, dict[str, Any] | None, str | None, float]:
    """Body of a Ray task: never raises, so one failed run cannot take the grid down."""
    start = time.perf_counter()
    try:
        return spec.run_id, execute_run(spec, output_dir, run_fn, overrides), None, time.perf_counter() - start
    except Exception as err:  # noqa: BLE001 - reported per run
        return spec.run_id, None, _one_line(err), time.perf_counter() - start


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())}"[:500]


def plan_bench(config: BenchConfig, *, _specs: list[RunSpec] | None = None) -> tuple[list[RunSpec], list[RunSpec]]:
    """``(finished, pending)`` runs of a grid, each in grid order (what ``--dry-run`` shows).

    Example:
        >>> done, todo = plan_bench(load_bench_config("configs/quick.yaml"))  # doctest: +SKIP
    """
    specs = _specs if _specs is not None else tuned_specs(config)
    finished = [s for s in specs if is_finished(s, config.output_dir)]
    ids = {s.run_id for s in finished}
    return finished, [s for s in specs if s.run_id not in ids]


# Long: the grid's life cycle (plan, tune, run, collect, report) in the order a reader follows it.
def run_bench(
    config: BenchConfig,
    *,
    use_ray: bool = False,
    ray_address: str | None = None,
    ray_num_cpus: int | None = None,
    run_fn: Callable[[Any], Mapping[str, Any]] | None = None,
    report: bool = True,
    log: Callable[[str], None] | None = None,
) -> BenchResult:
    """Run every unfinished run of a grid, then write ``results.csv``, ``summary.md`` and figures.

    ``results.csv`` is rewritten (atomically) after every finished run, so an interrupted grid loses
    at most the runs in flight; a rerun skips finished runs. A run that raises is reported in
    ``BenchResult.failed`` (and in ``summary.md``) and the grid goes on.

    Args:
        config: the bench config.
        use_ray: run as Ray tasks (each with the resources its config asks for) instead of in process.
        ray_address: join this Ray cluster (implies ``use_ray``); default: start a local Ray.
        ray_num_cpus: CPUs of a locally started Ray (default: all).
        run_fn: ``TrainingConfig -> metrics`` (default: :func:`qubert.training.run_training`).
        report: also write ``summary.md`` and figures.
        log: called with one line per event (default: silent).

    Example:
        >>> result = run_bench(load_bench_config("configs/tiny.yaml"))  # doctest: +SKIP
        >>> result.results_csv.name, len(result.failed)  # doctest: +SKIP
        ('results.csv', 0)
    """
    log = log or (lambda line: None)
    base_specs = expand_grid(config)
    output_dir = config.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    write_text(output_dir / "bench_config.yaml", yaml_dump(config.to_dict()))
    failed: dict[str, str] = {}
    with _ray_session(use_ray or bool(ray_address), ray_address, ray_num_cpus):
        def execute_all(pending: list[RunSpec], where: Path, on_done: Callable,
                        overrides: Mapping[str, Mapping[str, Any]] | None = None) -> None:
            if pending and (use_ray or ray_address):
                _execute_ray(pending, where, run_fn, on_done, overrides)
                return
            for spec in pending:
                start = time.perf_counter()
                try:
                    metrics = execute_run(spec, str(where), run_fn, (overrides or {}).get(spec.run_id))
                except Exception as err:  # noqa: BLE001 - one bad run must not stop the grid
                    on_done(spec, None, _one_line(err), time.perf_counter() - start)
                else:
                    on_done(spec, metrics, None, time.perf_counter() - start)

        lean = run_fn is None
        data_runner = LookRunner(config, base_specs, execute_all=execute_all, on_done=lambda *a: None,
                                 use_ray=bool(use_ray or ray_address), log=log, lean=lean)
        if config.tuning is not None and config.tuning.enabled and any(s.search for s in base_specs):
            tune_bench(config, base_specs, execute_all, log=log, failed=failed,
                       cross_validate=data_runner.cross_validate_all if lean else None)
        specs = tuned_specs(config, base_specs)
        done, pending = plan_bench(config, _specs=specs)
        log(f"{config.name}: {len(specs)} runs, {len(done)} already finished, {len(pending)} to run")
        results_csv = output_dir / RESULTS_FILE
        ran: list[str] = []
        counter = itertools.count(1)

        def on_done(spec: RunSpec, metrics: Mapping[str, Any] | None, error: str | None, seconds: float) -> None:
            n = next(counter)
            if error is None:
                ran.append(spec.run_id)
                write_results(specs, output_dir, results_csv)
                f1 = metrics.get("test_macro_f1") if metrics else None
                shown = f"macro-F1 {f1:.4f}" if isinstance(f1, (int, float)) else "done"
                log(f"[{n}/{len(pending)}] {spec.run_id}: {shown} ({seconds:.1f} s)")
            else:
                failed[spec.run_id] = error
                log(f"[{n}/{len(pending)}] {spec.run_id}: FAILED {error}")

        write_results(specs, output_dir, results_csv)  # drops rows of runs that no longer match
        untuned = {s.run_id for s in _untuned(config, pending)}
        for spec in pending:
            if spec.run_id in untuned:
                on_done(spec, None, "its tuning chose nothing (every trial failed; see tuning.csv)", 0.0)
        runnable = [s for s in specs if s.run_id not in untuned]
        looks = LookRunner(config, runnable, execute_all=execute_all, on_done=on_done, use_ray=bool(use_ray or ray_address),
                           log=log, tuned_eval=_tuned_eval(config), lean=lean)
        looks.share_data(data_runner)
        looks.run()
    result = report_bench(config, failed=failed, report=report, log=log, _specs=specs)
    result.ran, result.skipped = ran, [s.run_id for s in done]
    return result


def report_bench(config: BenchConfig, *, failed: Mapping[str, str] | None = None, report: bool = True,
                 log: Callable[[str], None] | None = None, _specs: list[RunSpec] | None = None) -> BenchResult:
    """Rebuild ``results.csv``, ``summary.md`` and figures from the finished runs, training nothing.

    Example:
        >>> report_bench(load_bench_config("configs/quick.yaml")).summary  # doctest: +SKIP
        PosixPath('.../runs/bench/quick/summary.md')
    """
    log = log or (lambda line: None)
    specs = _specs if _specs is not None else tuned_specs(config)
    output_dir = config.output_dir
    results_csv = output_dir / RESULTS_FILE
    results = write_results(specs, output_dir, results_csv)
    summary, figures = None, []
    if report and len(results):
        decisions = _decisions_with_bootstrap(config, log)
        if decisions is None:  # no comparison was tested: the per-head tables of the fixed-sample report
            config = dataclasses.replace(config, statistics={k: v for k, v in config.statistics.items() if k != "method"})
        figures = plot_figures(results, output_dir, config=config, decisions=decisions, margin=config.statistics["margin"])
        tuning = tuning_summary(config) if config.tuning is not None and config.tuning.enabled else None
        summary = write_summary(results, output_dir / SUMMARY_FILE, config=config, figures=figures, tuning=tuning,
                                failed=failed, n_planned=len(specs), decisions=decisions,
                                design=sequential_design(config) if decisions is not None else None,
                                test_draws=read_test_draws(output_dir))
        log(f"wrote {results_csv}, {summary} and {len(figures)} figure(s)")
    return BenchResult(results=results, ran=[], skipped=[], failed=dict(failed or {}),
                       results_csv=results_csv, summary=summary, figures=figures)


def _decisions_with_bootstrap(config: BenchConfig, log: Callable[[str], None]) -> Any:
    """``decisions.csv`` with the joint bootstrap over replicates and test rows of every comparison
    (from the stored predictions); None when no comparison was tested."""
    import pandas as pd

    from qubert.bench.predictions import PREDICTIONS_FILE, read_predictions
    from qubert.bench.stats import bootstrap_decisions

    try:
        decisions = pd.read_csv(config.output_dir / DECISIONS_FILE)
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return None
    if not len(decisions):
        return None

    def predictions(row: Any, head: str, r: int) -> Any:
        if r >= len(config.seeds):
            return None
        run_dir = config.output_dir / "runs" / row.dataset / row.mode / head / f"seed{config.seeds[r]}"
        return read_predictions(run_dir) if (run_dir / PREDICTIONS_FILE).is_file() else None

    stats = config.statistics
    start = time.perf_counter()
    out = bootstrap_decisions(decisions, predictions, looks=config.looks, n_resamples=stats["n_resamples"],
                              confidence=stats["confidence"], alpha=stats["alpha"], seed=stats["seed"])
    log(f"joint bootstrap over replicates and test rows: {len(out)} comparison(s) ({time.perf_counter() - start:.1f} s)")
    return out


def _encoding_key(spec: RunSpec) -> tuple | None:
    """Runs with the same key share one frozen-encoder embedding cache entry (None: no cache)."""
    if spec.mode != "frozen":
        return None
    keys = ("dataset", "data_dir", "train_file", "validation_file", "test_file", "text_column", "label_column",
            "max_train_samples", "max_eval_samples", "drop_empty", "model", "pooling", "max_length", "cache_dir",
            "seed", "data_seed")  # the seed picks the stratified subsets, unless data_seed fixes them
    settings = {**spec.settings, **({"seed": None} if spec.settings.get("data_seed") is not None else {})}
    return tuple(json.dumps(settings.get(k), default=str) for k in keys)


@contextlib.contextmanager
def _ray_session(use_ray: bool, address: str | None, num_cpus: int | None) -> Iterator[None]:
    """Ray for the whole grid (tuning rounds and final runs), started here unless already running."""
    if not use_ray:
        yield
        return
    try:
        import ray
    except ImportError:
        raise BenchConfigError("--ray needs Ray: pip install 'qubert[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "runtime_env": {"env_vars": env} if env else None}
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, **kwargs)
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()


def _execute_ray(pending: list[RunSpec], output_dir: Path, run_fn: Callable | None, on_done: Callable,
                 overrides: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Run specs as Ray tasks (Ray is running: :func:`_ray_session`); the first run of each
    embedding-cache group goes alone, so the other runs of that group find the cache filled
    instead of all encoding the same texts."""
    import ray

    task = ray.remote(max_retries=0)(_ray_task)
    groups: dict[Any, list[RunSpec]] = defaultdict(list)
    ready: list[RunSpec] = []
    for spec in pending:
        key = _encoding_key(spec)
        if key is None:
            ready.append(spec)
        else:
            groups[key].append(spec)
    waiting: dict[str, list[RunSpec]] = {}
    for group in groups.values():
        ready.append(group[0])
        waiting[group[0].run_id] = group[1:]
    by_id = {s.run_id: s for s in pending}
    in_flight: dict[Any, RunSpec] = {}

    def submit(spec: RunSpec) -> None:
        ref = task.options(**spec.resources.ray_options()).remote(spec, str(output_dir), run_fn, (overrides or {}).get(spec.run_id))
        in_flight[ref] = spec

    for spec in ready:
        submit(spec)
    while in_flight:
        done_refs, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in done_refs:
            spec = in_flight.pop(ref)
            try:
                run_id, metrics, error, seconds = ray.get(ref)
            except Exception as err:  # noqa: BLE001 - a worker that died
                run_id, metrics, error, seconds = spec.run_id, None, _one_line(err), math.nan
            if error is None and not (spec.run_dir(output_dir) / RUN_MARKER).is_file():
                # A worker on another node without a shared file system: keep what came back.
                _record_remote_result(by_id[run_id], output_dir, metrics or {})
            on_done(by_id[run_id], metrics, error, seconds)
            for follower in waiting.pop(run_id, []):
                submit(follower)


def _record_remote_result(spec: RunSpec, output_dir: Path, metrics: Mapping[str, Any]) -> None:
    run_dir = spec.run_dir(output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_sorted(run_dir / "metrics.json", dict(metrics))
    write_json_sorted(run_dir / RUN_MARKER, {"run_id": spec.run_id, "settings": spec.semantic_settings()})


# ------------------------------------------------------------------------------------ tuning


def _group_key(spec: RunSpec) -> str:
    return f"{spec.dataset}/{spec.mode}/{spec.head}"


def _signature(spec: RunSpec, config: BenchConfig) -> str:
    """What a head's choice depends on: its base settings, the space searched and the budget."""
    from qubert.bench.tuning import SAMPLER_VERSION, describe_space

    tuning = config.tuning
    base = {k: v for k, v in spec.semantic_settings().items() if k not in spec.search and k != "seed"}
    return json.dumps(jsonable({"settings": base, "space": describe_space(_dimensions(spec, config)), "trials": tuning.trials,
                                "startup": tuning.startup, "sampler": SAMPLER_VERSION, "batch": tuning.batch, "seed": tuning.seed,
                                "run_seed": tuning.run_seed}), sort_keys=True)


def _dimensions(spec: RunSpec, config: BenchConfig) -> dict[str, Any]:
    from qubert.bench.tuning import space_for

    merged = space_for(config.tuning.space, spec.head_type, spec.mode, control=spec.control)
    return {name: merged[name] for name in spec.search if name in merged}


def _read_choices(output_dir: Path) -> dict[str, Any]:
    path = Path(output_dir) / CHOICES_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def tuned_specs(config: BenchConfig, specs: list[RunSpec] | None = None) -> list[RunSpec]:
    """The grid's runs with each tuned head's chosen values in place of the settings searched.

    A head whose search has not finished (or was made for other settings, space or budget) keeps its
    base settings, so its runs do not count as finished.
    """
    specs = specs if specs is not None else expand_grid(config)
    if config.tuning is None or not config.tuning.enabled:
        return specs
    choices = _read_choices(config.output_dir)
    out = []
    for spec in specs:
        choice = _choice(spec, config, choices)
        if choice is not None:
            spec = dataclasses.replace(spec, settings={**spec.settings, **choice["params"]})
        out.append(spec)
    return out


def _choice(spec: RunSpec, config: BenchConfig, choices: Mapping[str, Any]) -> dict[str, Any] | None:
    choice = choices.get(_group_key(spec)) if spec.search else None
    return choice if choice is not None and choice.get("signature") == _signature(spec, config) else None


def _untuned(config: BenchConfig, specs: Sequence[RunSpec]) -> list[RunSpec]:
    """Runs of tuned heads whose search chose nothing (every trial failed): they are not run."""
    if config.tuning is None or not config.tuning.enabled:
        return []
    choices = _read_choices(config.output_dir)
    return [s for s in specs if s.search and _choice(s, config, choices) is None]


def _trial_spec(spec: RunSpec, k: int, params: Mapping[str, Any], run_seed: int) -> RunSpec:
    return dataclasses.replace(
        spec, run_id=f"{_group_key(spec)}/trial{k:02d}", seed=run_seed, keep_model=False,
        settings={**spec.settings, **params, "seed": run_seed},
    )


def tune_bench(config: BenchConfig, specs: Sequence[RunSpec], execute_all: Callable, *,
               log: Callable[[str], None], failed: dict[str, str],
               cross_validate: Callable[[Sequence[RunSpec], Callable], None] | None = None) -> list[Any]:
    """Search every tuned head's settings with the same number of trials; write ``tuning.csv`` and
    ``tuning_choices.json``. Finished trials are read back, not trained again.

    ``cross_validate(trials, on_result)`` scores a round's frozen trials (k-fold on the training pool,
    lean trainer: :meth:`LookRunner.cross_validate_all`, side by side on Ray) and calls
    ``on_result(trial, metrics, error, seconds)`` for each; without it, and for other modes, a trial
    is a ``run_training`` run on validation.
    """
    from qubert.bench.tuning import describe_space, trials_table, tune_grid

    tuning = config.tuning
    where = config.output_dir / TUNING_DIR
    groups: dict[str, RunSpec] = {}
    for spec in specs:
        if spec.search:
            groups.setdefault(_group_key(spec), spec)
    log(f"tuning: {len(groups)} head(s) x {tuning.trials} trials on validation macro-F1 (training seed {tuning.run_seed})")

    def run_trials(batch: list[tuple[RunSpec, int, dict[str, Any]]]) -> list[dict[str, Any] | None]:
        trial_specs = [_trial_spec(spec, k, params, tuning.run_seed) for spec, k, params in batch]
        metrics: dict[str, dict[str, Any] | None] = {}
        todo = []
        for trial in trial_specs:
            if is_finished(trial, where):
                metrics[trial.run_id] = json.loads((trial.run_dir(where) / "metrics.json").read_text(encoding="utf-8"))
            else:
                todo.append(trial)

        def on_done(trial: RunSpec, result: Mapping[str, Any] | None, error: str | None, seconds: float) -> None:
            metrics[trial.run_id] = dict(result) if error is None and result is not None else None
            if error is not None:
                failed[f"{TUNING_DIR}/{trial.run_id}"] = error
                log(f"tuning {trial.run_id}: FAILED {error}")

        def scored(trial: RunSpec, result: Mapping[str, Any] | None, error: str | None, seconds: float) -> None:
            if error is None:  # written as it comes back: an interrupted round keeps its finished trials
                run_dir = trial.run_dir(where)
                write_json_sorted(run_dir / "metrics.json", dict(result or {}))
                write_json_sorted(run_dir / RUN_MARKER, {"run_id": trial.run_id, "settings": trial.semantic_settings()})
            on_done(trial, result, error, seconds)

        if cross_validate is not None:
            cross_validate([t for t in todo if t.mode == "frozen"], scored)
            todo = [t for t in todo if t.mode != "frozen"]
        execute_all(todo, where, on_done)
        return [metrics.get(trial.run_id) for trial in trial_specs]

    results = tune_grid([(spec, _dimensions(spec, config)) for spec in groups.values()], tuning, run_trials, log=log)
    choices = _read_choices(config.output_dir)
    for key, spec, result in zip(groups, groups.values(), results):
        if result.best_params:
            choices[key] = {"signature": _signature(spec, config), "params": jsonable(result.best_params),
                            "eval_macro_f1": result.best_value, "space": describe_space(result.space),
                            "trials": len(result.trials), "failed_trials": sum(t["state"] != "complete" for t in result.trials)}
    write_json_sorted(config.output_dir / CHOICES_FILE, choices)
    table = trials_table(results)
    write_text(config.output_dir / TUNING_FILE, table.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    return results


def _tuned_eval(config: BenchConfig) -> dict[tuple[str, str, str], float]:
    """(dataset, mode, head) -> best validation macro-F1 of its finished tuning."""
    out = {}
    for key, choice in _read_choices(config.output_dir).items():
        dataset, mode, head = key.split("/", 2)
        if isinstance(choice.get("eval_macro_f1"), (int, float)):
            out[(dataset, mode, head)] = float(choice["eval_macro_f1"])
    return out


def tuning_summary(config: BenchConfig) -> Any:
    """One row per tuned head (what ``summary.md`` shows): trials, space, chosen values, best validation F1."""
    import pandas as pd

    rows = [{"dataset": key.split("/")[0], "mode": key.split("/")[1], "head": key.split("/", 2)[2], "trials": c.get("trials"),
             "space": c.get("space"), "best_params": json.dumps(c.get("params"), sort_keys=True),
             "best_eval_macro_f1": c.get("eval_macro_f1"), "failed_trials": c.get("failed_trials")}
            for key, c in _read_choices(config.output_dir).items()]
    return pd.DataFrame(rows, columns=["dataset", "mode", "head", "trials", "space", "best_params", "best_eval_macro_f1", "failed_trials"])
