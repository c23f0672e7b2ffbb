"""The ``qubert`` command: ``train``, ``eval``, ``predict`` and ``datasets`` (:mod:`qubert.cli.run`), ``bench``
(:mod:`qubert.cli.bench`), ``circuit draw|export`` (:mod:`qubert.cli.circuit`), ``devices`` (:mod:`qubert.cli.devices`) and ``export`` (:mod:`qubert.cli.export`).

Every option of every command can also come from a YAML file (``--config run.yaml``, keys as the
option names with ``_`` or ``-``); options given on the command line win. Bad input prints one red
line and exits with code 2; Ctrl-C during training exits with 130 and says how to resume.

Example:
    $ qubert train --dataset sst2 --head quantum --qubits 8 --layers 2 --mode frozen
    $ qubert eval runs/sst2-quantum-frozen-s42 --dataset sst2 --shots 1000
    $ echo "what a film" | qubert predict runs/sst2-quantum-frozen-s42
    $ qubert datasets
    $ qubert eval runs/sst2-quantum-frozen-s42 --device fake_manila
    $ qubert predict runs/sst2-quantum-frozen-s42 --runtime openvino < texts.txt
    $ qubert export runs/sst2-quantum-frozen-s42 --format onnx
"""

from __future__ import annotations

import typer

from qubert.cli.bench import bench as _bench
from qubert.cli.circuit import circuit_app as _circuit_app
from qubert.cli.common import console
from qubert.cli.devices import devices as _devices
from qubert.cli.export import export as _export
from qubert.cli.run import datasets, evaluate, predict, train
from qubert.cli.serve import serve as _serve

app = typer.Typer(
    name="qubert",
    help="Fine-tune BERT-family encoders with a variational quantum (or classical) classification head.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


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


app.command("train", help=train.__doc__.splitlines()[0] + "\n\nExample: qubert train --dataset sst2 --head quantum --qubits 8 --layers 2 --mode frozen")(train)
app.command("eval")(evaluate)
app.command("predict")(predict)
app.command("datasets")(datasets)
app.command("serve")(_serve)
app.command("bench", help=_bench.__doc__)(_bench)
app.command("devices")(_devices)
app.command("export")(_export)
app.add_typer(_circuit_app, name="circuit")


def main() -> None:  # pragma: no cover - console entry point alias
    app()
