"""Experiment grids: data sets x modes x heads (with controls) x seeds, run, aggregated and reported.

A bench config (YAML) names the grid; :func:`expand_grid` turns it into one :class:`RunSpec` per
training run, :func:`run_bench` runs what is not finished yet (in process, or as Ray tasks), keeps
``results.csv`` up to date after every finished run and finally writes ``summary.md`` and figures.

The question a bench answers is "does the quantum head help?", so every quantum head can bring its
own controls (``controls:`` in the config):

- ``matched_mlp``: an MLP with the same number of trainable parameters
  (:func:`qubert.heads.matched_mlp_head`);
- ``no_entanglement``: the same circuit with every entangling gate removed;
- ``frozen_circuit``: the same head with its circuit weights frozen at initialisation.

Config format (YAML; every key but ``datasets`` and ``heads`` is optional)::

    name: quick                        # default: the file name
    output_dir: runs/bench/quick       # default: runs/bench/<name>
    data_dir: ../shared/data           # relative to the working directory
    datasets: [sms_spam, {dataset: imdb, max_length: 128}]   # registry names (+ settings)
    modes: [frozen, {mode: full, num_epochs: 3, resources: {num_gpus: 1}}]
    seeds: [0, 1, 2]                   # or a count: 3
    heads:
      - linear
      - {head: mlp, hidden_sizes: [256]}
      - {head: quantum, qubits: [2, 4, 6, 8], layers: [1, 2]}   # list values expand
      - {head: quantum, qubits: 8, ansatz: strongly_entangling, name: q8_sel, controls: []}
    controls: [matched_mlp, no_entanglement, frozen_circuit]
    training: {learning_rate: 0.01, model: {online: bert-base-uncased, offline: default}}
    resources: {num_cpus: 1, num_gpus: 0}        # per run, for Ray
    statistics: {n_resamples: 10000, confidence: 0.95, seed: 0}
    keep_models: false                 # keep each run's model/ folder

Settings are :class:`qubert.training.TrainingConfig` fields. They merge in the order ``training`` <
data set < mode < head entry. A value ``{online: a, offline: b}`` becomes ``a`` when the Hub can be
reached and ``HF_HUB_OFFLINE`` is not set, and ``b`` otherwise.

Layout of an output directory::

    <output_dir>/bench_config.yaml        the resolved config (provenance)
    <output_dir>/results.csv              one row per finished run (rewritten atomically)
    <output_dir>/summary.md               mean +- std, bootstrap CIs, paired tests
    <output_dir>/figures/*.png
    <output_dir>/runs/<dataset>/<mode>/<head>/seed<seed>/   one run_training output each

Example:
    >>> from qubert.bench import load_bench_config, expand_grid
    >>> config = load_bench_config("configs/tiny.yaml")  # doctest: +SKIP
    >>> [spec.run_id for spec in expand_grid(config)][:2]  # doctest: +SKIP
    ['sms_spam/frozen/linear/seed0', 'sms_spam/frozen/linear/seed1']
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import itertools
import json
import math
import os
import re
import shutil
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CONTROLS",
    "RESULT_COLUMNS",
    "TIMING_COLUMNS",
    "BenchConfig",
    "BenchConfigError",
    "BenchResult",
    "PairedComparison",
    "Resources",
    "RunSpec",
    "aggregate",
    "bootstrap_ci",
    "collect_results",
    "compare_heads",
    "encoder_hidden_size",
    "execute_run",
    "expand_grid",
    "is_finished",
    "load_bench_config",
    "paired_comparison",
    "parse_bench_config",
    "plan_bench",
    "plot_figures",
    "read_history",
    "report_bench",
    "run_bench",
    "write_summary",
]

CONTROLS = ("matched_mlp", "no_entanglement", "frozen_circuit")
HEAD_TYPES = ("linear", "mlp", "quantum")
CLASSICAL_HEADS = ("linear", "mlp")
RUN_MARKER = "bench_run.json"  # written next to metrics.json once a run has finished
RESULTS_FILE = "results.csv"
SUMMARY_FILE = "summary.md"
FIGURES_DIR = "figures"

# TrainingConfig fields the grid itself sets: they cannot be given as plain settings.
_GRID_KEYS = ("dataset", "mode", "seed", "head", "output_dir", "resume", "overwrite_output_dir")
# Settings that describe how a run is executed, not what it computes: ignored when deciding
# whether a finished run still matches the config.
_NON_SEMANTIC_KEYS = ("progress", "cache_dir", "output_dir", "resume", "overwrite_output_dir")
_QUANTUM_KEYS = ("qubits", "layers", "encoding", "ansatz", "entanglement", "rotation", "measurement",
                 "init", "reupload", "scaling", "freeze_circuit")
# Circuit fields that go into an automatic head label when they differ from the default.
_LABEL_KEYS = ("encoding", "ansatz", "rotation", "measurement", "init", "reupload", "scaling")
_TOP_LEVEL_KEYS = ("name", "description", "output_dir", "data_dir", "cache_dir", "datasets", "modes",
                   "seeds", "heads", "controls", "training", "resources", "statistics", "keep_models")
_STATISTICS_KEYS = ("n_resamples", "confidence", "seed")
_RESOURCE_KEYS = ("num_cpus", "num_gpus")
_MODE_PATTERN = re.compile(r"^(frozen|full|top[1-9][0-9]*)$")
# Columns of results.csv, in order. Timing columns differ run to run; everything else is
# reproducible for the same config and seeds.
IDENTITY_COLUMNS = ("run_id", "dataset", "mode", "head", "head_type", "control", "base_head", "seed")
CONFIG_COLUMNS = ("model", "pooling", "max_length", "max_train_samples", "max_eval_samples",
                  "qubits", "layers", "entanglement", "freeze_circuit", "hidden_sizes",
                  "learning_rate", "num_epochs", "batch_size")
METRIC_COLUMNS = ("test_macro_f1", "test_accuracy", "test_weighted_f1", "test_precision",
                  "test_recall", "eval_macro_f1", "best_epoch", "trainable_params", "train_samples", "test_samples")
TIMING_COLUMNS = ("train_runtime", "eval_runtime", "test_runtime", "encode_runtime")
RESULT_COLUMNS = IDENTITY_COLUMNS + CONFIG_COLUMNS + METRIC_COLUMNS + TIMING_COLUMNS + ("run_dir",)
# Environment variables a Ray worker needs to see the same data, models and offline switches.
_FORWARDED_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME",
                  "HF_ENDPOINT", "QUBERT_DATA_DIR", "QUBERT_CACHE_DIR")


class BenchConfigError(ValueError):
    """A bench config that cannot run; the message names the offending key."""


# ============================================================================================
# Config
# ============================================================================================


@dataclass(frozen=True)
class Resources:
    """What one run asks of a Ray cluster (``@ray.remote`` options).

    Example:
        >>> Resources(num_cpus=2).ray_options()
        {'num_cpus': 2, 'num_gpus': 0}
    """

    num_cpus: float = 1
    num_gpus: float = 0

    def ray_options(self) -> dict[str, float]:
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}


@dataclass
class BenchConfig:
    """A parsed, validated bench config (see ``configs/*.yaml`` for the format).

    Attributes:
        name: the grid's name (default: the config file's stem).
        output_dir: where runs, results and reports go.
        datasets, modes, heads: axis entries, each ``{axis key: value, **TrainingConfig settings}``.
        seeds: training seeds; every head runs once per seed.
        controls: which controls every quantum head gets (see :data:`CONTROLS`); a head entry's own
            ``controls`` list overrides it.
        training: TrainingConfig settings shared by all runs (``{online:, offline:}`` resolved).
        resources: default resources per run; axis entries may override them.
        statistics: ``n_resamples``, ``confidence`` and ``seed`` of the bootstrap.
        keep_models: keep every run's trained model (default: only its result files).
        online: whether the ``online`` alternatives were chosen.
        source: the file it came from, if any.
    """

    name: str
    output_dir: Path
    datasets: list[dict[str, Any]]
    modes: list[dict[str, Any]]
    heads: list[dict[str, Any]]
    seeds: list[int]
    controls: list[str] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=dict)
    statistics: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    keep_models: bool = False
    online: bool = False
    source: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data (written to ``bench_config.yaml``)."""
        return {
            "name": self.name,
            "description": self.description,
            "output_dir": str(self.output_dir),
            "online": self.online,
            "datasets": self.datasets,
            "modes": self.modes,
            "seeds": self.seeds,
            "heads": self.heads,
            "controls": self.controls,
            "training": self.training,
            "resources": self.resources,
            "statistics": self.statistics,
            "keep_models": self.keep_models,
        }


def load_bench_config(
    path: str | os.PathLike[str],
    *,
    output_dir: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    online: bool | None = None,
) -> BenchConfig:
    """Read and validate a bench config from YAML.

    Args:
        path: the YAML file.
        output_dir: overrides the config's ``output_dir``.
        data_dir: overrides the config's ``data_dir``.
        online: choose the ``online`` (True) or ``offline`` (False) alternative of every
            ``{online: ..., offline: ...}`` value; ``None`` decides by ``HF_HUB_OFFLINE`` and a
            connectivity check of the Hub.

    Raises:
        BenchConfigError: unreadable file or invalid config (the message names the key).

    Example:
        >>> load_bench_config("configs/quick.yaml").seeds  # doctest: +SKIP
        [0, 1, 2]
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise BenchConfigError(f"bench config {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        detail = " ".join(str(err).split())
        raise BenchConfigError(f"{path}: not valid YAML ({detail})") from None
    return parse_bench_config(data, name=path.stem, source=path, output_dir=output_dir,
                              data_dir=data_dir, online=online)


def parse_bench_config(
    data: Any,
    *,
    name: str = "bench",
    source: Path | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    online: bool | None = None,
) -> BenchConfig:
    """Validate a bench config given as plain data (what :func:`load_bench_config` reads).

    Example:
        >>> c = parse_bench_config({"datasets": ["sms_spam"], "heads": ["linear"], "seeds": 2},
        ...                        online=False)
        >>> c.seeds, c.modes
        ([0, 1], [{'mode': 'frozen'}])
    """
    where = f"{source}: " if source else ""

    def fail(key: str, message: str) -> BenchConfigError:
        return BenchConfigError(f"{where}{key}: {message}")

    if not isinstance(data, dict):
        raise BenchConfigError(f"{where}a bench config must be a mapping of keys, got {type(data).__name__}")
    _check_keys(data, _TOP_LEVEL_KEYS, "", fail)
    if online is None:
        online = _needs_online(data) and _is_online()
    data = _resolve_online(copy.deepcopy(data), online)

    fields = _training_fields()
    training = data.get("training") or {}
    if not isinstance(training, dict):
        raise fail("training", "must be a mapping of TrainingConfig settings")
    _check_settings(training, fields, "training", fail)
    # Paths are taken relative to the working directory and made absolute (Ray workers may run elsewhere).
    for key in ("data_dir", "cache_dir"):
        value = data_dir if key == "data_dir" and data_dir is not None else data.get(key, training.get(key))
        if value is not None:
            resolved = Path(value).expanduser().resolve()
            if key == "data_dir" and not resolved.is_dir():
                raise fail("data_dir", f"directory {value} does not exist")
            training[key] = str(resolved)

    datasets = _axis_entries(data, "datasets", "dataset", fields, fail)
    modes = _axis_entries(data, "modes", "mode", fields, fail, default=[{"mode": "frozen"}])
    heads = _axis_entries(data, "heads", "head", fields, fail)
    _check_datasets(datasets, fail)
    for i, entry in enumerate(modes):
        if not isinstance(entry["mode"], str) or not _MODE_PATTERN.match(entry["mode"]):
            raise fail(f"modes[{i}]", f"unknown mode {entry['mode']!r}; expected frozen, full or top<k>")
    for i, entry in enumerate(heads):
        if entry["head"] not in HEAD_TYPES:
            raise fail(f"heads[{i}].head", f"unknown head {entry['head']!r}; expected one of {', '.join(HEAD_TYPES)}")

    seeds = data.get("seeds", [42])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise fail("seeds", f"the number of seeds must be >= 1, got {seeds}")
        seeds = list(range(seeds))
    if not isinstance(seeds, list) or not seeds:
        raise fail("seeds", "must be a non-empty list of integers (or a count)")
    if any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise fail("seeds", f"every seed must be an integer, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise fail("seeds", f"seeds repeat: {seeds!r}")

    controls = data.get("controls") or []
    _check_controls(controls, "controls", fail)

    resources = _check_resources(data.get("resources") or {}, "resources", fail)
    if not isinstance(data.get("statistics") or {}, dict):
        raise fail("statistics", "must be a mapping with n_resamples, confidence and/or seed")
    statistics = {"n_resamples": 10_000, "confidence": 0.95, "seed": 0, **(data.get("statistics") or {})}
    _check_keys(statistics, _STATISTICS_KEYS, "statistics", fail)
    if not isinstance(statistics["n_resamples"], int) or statistics["n_resamples"] < 100:
        raise fail("statistics.n_resamples", f"must be an integer >= 100, got {statistics['n_resamples']!r}")
    if not isinstance(statistics["confidence"], float) or not 0.5 <= statistics["confidence"] < 1:
        raise fail("statistics.confidence", f"must be a number in [0.5, 1), got {statistics['confidence']!r}")
    if not isinstance(statistics["seed"], int):
        raise fail("statistics.seed", f"must be an integer, got {statistics['seed']!r}")

    keep_models = data.get("keep_models", False)
    if not isinstance(keep_models, bool):
        raise fail("keep_models", f"must be true or false, got {keep_models!r}")
    config_name = str(data.get("name") or name)
    out = Path(output_dir if output_dir is not None else data.get("output_dir") or Path("runs") / "bench" / config_name).expanduser()
    blocking = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        origin = "--output-dir" if output_dir is not None else "output_dir"
        raise BenchConfigError(f"{origin} {out}: {blocking} is a file, not a folder; choose another output directory")
    return BenchConfig(
        name=config_name, output_dir=out.resolve(), datasets=datasets, modes=modes,
        heads=heads, seeds=seeds, controls=controls, training=training, resources=resources,
        statistics=statistics, description=str(data.get("description") or ""), keep_models=keep_models, online=online,
        source=source,
    )


def _training_fields() -> dict[str, Any]:
    """TrainingConfig field name -> default value."""
    from qubert.training import TrainingConfig

    out = {}
    for f in dataclasses.fields(TrainingConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
        else:
            out[f.name] = None
    return out


def _check_keys(data: Mapping[str, Any], allowed: Iterable[str], prefix: str, fail: Callable) -> None:
    allowed = list(allowed)
    for key in data:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; expected one of {', '.join(allowed)}"
            raise fail(f"{prefix}.{key}" if prefix else str(key), f"unknown key{hint}")


def _check_settings(settings: Mapping[str, Any], fields: Mapping[str, Any], prefix: str, fail: Callable) -> None:
    """TrainingConfig settings: known keys, not set by the grid, sane values for the critical ones."""
    for key, value in settings.items():
        if key in _GRID_KEYS:
            raise fail(f"{prefix}.{key}", f"is set by the grid; use the {key}s list" if key in ("dataset", "mode", "seed", "head")
                       else "is set by the bench runner")
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise fail(f"{prefix}.{key}", f"unknown key (not a TrainingConfig setting){hint}")
        if key == "qubits" and not _is_int(value, 1):
            raise fail(f"{prefix}.qubits", f"must be an integer >= 1, got {value!r}")
        if key == "layers" and not _is_int(value, 0):
            raise fail(f"{prefix}.layers", f"must be an integer >= 0, got {value!r}")
        if key in ("max_train_samples", "max_eval_samples", "max_length", "batch_size") and value is not None \
                and not _is_int(value, 1):
            raise fail(f"{prefix}.{key}", f"must be a positive integer, got {value!r}")
        if key == "num_epochs" and (not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0):
            raise fail(f"{prefix}.num_epochs", f"must be a positive number, got {value!r}")
        if key == "hidden_sizes" and not (isinstance(value, list) and value and all(_is_int(h, 1) for h in value)):
            raise fail(f"{prefix}.hidden_sizes", f"must be a non-empty list of positive integers, got {value!r}")


def _check_controls(controls: Any, key: str, fail: Callable) -> None:
    if not isinstance(controls, list):
        raise fail(key, f"must be a list drawn from {', '.join(CONTROLS)}")
    for control in controls:
        if control not in CONTROLS:
            raise fail(key, f"unknown control {control!r}; expected one of {', '.join(CONTROLS)}")


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _check_resources(value: Any, key: str, fail: Callable) -> dict[str, float]:
    if not isinstance(value, dict):
        raise fail(key, "must be a mapping with num_cpus and/or num_gpus")
    _check_keys(value, _RESOURCE_KEYS, key, fail)
    for name, amount in value.items():
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
            raise fail(f"{key}.{name}", f"must be a non-negative number, got {amount!r}")
    if value.get("num_cpus", 1) == 0 and value.get("num_gpus", 0) == 0:
        raise fail(f"{key}.num_cpus", "a run must ask for some CPU or GPU")
    return dict(value)


def _axis_entries(data: Mapping[str, Any], key: str, name_key: str, fields: Mapping[str, Any],
                  fail: Callable, default: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One axis (datasets / modes / heads) as a list of ``{name_key: value, **settings}``.

    A head entry's list values expand into several heads (``qubits: [2, 4]``), except
    ``hidden_sizes``, whose value is a list itself (a list of lists expands).
    """
    raw = data.get(key)
    if raw is None:
        if default is not None:
            return default
        raise fail(key, "is missing; the grid needs at least one entry")
    if not isinstance(raw, list):
        raise fail(key, f"must be a list, got {type(raw).__name__}")
    if not raw:
        raise fail(key, "is empty; the grid needs at least one entry")
    entries: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        where = f"{key}[{i}]"
        if isinstance(item, str):
            entries.append({name_key: item})
            continue
        if not isinstance(item, dict):
            raise fail(where, f"must be a name or a mapping, got {item!r}")
        if name_key not in item:
            raise fail(where, f"needs a {name_key!r} key")
        item = dict(item)
        label = item.pop("name", None) if key == "heads" else None
        own_controls = item.pop("controls", None) if key == "heads" else None
        if own_controls is not None:
            _check_controls(own_controls, f"{where}.controls", fail)
        if "resources" in item:
            item["resources"] = _check_resources(item["resources"], f"{where}.resources", fail)
        settings = {k: v for k, v in item.items() if k not in (name_key, "resources")}
        if key != "heads":
            _check_settings(settings, fields, where, fail)
            entries.append(item)
            continue
        expand = {k: v for k, v in settings.items()
                  if isinstance(v, list) and (k != "hidden_sizes" or all(isinstance(h, list) for h in v))}
        for k, v in expand.items():
            if not v:
                raise fail(f"{where}.{k}", "is an empty list: the grid would be empty")
        combos = list(itertools.product(*expand.values())) if expand else [()]
        if label is not None and len(combos) > 1:
            raise fail(f"{where}.name", "a named head entry must not expand to several heads (list values)")
        for combo in combos:
            head = {**item, **dict(zip(expand, combo))}
            _check_settings({k: v for k, v in head.items() if k not in ("head", "resources")}, fields, where, fail)
            if label is not None:
                if not isinstance(label, str) or not re.fullmatch(r"[A-Za-z0-9_.+-]+", label):
                    raise fail(f"{where}.name", f"must be letters, digits and _ . + - only, got {label!r}")
                head["name"] = label
            if own_controls is not None:
                head["controls"] = list(own_controls)
            entries.append(head)
    return entries


def _check_datasets(datasets: list[dict[str, Any]], fail: Callable) -> None:
    from qubert.data import REGISTRY

    for i, entry in enumerate(datasets):
        name = entry["dataset"]
        if name not in REGISTRY:
            near = difflib.get_close_matches(str(name), list(REGISTRY), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; known: {', '.join(REGISTRY)}"
            raise fail(f"datasets[{i}]", f"unknown data set {name!r}{hint}")
    names = [e["dataset"] for e in datasets]
    if len(set(names)) != len(names):
        raise fail("datasets", f"a data set is listed twice: {names!r}")


def _needs_online(data: Any) -> bool:
    if isinstance(data, dict):
        return _is_alternative(data) or any(_needs_online(v) for v in data.values())
    if isinstance(data, list):
        return any(_needs_online(v) for v in data)
    return False


def _is_alternative(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"online", "offline"}


def _resolve_online(data: Any, online: bool) -> Any:
    """Replace every ``{online: a, offline: b}`` by ``a`` or ``b``."""
    if _is_alternative(data):
        return _resolve_online(data["online" if online else "offline"], online)
    if isinstance(data, dict):
        return {k: _resolve_online(v, online) for k, v in data.items()}
    if isinstance(data, list):
        return [_resolve_online(v, online) for v in data]
    return data


def _is_online() -> bool:
    """True unless HF_HUB_OFFLINE (or the datasets switch) is set or the Hub does not answer."""
    from qubert.data import hub_available

    return hub_available()


# ============================================================================================
# Grid expansion
# ============================================================================================


@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid.

    Attributes:
        run_id: ``<dataset>/<mode>/<head>/seed<seed>``; also the run directory under ``runs/``.
        dataset, mode, head, seed: the grid coordinates (``head`` is the head's label).
        head_type: ``linear``, ``mlp`` or ``quantum``.
        control: which control this run is (``""`` for a regular head).
        base_head: for a control, the label of the quantum head it controls.
        settings: the TrainingConfig keyword arguments, except ``output_dir``.
        resources: what the run asks of a Ray cluster.
        keep_model: keep the trained model (``model/``) after the run; otherwise only the small
            result files stay (metrics, history, predictions, config).
    """

    run_id: str
    dataset: str
    mode: str
    head: str
    head_type: str
    control: str
    base_head: str
    seed: int
    settings: dict[str, Any]
    resources: Resources
    keep_model: bool = False

    def training_config(self, output_dir: str | os.PathLike[str]) -> Any:
        """The :class:`qubert.training.TrainingConfig` of this run, writing to ``output_dir/runs/<run_id>``."""
        from qubert.training import TrainingConfig

        return TrainingConfig(**self.settings, output_dir=str(self.run_dir(output_dir)))

    def run_dir(self, output_dir: str | os.PathLike[str]) -> Path:
        return Path(output_dir) / "runs" / self.run_id

    def semantic_settings(self) -> dict[str, Any]:
        """The settings that determine the result (compared to decide whether a run is finished)."""
        return {k: v for k, v in self.settings.items() if k not in _NON_SEMANTIC_KEYS}


def expand_grid(config: BenchConfig) -> list[RunSpec]:
    """All runs of a grid, in a fixed order: data set, mode, head (controls after their quantum head), seed.

    Raises:
        BenchConfigError: two different heads get the same label, or the grid is empty.

    Example:
        >>> c = parse_bench_config({"datasets": ["sms_spam"], "seeds": [0, 1], "controls": ["matched_mlp"],
        ...                         "heads": ["linear", {"head": "quantum", "qubits": 2}]}, online=False)
        >>> [s.run_id for s in expand_grid(c)][::2]
        ['sms_spam/frozen/linear/seed0', 'sms_spam/frozen/quantum_q2_l2/seed0', 'sms_spam/frozen/matched_mlp_q2_l2/seed0']
    """
    from qubert.data import REGISTRY

    fields = _training_fields()
    base_resources = {"num_cpus": 1, "num_gpus": 0, **config.resources}
    specs: list[RunSpec] = []
    seen: dict[str, RunSpec] = {}
    for dataset_entry in config.datasets:
        dataset = dataset_entry["dataset"]
        n_classes = REGISTRY[dataset].n_classes
        for mode_entry in config.modes:
            mode = mode_entry["mode"]
            for i, head_entry in enumerate(config.heads):
                settings = {**config.training, **_settings(dataset_entry), **_settings(mode_entry),
                            **_settings(head_entry), "dataset": dataset, "mode": mode, "head": head_entry["head"]}
                resources = {**base_resources, **dataset_entry.get("resources", {}),
                             **mode_entry.get("resources", {}), **head_entry.get("resources", {})}
                for head, head_type, control, base_head, head_settings in _head_variants(
                    settings, head_entry.get("name"), head_entry.get("controls", config.controls), fields, n_classes,
                    f"heads[{i}]",
                ):
                    _validate_settings(head_settings, config.seeds[0], f"{dataset}/{mode}/{head} (heads[{i}])")
                    for seed in config.seeds:
                        full = {**head_settings, "seed": seed}
                        full.setdefault("progress", False)
                        spec = RunSpec(
                            run_id=f"{dataset}/{mode}/{head}/seed{seed}", dataset=dataset, mode=mode, head=head,
                            head_type=head_type, control=control, base_head=base_head, seed=seed,
                            settings=full, resources=Resources(**resources), keep_model=config.keep_models,
                        )
                        previous = seen.get(spec.run_id)
                        if previous is not None:
                            if previous.semantic_settings() != spec.semantic_settings():
                                raise BenchConfigError(
                                    f"heads[{i}]: head label {head!r} is used by two different heads; "
                                    "give one of them a `name`"
                                )
                            continue  # the same run listed twice (e.g. a control that is also a head)
                        seen[spec.run_id] = spec
                        specs.append(spec)
    if not specs:
        raise BenchConfigError("the grid is empty: no runs to do")
    return specs


def _validate_settings(settings: Mapping[str, Any], seed: int, where: str) -> None:
    """Let TrainingConfig check the run's options now, before any run starts."""
    from qubert.training import TrainingConfig

    try:
        TrainingConfig(**settings, seed=seed)
    except (TypeError, ValueError) as err:
        raise BenchConfigError(f"{where}: {' '.join(str(err).split())}") from None


def _settings(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in ("dataset", "mode", "head", "name", "resources", "controls")}


def _head_variants(settings: dict[str, Any], name: str | None, controls: Sequence[str],
                   fields: Mapping[str, Any], n_classes: int, where: str
                   ) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """``(label, head_type, control, base_head, settings)`` for a head entry and its controls."""
    head_type = settings["head"]
    resolved = {**fields, **settings}
    if head_type != "quantum":
        for key in _QUANTUM_KEYS:  # quantum settings on a classical head would only confuse the csv
            settings.pop(key, None)
        return [(name or _classical_label(head_type, resolved, fields), head_type, "", "", settings)]

    circuit = _circuit_for(resolved, where)
    label = name or _quantum_label(resolved, fields)
    variants = [(label, "quantum", "", "", settings)]
    for control in controls:
        if control == "matched_mlp":
            hidden = _matched_hidden_size(resolved, circuit, n_classes)
            mlp = {k: v for k, v in settings.items() if k not in _QUANTUM_KEYS}
            mlp.update(head="mlp", hidden_sizes=[hidden])
            variants.append((f"matched_mlp_{label.removeprefix('quantum_')}", "mlp", control, label, mlp))
        elif control == "no_entanglement" and resolved["entanglement"] != "none" and resolved["qubits"] > 1:
            variants.append((f"{label}_noent", "quantum", control, label, {**settings, "entanglement": "none"}))
        elif control == "frozen_circuit" and not resolved["freeze_circuit"]:
            variants.append((f"{label}_frozen", "quantum", control, label, {**settings, "freeze_circuit": True}))
    return variants


def _classical_label(head_type: str, resolved: Mapping[str, Any], fields: Mapping[str, Any]) -> str:
    if head_type == "mlp" and list(resolved["hidden_sizes"]) != list(fields["hidden_sizes"]):
        return "mlp_" + "x".join(str(h) for h in resolved["hidden_sizes"])
    return head_type


def _quantum_label(resolved: Mapping[str, Any], fields: Mapping[str, Any]) -> str:
    label = f"quantum_q{resolved['qubits']}_l{resolved['layers']}"
    for key in _LABEL_KEYS:
        if resolved[key] != fields[key]:
            label += f"_{key}-{resolved[key]}"
    if resolved["entanglement"] == "none":
        label += "_noent"
    elif resolved["entanglement"] != fields["entanglement"]:
        label += f"_entanglement-{resolved['entanglement']}"
    if resolved["freeze_circuit"]:
        label += "_frozen"
    return label


def _circuit_for(resolved: Mapping[str, Any], where: str) -> Any:
    from qubert.quantum.circuit import Circuit

    try:
        return Circuit(
            n_qubits=resolved["qubits"], n_layers=resolved["layers"], encoding=resolved["encoding"],
            reupload=resolved["reupload"], ansatz=resolved["ansatz"], entanglement=resolved["entanglement"],
            rotation=resolved["rotation"], measurement=resolved["measurement"], init=resolved["init"],
        )
    except (TypeError, ValueError) as err:
        raise BenchConfigError(f"{where}: invalid quantum head: {err}") from None


def _matched_hidden_size(resolved: Mapping[str, Any], circuit: Any, n_classes: int) -> int:
    """Hidden width of the MLP with as many trainable parameters as this quantum head."""
    from qubert.heads import QuantumHead, matched_mlp_head

    head = QuantumHead(
        in_features=encoder_hidden_size(resolved["model"]), n_classes=n_classes, circuit=circuit,
        scaling=resolved["scaling"], freeze_circuit=resolved["freeze_circuit"], seed=0,
    )
    return int(matched_mlp_head(head).hidden_sizes[0])


_HIDDEN_SIZES: dict[str, int] = {}


def encoder_hidden_size(model: str) -> int:
    """Width of an encoder's output (``hidden_size`` of its transformers config); ``default`` is MiniLM.

    Example:
        >>> encoder_hidden_size("default")  # doctest: +SKIP
        384
    """
    if model not in _HIDDEN_SIZES:
        from transformers import AutoConfig

        try:
            location = _model_location(model)
            _HIDDEN_SIZES[model] = int(AutoConfig.from_pretrained(location).hidden_size)
        except (OSError, ValueError, AttributeError, ImportError) as err:
            detail = " ".join(str(err).split())[:200]
            raise BenchConfigError(f"training.model: cannot read the encoder config of {model!r} ({detail})") from None
    return _HIDDEN_SIZES[model]


def _model_location(model: str) -> str:
    from qubert.modeling import resolve_model_path

    return str(resolve_model_path(model))


# ============================================================================================
# Execution
# ============================================================================================


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


def is_finished(spec: RunSpec, output_dir: str | os.PathLike[str]) -> bool:
    """A run is finished when its ``metrics.json`` exists and it was run with the same settings."""
    run_dir = spec.run_dir(output_dir)
    marker = run_dir / RUN_MARKER
    if not (run_dir / "metrics.json").is_file() or not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return _jsonable(recorded.get("settings")) == _jsonable(spec.semantic_settings())


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def execute_run(spec: RunSpec, output_dir: str, run_fn: Callable[[Any], Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Train one run into a clean run directory and mark it finished.

    Anything left in the run directory by an unfinished or outdated run is removed first.
    Returns the run's metrics.
    """
    if run_fn is None:
        from qubert.training import run_training as run_fn
    run_dir = spec.run_dir(output_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    if not spec.settings.get("progress", True):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" / "Writing model shards" bars
    metrics = dict(run_fn(spec.training_config(output_dir)))
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "metrics.json").is_file():  # a run_fn that only returns its metrics
        _write_json_atomic(run_dir / "metrics.json", metrics)
    # A finished run needs no checkpoints (they only serve to resume); models are kept on request.
    for heavy in ("checkpoints",) if spec.keep_model else ("checkpoints", "model"):
        shutil.rmtree(run_dir / heavy, ignore_errors=True)
    _write_json_atomic(run_dir / RUN_MARKER, {"run_id": spec.run_id, "settings": spec.semantic_settings()})
    return metrics


def _twins(specs: Sequence[RunSpec]) -> dict[str, RunSpec]:
    """Runs whose settings equal an earlier run's (e.g. the matched MLP of two quantum heads that
    differ only in depth): run id -> that earlier run. They are copied, not trained again."""
    first: dict[str, RunSpec] = {}
    twins: dict[str, RunSpec] = {}
    for spec in specs:
        key = json.dumps(_jsonable(spec.semantic_settings()), sort_keys=True)
        if key in first:
            twins[spec.run_id] = first[key]
        else:
            first[key] = spec
    return twins


def _copy_twin(original: RunSpec, twin: RunSpec, output_dir: Path) -> dict[str, Any]:
    """Give ``twin`` the small result files of its identical, finished ``original`` (not the model)."""
    source, target = original.run_dir(output_dir), twin.run_dir(output_dir)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file() and path.name != RUN_MARKER:
            shutil.copy2(path, target / path.name)
    _write_json_atomic(target / RUN_MARKER, {"run_id": twin.run_id, "settings": twin.semantic_settings(),
                                             "copied_from": original.run_id})
    return json.loads((target / "metrics.json").read_text(encoding="utf-8"))


def _ray_task(spec: RunSpec, output_dir: str, run_fn: Callable | None
              ) -> tuple[str, dict[str, Any] | None, str | None, float]:
    """Body of a Ray task: never raises, so one failed run cannot take the grid down."""
    start = time.perf_counter()
    try:
        return spec.run_id, execute_run(spec, output_dir, run_fn), None, time.perf_counter() - start
    except Exception as err:  # noqa: BLE001 - reported per run
        return spec.run_id, None, _one_line(err), time.perf_counter() - start


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())}"[:500]


def plan_bench(config: BenchConfig) -> tuple[list[RunSpec], list[RunSpec]]:
    """``(finished, pending)`` runs of a grid, each in grid order (what ``--dry-run`` shows).

    Example:
        >>> done, todo = plan_bench(load_bench_config("configs/quick.yaml"))  # doctest: +SKIP
    """
    specs = expand_grid(config)
    finished = [s for s in specs if is_finished(s, config.output_dir)]
    ids = {s.run_id for s in finished}
    return finished, [s for s in specs if s.run_id not in ids]


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
    specs = expand_grid(config)
    output_dir = config.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    _write_text_atomic(output_dir / "bench_config.yaml", _yaml_dump(config.to_dict()))
    done, pending = plan_bench(config)
    log(f"{config.name}: {len(specs)} runs, {len(done)} already finished, {len(pending)} to run")
    results_csv = output_dir / RESULTS_FILE
    ran: list[str] = []
    failed: dict[str, str] = {}
    counter = itertools.count(1)

    def on_done(spec: RunSpec, metrics: Mapping[str, Any] | None, error: str | None, seconds: float) -> None:
        n = next(counter)
        if error is None:
            ran.append(spec.run_id)
            _write_results(specs, output_dir, results_csv)
            f1 = metrics.get("test_macro_f1") if metrics else None
            shown = f"macro-F1 {f1:.4f}" if isinstance(f1, (int, float)) else "done"
            log(f"[{n}/{len(pending)}] {spec.run_id}: {shown} ({seconds:.1f} s)")
        else:
            failed[spec.run_id] = error
            log(f"[{n}/{len(pending)}] {spec.run_id}: FAILED {error}")

    _write_results(specs, output_dir, results_csv)  # drops rows of runs that no longer match
    twins = _twins(specs)
    to_train = [s for s in pending if s.run_id not in twins]
    if to_train and (use_ray or ray_address):
        _execute_ray(to_train, output_dir, run_fn, ray_address, ray_num_cpus, on_done)
    else:
        for spec in to_train:
            start = time.perf_counter()
            try:
                metrics = execute_run(spec, str(output_dir), run_fn)
            except Exception as err:  # noqa: BLE001 - one bad run must not stop the grid
                on_done(spec, None, _one_line(err), time.perf_counter() - start)
            else:
                on_done(spec, metrics, None, time.perf_counter() - start)
    for spec in pending:
        if spec.run_id in twins:
            original = twins[spec.run_id]
            if is_finished(original, output_dir):
                on_done(spec, _copy_twin(original, spec, output_dir), None, 0.0)
            else:
                on_done(spec, None, f"its identical run {original.run_id} did not finish", 0.0)
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
    specs = _specs if _specs is not None else expand_grid(config)
    output_dir = config.output_dir
    results_csv = output_dir / RESULTS_FILE
    results = _write_results(specs, output_dir, results_csv)
    summary, figures = None, []
    if report and len(results):
        figures = plot_figures(results, output_dir, config=config)
        summary = write_summary(results, output_dir / SUMMARY_FILE, config=config, figures=figures,
                                failed=failed, n_planned=len(specs))
        log(f"wrote {results_csv}, {summary} and {len(figures)} figure(s)")
    return BenchResult(results=results, ran=[], skipped=[], failed=dict(failed or {}),
                       results_csv=results_csv, summary=summary, figures=figures)


def _encoding_key(spec: RunSpec) -> tuple | None:
    """Runs with the same key share one frozen-encoder embedding cache entry (None: no cache)."""
    if spec.mode != "frozen":
        return None
    keys = ("dataset", "data_dir", "train_file", "validation_file", "test_file", "text_column", "label_column",
            "max_train_samples", "max_eval_samples", "drop_empty", "model", "pooling", "max_length", "cache_dir",
            "seed")  # the seed picks the stratified subsets
    return tuple(json.dumps(spec.settings.get(k), default=str) for k in keys)


def _execute_ray(pending: list[RunSpec], output_dir: Path, run_fn: Callable | None, address: str | None,
                 num_cpus: int | None, on_done: Callable) -> None:
    """Run specs as Ray tasks; the first run of each embedding-cache group goes alone, so the
    other runs of that group find the cache filled instead of all encoding the same texts."""
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
            ref = task.options(**spec.resources.ray_options()).remote(spec, str(output_dir), run_fn)
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
    finally:
        if started_here:
            ray.shutdown()


def _record_remote_result(spec: RunSpec, output_dir: Path, metrics: Mapping[str, Any]) -> None:
    run_dir = spec.run_dir(output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(run_dir / "metrics.json", dict(metrics))
    _write_json_atomic(run_dir / RUN_MARKER, {"run_id": spec.run_id, "settings": spec.semantic_settings()})


# ============================================================================================
# Results
# ============================================================================================


def collect_results(specs: Sequence[RunSpec], output_dir: str | os.PathLike[str]) -> Any:
    """A DataFrame with one row per finished run (columns :data:`RESULT_COLUMNS`), in grid order.

    Example:
        >>> collect_results(expand_grid(config), config.output_dir)  # doctest: +SKIP
    """
    import pandas as pd

    rows = []
    for spec in specs:
        if not is_finished(spec, output_dir):
            continue
        run_dir = spec.run_dir(output_dir)
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        rows.append(_result_row(spec, metrics, Path(output_dir)))
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def _result_row(spec: RunSpec, metrics: Mapping[str, Any], output_dir: Path) -> dict[str, Any]:
    settings = {**_training_fields(), **spec.settings}
    row: dict[str, Any] = {
        "run_id": spec.run_id, "dataset": spec.dataset, "mode": spec.mode, "head": spec.head,
        "head_type": spec.head_type, "control": spec.control, "base_head": spec.base_head, "seed": spec.seed,
    }
    for key in CONFIG_COLUMNS:
        value = settings.get(key)
        if key in _QUANTUM_KEYS and spec.head_type != "quantum":
            value = None
        if key == "hidden_sizes":
            value = json.dumps(list(value)) if spec.head_type == "mlp" and value is not None else None
        row[key] = value
    for key in METRIC_COLUMNS + TIMING_COLUMNS:
        row[key] = metrics.get(key)
    row["run_dir"] = spec.run_dir(output_dir).relative_to(output_dir).as_posix()
    return row


def _write_results(specs: Sequence[RunSpec], output_dir: Path, path: Path) -> Any:
    results = collect_results(specs, output_dir)
    _write_text_atomic(path, results.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    return results


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_json_atomic(path: Path, data: Any) -> None:
    _write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _yaml_dump(data: Any) -> str:
    import yaml

    return yaml.safe_dump(_jsonable(data), sort_keys=False, allow_unicode=True)


# ============================================================================================
# Statistics
# ============================================================================================


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


# ============================================================================================
# Report
# ============================================================================================


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.{digits}f}"


def _fmt_p(value: float) -> str:
    if value is None or math.isnan(value):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _signed(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:+.3f}"


def write_summary(results: Any, path: str | os.PathLike[str], *, config: BenchConfig | None = None,
                  figures: Sequence[Path] = (), failed: Mapping[str, str] | None = None,
                  n_planned: int | None = None) -> Path:
    """Write ``summary.md``: per data set and mode, each head's macro-F1 over seeds (mean +- std,
    bootstrap CI), the paired comparison with the best classical head, and each quantum head
    against its controls.

    Example:
        >>> write_summary(pd.read_csv("results.csv"), "summary.md")  # doctest: +SKIP
    """
    stats_opts = {"n_resamples": 10_000, "confidence": 0.95, "seed": 0, **(config.statistics if config else {})}
    conf = round(stats_opts["confidence"] * 100)
    path = Path(path)
    table = aggregate(results, **stats_opts)
    comparisons = compare_heads(results, **stats_opts)
    seeds = sorted(int(s) for s in results["seed"].unique())
    n = len(seeds)
    lines = [f"# Bench summary: {config.name if config else path.parent.name}", ""]
    if config is not None and config.description:
        lines += [config.description.strip(), ""]
    models = ", ".join(sorted(str(m) for m in results["model"].dropna().unique()))
    lines += [
        f"- runs: {len(results)} finished" + (f" of {n_planned} planned" if n_planned else "")
        + (f", {len(failed)} failed" if failed else ""),
        f"- data sets: {', '.join(results['dataset'].unique())}; modes: {', '.join(results['mode'].unique())}",
        f"- encoder: {models or 'default'}" + (f" ({'online' if config.online else 'offline'} choice)" if config else ""),
        f"- seeds: {n} ({', '.join(map(str, seeds))}); metric: macro-F1 on the test split",
        "",
        "## How to read this",
        "",
        f"- **mean ± std** over seeds; **{conf}% CI**: percentile bootstrap of the mean over seeds "
        f"({stats_opts['n_resamples']:,} resamples, seed {stats_opts['seed']}).",
        "- **Δ**: mean paired difference (this head minus the reference) over the same seeds, with its "
        f"bootstrap {conf}% CI; **t p**: paired t-test (`scipy.stats.ttest_rel`); **W p**: Wilcoxon signed-rank.",
        "- **verdict**: `higher` / `lower` only when the CI of Δ excludes 0 *and* the paired t-test "
        "gives p < 0.05; otherwise `no clear difference`.",
    ]
    if n < 10:
        min_w = 2.0 / 2**n
        lines.append(
            f"- **Low power:** with {n} seed{'s' if n != 1 else ''} a bootstrap over seeds sees only "
            f"{n} values, so its CIs are too narrow and only large, consistent effects are detectable; "
            f"the smallest two-sided Wilcoxon p-value {n} pairs can give is {min_w:.3g}"
            + (" (it can never reach 0.05)." if min_w >= 0.05 else ".")
            + " Treat `no clear difference` as *not shown*, not as *equal*."
        )
    lines.append("")
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{p.stem}]({p.relative_to(path.parent).as_posix()})" for p in figures]
        lines.append("")

    for (dataset, mode), block in table.groupby(["dataset", "mode"], sort=False):
        comp = comparisons[(comparisons["dataset"] == dataset) & (comparisons["mode"] == mode)]
        vs_best = comp[comp["reference_kind"] == "best_classical"].set_index("head")
        best = comp[comp["reference_kind"] == "best_classical"]["reference"]
        best_name = best.iloc[0] if len(best) else None
        lines += [f"## {dataset} ({mode})", ""]
        rows = results[(results["dataset"] == dataset) & (results["mode"] == mode)]
        sizes = [f"{what} rows: {int(rows[col].median()):,}" for what, col in (("train", "train_samples"), ("test", "test_samples"))
                 if col in rows and rows[col].notna().any()]
        if best_name or sizes:
            lines += ["; ".join(([f"Best classical head: **{best_name}**"] if best_name else []) + sizes) + ".", ""]
        lines += [
            f"| head | control of | params | macro-F1 mean ± std | {conf}% CI | accuracy | train s "
            f"| Δ vs {best_name or 'best classical'} [{conf}% CI] | t p | W p | verdict |",
            "|---|---|---:|---|---|---:|---:|---|---:|---:|---|",
        ]
        for row in block.itertuples():
            params = f"{int(row.trainable_params):,}" if row.trainable_params is not None and not \
                (isinstance(row.trainable_params, float) and math.isnan(row.trainable_params)) else "–"
            if row.head in vs_best.index:
                c = vs_best.loc[row.head]
                delta = f"{_signed(c.mean_diff)} [{_signed(c.ci_low)}, {_signed(c.ci_high)}]"
                tp, wp, verdict = _fmt_p(c.t_pvalue), _fmt_p(c.w_pvalue), c.verdict
            else:
                delta, tp, wp, verdict = ("(reference)" if row.head == best_name else "–"), "–", "–", ""
            label = f"**{row.head}**" if row.head == best_name else row.head
            lines.append(
                f"| {label} | {row.base_head or ''} | {params} | {_fmt(row.f1_mean)} ± {_fmt(row.f1_std)} "
                f"| [{_fmt(row.f1_ci_low)}, {_fmt(row.f1_ci_high)}] | {_fmt(row.accuracy_mean)} "
                f"| {_fmt(row.train_runtime_mean, 1)} | {delta} | {tp} | {wp} | {verdict} |"
            )
        lines.append("")
        controls = comp[comp["reference_kind"] != "best_classical"]
        if len(controls):
            lines += [
                "Quantum head against its controls (Δ = quantum − control):",
                "",
                f"| quantum head | control | Δ macro-F1 [{conf}% CI] | t p | W p | verdict |",
                "|---|---|---|---:|---:|---|",
            ]
            for c in controls.itertuples():
                lines.append(
                    f"| {c.head} | {c.reference_kind} ({c.reference}) | {_signed(c.mean_diff)} "
                    f"[{_signed(c.ci_low)}, {_signed(c.ci_high)}] | {_fmt_p(c.t_pvalue)} | {_fmt_p(c.w_pvalue)} "
                    f"| {c.verdict} |"
                )
            lines.append("")

    if len(comparisons):
        lines += ["## Tally", "", "Verdicts of every quantum head (all data sets and modes):", ""]
        quantum = comparisons[comparisons["head"].isin(results.loc[(results["head_type"] == "quantum")
                                                                   & (results["control"].fillna("") == ""), "head"])]
        lines += ["| reference | higher | no clear difference | lower |", "|---|---:|---:|---:|"]
        for kind, group in quantum.groupby("reference_kind", sort=False):
            counts = group["verdict"].value_counts()
            lines.append(f"| {kind} | {counts.get('higher', 0)} | {counts.get('no clear difference', 0)} "
                         f"| {counts.get('lower', 0)} |")
        flagged = int(quantum["verdict"].isin(["higher", "lower"]).sum())
        lines += [
            "",
            f"{len(quantum)} comparisons at p < 0.05 each, not corrected for multiplicity: about "
            f"{0.05 * len(quantum):.1f} would be flagged by chance alone if no head differed from any other; "
            f"{flagged} {'was' if flagged == 1 else 'were'} flagged.",
        ]
        lines.append("")
    if failed:
        lines += ["## Failed runs", ""] + [f"- `{run_id}`: {error}" for run_id, error in failed.items()] + [""]
    _write_text_atomic(path, "\n".join(lines))
    return path


# ============================================================================================
# Figures
# ============================================================================================

_COLOURS = {"linear": "#7f7f7f", "mlp": "#1f77b4", "quantum": "#9467bd", "matched_mlp": "#ff7f0e",
            "no_entanglement": "#c5b0d5", "frozen_circuit": "#17becf"}


def _head_colour(head_type: str, control: str) -> str:
    return _COLOURS.get(control or head_type, "#333333")


def plot_figures(results: Any, output_dir: str | os.PathLike[str], *, config: BenchConfig | None = None) -> list[Path]:
    """Write ``figures/macro_f1_by_head.png``, ``macro_f1_vs_qubits.png`` (when there are quantum
    heads) and ``training_curves.png`` (when runs left a ``history.json``). Returns the paths.

    Example:
        >>> plot_figures(pd.read_csv("runs/bench/quick/results.csv"), "runs/bench/quick")  # doctest: +SKIP
    """
    output_dir = Path(output_dir)
    figures_dir = output_dir / FIGURES_DIR
    figures_dir.mkdir(parents=True, exist_ok=True)
    stats_opts = {"n_resamples": 10_000, "confidence": 0.95, "seed": 0, **(config.statistics if config else {})}
    table = aggregate(results, **stats_opts)
    paths = [_plot_by_head(results, table, figures_dir / "macro_f1_by_head.png", stats_opts["confidence"])]
    if (results["head_type"] == "quantum").any():
        paths.append(_plot_vs_qubits(table, figures_dir / "macro_f1_vs_qubits.png", stats_opts["confidence"]))
    curves = _plot_training_curves(results, output_dir, figures_dir / "training_curves.png")
    if curves is not None:
        paths.append(curves)
    return paths


def _panels(table: Any) -> list[tuple[str, str]]:
    return list(dict.fromkeys(zip(table["dataset"], table["mode"])))


def _new_figure(n_panels: int, width: float, height: float, ncols: int | None = None):
    from matplotlib.figure import Figure

    ncols = ncols or min(3, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes


def _plot_by_head(results: Any, table: Any, path: Path, confidence: float) -> Path:
    panels = _panels(table)
    n_heads = table.groupby(["dataset", "mode"]).size().max()
    fig, axes = _new_figure(len(panels), 5.0, 1.2 + 0.36 * n_heads)
    for ax, (dataset, mode) in zip(axes, panels):
        block = table[(table["dataset"] == dataset) & (table["mode"] == mode)].reset_index(drop=True)
        ys = np.arange(len(block))[::-1]
        for y, row in zip(ys, block.itertuples()):
            colour = _head_colour(row.head_type, row.control)
            # A dot plot, not bars: the axis does not start at 0, and a bar would say it does.
            ax.errorbar(row.f1_mean, y, xerr=[[row.f1_mean - row.f1_ci_low], [row.f1_ci_high - row.f1_mean]],
                        fmt="D", ms=7, color=colour, ecolor=colour, capsize=3, lw=1.5, zorder=2)
            seeds = results[(results["dataset"] == dataset) & (results["mode"] == mode) & (results["head"] == row.head)]
            ax.scatter(seeds["test_macro_f1"], np.full(len(seeds), y), s=12, color="black", alpha=0.6, zorder=3)
        classical = block[block["head_type"].isin(CLASSICAL_HEADS) & (block["control"] == "")]
        if len(classical):
            ax.axvline(classical["f1_mean"].max(), color="black", ls="--", lw=0.8)
        ax.set_yticks(ys, block["head"], fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        low = max(0.0, min(block["f1_ci_low"].min(), results.loc[results["dataset"] == dataset, "test_macro_f1"].min()) - 0.05)
        ax.set_xlim(low, 1.0)
        ax.set_xlabel("test macro-F1")
        ax.set_title(f"{dataset} ({mode})", fontsize=11)
    fig.suptitle(f"Test macro-F1 by head: diamond = mean over seeds with {round(confidence * 100)}% bootstrap CI, "
                 "dots = seeds, dashed = best classical head", fontsize=11)
    fig.savefig(path, dpi=110)
    return path


def _plot_vs_qubits(table: Any, path: Path, confidence: float) -> Path:
    panels = _panels(table)
    fig, axes = _new_figure(len(panels), 4.2, 3.2)
    styles = {"": ("quantum", "-o"), "matched_mlp": ("matched MLP", "--s"),
              "no_entanglement": ("no entanglement", ":^"), "frozen_circuit": ("frozen circuit", "-.v")}
    for ax, (dataset, mode) in zip(axes, panels):
        block = table[(table["dataset"] == dataset) & (table["mode"] == mode)]
        quantum_like = block[(block["head_type"] == "quantum") | (block["control"] == "matched_mlp")].copy()
        if len(quantum_like):
            base = table.set_index(["dataset", "mode", "head"])
            # A control's qubit count and depth are those of the quantum head it controls.
            for col in ("qubits", "layers"):
                quantum_like[col] = [
                    base.loc[(dataset, mode, r.base_head), col] if r.control else getattr(r, col)
                    for r in quantum_like.itertuples()
                ]
            series = list(quantum_like.groupby(["control", "layers"], sort=False))
            for k, ((control, layers), group) in enumerate(series):
                group = group.sort_values("qubits")
                name, style = styles.get(control, (control, "-"))
                offset = 0.08 * (k - (len(series) - 1) / 2)  # side by side, so the error bars stay readable
                ax.errorbar(group["qubits"].astype(int) + offset, group["f1_mean"],
                            yerr=[group["f1_mean"] - group["f1_ci_low"], group["f1_ci_high"] - group["f1_mean"]],
                            fmt=style, capsize=3, ms=4, color=_head_colour("quantum", control),
                            label=f"{name}, {int(layers)} layer{'s' if int(layers) != 1 else ''}")
        for row in block[block["head_type"].isin(CLASSICAL_HEADS) & (block["control"] == "")].itertuples():
            ax.axhline(row.f1_mean, color=_head_colour(row.head_type, ""), ls="--", lw=1, label=row.head)
            ax.set_xticks(sorted(int(q) for q in quantum_like["qubits"].unique()))
        ax.set_xlabel("qubits")
        ax.set_ylabel("test macro-F1")
        ax.set_title(f"{dataset} ({mode})", fontsize=11)
        ax.grid(alpha=0.3)
    _figure_legend(fig, axes)
    fig.suptitle(f"Test macro-F1 versus qubit count (mean, {round(confidence * 100)}% bootstrap CI over seeds)", fontsize=11)
    fig.savefig(path, dpi=110)
    return path


def _figure_legend(fig: Any, axes: Any) -> None:
    """One legend for all panels, below them (never over the data)."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside lower center", ncols=min(len(entries), 4), fontsize=10, frameon=False)


def read_history(run_dir: str | os.PathLike[str]) -> list[dict[str, float]]:
    """Per-epoch records from a run's ``history.json`` (``[]`` when missing or unreadable).

    Accepts a list of per-epoch dicts, ``{"epochs"|"history"|"log_history": [...]}`` or a dict of
    equal-length lists.
    """
    path = Path(run_dir) / "history.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if isinstance(data, dict):
        for key in ("epochs", "history", "log_history"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            lists = {k: v for k, v in data.items() if isinstance(v, list)}
            if lists and len({len(v) for v in lists.values()}) == 1:
                length = len(next(iter(lists.values())))
                data = [{k: v[i] for k, v in lists.items()} for i in range(length)]
    if not isinstance(data, list):
        return []
    records = [r for r in data if isinstance(r, dict)]
    for i, record in enumerate(records):
        record.setdefault("epoch", i + 1)
    return records


def _plot_training_curves(results: Any, output_dir: Path, path: Path) -> Path | None:
    main = results[results["control"].fillna("") == ""]
    curves: dict[tuple[str, str], dict[str, dict[str, dict[float, list[float]]]]] = {}
    for row in main.itertuples():
        history = read_history(output_dir / row.run_dir)
        for record in history:
            epoch = record.get("epoch")
            for metric in ("train_loss", "eval_macro_f1"):
                value = record.get(metric)
                if isinstance(value, (int, float)) and isinstance(epoch, (int, float)) and math.isfinite(value):
                    panel = curves.setdefault((row.dataset, row.mode), {})
                    panel.setdefault(row.head, {}).setdefault(metric, {}).setdefault(float(epoch), []).append(float(value))
    if not curves:
        return None
    from matplotlib.figure import Figure

    panels = list(curves)
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 1.0 + 3.2 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 2, squeeze=False)
    heads = list(dict.fromkeys(main["head"]))
    cmap = _colour_cycle(len(heads))
    for (ax_loss, ax_f1), panel in zip(axes, panels):
        for head, metrics in curves[panel].items():
            colour = cmap[heads.index(head)]
            for ax, metric in ((ax_loss, "train_loss"), (ax_f1, "eval_macro_f1")):
                if metric in metrics:
                    epochs = sorted(metrics[metric])
                    ax.plot(epochs, [np.mean(metrics[metric][e]) for e in epochs], color=colour, lw=1.2, marker="o", ms=4,
                            label=head)
        ax_loss.set_title(f"{panel[0]} ({panel[1]}): train loss", fontsize=11)
        ax_f1.set_title(f"{panel[0]} ({panel[1]}): validation macro-F1", fontsize=11)
        ax_loss.set_ylabel("train loss (cross-entropy)")
        ax_f1.set_ylabel("validation macro-F1")
        for ax in (ax_loss, ax_f1):
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
    entries: dict[str, Any] = {}
    for ax in axes.ravel():
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    fig.legend(list(entries.values()), list(entries), loc="outside right upper", fontsize=10, frameon=False, title="head")
    fig.suptitle("Training curves: mean over the seeds still training at each epoch (early stopping); "
                 "controls omitted", fontsize=11)
    fig.savefig(path, dpi=100)
    return path


def _colour_cycle(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(max(n, 1))]
