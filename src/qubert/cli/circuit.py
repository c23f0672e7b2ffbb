"""``qubert circuit draw|export|analyze``: look at, take elsewhere, and diagnose the circuit of a quantum head.

Both commands take a saved model directory (``config.json`` with ``head_config`` and
``model.safetensors`` with the head's weights under ``head.``; a run directory with a ``model/``
folder works too) or a plain circuit description (``Circuit.to_json()``) with optional
``--weights file.safetensors``. Only the head is read, so no encoder is loaded, except for
``export --text`` which runs the saved encoder to get that sentence's encoding angles.

Example:
    $ qubert circuit draw runs/sst2-quantum-frozen-s42 --output circuit.png
    $ qubert circuit export runs/sst2-quantum-frozen-s42 --format qasm3 --text "a fine film" -o head.qasm
    $ qubert circuit export circuit.json --weights w.safetensors --format pennylane -o head.py
    $ qubert circuit analyze runs/sst2-quantum-frozen-s42 --qubits-range 2,4,6,8 --depths 1,2,4 -o diag/
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import typer
from rich.console import Console

from qubert.heads import QuantumHead, build_head
from qubert.quantum.circuit import Circuit
from qubert.quantum.noise import parse_noise

circuit_app = typer.Typer(
    name="circuit",
    help="Draw a quantum head's circuit, export it to OpenQASM 3, Qiskit or PennyLane, or diagnose it (barren plateaus, expressibility).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_err = Console(stderr=True)
_out = Console()

EXIT_USAGE = 2
HEAD_PREFIX = "head."


class CircuitSourceError(ValueError):
    """The path does not hold a quantum head or a circuit description that can be read."""


@dataclass
class LoadedCircuit:
    """What ``load_circuit`` found: the circuit, its weights (if any) and where it came from."""

    circuit: Circuit
    weights: torch.Tensor | None
    head: QuantumHead | None = None
    model_dir: Path | None = None


# ---------------------------------------------------------------------------- loading
def _find_model_dir(path: Path) -> Path | None:
    """``path`` or ``path/model`` if it holds a saved model's ``config.json``."""
    for candidate in (path, path / "model"):
        if (candidate / "config.json").is_file():
            return candidate
    return None


def _head_state_dict(model_dir: Path) -> dict[str, torch.Tensor]:
    """The head's tensors (``head.`` prefix removed) from ``model.safetensors`` (or its shards)."""
    from safetensors import SafetensorError, safe_open

    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted({name for key, name in weight_map.items() if key.startswith(HEAD_PREFIX)})
    elif (model_dir / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise CircuitSourceError(f"{model_dir} has no model.safetensors with the head's weights")
    state: dict[str, torch.Tensor] = {}
    for name in files:
        try:
            with safe_open(str(model_dir / name), framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 - safe_open handles are not dicts
                    if key.startswith(HEAD_PREFIX):
                        state[key[len(HEAD_PREFIX) :]] = f.get_tensor(key)
        except (SafetensorError, OSError) as err:  # truncated or corrupted file
            raise CircuitSourceError(f"not a loadable qubert model: {model_dir / name}: {err}") from None
    if not state:
        raise CircuitSourceError(f"{model_dir} holds no weights under the prefix {HEAD_PREFIX!r}")
    return state


def load_quantum_head(path: str | Path) -> QuantumHead:
    """The trained :class:`~qubert.heads.QuantumHead` of a saved model directory (or a run directory).

    Reads ``config.json`` (key ``head_config``) and the ``head.*`` tensors of ``model.safetensors``;
    the encoder is not loaded.

    Raises:
        CircuitSourceError: no saved model there, its head is not quantum, or its weights do not fit.

    Example:
        >>> head = load_quantum_head("runs/sst2-quantum-frozen-s42")  # doctest: +SKIP
        >>> print(head.circuit.draw(head.q_weights))                  # doctest: +SKIP
    """
    path = Path(path).expanduser()
    model_dir = _find_model_dir(path)
    if model_dir is None:
        raise CircuitSourceError(f"{path} is not a saved model directory (no config.json)")
    from qubert.training import check_no_pickles

    check_no_pickles(model_dir)
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except json.JSONDecodeError as err:
        raise CircuitSourceError(f"{model_dir / 'config.json'} is not valid JSON: {err}") from None
    head_config = config.get("head_config")
    if not isinstance(head_config, dict):
        raise CircuitSourceError(f"{model_dir / 'config.json'} has no head_config: not a qubert model")
    if head_config.get("type") != "quantum":
        raise CircuitSourceError(f"the model in {model_dir} has a {head_config.get('type')!r} head, not a quantum one: it has no circuit")
    head = build_head(head_config)
    try:
        head.load_state_dict(_head_state_dict(model_dir))
    except RuntimeError as err:
        raise CircuitSourceError(f"not a loadable qubert model: the head weights in {model_dir} do not match its head_config: {' '.join(str(err).split()[6:]).split('. ')[0]}") from None
    return head.eval()


def _read_weights(path: Path, circuit: Circuit) -> torch.Tensor:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise CircuitSourceError(f"weights file {path} does not exist")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CircuitSourceError(f"cannot read {path} as safetensors: {err}") from None
    for key in ("q_weights", "head.q_weights", "weights"):
        if key in tensors:
            weights = tensors[key]
            break
    else:
        if len(tensors) != 1:
            raise CircuitSourceError(f"{path} holds {len(tensors)} tensors; name the circuit weights 'q_weights'")
        weights = next(iter(tensors.values()))
    if weights.numel() != circuit.n_weights:
        raise CircuitSourceError(f"{path} holds {weights.numel()} weights but the circuit needs shape {circuit.weight_shape}")
    return weights.reshape(circuit.weight_shape)


def load_circuit(path: str | Path, weights: str | Path | None = None) -> LoadedCircuit:
    """A circuit and its weights from a saved model (or run) directory or a circuit JSON file.

    Args:
        path: a saved model directory, a run directory containing ``model/``, or a JSON file with
            a circuit description (``Circuit.to_json()``).
        weights: for a circuit JSON file: a safetensors file with the circuit weights (key
            ``q_weights``, or its only tensor). Overrides a model's own weights if given.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        head = load_quantum_head(path)
        loaded = LoadedCircuit(head.circuit, head.q_weights.detach(), head, _find_model_dir(path))
    elif path.is_file():
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CircuitSourceError(f"{path} is neither a saved model directory nor a circuit JSON file") from None
        if isinstance(data, dict) and "head_config" in data:  # the config.json of a saved model
            return load_circuit(path.parent, weights)
        if not isinstance(data, dict):
            raise CircuitSourceError(f"{path} does not hold a circuit description (a JSON object)")
        loaded = LoadedCircuit(Circuit.from_dict(data), None)
    else:
        raise CircuitSourceError(f"{path} does not exist")
    if weights is not None:
        loaded.weights = _read_weights(Path(weights).expanduser(), loaded.circuit)
    return loaded


def _parse_angles(text: str, n_qubits: int) -> torch.Tensor:
    try:
        values = [float(v) for v in text.replace(" ", ",").split(",") if v]
    except ValueError:
        raise CircuitSourceError(f"--angles must be {n_qubits} comma-separated numbers, got {text!r}") from None
    if len(values) != n_qubits:
        raise CircuitSourceError(f"--angles needs {n_qubits} values (one per qubit), got {len(values)}")
    return torch.tensor(values, dtype=torch.float64)


def text_angles(model_dir: Path, text: str) -> torch.Tensor:
    """Encoding angles ``(n_qubits,)`` the saved model gives ``text`` (its encoder, pooling and dressing layer)."""
    from qubert.training import load_model

    model, tokenizer = load_model(model_dir, device="cpu")
    batch = tokenizer([text], truncation=True, max_length=getattr(model.config, "max_length", 128), return_tensors="pt")
    with torch.no_grad():
        features = model.encode(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"))
        return model.head.angles(features.float())[0].double()


# ---------------------------------------------------------------------------- output helpers
def _fail(message: str) -> typer.Exit:
    from rich.markup import escape

    _err.print(f"[bold red]Error:[/bold red] [red]{escape(' '.join(str(message).split()))}[/red]", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_USAGE)


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then move it into place."""
    if not path.parent.is_dir():
        raise CircuitSourceError(f"output folder {path.parent} does not exist")
    from qubert.files import atomic_path

    with atomic_path(path, make_parents=False) as tmp:
        write(tmp)


def _write_text(path: Path, text: str) -> None:
    _write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# ---------------------------------------------------------------------------- commands
PATH_HELP = "Saved model directory (or run directory), or a circuit JSON file (Circuit.to_json())."
WEIGHTS_HELP = "Safetensors file with the circuit weights (key q_weights), for a circuit JSON file."


@circuit_app.command("draw")
def draw(
    path: Path = typer.Argument(..., help=PATH_HELP, show_default=False),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write a matplotlib figure here (png, svg, pdf, ...)."),
    text: bool = typer.Option(False, "--text", help="Print the text drawing (the default when no --output is given)."),
    weights: Path | None = typer.Option(None, help=WEIGHTS_HELP),
    decimals: int = typer.Option(2, min=0, max=8, help="Digits shown for angles."),
) -> None:
    """Draw the circuit: as text on the terminal, or as a figure with --output.

    Example: qubert circuit draw runs/sst2-quantum-frozen-s42 --output circuit.png
    """
    try:
        loaded = load_circuit(path, weights)
        if output is not None:
            from qubert.quantum.drawing import draw_figure

            output = output.expanduser()
            figure = draw_figure(loaded.circuit, loaded.weights, decimals=decimals)
            suffix = output.suffix.lower().lstrip(".")
            supported = figure.canvas.get_supported_filetypes()
            if suffix not in supported:
                raise CircuitSourceError(f"cannot write a figure to {output.name!r}: use one of .{', .'.join(sorted(supported))}")
            _write_atomic(output, lambda tmp: figure.savefig(tmp, format=suffix, dpi=150))
            _err.print(f"Wrote {output}", highlight=False)
        if text or output is None:
            print(loaded.circuit.draw(loaded.weights, decimals=decimals))
    except (ValueError, OSError) as err:
        raise _fail(str(err))


FORMAT_HELP = "qasm3 (OpenQASM 3 text), qiskit (QPY file with --output x.qpy, else the diagram) or pennylane (a Python script)."


@circuit_app.command("export")
def export(
    path: Path = typer.Argument(..., help=PATH_HELP, show_default=False),
    format: str = typer.Option(..., "--format", "-f", help=FORMAT_HELP, show_default=False),
    text: str | None = typer.Option(None, "--text", help="Bind the encoding angles this sentence gets from the saved model."),
    angles: str | None = typer.Option(None, "--angles", help="Bind these encoding angles (comma-separated, one per qubit)."),
    weights: Path | None = typer.Option(None, help=WEIGHTS_HELP),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here instead of printing."),
    measure: bool = typer.Option(False, "--measure", help="Append measurements of every qubit (qasm3, qiskit)."),
    noise: str | None = typer.Option(None, help="Noise channels for the pennylane script, e.g. depolarizing:0.01,readout:0.02."),
) -> None:
    """Export the circuit for one input with its weights bound.

    The input is given as a sentence (--text, run through the saved encoder and dressing layer) or
    as encoding angles (--angles); with neither, the encoding angles are zeros.

    Example: qubert circuit export runs/sst2-quantum-frozen-s42 --format qasm3 --text "a fine film"
    """
    from qubert.quantum import export as exporters

    try:
        if format not in exporters.FORMATS:
            raise CircuitSourceError(f"unknown format {format!r}; expected one of {', '.join(exporters.FORMATS)}")
        if text is not None and angles is not None:
            raise CircuitSourceError("give the input either as --text or as --angles, not both")
        if noise is not None and format != "pennylane":
            raise CircuitSourceError("noise channels can only be exported to the pennylane format")
        noise_model = parse_noise(noise)
        loaded = load_circuit(path, weights)
        if loaded.weights is None:
            raise CircuitSourceError(f"{path} holds no circuit weights: pass --weights file.safetensors")
        if output is not None:
            output = output.expanduser()
            if format == "qiskit" and output.suffix.lower() != ".qpy":
                raise CircuitSourceError(f"the qiskit format writes a QPY file: name the output *.qpy, got {output.name!r}")
            if not output.parent.is_dir():
                raise CircuitSourceError(f"output folder {output.parent} does not exist")
        if text is not None:
            if loaded.model_dir is None:
                raise CircuitSourceError("--text needs a saved model directory (a circuit JSON file has no encoder); use --angles")
            inputs = text_angles(loaded.model_dir, text)
        elif angles is not None:
            inputs = _parse_angles(angles, loaded.circuit.n_qubits)
        else:
            inputs = torch.zeros(loaded.circuit.n_qubits, dtype=torch.float64)
            _err.print("No --text or --angles given: the encoding angles are zeros.", style="dim", highlight=False)
        result = exporters.export_circuit(loaded.circuit, loaded.weights, inputs, format=format, measure=measure, noise=noise_model)
        if format == "qiskit":
            if output is None:
                print(result.draw(output="text", fold=-1))
                return
            from qiskit import qpy

            def dump(tmp: Path) -> None:
                with open(tmp, "wb") as fh:
                    qpy.dump(result, fh)

            _write_atomic(output, dump)
        elif output is None:
            print(result, end="")
            return
        else:
            _write_text(output, result)
        _err.print(f"Wrote {output}", highlight=False)
    except ImportError as err:
        raise _fail(f"{err.name or 'a package'} is not installed; install qubert's extras: pip install 'qubert[qiskit]' / 'qubert[pennylane]'")
    except (ValueError, OSError) as err:
        raise _fail(str(err))


# ---------------------------------------------------------------------------- analyze
ANALYZE_FORMATS = ("table", "markdown", "json")
_DESIGN_PANEL = "Circuit (without PATH)"
_SWEEP_PANEL = "Sweep"


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise CircuitSourceError(f"{what} must be integers separated by commas, e.g. 2,4,6,8; got {text!r}") from None
    if not values:
        raise CircuitSourceError(f"{what} is empty")
    return sorted(set(values))


def _analysis_circuit(path: Path | None, design: dict) -> tuple[Circuit, dict | None]:
    """The circuit to analyse and its head's config (for the loss cost): from PATH or from the options."""
    given = {k: v for k, v in design.items() if v is not None}
    if path is None:
        return Circuit(**{"n_qubits": 4, "n_layers": 2, **given}), None
    if given:
        raise CircuitSourceError(f"give either PATH or circuit options (--{next(iter(given)).replace('_', '-')}), not both")
    loaded = load_circuit(path)
    return loaded.circuit, (loaded.head.config() if loaded.head is not None else None)


@circuit_app.command("analyze")
def analyze(
    path: Path | None = typer.Argument(None, help=PATH_HELP + " Omit it to describe the circuit with the options below.", show_default=False),
    layers: int | None = typer.Option(None, "--layers", help="Variational layers (the default --depths).", rich_help_panel=_DESIGN_PANEL, show_default="2"),
    encoding: str | None = typer.Option(None, help="Angle encoding: h_ry, ry, rx, rz, h_rz.", rich_help_panel=_DESIGN_PANEL, show_default="h_ry"),
    reupload: bool | None = typer.Option(None, "--reupload/--no-reupload", help="Re-upload the encoding before every layer.", rich_help_panel=_DESIGN_PANEL, show_default="no"),
    ansatz: str | None = typer.Option(None, help="brickwork, basic_entangler or strongly_entangling.", rich_help_panel=_DESIGN_PANEL, show_default="brickwork"),
    entanglement: str | None = typer.Option(None, help="default, none, linear, ring, all or ranged.", rich_help_panel=_DESIGN_PANEL, show_default="default"),
    rotation: str | None = typer.Option(None, help="Trainable rotation of brickwork / basic_entangler: rx, ry, rz.", rich_help_panel=_DESIGN_PANEL, show_default="ry"),
    measurement: str | None = typer.Option(None, help="z, zz or probs (what the head's output layer reads).", rich_help_panel=_DESIGN_PANEL, show_default="z"),
    init_scale: float | None = typer.Option(None, help="Standard deviation of the small-angle init.", rich_help_panel=_DESIGN_PANEL, show_default="0.01"),
    qubits: int | None = typer.Option(None, "--qubits", help="One register size (instead of --qubits-range).", rich_help_panel=_SWEEP_PANEL, show_default=False),
    qubits_range: str | None = typer.Option(None, "--qubits-range", help="Register sizes, comma-separated.", rich_help_panel=_SWEEP_PANEL, show_default="2,4,6,8"),
    depths: str | None = typer.Option(None, "--depths", help="Numbers of layers, comma-separated (default: the circuit's own).", rich_help_panel=_SWEEP_PANEL, show_default=False),
    inits: str = typer.Option("uniform,small,identity", "--inits", help="Init strategies: uniform on [0, 2pi), small (normal, init_scale), identity (blocks).", rich_help_panel=_SWEEP_PANEL),
    inputs: str = typer.Option("random", "--inputs", help="Encoding angles: random (uniform in [-pi/2, pi/2]), zeros, or full (uniform in [0, 2pi), as Sim et al.).", rich_help_panel=_SWEEP_PANEL),
    samples: int = typer.Option(2000, "--samples", help="Parameter draws per point (and state pairs for expressibility).", rich_help_panel=_SWEEP_PANEL),
    seed: int = typer.Option(0, "--seed", help="Seed of every draw.", rich_help_panel=_SWEEP_PANEL),
    format: str = typer.Option("table", "--format", "-f", help="Print a rich table, markdown or JSON."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Folder for analysis.json, analysis.md, variance.png and states.png (created if its parent exists)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch threads: the work is thousands of small tensors; 2 threads gained up to 1.3x on an idle 2-core machine and were 17x slower on a busy one (docs/diagnostics.md)."),
) -> None:
    """Diagnose a circuit: gradient variance vs qubits and depth (barren plateaus), expressibility, entanglement.

    For every init strategy, depth and register size: the variance of dC/dtheta_0 over random parameters for
    C = <Z_0> and for the dressed head's cross-entropy at random init (fresh input/output layers,
    random features and labels), with the slope of log2 Var against qubits (McClean et al. 2018;
    -1 is a 2-design's 2^-n); the KL divergence of the pair-fidelity distribution from Haar's
    (Sim et al. 2019; 0 = Haar-random states); the mean Meyer-Wallach entanglement (0 = product).

    Example: qubert circuit analyze --ansatz strongly_entangling --qubits-range 2,4,6,8 --depths 1,4 -o diag/
    """
    from qubert.quantum import diagnostics

    try:
        if format not in ANALYZE_FORMATS:
            raise CircuitSourceError(f"unknown format {format!r}; expected one of {', '.join(ANALYZE_FORMATS)}")
        if qubits is not None and qubits_range is not None:
            raise CircuitSourceError("give either --qubits or --qubits-range, not both")
        if output is not None:
            output = output.expanduser()
            if output.exists() and not output.is_dir():
                raise CircuitSourceError(f"--output {output} is a file; give a folder")
            if not output.parent.is_dir():
                raise CircuitSourceError(f"output folder {output.parent} does not exist")
        design = {"n_layers": layers, "encoding": encoding, "reupload": reupload, "ansatz": ansatz, "entanglement": entanglement,
                  "rotation": rotation, "measurement": measurement, "init_scale": init_scale}
        circuit, head_config = _analysis_circuit(path, design)
        sweep_qubits = [qubits] if qubits is not None else _int_list(qubits_range or "2,4,6,8", "--qubits-range")
        sweep_depths = _int_list(depths, "--depths") if depths is not None else [circuit.n_layers]
        strategies = [s.strip() for s in inits.split(",") if s.strip()]
        diagnostics.check_sweep(sweep_qubits, sweep_depths, strategies, samples, inputs)
        total = len(sweep_qubits) * len(sweep_depths) * len(strategies)
        bar = _analysis_progress(total) if progress else None
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            result = diagnostics.analyze(
                circuit, sweep_qubits, sweep_depths, strategies, samples, seed, inputs, head_config,
                progress=(lambda label: bar[0].update(bar[1], advance=1, description=label)) if bar else None,
            )
        finally:
            torch.set_num_threads(previous_threads)
            if bar is not None:
                bar[0].stop()
        if output is not None:
            _write_analysis(output, result, diagnostics)
        if format == "json":
            print(json.dumps(result.to_dict(), indent=2))
        elif format == "markdown":
            print(diagnostics.to_markdown(result), end="")
        else:
            _print_analysis(result, diagnostics)
        if output is not None:
            _err.print(f"Wrote {output}/analysis.json, analysis.md, variance.png, states.png", highlight=False)
    except KeyboardInterrupt:
        _err.print("[yellow]Interrupted[/yellow]; nothing was written.")
        raise typer.Exit(130)
    except (ValueError, OSError) as err:
        raise _fail(str(err))


def _analysis_progress(total: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=_err, transient=True)
    task = bar.add_task("analyzing", total=total)
    bar.start()
    return bar, task


def _print_analysis(result, diagnostics) -> None:
    from rich.table import Table

    for title, (header, rows) in (("Circuit diagnostics", diagnostics.table_rows(result)), ("Gradient variance vs qubits: Var ~ 2^(slope n)", diagnostics.fit_rows(result))):
        table = Table(title=title, header_style="bold")
        for i, name in enumerate(header):
            table.add_column(name, justify="left" if i == 0 or name in ("cost", "qubits") else "right")
        for row in rows:
            table.add_row(*row)
        _out.print(table)
    _out.print(
        f"{result.samples} draws per point, seed {result.seed}, encoding angles {result.inputs!r}; "
        f"loss: head with {result.head['in_features']} input features, {result.head['n_classes']} classes, scaling {result.head['scaling']}.",
        highlight=False, style="dim",
    )


def _write_analysis(folder: Path, result, diagnostics) -> None:
    """All files into ``folder``, each written atomically (the folder is created, not its parents)."""
    folder.mkdir(exist_ok=True)
    _write_text(folder / "analysis.json", json.dumps(result.to_dict(), indent=2) + "\n")
    _write_text(folder / "analysis.md", diagnostics.to_markdown(result))
    for name, build in (("variance.png", diagnostics.variance_figure), ("states.png", diagnostics.states_figure)):
        figure = build(result)
        _write_atomic(folder / name, lambda tmp, figure=figure: figure.savefig(tmp, format="png", dpi=150))
