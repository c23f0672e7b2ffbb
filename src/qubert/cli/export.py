"""``qubert export``: a trained run as one ONNX graph (or OpenVINO IR) that runs without qubert."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from qubert.cli.common import EXIT_INTERRUPTED, config_option, console, err_console, error_message, usage_error, user_errors


def export(
    model_dir: Path = typer.Argument(..., help="A run directory or its model/ folder.", show_default=False),
    config: Optional[Path] = config_option(),
    format: str = typer.Option("onnx", "--format", help="onnx (model.onnx), or openvino (model.onnx plus OpenVINO IR model.xml/.bin)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder to write (default: <run>/export); written atomically."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
) -> None:
    """Export a run as one graph: token ids -> encoder -> pooling -> head -> probabilities (quantum heads up to 12 qubits, exact).

    The folder holds the graph, the tokenizer, labels.json and a README.md showing how to call it
    from onnxruntime with no qubert installed. Needs the onnx extra (the openvino extra for --format openvino): pip install "qubert\\[onnx]".

    Example: qubert export runs/sst2-quantum-frozen-s42 --format onnx
    """
    from qubert.export import export_run

    try:
        target = export_run(model_dir, format=format, output=output, overwrite=overwrite)
    except KeyboardInterrupt:
        err_console.print("[yellow]Interrupted[/yellow]; nothing was written.")
        raise typer.Exit(EXIT_INTERRUPTED)
    except user_errors() as err:
        raise usage_error(error_message(err))
    import json

    info = json.loads((target / "export.json").read_text(encoding="utf-8"))
    console.print(
        f"Wrote {target} ({info['head']} head, {info['model_bytes'] / 2**20:.1f} MiB model.onnx; probabilities within "
        f"{info['max_probability_difference']:.1e} of the PyTorch model on {info['checked_texts']} texts). See {target / 'README.md'}.",
        highlight=False, soft_wrap=True,
    )
