"""What finished runs leave behind: the finished check, ``results.csv`` rows, and atomic file writers."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qubert.bench.config import QUANTUM_KEYS, training_fields
from qubert.bench.grid import RunSpec
from qubert.files import write_json, write_text

RUN_MARKER = "bench_run.json"  # written next to metrics.json once a run has finished
RESULTS_FILE = "results.csv"
# Columns of results.csv, in order. Timing columns differ run to run; everything else is
# reproducible for the same config and seeds.
IDENTITY_COLUMNS = ("run_id", "dataset", "mode", "head", "head_type", "control", "base_head", "seed")
CONFIG_COLUMNS = ("model", "pooling", "max_length", "max_train_samples", "max_eval_samples",
                  "qubits", "layers", "entanglement", "measurement", "scaling", "freeze_circuit", "hidden_sizes",
                  "learning_rate", "encoder_learning_rate", "weight_decay", "C", "num_epochs", "batch_size")
METRIC_COLUMNS = ("test_macro_f1", "test_accuracy", "test_weighted_f1", "test_precision",
                  "test_recall", "eval_macro_f1", "best_epoch", "epochs_trained", "stopped_by", "trainable_params",
                  "train_samples", "test_samples")
TIMING_COLUMNS = ("train_runtime", "eval_runtime", "test_runtime", "encode_runtime")
_OPTIMISER_KEYS = ("learning_rate", "encoder_learning_rate", "weight_decay", "num_epochs", "batch_size")
RESULT_COLUMNS = IDENTITY_COLUMNS + CONFIG_COLUMNS + METRIC_COLUMNS + TIMING_COLUMNS + ("run_dir",)


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
    return jsonable(recorded.get("settings")) == jsonable(spec.semantic_settings())


def jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


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
    settings = {**training_fields(), **spec.settings}
    row: dict[str, Any] = {
        "run_id": spec.run_id, "dataset": spec.dataset, "mode": spec.mode, "head": spec.head,
        "head_type": spec.head_type, "control": spec.control, "base_head": spec.base_head, "seed": spec.seed,
    }
    for key in CONFIG_COLUMNS:
        value = settings.get(key)
        if key in QUANTUM_KEYS and spec.head_type != "quantum":
            value = None
        if spec.head_type == "logreg" and key in _OPTIMISER_KEYS:  # fitted by scikit-learn, not by the Trainer
            value = None
        if key == "hidden_sizes":
            value = json.dumps(list(value)) if spec.head_type == "mlp" and value is not None else None
        row[key] = value
    for key in METRIC_COLUMNS + TIMING_COLUMNS:
        row[key] = metrics.get(key)
    row["run_dir"] = spec.run_dir(output_dir).relative_to(output_dir).as_posix()
    return row


def write_results(specs: Sequence[RunSpec], output_dir: Path, path: Path) -> Any:
    results = collect_results(specs, output_dir)
    write_text(path, results.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    return results


def write_json_sorted(path: Path, data: Any) -> None:
    """A bench file as JSON with sorted keys (non-JSON values as text), written atomically."""
    write_json(path, data, sort_keys=True, default=str)


def yaml_dump(data: Any) -> str:
    import yaml

    return yaml.safe_dump(jsonable(data), sort_keys=False, allow_unicode=True)
