"""Quantum circuits for classification heads: description, batched simulation.

Knows nothing of text or data sets. PennyLane and Qiskit are never imported here.

Example:
    >>> import torch
    >>> from qubert.quantum import Circuit, simulate
    >>> c = Circuit(n_qubits=2, n_layers=1)
    >>> simulate(c, torch.zeros(1, 2), torch.zeros(c.weight_shape)).shape
    torch.Size([1, 2])
"""

from qubert.quantum.circuit import (
    ANSATZES,
    ENCODINGS,
    ENTANGLEMENTS,
    INITS,
    MEASUREMENTS,
    ROTATIONS,
    Circuit,
    Operation,
    Param,
)
from qubert.quantum.engine import (
    STRATEGIES,
    RegisterTooLargeError,
    available_memory,
    check_strategy,
    choose_strategy,
    estimate_memory,
    simulate,
    statevector,
)
from qubert.quantum.execution import GRADIENTS, ExecutionOptions, execute
from qubert.quantum.noise import NoiseModel, density_matrix, parse_noise

__all__ = [
    "ANSATZES",
    "ENCODINGS",
    "ENTANGLEMENTS",
    "INITS",
    "MEASUREMENTS",
    "ROTATIONS",
    "STRATEGIES",
    "Circuit",
    "Operation",
    "Param",
    "RegisterTooLargeError",
    "available_memory",
    "check_strategy",
    "choose_strategy",
    "estimate_memory",
    "simulate",
    "statevector",
    "GRADIENTS",
    "ExecutionOptions",
    "NoiseModel",
    "density_matrix",
    "execute",
    "parse_noise",
]
