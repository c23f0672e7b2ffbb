"""The run-level commands: ``qubert train``, ``eval``, ``predict`` and ``datasets``."""

from __future__ import annotations

import inspect
import json
import sys
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from qubert.cli.common import (
    EXIT_INTERRUPTED,
    check_output_folder,
    config_option,
    escape_text,
    usage_error,
    error_message,
    print_metrics,
    user_errors,
    warn_if_quantized,
    write_output,
    console,
    err_console,
)
from qubert.runtimes import RUNTIME_HELP
from qubert.training import TrainingConfig

# ------------------------------------------------------------------------------------------
# qubert train: one option per TrainingConfig field, generated so they can never drift apart
# ------------------------------------------------------------------------------------------

def _head_panels() -> dict[str, tuple[str, ...]]:
    """Each head type's options in its help panel, in TrainingConfig's field order."""
    from qubert.heads import HEAD_REGISTRY

    order = [f.name for f in fields(TrainingConfig)]
    panels: dict[str, set[str]] = {}
    for head_type in HEAD_REGISTRY.values():
        panels.setdefault(head_type.panel, set()).update(head_type.options)
    return {panel: tuple(sorted(names, key=order.index)) for panel, names in panels.items()}


_PANELS = {
    "Data": ("dataset", "data_dir", "train_file", "validation_file", "test_file", "text_column", "label_column", "max_train_samples", "max_eval_samples", "drop_empty"),
    "Model": ("model", "pooling", "max_length", "mode", "precision", "runtime", "cache_bottom", "head"),
    # The heads' options, in each registered head type's panel (qubert.heads.HEAD_REGISTRY).
    **_head_panels(),
    "Optimisation": ("learning_rate", "encoder_learning_rate", "num_epochs", "batch_size", "weight_decay", "lr_scheduler_type", "early_stopping_patience", "max_steps", "group_by_length"),
    "Run": ("seed", "data_seed", "output_dir", "overwrite_output_dir", "cache_dir", "resume", "progress", "report_to"),
}
_PANEL_OF = {name: panel for panel, names in _PANELS.items() for name in names}


def _cli_type(annotation: Any) -> Any:
    """``X | None`` -> ``Optional[X]`` (what typer understands everywhere)."""
    args = typing.get_args(annotation)
    if type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return Optional[inner[0]]
    return annotation


def _train_parameters() -> list[inspect.Parameter]:
    hints = typing.get_type_hints(TrainingConfig)
    params = [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=config_option(), annotation=Optional[Path])]
    for f in fields(TrainingConfig):
        default = f.default_factory() if f.default_factory is not MISSING else f.default  # type: ignore[misc]
        flag = "--" + f.name.replace("_", "-")
        annotation = _cli_type(hints[f.name])
        if annotation is bool:
            decls = [f"{flag}/--no-{flag[2:]}"]
        else:
            decls = [flag]
        option = typer.Option(default, *decls, help=f.metadata.get("help", ""), rich_help_panel=_PANEL_OF.get(f.name, "Other"), show_default=default is not None)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation))
    return params


def train(**options: Any) -> None:
    """Train a classifier and write a run directory (model, metrics, predictions, curves).

    Example: qubert train --dataset sst2 --head quantum --qubits 8 --layers 2 --mode frozen
    """
    from qubert.training import TrainingInterrupted, run_training

    options.pop("config", None)
    options["hidden_sizes"] = list(options["hidden_sizes"])
    try:
        config = TrainingConfig(**options)
        warn_if_quantized(config.runtime, training=True)
        metrics = run_training(config)
    except TrainingInterrupted as interrupt:
        err_console.print(
            f"[yellow]Interrupted.[/yellow] Completed checkpoints are kept in {interrupt.run_dir}; "
            "continue with the same command plus [bold]--resume[/bold].", highlight=False,
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        err_console.print("[yellow]Interrupted[/yellow] before training started; nothing was written.")
        raise typer.Exit(EXIT_INTERRUPTED)
    except user_errors() as err:
        raise usage_error(error_message(err))
    print_metrics(metrics, title="Test results")
    console.print(f"Run directory: {metrics.run_dir}", highlight=False, soft_wrap=True)


train.__signature__ = inspect.Signature(_train_parameters())  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------
# qubert eval
# ------------------------------------------------------------------------------------------
# Long: one typer option per line (the CLI's help), then the call and the printed report.
def evaluate(
    model_dir: Path = typer.Argument(..., help="A run directory or its model/ folder.", show_default=False),
    config: Optional[Path] = config_option(),
    dataset: Optional[str] = typer.Option(None, help="Data set to score (registry name, file or folder); default: the run's own data set.", rich_help_panel="Data"),
    data_dir: Optional[str] = typer.Option(None, help="Folder with the benchmark data.", rich_help_panel="Data"),
    split: str = typer.Option("test", help="Split to score: train, validation or test.", rich_help_panel="Data"),
    test_file: Optional[str] = typer.Option(None, help="A labelled file to score instead of --dataset.", rich_help_panel="Data"),
    text_column: str = typer.Option("text", help="Column holding the text.", rich_help_panel="Data"),
    label_column: str = typer.Option("label", help="Column holding the label (class name or id).", rich_help_panel="Data"),
    max_eval_samples: Optional[int] = typer.Option(None, help="Score a stratified subset of this many rows.", rich_help_panel="Data"),
    batch_size: int = typer.Option(64, help="Encoding batch size."),
    shots: Optional[int] = typer.Option(None, help="Quantum head: estimate expectations from this many shots.", rich_help_panel="Quantum execution"),
    noise: Optional[str] = typer.Option(None, help='Quantum head: noise model, e.g. "depolarizing:0.01,readout:0.02".', rich_help_panel="Quantum execution"),
    device: Optional[str] = typer.Option(
        None, help="Quantum head: run it as on an IBM device: a snapshot (fake_manila; see qubert devices) on Aer with its noise, or ibm_<name> (your saved account). Needs qubert\\[devices].",
        rich_help_panel="Quantum execution",
    ),
    optimization_level: int = typer.Option(1, help="With --device: the transpiler's optimization level (0-3).", rich_help_panel="Quantum execution"),
    mitigation: Optional[str] = typer.Option(
        None, help="With --device: error mitigation: none, readout (mthree / TREX), zne (gate folding, extrapolated to zero noise), twirling (Pauli twirling) or all.",
        rich_help_panel="Quantum execution",
    ),
    zne_factors: Optional[str] = typer.Option(None, help="With --mitigation zne/all: increasing noise factors, e.g. 1,3,5 (the default).", rich_help_panel="Quantum execution"),
    max_qpu_seconds: Optional[float] = typer.Option(None, help="With --device: refuse, before submitting, a job estimated to take more QPU seconds.", rich_help_panel="Quantum execution"),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --device: print the circuits, parameter rows, shots, depth, 2-qubit gates and estimated QPU seconds; run nothing.", rich_help_panel="Quantum execution"),
    seed: int = typer.Option(42, help="Seed for subsets and shot sampling."),
    cache_dir: Optional[str] = typer.Option(None, help="Embedding cache (frozen-mode models reuse their training features)."),
    runtime: str = typer.Option("torch", help=RUNTIME_HELP),
    output: Optional[Path] = typer.Option(None, help="Also write the metrics as JSON to this file."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Score a saved model on a data set split or a labelled file (optionally with shots / noise / a device).

    Example: qubert eval runs/sms_spam-quantum-frozen-s42 --dataset sms_spam --shots 1000

    Example: qubert eval runs/sms_spam-quantum-frozen-s42 --device fake_manila --shots 1024 --optimization-level 1

    Example: qubert eval runs/trec-quantum-frozen-s42 --device ibm_kyiv --mitigation all --max-qpu-seconds 600 --dry-run
    """
    from qubert.training import evaluate_model

    try:
        if batch_size < 1:
            raise ValueError(f"--batch-size must be a positive integer, got {batch_size}")
        if output is not None:
            check_output_folder(output)  # before any work: a scored (and cached) split would be wasted
        metrics = evaluate_model(
            model_dir, dataset=dataset, data_dir=data_dir, split=split, test_file=test_file, text_column=text_column,
            label_column=label_column, max_eval_samples=max_eval_samples, batch_size=batch_size, shots=shots, noise=noise,
            seed=seed, cache_dir=cache_dir, progress=progress, backend=device, optimization_level=optimization_level,
            mitigation=mitigation, zne_factors=zne_factors, max_qpu_seconds=max_qpu_seconds, dry_run=dry_run,
            runtime=runtime,
        )
        if "dry_run" in metrics:
            console.print(metrics["dry_run_text"], highlight=False, soft_wrap=True)
            return
        if output is not None:
            write_output(output, json.dumps(metrics, indent=2) + "\n")
    except KeyboardInterrupt:
        err_console.print("[yellow]Interrupted.[/yellow]")
        raise typer.Exit(EXIT_INTERRUPTED)
    except user_errors() as err:
        raise usage_error(error_message(err))
    print_metrics(metrics, title=f"Evaluation of {model_dir}")
    console.print(f"Data: {metrics['evaluated_on']}", highlight=False, soft_wrap=True)
    if "runtime_macro_f1_change" in metrics:
        console.print(
            f"Runtime {metrics['runtime']} (quantized encoder): macro-F1 {metrics['runtime_macro_f1_change']:+.4f} against the unquantized "
            f"encoder in PyTorch ({metrics['reference_macro_f1']:.4f})", highlight=False, soft_wrap=True,
        )
    if "execution" in metrics:
        console.print(f"Quantum head: {metrics['execution']}" + (f"; {metrics['mitigation']}" if "mitigation" in metrics else ""), highlight=False, soft_wrap=True)
    if "device" in metrics:
        facts = metrics["device"]
        console.print(
            f"Transpiled for {facts['device']} (optimization level {facts['optimization_level']}): depth {facts['depth']}, "
            f"{facts['two_qubit_gates']} two-qubit gates, layout {facts['layout']} (measured on {facts['final_layout']}); "
            f"{metrics['device_seconds_per_1000']:.2f} s per 1,000 samples",
            highlight=False, soft_wrap=True,
        )
    matrix = metrics.get("confusion_matrix")
    if matrix:
        console.print(f"confusion matrix (rows true, columns predicted): {json.dumps(matrix)}")


# ------------------------------------------------------------------------------------------
# qubert predict
# ------------------------------------------------------------------------------------------
def predict(
    model_dir: Path = typer.Argument(..., help="A run directory or its model/ folder.", show_default=False),
    config: Optional[Path] = config_option(),
    input: Optional[str] = typer.Option(None, "--input", "-i", help="Texts: a .txt file (one per line), a .csv/.tsv/.jsonl file (see --text-column) or - for stdin (default)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write predictions here (.csv or .jsonl); default: stdout."),
    format: Optional[str] = typer.Option(None, "--format", help="Output format: csv or jsonl (default: from --output's extension, else csv)."),
    text_column: str = typer.Option("text", help="Text column of a .csv/.tsv/.jsonl input."),
    batch_size: int = typer.Option(64, help="Batch size."),
    runtime: str = typer.Option("torch", help=RUNTIME_HELP),
    cache_dir: Optional[str] = typer.Option(None, help="Cache folder for the exported encoder graph (--runtime onnx / openvino)."),
) -> None:
    """Predict labels and class probabilities for texts from a file or stdin.

    Example: echo "WIN a FREE prize now" | qubert predict runs/sms_spam-quantum-frozen-s42
    """
    from qubert.data import read_texts
    from qubert.training import predict_texts

    try:
        if batch_size < 1:
            raise ValueError(f"--batch-size must be a positive integer, got {batch_size}")
        fmt = _output_format(format, output)
        texts = read_texts(input, text_column)
        if not texts:
            raise ValueError("no texts to predict (empty input)")
        warn_if_quantized(runtime)
        names, labels, probabilities = predict_texts(model_dir, texts, batch_size=batch_size, runtime=runtime, cache_dir=cache_dir)
        text = _format_predictions(fmt, texts, labels, probabilities, names)
        if output is None:
            sys.stdout.write(text)
        else:
            write_output(output, text)
    except KeyboardInterrupt:
        err_console.print("[yellow]Interrupted[/yellow]; nothing was written.")
        raise typer.Exit(EXIT_INTERRUPTED)
    except user_errors() as err:
        raise usage_error(error_message(err))
    if output is not None:
        err_console.print(f"Wrote {len(texts)} predictions to {output}")


def _output_format(fmt: str | None, output: Path | None) -> str:
    if fmt is None:
        fmt = "jsonl" if output is not None and output.suffix.lower() in (".jsonl", ".json") else "csv"
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"unknown --format {fmt!r}; expected csv or jsonl")
    return fmt


def _format_predictions(fmt: str, texts: list[str], labels: list[str], probabilities, names: list[str]) -> str:
    if fmt == "jsonl":
        rows = (
            json.dumps({"text": t, "label": lab, "probabilities": {n: round(float(p), 6) for n, p in zip(names, probs)}}, ensure_ascii=False)
            for t, lab, probs in zip(texts, labels, probabilities.tolist())
        )
        return "".join(r + "\n" for r in rows)
    import pandas as pd

    frame = pd.DataFrame({"text": texts, "label": labels})
    for k, name in enumerate(names):
        frame[f"prob_{name}"] = probabilities[:, k].numpy().round(6)
    return frame.to_csv(index=False)


# ------------------------------------------------------------------------------------------
# qubert datasets
# ------------------------------------------------------------------------------------------
def _relative_to(location: str, directory) -> str:
    """``location`` relative to ``directory`` when it lies inside it (else as it is)."""
    if directory is None or location in ("hub", "missing"):
        return location
    try:
        return str(Path(location).relative_to(directory))
    except ValueError:
        return location


def datasets(
    config: Optional[Path] = config_option(),
    data_dir: Optional[str] = typer.Option(None, help="Folder with the benchmark data (default $QUBERT_DATA_DIR, then shared/data)."),
) -> None:
    """List the known data sets: classes, where each one would be loaded from, and rows per split.

    Example: qubert datasets --data-dir ../shared/data
    """
    from qubert.data import available_datasets, resolve_data_dir

    try:
        directory = resolve_data_dir(data_dir)
        rows = available_datasets(data_dir)
    except user_errors() as err:
        raise usage_error(error_message(err))
    from rich import box

    # Compact and path-aware so that 80 columns hold it: locations inside the data directory are
    # shown relative to it (the title names it), and no cell folds a word mid-way.
    table = Table(title=f"Data sets (in {directory or 'no data directory found'})", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("name / location", no_wrap=True)
    table.add_column("classes")
    table.add_column("rows", no_wrap=True)
    for row in rows:
        available = _relative_to(row["available"], directory)
        style = "green" if row["available"] not in ("hub", "missing") else ("yellow" if row["available"] == "hub" else "red")
        counts = "\n".join(f"{split} {n:,}" for split, n in (row.get("rows") or {}).items() if n is not None) or "-"
        classes = f"{row['n_classes']}: {', '.join(row['label_names'])}"
        table.add_row(f"{escape_text(row['name'])}\n[{style}]{escape_text(available)}[/{style}]", escape_text(classes), counts)
    console.print(table)
