"""Bench configs: the YAML format, its checks, and :class:`BenchConfig`.

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
    datasets:                          # see qubert.bench.data
      - sms_spam                       # a registry name
      - mydata                         # a folder <data_dir>/mydata/ with train[/validation]/test files
      - {dataset: imdb, max_length: 128}                       # + settings for this data set
      - {name: tickets, train_file: t/train.csv.gz, test_file: t/test.csv.gz, text_column: body, label_column: queue}
    modes: [frozen, {mode: full, num_epochs: 3, resources: {num_gpus: 1}}]
    replicates: 40                     # replicate r: fresh paired data draws + seed r (`seeds:` is the old name)
    looks: [10, 20, 30, 40]            # test after these many replicates; default: one look at the end
    pool: {train: 4000, test: 2000, seed: 0}          # stratified caps of the training / test pools (null: all)
    draws: {train: 2000, validation: 500, test: 1000}  # rows per replicate (test: all = the whole test pool)
    confirmatory: [matched_mlp, no_entanglement, best_classical]   # Holm; other comparisons: BH
    heads:
      - linear
      - logreg                         # scikit-learn logistic regression on the frozen features
      - {head: mlp, hidden_sizes: [256]}
      - {head: quantum, qubits: [2, 4, 6, 8], layers: [1, 2]}   # list values expand
      - {head: quantum, qubits: 8, ansatz: strongly_entangling, name: q8_sel, controls: []}
    controls: [matched_mlp, no_entanglement, frozen_circuit]
    training: {learning_rate: 0.01, model: {online: bert-base-uncased, offline: default}}
    resources: {num_cpus: 1, num_gpus: 0}        # per run, for Ray
    statistics: {n_resamples: 10000, confidence: 0.95, seed: 0, margin: 0.01, alpha: 0.05, correction: holm,
                 method: obrien_fleming}       # sequential rule across looks (or pocock)
    tuning: {trials: 8, batch: 2, seed: 0, space: {...}}   # see qubert.bench.tuning; trials: 0 = off
    keep_models: false                 # keep each run's model/ folder

Settings are :class:`qubert.training.TrainingConfig` fields. They merge in the order ``training`` <
data set < mode < head entry. A value ``{online: a, offline: b}`` becomes ``a`` when the Hub can be
reached and ``HF_HUB_OFFLINE`` is not set, and ``b`` otherwise.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import itertools
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qubert.heads import HEAD_REGISTRY

CONTROLS = ("matched_mlp", "no_entanglement", "frozen_circuit")
YARDSTICK_HEADS = ("logreg",)  # fitted by scikit-learn on frozen features (qubert.bench.yardsticks), not heads
HEAD_TYPES = (*HEAD_REGISTRY, *YARDSTICK_HEADS)  # the registered head types (qubert.heads) and the yardsticks
CLASSICAL_HEADS = (*(name for name, head in HEAD_REGISTRY.items() if not head.quantum), *YARDSTICK_HEADS)

# TrainingConfig fields the grid itself sets: they cannot be given as plain settings.
_GRID_KEYS = ("dataset", "mode", "seed", "head", "output_dir", "resume", "overwrite_output_dir")
QUANTUM_KEYS = ("qubits", "layers", "encoding", "ansatz", "entanglement", "rotation", "measurement",
                 "init", "reupload", "scaling", "freeze_circuit")
_TOP_LEVEL_KEYS = ("name", "description", "output_dir", "data_dir", "cache_dir", "datasets", "modes",
                   "seeds", "replicates", "looks", "pool", "draws", "confirmatory", "heads", "controls", "training",
                   "resources", "statistics", "tuning", "keep_models")
_STATISTICS_KEYS = ("n_resamples", "confidence", "seed", "margin", "alpha", "correction", "method")
_CORRECTIONS = ("holm", "bh", "none")
# Comparisons a quantum head can be confirmed against (the rest of its comparisons are exploratory).
COMPARISON_KINDS = ("matched_mlp", "no_entanglement", "best_classical", "frozen_circuit")
DEFAULT_CONFIRMATORY = ("matched_mlp", "no_entanglement", "best_classical")
DEFAULT_SEEDS = 5
# More replicates than this is a typo (or a config that would never finish): refuse before building any list.
MAX_REPLICATES = 10_000
_POOL_KEYS = ("train", "test", "seed")
_DRAW_KEYS = ("train", "validation", "test")
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
_RESOURCE_KEYS = ("num_cpus", "num_gpus")
_MODE_PATTERN = re.compile(r"^(frozen|full|top[1-9][0-9]*)$")


class BenchConfigError(ValueError):
    """A bench config that cannot run; the message names the offending key."""


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
    tuning: Any = None
    description: str = ""
    keep_models: bool = False
    online: bool = False
    looks: list[int] = field(default_factory=list)
    pool: dict[str, Any] = field(default_factory=dict)
    draws: dict[str, Any] = field(default_factory=dict)
    confirmatory: list[str] = field(default_factory=lambda: list(DEFAULT_CONFIRMATORY))
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
            "replicates": len(self.seeds),
            "looks": self.looks,
            "pool": self.pool,
            "draws": self.draws,
            "confirmatory": self.confirmatory,
            "heads": self.heads,
            "controls": self.controls,
            "training": self.training,
            "resources": self.resources,
            "statistics": self.statistics,
            "tuning": self.tuning.to_dict() if self.tuning is not None else None,
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


# Long: one pass over the config's keys, each checked where it is read, so every error names its key.
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

    fields = training_fields()
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

    datasets = _dataset_entries(data, fields, training.get("data_dir"), fail)
    modes = _axis_entries(data, "modes", "mode", fields, fail, default=[{"mode": "frozen"}])
    heads = _axis_entries(data, "heads", "head", fields, fail)
    for i, entry in enumerate(modes):
        if not isinstance(entry["mode"], str) or not _MODE_PATTERN.match(entry["mode"]):
            raise fail(f"modes[{i}]", f"unknown mode {entry['mode']!r}; expected frozen, full or top<k>")
    for i, entry in enumerate(heads):
        head_types = (*HEAD_REGISTRY, *YARDSTICK_HEADS)  # read now: head types registered after import count
        if entry["head"] not in head_types:
            raise fail(f"heads[{i}].head", f"unknown head {entry['head']!r}; expected one of {', '.join(head_types)}")

    seeds = _replicates(data, fail)
    looks = _looks(data.get("looks"), len(seeds), fail)
    pool = _sizes(data.get("pool"), "pool", _POOL_KEYS, {"train": None, "test": None, "seed": 0}, fail)
    draws = _sizes(data.get("draws"), "draws", _DRAW_KEYS,
                   {"train": training.get("max_train_samples") or 2000,
                    "validation": training.get("max_eval_samples") or 500, "test": "all"}, fail)
    confirmatory = data.get("confirmatory", list(DEFAULT_CONFIRMATORY))
    if not isinstance(confirmatory, list) or any(kind not in COMPARISON_KINDS for kind in confirmatory):
        raise fail("confirmatory", f"must be a list drawn from {', '.join(COMPARISON_KINDS)}, got {confirmatory!r}")

    controls = data.get("controls") or []
    _check_controls(controls, "controls", fail)

    resources = _check_resources(data.get("resources") or {}, "resources", fail)
    if not isinstance(data.get("statistics") or {}, dict):
        raise fail("statistics", "must be a mapping with n_resamples, confidence, seed, margin, alpha and/or correction")
    statistics = {"n_resamples": 10_000, "confidence": 0.95, "seed": 0, "margin": 0.01, "alpha": 0.05, "correction": "holm",
                  "method": "obrien_fleming", **(data.get("statistics") or {})}
    _check_keys(statistics, _STATISTICS_KEYS, "statistics", fail)
    if not isinstance(statistics["n_resamples"], int) or statistics["n_resamples"] < 100:
        raise fail("statistics.n_resamples", f"must be an integer >= 100, got {statistics['n_resamples']!r}")
    if not isinstance(statistics["confidence"], float) or not 0.5 <= statistics["confidence"] < 1:
        raise fail("statistics.confidence", f"must be a number in [0.5, 1), got {statistics['confidence']!r}")
    if not isinstance(statistics["seed"], int):
        raise fail("statistics.seed", f"must be an integer, got {statistics['seed']!r}")
    margin = statistics["margin"]
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 < margin < 1:
        raise fail("statistics.margin", f"the equivalence margin must be a number in (0, 1) (macro-F1), got {margin!r}")
    alpha = statistics["alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 0.5:
        raise fail("statistics.alpha", f"must be a number in (0, 0.5), got {alpha!r}")
    if statistics["correction"] not in _CORRECTIONS:
        raise fail("statistics.correction", f"unknown correction {statistics['correction']!r}; expected one of {', '.join(_CORRECTIONS)}")
    from qubert.bench.sequential import METHODS, SequentialDesign, SequentialDesignError

    if statistics["method"] not in METHODS:
        raise fail("statistics.method", f"unknown sequential method {statistics['method']!r}; expected one of {', '.join(METHODS)}")
    try:
        SequentialDesign(looks=tuple(looks), alpha=alpha, margin=margin, method=statistics["method"])
    except SequentialDesignError as err:
        raise fail(err.key if err.key == "looks" else f"statistics.{err.key}", str(err).split(": ", 1)[-1]) from None

    from qubert.bench.tuning import TuningError, parse_tuning

    try:
        tuning = parse_tuning(data.get("tuning"), run_seed=seeds[0])
    except TuningError as err:
        raise BenchConfigError(f"{where}{err}") from None

    keep_models = data.get("keep_models", False)
    if not isinstance(keep_models, bool):
        raise fail("keep_models", f"must be true or false, got {keep_models!r}")
    config_name = str(data.get("name") or name)
    if not _NAME_PATTERN.match(config_name):
        raise fail("name", f"must be letters, digits and _ . + - (no path), got {config_name!r}")
    out = Path(output_dir if output_dir is not None else data.get("output_dir") or Path("runs") / "bench" / config_name).expanduser()
    blocking = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        origin = "--output-dir" if output_dir is not None else "output_dir"
        raise BenchConfigError(f"{origin} {out}: {blocking} is a file, not a folder; choose another output directory")
    return BenchConfig(
        name=config_name, output_dir=out.resolve(), datasets=datasets, modes=modes,
        heads=heads, seeds=seeds, looks=looks, pool=pool, draws=draws, confirmatory=confirmatory, controls=controls, training=training, resources=resources,
        statistics=statistics, tuning=tuning, description=str(data.get("description") or ""), keep_models=keep_models, online=online,
        source=source,
    )


def training_fields() -> dict[str, Any]:
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
        if key == "num_epochs" and (not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf):
            raise fail(f"{prefix}.num_epochs", f"must be a positive, finite number, got {value!r}")
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


def _dataset_entries(data: Mapping[str, Any], fields: Mapping[str, Any], data_dir: str | None,
                     fail: Callable) -> list[dict[str, Any]]:
    """``datasets``: each entry becomes ``{dataset: <name>, data: <how to load it>, **settings}``.

    An entry is a registry name, a folder under ``data_dir``, or a mapping: ``{dataset: <name or
    folder>, **settings}`` or ``{name, train_file, test_file, validation_file?, text_column?,
    label_column?, **settings}`` (see :mod:`qubert.bench.data`).
    """
    from qubert.bench.data import DataEntryError, parse_data_entry

    raw = data.get("datasets")
    if raw is None:
        raise fail("datasets", "is missing; the grid needs at least one entry")
    if not isinstance(raw, list):
        raise fail("datasets", f"must be a list, got {type(raw).__name__}")
    if not raw:
        raise fail("datasets", "is empty; the grid needs at least one entry")
    entries = []
    for i, item in enumerate(raw):
        where = f"datasets[{i}]"
        try:
            entry, settings = parse_data_entry(item, data_dir=data_dir)
        except DataEntryError as err:
            raise fail(f"{where}{err.key}", str(err)) from None
        resources = settings.pop("resources", None)
        _check_settings(settings, fields, where, fail)
        entry_dict = {"dataset": entry.name, "data": entry.to_dict(), **settings}
        if resources is not None:
            entry_dict["resources"] = _check_resources(resources, f"{where}.resources", fail)
        entries.append(entry_dict)
    names = [e["dataset"] for e in entries]
    if len(set(names)) != len(names):
        raise fail("datasets", f"a data set is listed twice: {names!r}")
    return entries


def _replicates(data: Mapping[str, Any], fail: Callable) -> list[int]:
    """``replicates`` (a count) or the older ``seeds`` (a count or a list of replicate indices)."""
    if "replicates" in data and "seeds" in data:
        raise fail("replicates", "give replicates or seeds, not both")
    key = "replicates" if "replicates" in data else "seeds"
    value = data.get(key, DEFAULT_SEEDS)
    if _is_int(value, -math.inf):  # a count: checked before any list is built
        if not 2 <= value <= MAX_REPLICATES:
            raise fail(key, f"the number of replicates must be in [2, {MAX_REPLICATES}], got {value}")
        return list(range(value))
    if not isinstance(value, list) or not value:
        raise fail(key, "must be a count (>= 2) or a non-empty list of replicate indices")
    if any(not _is_int(s, 0) for s in value):
        raise fail(key, f"every replicate index must be an integer >= 0, got {value!r}")
    if len(set(value)) != len(value):
        raise fail(key, f"replicate indices repeat: {value!r}")
    if len(value) < 2:
        raise fail(key, f"a paired comparison needs at least 2 replicates, got {len(value)}")
    if len(value) > MAX_REPLICATES:
        raise fail(key, f"at most {MAX_REPLICATES} replicates, got {len(value)}")
    return list(value)


def _looks(value: Any, n_replicates: int, fail: Callable) -> list[int]:
    """Replicate counts at which the comparisons are tested; the last one is every replicate."""
    if value is None:
        return [n_replicates]
    if not isinstance(value, list) or not value or any(not _is_int(n, 2) for n in value):
        raise fail("looks", f"must be a non-empty list of replicate counts >= 2, got {value!r}")
    if any(b <= a for a, b in zip(value, value[1:])):
        raise fail("looks", f"must be strictly increasing, got {value!r}")
    if value[-1] != n_replicates:
        raise fail("looks", f"the last look must use every replicate ({n_replicates}), got {value[-1]}")
    return list(value)


def _sizes(value: Any, key: str, allowed: Sequence[str], defaults: Mapping[str, Any], fail: Callable) -> dict[str, Any]:
    """``pool`` / ``draws``: row counts (``null`` or ``all``: every row), plus ``pool.seed``."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise fail(key, f"must be a mapping with {', '.join(allowed)}")
    _check_keys(value, allowed, key, fail)
    out = {**defaults, **value}
    for name, size in out.items():
        if name == "seed":
            if not _is_int(size, 0):
                raise fail(f"{key}.seed", f"must be an integer >= 0, got {size!r}")
        elif size is not None and size != "all" and not _is_int(size, 1):
            raise fail(f"{key}.{name}", f"must be a positive number of rows (or all), got {size!r}")
    return {k: (None if v == "all" else v) for k, v in out.items()}


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
