"""Peak memory of one forward + backward pass of the simulator, measured from the process's RSS.

Run as ``python memory_probe.py '<json list of cases>'``; prints one JSON object per case with
``measured`` (peak RSS minus the RSS just before the pass, in bytes) and ``estimate``
(:func:`qubert.quantum.estimate_memory`). Linux only: the peak is reset before each case by
writing 5 to ``/proc/self/clear_refs`` and read back as ``VmHWM``. Run it with
``MALLOC_MMAP_THRESHOLD_`` set low so that freed tensors go back to the system at once.

A case is ``{"n_qubits": .., "n_layers": .., "batch": .., "strategy": .., "dtype": "float64", ...}``;
``"chunk_bytes"`` sets :data:`qubert.quantum.adjoint.CHUNK_BYTES` and ``"layer_bytes"``
:data:`qubert.quantum.adjoint.LAYER_STATES_BYTES`; other keys are Circuit fields.
"""

from __future__ import annotations

import gc
import json
import re
import sys

import torch

from qubert.quantum import Circuit, adjoint, estimate_memory, simulate
from qubert.quantum.engine import _plan_for, resolve_dtypes


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{key}:\s+(\d+) kB", f.read()).group(1)) * 1024


def measure(case: dict) -> dict:
    case = dict(case)
    batch, strategy, dtype = case.pop("batch"), case.pop("strategy"), getattr(torch, case.pop("dtype"))
    chunk_bytes = case.pop("chunk_bytes", None)
    if chunk_bytes is not None:  # the adjoint strategy's working memory per chunk of the batch
        adjoint.CHUNK_BYTES = chunk_bytes
    layer_bytes = case.pop("layer_bytes", None)
    if layer_bytes is not None:  # whether the adjoint strategy keeps the states entering its layers
        adjoint.LAYER_STATES_BYTES = layer_bytes
    circuit = Circuit(**case)
    x = torch.rand(batch, circuit.n_qubits, dtype=dtype, requires_grad=True)
    w = circuit.init_weights().to(dtype).requires_grad_()
    state_dtype, _ = resolve_dtypes(x, None, _plan_for(circuit).real)
    # Warm up the same kernels on a smaller register, so that loading their code is not counted
    # while this circuit's own cached tables (built on its first call) are.
    warm = Circuit(**{**case, "n_qubits": max(circuit.n_qubits - 1, 2)})
    simulate(warm, torch.rand(1, warm.n_qubits, dtype=dtype, requires_grad=True), warm.init_weights().to(dtype), strategy=strategy).sum().backward()
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status("VmRSS")
    simulate(circuit, x, w, strategy=strategy).sum().backward()
    measured = _status("VmHWM") - before
    del x, w
    gc.collect()
    extra = {key: value for key, value in (("chunk_bytes", chunk_bytes), ("layer_bytes", layer_bytes)) if value is not None}
    return {**case, **extra, "batch": batch, "strategy": strategy, "measured": measured, "estimate": estimate_memory(circuit, batch, strategy, state_dtype)}


if __name__ == "__main__":
    torch.set_num_threads(1)
    for case in json.loads(sys.argv[1]):
        print(json.dumps(measure(case)), flush=True)
