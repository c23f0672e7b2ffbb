"""Helpers shared by the ``qubert`` commands: one-line errors, ``--config`` YAML files, atomic output, metric tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

err_console = Console(stderr=True)
console = Console()

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def usage_error(message: str) -> typer.Exit:
    """Print one red error line; the caller raises the returned Exit (code 2)."""
    err_console.print(f"[bold red]Error:[/bold red] [red]{escape_text(message)}[/red]", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_USAGE)


def escape_text(text: str) -> str:
    from rich.markup import escape

    return escape(" ".join(str(text).split()))


def error_message(err: BaseException) -> str:
    """The one line for a user error; a full disk says what was being written and what to do."""
    import errno

    if isinstance(err, OSError) and err.errno == errno.ENOSPC and not str(err).startswith("no space left"):
        return f"no space left on device while writing {err.filename or 'the output'}; free space or choose another output or --cache-dir"
    return str(err)


def user_errors() -> tuple[type[BaseException], ...]:
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
        raise usage_error(f"cannot read config {value}: {err}")
    if not isinstance(data, dict):
        raise usage_error(f"config {value} must be a mapping of option: value")
    names = {p.name for p in ctx.command.params if p.name != "config" and getattr(p, "param_type_name", "") == "option"}
    normalised = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(normalised) - names)
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], sorted(names), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise usage_error(f"config {value}: unknown option {unknown[0]!r}{hint} for 'qubert {ctx.command.name}'")
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
        raise usage_error(f"config {source}: {param.name}: {raw!r} is not valid ({err.message})") from None


def config_option() -> Any:
    return typer.Option(
        None, "--config", help="YAML file of option values (keys as option names); command-line options win.",
        is_eager=True, callback=_load_config_file, exists=False, dir_okay=False, show_default=False,
    )


def print_metrics(metrics: dict[str, Any], *, title: str) -> None:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    keys = [k for k in metrics if k.endswith(("macro_f1", "accuracy", "weighted_f1", "precision", "recall", "_runtime", "trainable_params", "_samples"))]
    for key in keys:
        value = metrics[key]
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


def warn_if_quantized(runtime: str, *, training: bool = False) -> None:
    """One line on stderr when ``runtime`` quantizes the encoder (``onnx:int8``): never silently.

    Example:
        >>> warn_if_quantized("onnx")  # fp32: says nothing
    """
    from qubert.runtimes import RuntimeOptionError, parse_runtime

    try:
        quantized = parse_runtime(runtime)[1] == "int8"
    except RuntimeOptionError:
        return  # refused in one line where the runtime is attached
    if quantized and training:
        err_console.print(f"Note: --runtime {runtime} quantizes the encoder to int8: the head trains and is scored on int8 features.",
                          highlight=False, soft_wrap=True)
    elif quantized:
        err_console.print(
            f"Note: --runtime {runtime} quantizes the encoder to int8: features and answers move; "
            f"`qubert eval RUN --runtime {runtime}` prints its macro-F1 change against PyTorch.", highlight=False, soft_wrap=True,
        )


def check_output_folder(path: Path) -> None:
    folder = Path(path).expanduser().parent
    if folder and not folder.exists():
        raise ValueError(f"output folder {folder} does not exist")


def write_output(path: Path, text: str) -> None:
    """Write a command's output file atomically; its folder must exist (no folders are made)."""
    from qubert.files import write_text

    path = Path(path).expanduser()
    check_output_folder(path)
    write_text(path, text, make_parents=False)
