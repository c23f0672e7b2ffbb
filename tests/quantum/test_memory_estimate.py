"""``estimate_memory`` is an upper bound on the measured peak of a forward + backward pass, and not a loose one.

The peaks are measured in one fresh subprocess (``memory_probe.py``): peak RSS minus the RSS just
before each pass, with glibc told to hand freed blocks back at once so that RSS follows the live
tensors. Sizes are chosen so that the pass, not the interpreter, dominates (a few MiB and up).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qubert.quantum import adjoint

CASES = [
    {"n_qubits": 10, "n_layers": 2, "batch": 64, "strategy": "gates", "dtype": "float64"},
    {"n_qubits": 12, "n_layers": 2, "batch": 16, "strategy": "gates", "dtype": "float64"},
    {"n_qubits": 14, "n_layers": 2, "batch": 8, "strategy": "gates", "dtype": "float64"},
    {"n_qubits": 14, "n_layers": 3, "batch": 8, "strategy": "gates", "dtype": "float32", "measurement": "zz"},
    {"n_qubits": 12, "n_layers": 2, "batch": 8, "strategy": "gates", "dtype": "float64", "ansatz": "strongly_entangling"},
    {"n_qubits": 6, "n_layers": 3, "batch": 1024, "strategy": "gates", "dtype": "float64", "reupload": True},
    {"n_qubits": 6, "n_layers": 2, "batch": 512, "strategy": "gates", "dtype": "float64", "ansatz": "strongly_entangling", "measurement": "probs"},
    {"n_qubits": 8, "n_layers": 2, "batch": 64, "strategy": "fused", "dtype": "float64"},
    {"n_qubits": 4, "n_layers": 2, "batch": 4096, "strategy": "fused", "dtype": "float32", "ansatz": "strongly_entangling", "reupload": True},
    {"n_qubits": 6, "n_layers": 2, "batch": 1024, "strategy": "analytic", "dtype": "float64"},
    {"n_qubits": 10, "n_layers": 4, "batch": 256, "strategy": "analytic", "dtype": "float64"},
    {"n_qubits": 7, "n_layers": 0, "batch": 1024, "strategy": "analytic", "dtype": "float64"},
    {"n_qubits": 18, "n_layers": 2, "batch": 8, "strategy": "adjoint", "dtype": "float64"},  # one chunk: final and layer states kept
    {"n_qubits": 18, "n_layers": 2, "batch": 8, "strategy": "adjoint", "dtype": "float64", "layer_bytes": 0},  # one chunk: final states kept
    {"n_qubits": 18, "n_layers": 2, "batch": 8, "strategy": "adjoint", "dtype": "float64", "chunk_bytes": 16 << 20},  # chunks of 2
    {"n_qubits": 14, "n_layers": 3, "batch": 64, "strategy": "adjoint", "dtype": "float32", "measurement": "zz", "ansatz": "basic_entangler", "rotation": "ry"},
    {"n_qubits": 12, "n_layers": 2, "batch": 64, "strategy": "adjoint", "dtype": "float64", "measurement": "probs"},
]


def _can_reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def measured():
    if not sys.platform.startswith("linux") or not _can_reset_peak():
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak RSS")
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_TOP_PAD_": "0"}
    probe = Path(__file__).with_name("memory_probe.py")
    out = subprocess.run([sys.executable, str(probe), json.dumps(CASES)], env=env, capture_output=True, text=True, timeout=300, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{c['strategy']}-{c['n_qubits']}q-b{c['batch']}-{c['dtype']}{'-chunked' if 'chunk_bytes' in c else ''}{'-no-layer-states' if 'layer_bytes' in c else ''}" for c in CASES])
def test_estimate_bounds_the_measured_peak_from_above_within_4x(measured, index):
    row = measured[index]
    mib = {k: round(row[k] / 2**20, 2) for k in ("measured", "estimate")}
    assert row["measured"] <= row["estimate"] <= 4 * row["measured"], mib


def test_adjoint_holds_a_few_states_per_sample_of_a_chunk_at_18_qubits(measured, monkeypatch):
    """At 18 qubits (one float64 state: 2 MiB) the adjoint pass holds at most 6 states per sample
    when the whole batch is one chunk (final states kept for the backward pass, plus the working
    states) and at most 7 states per sample of a chunk when it runs in chunks (final states
    recomputed), whatever the batch: the peak does not grow with the depth or the batch. Keeping
    the states entering the layers (:data:`~qubert.quantum.adjoint.LAYER_STATES_BYTES`) adds one
    state per sample and layer, and only while they fit in that budget."""
    state = 2**18 * 8
    adjoint_18 = [r for r in measured if r["strategy"] == "adjoint" and r["n_qubits"] == 18]
    layers, kept, chunked = (next(r for r in adjoint_18 if ("chunk_bytes" in r, "layer_bytes" in r) == c) for c in ((False, False), (False, True), (True, False)))
    assert adjoint.keeps_layer_states(18, 2, layers["batch"], 8) and layers["batch"] * 2 * state <= adjoint.LAYER_STATES_BYTES
    assert layers["measured"] <= (6 + 2) * layers["batch"] * state, layers["measured"] / state
    assert kept["measured"] <= 6 * kept["batch"] * state, kept["measured"] / state
    monkeypatch.setattr(adjoint, "CHUNK_BYTES", chunked["chunk_bytes"])
    chunk = adjoint.chunk_size(18, chunked["batch"], 8)
    assert chunk < chunked["batch"]
    assert chunked["measured"] <= 7 * chunk * state, chunked["measured"] / state

