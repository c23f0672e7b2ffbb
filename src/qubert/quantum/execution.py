"""Run a circuit the way hardware would: finite shots, noise, parameter-shift gradients. One entry point.

:func:`execute` returns what :func:`~qubert.quantum.engine.simulate` returns (``(batch, n_outputs)``)
and, with every option at its default, *is* ``simulate``. Otherwise it goes through three stages:

1. probabilities of the basis states: the exact statevector engine when there is no gate noise,
   else the density matrix (exact; small registers) or Monte Carlo trajectories
   (:mod:`qubert.quantum.noise`); readout error is applied to them as a confusion matrix;
2. measured values: exact expectations, or estimates from ``shots`` seeded samples
   (:mod:`qubert.quantum.shots`);
3. gradients: ``"backprop"`` differentiates the simulation by autograd; with shots the forward
   value is the shot estimate and the gradient that of the exact expectation (straight-through).
   ``"parameter_shift"`` differentiates by the shift rule (:mod:`qubert.quantum.parameter_shift`),
   running the shifted circuits through stages 1-2 as well, as a device would.

Example:
    >>> import torch
    >>> from qubert.quantum import Circuit
    >>> c = Circuit(n_qubits=3, n_layers=2)
    >>> x, w = torch.rand(4, 3), c.init_weights()
    >>> execute(c, x, w, shots=1024, noise="depolarizing:0.01,readout:0.02", seed=0).shape
    torch.Size([4, 3])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from qubert.quantum.circuit import Circuit
from qubert.quantum.engine import STRATEGIES, simulate, statevector
from qubert.quantum.noise import (
    DEFAULT_TRAJECTORIES,
    NOISE_METHODS,
    NoiseModel,
    apply_readout_error,
    gate_angles,
    noisy_probabilities,
    parse_noise,
    resolve_noise_method,
)
from qubert.quantum.parameter_shift import parameter_shift
from qubert.quantum.shots import check_shots, estimate_from_shots, expectations_from_probabilities, make_generator, straight_through

GRADIENTS = ("backprop", "parameter_shift")
# How a device is simulated: "aer" transpiles and runs on Qiskit Aer with the device's full noise
# model (or on the real device for ibm_<name>; no gradient); "qubert" maps its calibration to
# qubert's own channels (qubert.quantum.device_noise; differentiable, for noise-aware training).
DEVICE_SIMULATORS = ("aer", "qubert")
# Memory the parameter-shift backward may use for one batch of shifted circuits (no autograd there).
_SHIFT_BATCH_BYTES = 1 << 29


class ExecutionError(ValueError):
    """An invalid execution option (gradient method, noise method, trajectories, seed)."""


@dataclass(frozen=True)
class ExecutionOptions:
    """How to run a circuit: shots, noise and gradient method (all defaults: exact simulation).

    Args:
        shots: samples per circuit (``None``: exact expectation values).
        noise: a :class:`~qubert.quantum.noise.NoiseModel` or its spec string
            (``"depolarizing:0.01,amplitude_damping:0.02,readout:0.02"``); noiseless becomes ``None``.
        gradient: ``"backprop"`` or ``"parameter_shift"``.
        noise_method: ``"auto"``, ``"density_matrix"`` or ``"trajectories"``.
        trajectories: Monte Carlo trajectories per sample for ``noise_method="trajectories"``.
        device: an IBM device, by name (``"fake_manila"``, ``"ibm_kyiv"``) or as a backend object;
            needs ``qubert[devices]`` (see :mod:`qubert.quantum.devices`). Excludes ``noise``.
        device_simulator: ``"aer"`` (transpiled circuit on Aer with the device noise, or the real
            device; evaluation only) or ``"qubert"`` (the device's calibration mapped to qubert's
            channels; differentiable).
        optimization_level: the transpiler's optimization level (0-3) for ``device``.

    Example:
        >>> ExecutionOptions(shots=256, noise="readout:0.02").noise
        NoiseModel(depolarizing=0.0, amplitude_damping=0.0, readout=0.02)
    """

    shots: int | None = None
    noise: NoiseModel | str | None = None
    gradient: str = "backprop"
    noise_method: str = "auto"
    trajectories: int = DEFAULT_TRAJECTORIES
    device: Any = None
    device_simulator: str = "aer"
    optimization_level: int = 1

    def __post_init__(self) -> None:
        check_shots(self.shots)
        noise = parse_noise(self.noise)
        object.__setattr__(self, "noise", None if noise.is_noiseless else noise)
        if self.gradient not in GRADIENTS:
            raise ExecutionError(f"unknown gradient method {self.gradient!r}; expected one of {', '.join(GRADIENTS)}")
        if self.noise_method not in NOISE_METHODS:
            raise ExecutionError(f"unknown noise_method {self.noise_method!r}; expected one of {', '.join(NOISE_METHODS)}")
        if isinstance(self.trajectories, bool) or not isinstance(self.trajectories, int) or self.trajectories < 1:
            raise ExecutionError(f"trajectories must be a positive integer, got {self.trajectories!r}")
        if self.device_simulator not in DEVICE_SIMULATORS:
            raise ExecutionError(f"unknown device_simulator {self.device_simulator!r}; expected one of {', '.join(DEVICE_SIMULATORS)}")
        if self.device is not None:
            from qubert.quantum import devices

            if self.noise is not None:
                raise ExecutionError("give either a noise model or a device (whose calibration is the noise model), not both")
            devices.check_optimization_level(self.optimization_level)
            devices.resolve_backend(self.device)  # an unknown name or a missing extra fails here, in one line

    @property
    def is_exact(self) -> bool:
        """True when this is plain exact simulation with autograd (the engine's fast path)."""
        return self.shots is None and self.noise is None and self.device is None and self.gradient == "backprop"

    def needs_randomness(self, circuit: Circuit) -> bool:
        gate_noise = self.noise is not None and self.noise.has_gate_noise
        if self.device is not None and self.device_simulator == "aer":
            return True
        return self.shots is not None or (gate_noise and resolve_noise_method(circuit, self.noise_method) == "trajectories")


def execute(
    circuit: Circuit,
    inputs: torch.Tensor,
    weights: torch.Tensor,
    *,
    shots: int | None = None,
    noise: NoiseModel | str | None = None,
    gradient: str = "backprop",
    seed: int | torch.Generator | None = None,
    strategy: str = "auto",
    noise_method: str = "auto",
    trajectories: int = DEFAULT_TRAJECTORIES,
    dtype: torch.dtype | None = None,
    device: Any = None,
    device_simulator: str = "aer",
    optimization_level: int = 1,
) -> torch.Tensor:
    """Measured values ``(batch, circuit.n_outputs)`` with shots, noise and a gradient method of choice.

    Args:
        circuit: the circuit description.
        inputs: encoding angles ``(batch, n_qubits)`` (or ``(n_qubits,)`` for one sample).
        weights: trainable angles, shape ``circuit.weight_shape``.
        shots: samples per circuit; ``None`` gives exact expectation values.
        noise: noise model or spec string, see :func:`~qubert.quantum.noise.parse_noise`.
        gradient: ``"backprop"`` (autograd; straight-through with shots) or ``"parameter_shift"``.
        seed: integer seed or ``torch.Generator`` for shots and trajectories (a generator advances
            from call to call; ``None`` draws a seed from torch's global RNG).
        strategy: the statevector engine's strategy, used where there is no gate noise.
        noise_method: ``"auto"`` (density matrix up to 8 qubits, else trajectories),
            ``"density_matrix"`` or ``"trajectories"``.
        trajectories: Monte Carlo trajectories per sample.
        dtype: ``torch.complex64``/``complex128`` (the precision); default follows the inputs.
        device, device_simulator, optimization_level: run as on an IBM device (see
            :class:`ExecutionOptions`); with ``"aer"`` the shots default to 1024 and there is no gradient.

    Raises:
        ValueError: bad shots, noise spec, gradient/noise method, or shapes (each says which).

    Example:
        >>> c = Circuit(n_qubits=2, n_layers=1, encoding="ry")
        >>> x, w = torch.tensor([[torch.pi / 3, 0.0]]), torch.zeros(c.weight_shape)
        >>> execute(c, x, w), execute(c, x, w, noise="readout:0.1")  # readout error p scales <Z> by 1 - 2p
        (tensor([[0.5000, 0.5000]]), tensor([[0.4000, 0.4000]]))
    """
    options = ExecutionOptions(
        shots=shots, noise=noise, gradient=gradient, noise_method=noise_method, trajectories=trajectories,
        device=device, device_simulator=device_simulator, optimization_level=optimization_level,
    )
    if strategy not in STRATEGIES:
        raise ExecutionError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if options.is_exact:
        return simulate(circuit, inputs, weights, strategy=strategy, dtype=dtype)
    single = inputs.dim() == 1
    if single:
        inputs = inputs.unsqueeze(0)
    generator = make_generator(seed) if options.needs_randomness(circuit) else None
    if dtype is not None:
        real = torch.float64 if dtype in (torch.complex128, torch.float64) else torch.float32
        inputs, weights = inputs.to(real), weights.to(real)
    if options.device is not None and options.device_simulator == "aer":
        out = _run_on_device(circuit, inputs, weights, options, generator)
    elif options.gradient == "parameter_shift":
        out = _run_parameter_shift(circuit, inputs, weights, options, generator)
    else:
        out = _run_backprop(circuit, inputs, weights, options, generator, strategy, dtype)
    return out[0] if single else out


def _run_on_device(circuit, inputs, weights, options: ExecutionOptions, generator) -> torch.Tensor:
    from qubert.quantum import devices

    if torch.is_grad_enabled() and (inputs.requires_grad or weights.requires_grad):
        raise ExecutionError(
            "device_simulator='aer' runs the transpiled circuit on Aer or the device and has no gradient; "
            "evaluate under torch.no_grad(), or train with device_simulator='qubert'"
        )
    head = devices.transpile_head(circuit, options.device, optimization_level=options.optimization_level)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
    out = devices.run_transpiled(head, inputs, weights, shots=options.shots or devices.DEFAULT_DEVICE_SHOTS, seed=seed)
    return out.to(inputs.dtype)


def _device_probabilities(circuit: Circuit, angles: torch.Tensor, options: ExecutionOptions) -> torch.Tensor:
    from qubert.quantum import devices
    from qubert.quantum.device_noise import device_noise_probabilities

    model = devices.cached_device_noise_model(circuit, options.device, optimization_level=options.optimization_level)
    return device_noise_probabilities(circuit, angles, model)


def _probabilities(circuit: Circuit, inputs: torch.Tensor, weights: torch.Tensor, options: ExecutionOptions, generator, strategy: str, dtype) -> torch.Tensor:
    if options.device is not None:
        return _device_probabilities(circuit, gate_angles(circuit, inputs, weights), options)
    noise = options.noise
    if noise is None or not noise.has_gate_noise:
        state = statevector(circuit, inputs, weights, strategy=strategy, dtype=dtype)
        probs = torch.view_as_real(state).square().sum(-1) if state.is_complex() else state.square()
        return probs if noise is None else apply_readout_error(probs, circuit.n_qubits, noise.readout)
    angles = gate_angles(circuit, inputs, weights)
    return noisy_probabilities(circuit, angles, noise, method=options.noise_method, trajectories=options.trajectories, generator=generator)


def _run_backprop(circuit, inputs, weights, options: ExecutionOptions, generator, strategy: str, dtype) -> torch.Tensor:
    probs = _probabilities(circuit, inputs, weights, options, generator, strategy, dtype)
    exact = expectations_from_probabilities(probs, circuit)
    if options.shots is None:
        return exact
    return straight_through(exact, estimate_from_shots(probs, circuit, options.shots, generator))


def _run_parameter_shift(circuit, inputs, weights, options: ExecutionOptions, generator) -> torch.Tensor:
    noise = options.noise or NoiseModel()

    def evaluate(angles: torch.Tensor) -> torch.Tensor:
        if options.device is not None:
            probs = _device_probabilities(circuit, angles, options)
        else:
            probs = noisy_probabilities(circuit, angles, noise, method=options.noise_method, trajectories=options.trajectories, generator=generator)
        if options.shots is None:
            return expectations_from_probabilities(probs, circuit)
        return estimate_from_shots(probs, circuit, options.shots, generator)

    angles = gate_angles(circuit, inputs, weights)
    return parameter_shift(evaluate, angles, max_rows=_shift_rows(circuit, options, angles.dtype))


def _shift_rows(circuit: Circuit, options: ExecutionOptions, dtype: torch.dtype) -> int:
    """Rows of shifted circuits per evaluation so that one batch stays within a fixed memory budget."""
    itemsize = 16 if dtype == torch.float64 else 8
    dim = 2**circuit.n_qubits
    noise = options.noise
    if noise is None or not noise.has_gate_noise:
        per_row = dim
    elif resolve_noise_method(circuit, options.noise_method) == "density_matrix":
        per_row = dim * dim
    else:
        per_row = dim * options.trajectories
    return max(1, _SHIFT_BATCH_BYTES // (4 * itemsize * per_row))


def describe(options: ExecutionOptions) -> dict[str, Any]:
    """The non-default options as a plain dict (what a head's ``config()`` stores).

    Example:
        >>> describe(ExecutionOptions(shots=1024, noise="readout:0.02"))
        {'shots': 1024, 'noise': 'readout:0.02'}
    """
    out: dict[str, Any] = {}
    if options.shots is not None:
        out["shots"] = options.shots
    if options.noise is not None:
        out["noise"] = options.noise.to_spec()
    if options.gradient != "backprop":
        out["gradient"] = options.gradient
    if options.noise_method != "auto":
        out["noise_method"] = options.noise_method
    if options.trajectories != DEFAULT_TRAJECTORIES:
        out["trajectories"] = options.trajectories
    if options.device is not None:
        out["device"] = options.device if isinstance(options.device, str) else str(getattr(options.device, "name", options.device))
        if options.device_simulator != "aer":
            out["device_simulator"] = options.device_simulator
        if options.optimization_level != 1:
            out["optimization_level"] = options.optimization_level
    return out
