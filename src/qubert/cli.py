"""The ``qubert`` command: ``train``, ``eval``, ``predict`` and ``datasets``.

Every option of every command can also come from a YAML file (``--config run.yaml``, keys as the
option names with ``_`` or ``-``); options given on the command line win. Bad input prints one red
line and exits with code 2; Ctrl-C during training exits with 130 and says how to resume.

Example:
    $ qubert train --dataset sst2 --head quantum --qubits 8 --layers 2 --mode frozen
    $ qubert eval runs/sst2-quantum-frozen-s42 --dataset sst2 --shots 1000
    $ echo "what a film" | qubert predict runs/sst2-quantum-frozen-s42
    $ qubert datasets
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from qubert.training import TrainingConfig

app = typer.Typer(
    name="qubert",
    help="Fine-tune BERT-family encoders with a variational quantum (or classical) classification head.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
err_console = Console(stderr=True)
console = Console()

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("qubert")
        except PackageNotFoundError:  # a source checkout that was never installed
            from qubert import __version__ as number
        console.print(f"qubert {number}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True, callback=_version_callback),
) -> None:
    """Fine-tune BERT-family encoders with a variational quantum (or classical) classification head."""


def _fail(message: str) -> typer.Exit:
    """Print one red error line; the caller raises the returned Exit (code 2)."""
    err_console.print(f"[bold red]Error:[/bold red] [red]{_escape(message)}[/red]", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_USAGE)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(" ".join(str(text).split()))


def _message(err: BaseException) -> str:
    """The one line for a user error; a full disk says what was being written and what to do."""
    import errno

    if isinstance(err, OSError) and err.errno == errno.ENOSPC and not str(err).startswith("no space left"):
        return f"no space left on device while writing {err.filename or 'the output'}; free space or choose another output or --cache-dir"
    return str(err)


def _user_errors() -> tuple[type[BaseException], ...]:
    # DataError, TrainingConfigError, ModelConfigError, RunDirectoryError are ValueErrors;
    # OSError covers unreadable/unwritable paths given by the user.
    return (ValueError, OSError)


# ------------------------------------------------------------------------------------------
# --config: YAML defaults for any option
# ------------------------------------------------------------------------------------------


def _load_config_file(ctx: typer.Context, param: Any, value: Optional[Path]) -> Optional[Path]:
    """Eager callback: read the YAML file into ``ctx.default_map`` (command-line options still win)."""
    if value is None or ctx.resilient_parsing:
        return value
    import yaml

    try:
        data = yaml.safe_load(Path(value).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise _fail(f"cannot read config {value}: {err}")
    if not isinstance(data, dict):
        raise _fail(f"config {value} must be a mapping of option: value")
    names = {p.name for p in ctx.command.params if p.name != "config" and getattr(p, "param_type_name", "") == "option"}
    normalised = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(normalised) - names)
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], sorted(names), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _fail(f"config {value}: unknown option {unknown[0]!r}{hint} for 'qubert {ctx.command.name}'")
    params = {p.name: p for p in ctx.command.params}
    for key, raw in normalised.items():
        normalised[key] = _config_value(ctx, params[key], raw, value)
    ctx.default_map = {**(ctx.default_map or {}), **normalised}
    return value


def _config_value(ctx: typer.Context, param: Any, raw: Any, source: Path) -> Any:
    """A YAML value checked against its option's type, so a bad one names the file and the key."""
    if raw is None:
        return raw
    try:
        return param.process_value(ctx, raw)
    except typer.BadParameter as err:
        raise _fail(f"config {source}: {param.name}: {raw!r} is not valid ({err.message})") from None


def _config_option() -> Any:
    return typer.Option(
        None, "--config", help="YAML file of option values (keys as option names); command-line options win.",
        is_eager=True, callback=_load_config_file, exists=False, dir_okay=False, show_default=False,
    )


# ------------------------------------------------------------------------------------------
# qubert train: one option per TrainingConfig field, generated so they can never drift apart
# ------------------------------------------------------------------------------------------

_PANELS = {
    "Data": ("dataset", "data_dir", "train_file", "validation_file", "test_file", "text_column", "label_column", "max_train_samples", "max_eval_samples", "drop_empty"),
    "Model": ("model", "pooling", "max_length", "mode", "precision", "cache_bottom", "head"),
    "Quantum head": ("qubits", "layers", "encoding", "ansatz", "entanglement", "rotation", "measurement", "init", "reupload", "scaling", "freeze_circuit", "strategy"),
    "Classical heads": ("hidden_sizes", "dropout"),
    "Optimisation": ("learning_rate", "encoder_learning_rate", "num_epochs", "batch_size", "weight_decay", "lr_scheduler_type", "early_stopping_patience", "max_steps", "group_by_length"),
    "Run": ("seed", "output_dir", "overwrite_output_dir", "cache_dir", "resume", "progress"),
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
    params = [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=_config_option(), annotation=Optional[Path])]
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
    except _user_errors() as err:
        raise _fail(_message(err))
    _print_metrics(metrics, title="Test results")
    console.print(f"Run directory: {metrics.run_dir}", highlight=False, soft_wrap=True)


train.__signature__ = inspect.Signature(_train_parameters())  # type: ignore[attr-defined]
app.command("train", help=train.__doc__.splitlines()[0] + "\n\nExample: qubert train --dataset sst2 --head quantum --qubits 8 --layers 2 --mode frozen")(train)


def _print_metrics(metrics: dict[str, Any], *, title: str) -> None:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    keys = [k for k in metrics if k.endswith(("macro_f1", "accuracy", "weighted_f1", "precision", "recall", "_runtime", "trainable_params", "_samples"))]
    for key in keys:
        value = metrics[key]
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


# ------------------------------------------------------------------------------------------
# qubert eval
# ------------------------------------------------------------------------------------------


@app.command("eval")
def evaluate(
    model_dir: Path = typer.Argument(..., help="A run directory or its model/ folder.", show_default=False),
    config: Optional[Path] = _config_option(),
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
    seed: int = typer.Option(42, help="Seed for subsets and shot sampling."),
    cache_dir: Optional[str] = typer.Option(None, help="Embedding cache (frozen-mode models reuse their training features)."),
    output: Optional[Path] = typer.Option(None, help="Also write the metrics as JSON to this file."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Score a saved model on a data set split or a labelled file (optionally with shots / noise).

    Example: qubert eval runs/sms_spam-quantum-frozen-s42 --dataset sms_spam --shots 1000
    """
    from qubert.training import evaluate_model

    try:
        if output is not None:
            _check_output_folder(output)  # before any work: a scored (and cached) split would be wasted
        metrics = evaluate_model(
            model_dir, dataset=dataset, data_dir=data_dir, split=split, test_file=test_file, text_column=text_column,
            label_column=label_column, max_eval_samples=max_eval_samples, batch_size=batch_size, shots=shots, noise=noise,
            seed=seed, cache_dir=cache_dir, progress=progress,
        )
        if output is not None:
            _write_atomic(output, json.dumps(metrics, indent=2) + "\n")
    except KeyboardInterrupt:
        err_console.print("[yellow]Interrupted.[/yellow]")
        raise typer.Exit(EXIT_INTERRUPTED)
    except _user_errors() as err:
        raise _fail(_message(err))
    _print_metrics(metrics, title=f"Evaluation of {model_dir}")
    console.print(f"Data: {metrics['evaluated_on']}", highlight=False, soft_wrap=True)
    if "execution" in metrics:
        console.print(f"Quantum head: {metrics['execution']}", highlight=False, soft_wrap=True)
    matrix = metrics.get("confusion_matrix")
    if matrix:
        console.print(f"confusion matrix (rows true, columns predicted): {json.dumps(matrix)}")


# ------------------------------------------------------------------------------------------
# qubert predict
# ------------------------------------------------------------------------------------------


@app.command("predict")
def predict(
    model_dir: Path = typer.Argument(..., help="A run directory or its model/ folder.", show_default=False),
    config: Optional[Path] = _config_option(),
    input: Optional[str] = typer.Option(None, "--input", "-i", help="Texts: a .txt file (one per line), a .csv/.tsv/.jsonl file (see --text-column) or - for stdin (default)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write predictions here (.csv or .jsonl); default: stdout."),
    format: Optional[str] = typer.Option(None, "--format", help="Output format: csv or jsonl (default: from --output's extension, else csv)."),
    text_column: str = typer.Option("text", help="Text column of a .csv/.tsv/.jsonl input."),
    batch_size: int = typer.Option(64, help="Batch size."),
) -> None:
    """Predict labels and class probabilities for texts from a file or stdin.

    Example: echo "WIN a FREE prize now" | qubert predict runs/sms_spam-quantum-frozen-s42
    """
    from qubert.training import predict_texts

    try:
        fmt = _output_format(format, output)
        texts = _read_texts(input, text_column)
        if not texts:
            raise ValueError("no texts to predict (empty input)")
        names, labels, probabilities = predict_texts(model_dir, texts, batch_size=batch_size)
        text = _format_predictions(fmt, texts, labels, probabilities, names)
        if output is None:
            sys.stdout.write(text)
        else:
            _write_atomic(output, text)
    except KeyboardInterrupt:
        err_console.print("[yellow]Interrupted[/yellow]; nothing was written.")
        raise typer.Exit(EXIT_INTERRUPTED)
    except _user_errors() as err:
        raise _fail(_message(err))
    if output is not None:
        err_console.print(f"Wrote {len(texts)} predictions to {output}")


def _output_format(fmt: str | None, output: Path | None) -> str:
    if fmt is None:
        fmt = "jsonl" if output is not None and output.suffix.lower() in (".jsonl", ".json") else "csv"
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"unknown --format {fmt!r}; expected csv or jsonl")
    return fmt


def _read_texts(source: str | None, text_column: str) -> list[str]:
    if source in (None, "-"):
        return [line.rstrip("\r\n") for line in sys.stdin.read().splitlines() if line.strip()]
    path = Path(source).expanduser()
    if not path.is_file():
        raise ValueError(f"input file {path} not found")
    suffixes = "".join(path.suffixes).lower()
    if any(ext in suffixes for ext in (".csv", ".tsv", ".jsonl", ".json")):
        import pandas as pd

        from qubert.data import DataError

        sep = "\t" if ".tsv" in suffixes else ","
        try:
            if ".json" in suffixes:
                frame = pd.read_json(path, lines=".jsonl" in suffixes, dtype=False)
            else:
                frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
        except (ValueError, pd.errors.ParserError) as err:
            raise DataError(f"cannot parse {path}: {' '.join(str(err).split())}") from None
        if text_column not in frame.columns:
            raise DataError(f"{path}: no text column {text_column!r}; columns found: {', '.join(map(str, frame.columns))} (set --text-column)")
        return [str(t) for t in frame[text_column].tolist()]
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


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


def _check_output_folder(path: Path) -> None:
    folder = Path(path).expanduser().parent
    if folder and not folder.exists():
        raise ValueError(f"output folder {folder} does not exist")


def _write_atomic(path: Path, text: str) -> None:
    import tempfile

    from qubert.files import apply_umask

    path = Path(path).expanduser()
    _check_output_folder(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        apply_umask(tmp)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as err:
        err.filename = err.filename or str(path)  # a full disk names the file, not the temporary
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ------------------------------------------------------------------------------------------
# qubert datasets
# ------------------------------------------------------------------------------------------


@app.command("datasets")
def datasets(
    config: Optional[Path] = _config_option(),
    data_dir: Optional[str] = typer.Option(None, help="Folder with the benchmark data (default $QUBERT_DATA_DIR, then shared/data)."),
) -> None:
    """List the known data sets: classes, where each one would be loaded from, and rows per split.

    Example: qubert datasets --data-dir ../shared/data
    """
    from qubert.data import available_datasets, resolve_data_dir

    try:
        directory = resolve_data_dir(data_dir)
        rows = available_datasets(data_dir)
    except _user_errors() as err:
        raise _fail(_message(err))
    table = Table(title=f"Data sets (data directory: {directory or 'none found'})", header_style="bold")
    for column in ("name", "classes", "labels", "available", "rows"):
        table.add_column(column, overflow="fold")
    for row in rows:
        available = row["available"]
        style = "green" if available not in ("hub", "missing") else ("yellow" if available == "hub" else "red")
        counts = ", ".join(f"{split} {n:,}" for split, n in (row.get("rows") or {}).items() if n is not None) or "-"
        table.add_row(row["name"], str(row["n_classes"]), ", ".join(row["label_names"]), f"[{style}]{_escape(available)}[/{style}]", counts)
    console.print(table)


# ------------------------------------------------------------------------------------------
# Commands that live in their own modules.
# ------------------------------------------------------------------------------------------
from qubert.bench_cli import bench as _bench  # noqa: E402  (after `app` exists, by design)
from qubert.circuit_cli import circuit_app as _circuit_app  # noqa: E402

app.command("bench", help=_bench.__doc__)(_bench)
app.add_typer(_circuit_app, name="circuit")


def main() -> None:  # pragma: no cover - console entry point alias
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
