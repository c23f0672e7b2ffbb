"""``qubert devices``: the IBM device snapshots a head can be evaluated on, with their median errors."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from qubert.cli.common import usage_error, error_message, user_errors, console, err_console


def devices(
    json_output: bool = typer.Option(False, "--json", help="Print the list as JSON instead of a table."),
    min_qubits: int = typer.Option(0, help="Only devices with at least this many qubits."),
) -> None:
    """List the fake IBM devices (calibration snapshots shipped with qiskit-ibm-runtime): qubits and median errors.

    Example: qubert devices --min-qubits 5

    Then: qubert eval RUN --device fake_manila --shots 1024
    """
    from qubert.quantum.devices import list_devices

    try:
        with err_console.status("Reading the calibration snapshots"):
            rows = [info for info in list_devices() if info.n_qubits >= min_qubits]
    except user_errors() as err:
        raise usage_error(error_message(err))
    if json_output:
        console.print_json(json.dumps([info.to_dict() for info in rows]))
        return
    table = Table(title="Device snapshots (medians over qubits / qubit pairs)", header_style="bold")
    for column, justify in (("name", "left"), ("qubits", "right"), ("2q gate", "left"), ("2q err", "right"), ("sx err", "right"), ("readout", "right"), ("T1 us", "right"), ("T2 us", "right")):
        table.add_column(column, justify=justify, no_wrap=True)

    def number(value, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for info in rows:
        table.add_row(
            info.name, str(info.n_qubits), info.two_qubit_gate, number(info.two_qubit_error, ".1e"), number(info.one_qubit_error, ".1e"),
            number(info.readout_error, ".1e"), number(info.t1_us, ".0f"), number(info.t2_us, ".0f"),
        )
    console.print(table)
    console.print("Evaluate a trained head on one: qubert eval RUN --device fake_manila (real hardware: --device ibm_<name>, see docs/devices.md)", highlight=False)
