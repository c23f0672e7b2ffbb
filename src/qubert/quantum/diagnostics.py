"""Is a circuit trainable and expressive? Barren-plateau, expressibility and entanglement diagnostics.

Three measures over random draws of a circuit's parameters, for the exact circuit a head trains:

- **gradient variance** ``Var[dC/dtheta_0]`` of a cost over random parameters, vs qubit count and
  depth, with the slope of ``log2 Var`` against ``n`` (McClean et al. 2018: a barren plateau is
  ``Var ~ 2**(slope * n)`` with a clearly negative slope; a 2-design gives about -1). The costs are
  ``z0`` (``<Z_0>``, a local observable) and ``loss`` (the dressed head's cross-entropy on random
  features and labels: see :func:`gradient_statistics`);
- **expressibility**: KL divergence between the fidelity distribution of pairs of random-parameter
  states and the Haar one, ``P(F) = (N - 1)(1 - F)**(N - 2)`` on 75 bins (Sim, Johnson &
  Aspuru-Guzik 2019): 0 for Haar-random states, ``(N - 1) ln 75`` for a circuit that does nothing;
- **entangling capability**: the mean Meyer-Wallach measure ``Q = 2 (1 - mean_k tr(rho_k**2))``
  (0 for product states, 1 for GHZ).

Parameters are drawn by an init strategy: ``uniform`` on [0, 2 pi), ``small`` (normal with the
circuit's ``init_scale``, 0.01 as in the paper) or ``identity`` (Grant et al. 2019: layer pairs,
the first uniform, the second its inverse, as ``Circuit(init="identity")`` lays them out).

Example:
    >>> from qubert.quantum import Circuit
    >>> result = analyze(Circuit(n_qubits=2, n_layers=1), qubits=[2, 3], depths=[1], inits=["uniform"], samples=200, seed=0)
    >>> [(row.n_qubits, row.n_layers) for row in result.rows]
    [(2, 1), (3, 1)]
    >>> 0 <= result.rows[0].entanglement <= 1
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from qubert.quantum import gates
from qubert.quantum.basis import cnot_permutation, observable_signs
from qubert.quantum.circuit import Circuit

INIT_STRATEGIES = ("uniform", "small", "identity")
INPUT_MODES = ("random", "zeros", "full")
COSTS = ("z0", "loss")
HAAR_BINS = 75
# Largest register analyze() accepts: beyond it thousands of states cost minutes and gigabytes.
MAX_QUBITS = 16
# Bytes of batched states autograd may keep per chunk of parameter samples.
_CHUNK_BYTES = 1 << 28
# Float64 round-off of a gradient that is exactly zero for every draw gives variances ~1e-33.
ZERO_VARIANCE = 1e-24
# For the "loss" cost of a bare circuit description (no trained head to take the sizes from).
DEFAULT_HEAD = {"in_features": 32, "n_classes": 2, "scaling": "tanh_pi_2"}


# ---------------------------------------------------------------------------- sampling
def strategy_circuit(circuit: Circuit, strategy: str) -> Circuit:
    """The circuit whose gate layout ``strategy`` draws parameters for (identity blocks mirror odd layers)."""
    check_choice("init strategy", strategy, INIT_STRATEGIES)
    return circuit.replace(init="identity" if strategy == "identity" else "normal")


def sample_weights(circuit: Circuit, strategy: str, n_samples: int, generator: torch.Generator) -> torch.Tensor:
    """``(n_samples, *circuit.weight_shape)`` float64 weights drawn by an init strategy.

    ``identity``: layers (0, 1), (2, 3)...: the first uniform on [0, 2 pi), the second its inverse in
    the mirrored layout of :func:`strategy_circuit` (so every pair is the identity); an unpaired last
    layer gets small angles, as :meth:`Circuit.init_weights` gives it.

    Example:
        >>> c = Circuit(n_qubits=3, n_layers=2)
        >>> w = sample_weights(c, "identity", 5, torch.Generator().manual_seed(0))
        >>> w.shape, bool(torch.equal(w[:, 1], -w[:, 0]))
        (torch.Size([5, 2, 3]), True)
    """
    check_choice("init strategy", strategy, INIT_STRATEGIES)
    shape = (n_samples, *circuit.weight_shape)
    if strategy == "uniform":
        return torch.rand(shape, generator=generator, dtype=torch.float64) * (2 * math.pi)
    weights = torch.randn(shape, generator=generator, dtype=torch.float64) * circuit.init_scale
    if strategy == "identity":
        for layer in range(1, circuit.n_layers, 2):
            first = torch.rand(shape[:1] + shape[2:], generator=generator, dtype=torch.float64) * (2 * math.pi)
            weights[:, layer - 1] = first
            # Rot(a, b, c)^-1 = Rot(-c, -b, -a); single rotations just change sign.
            weights[:, layer] = -first.flip(-1) if circuit.ansatz == "strongly_entangling" else -first
    return weights


def sample_inputs(n_qubits: int, mode: str, n_samples: int, generator: torch.Generator) -> torch.Tensor:
    """``(n_samples, n_qubits)`` encoding angles: ``random`` uniform on [-pi/2, pi/2] (the range of the
    paper's ``tanh(z) * pi/2`` scaling), ``zeros``, or ``full``: uniform on [0, 2 pi), every encoding
    angle one more random parameter (as Sim et al. treat every angle of a circuit)."""
    check_choice("inputs", mode, INPUT_MODES)
    shape = (n_samples, n_qubits)
    if mode == "zeros":
        return torch.zeros(shape, dtype=torch.float64)
    unit = torch.rand(shape, generator=generator, dtype=torch.float64)
    return unit * (2 * math.pi) if mode == "full" else (unit - 0.5) * math.pi


# ---------------------------------------------------------------------------- simulation
def batched_statevectors(circuit: Circuit, weights: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Final states ``(S, 2**n)`` of ``S`` circuits, each with its own weights and encoding angles.

    Why hand-written and not :func:`qubert.quantum.simulate`: the engine runs one weight tensor over
    a batch of inputs (what a head does), and its speed comes from fusing the weight-only steps into
    one matrix shared by the batch. Here every sample has its own weights, so nothing is shared:
    the circuit is applied gate by gate with per-sample 2x2 matrices (:mod:`qubert.quantum.gates`)
    and CNOT runs as one basis permutation (:mod:`qubert.quantum.basis`), one einsum or gather per
    gate over all samples; the gates a wire meets between CNOTs are multiplied first (2x2 products),
    and those before the first CNOT build a product state. ``tests/quantum/test_diagnostics.py``
    checks it against the engine.
    Real-only circuits (H, RY, CNOT) run in float64, others in complex128; differentiable.

    Args:
        circuit: the circuit description.
        weights: ``(S, *circuit.weight_shape)``.
        inputs: ``(S, n_qubits)`` encoding angles.
    """
    n, samples = circuit.n_qubits, weights.shape[0]
    if tuple(weights.shape[1:]) != circuit.weight_shape or tuple(inputs.shape) != (samples, n):
        raise ValueError(f"weights must be (S, {circuit.weight_shape}) and inputs (S, {n}); got {tuple(weights.shape)} and {tuple(inputs.shape)}")
    dtype = torch.float64 if circuit.is_real else torch.complex128
    flat_w, x = weights.reshape(samples, -1).to(torch.float64), inputs.to(torch.float64)
    device = weights.device
    state: torch.Tensor | None = None  # None: still |0...0> under the pending gates, a product state
    pending: dict[int, torch.Tensor] = {}  # wire -> the product of its single-qubit gates not yet applied
    cnots: list[tuple[int, int]] = []

    def apply_pending(state: torch.Tensor | None) -> torch.Tensor:
        if state is None:  # the first gates act on |0>: build the product state, wire 0 first
            state = torch.ones(samples, 1, dtype=dtype, device=device)
            for q in range(n):
                column = pending[q][:, :, 0] if q in pending else torch.tensor([1, 0], dtype=dtype, device=device).expand(samples, 2)
                state = (state.unsqueeze(-1) * column.unsqueeze(1)).reshape(samples, -1)
        else:
            for q, matrix in pending.items():
                view = state.reshape(samples, 2**q, 2, 2 ** (n - q - 1))
                state = torch.einsum("sij,sajb->saib", matrix, view).reshape(samples, 2**n)
        pending.clear()
        return state

    for op in circuit.operations():
        if op.name == "CNOT":
            state = apply_pending(state)
            cnots.append(op.wires)
            continue
        if cnots:
            state = state.index_select(-1, cnot_permutation(n, cnots).to(device))
            cnots.clear()
        angles = [(x if p.source == "x" else flat_w)[:, p.index] for p in op.params]
        matrix = gates.gate_matrix(op.name, angles, dtype, (samples,), device)
        q = op.wires[0]
        pending[q] = matrix @ pending[q] if q in pending else matrix
    state = apply_pending(state)
    if cnots:
        state = state.index_select(-1, cnot_permutation(n, cnots).to(device))
    return state


def probabilities(states: torch.Tensor) -> torch.Tensor:
    """``|amplitude|**2`` of real or complex states."""
    return states.square() if not states.is_complex() else torch.view_as_real(states).square().sum(-1)


def _chunks(circuit: Circuit, n_samples: int) -> list[slice]:
    """Sample ranges small enough that the states autograd keeps stay under ``_CHUNK_BYTES``."""
    per_sample = 16 * 2**circuit.n_qubits * (len(circuit.operations()) + 4)
    size = max(1, min(n_samples, _CHUNK_BYTES // per_sample))
    return [slice(start, min(start + size, n_samples)) for start in range(0, n_samples, size)]


# ---------------------------------------------------------------------------- measures
def haar_fidelity_log_probabilities(n_qubits: int, bins: int = HAAR_BINS) -> np.ndarray:
    """``log`` of the Haar probability of each of ``bins`` equal fidelity bins on [0, 1].

    ``P(F in [a, b]) = (1 - a)**(N - 1) - (1 - b)**(N - 1)``, computed in logs so that the top bins
    of large registers (``75**-(N - 1)``) do not underflow.

    Example:
        >>> np.exp(haar_fidelity_log_probabilities(1, bins=4)).round(3).tolist()   # one qubit: uniform
        [0.25, 0.25, 0.25, 0.25]
    """
    power = 2**n_qubits - 1
    edges = np.linspace(0.0, 1.0, bins + 1)
    lower, upper = 1.0 - edges[:-1], 1.0 - edges[1:]
    with np.errstate(divide="ignore"):
        log_upper_over_lower = np.where(upper > 0, power * (np.log(np.maximum(upper, 1e-300)) - np.log(lower)), -np.inf)
    return power * np.log(lower) + np.log1p(-np.exp(log_upper_over_lower))


def fidelities(states_a: torch.Tensor, states_b: torch.Tensor) -> torch.Tensor:
    """``|<a_s|b_s>|**2`` for every pair of rows."""
    overlap = (states_a.conj() * states_b).sum(-1) if states_a.is_complex() else (states_a * states_b).sum(-1)
    return overlap.abs().square()


def expressibility(fidelity_values: torch.Tensor | np.ndarray, n_qubits: int, bins: int = HAAR_BINS) -> float:
    """KL divergence (nats) of the histogram of ``fidelity_values`` (``bins`` bins on [0, 1]) from Haar's.

    Example:
        >>> round(expressibility(np.ones(100), n_qubits=1), 4) == round(math.log(75), 4)   # idle circuit
        True
    """
    values = np.clip(np.asarray(fidelity_values, dtype=np.float64), 0.0, 1.0)
    counts, _ = np.histogram(values, bins=bins, range=(0.0, 1.0))
    p = counts / counts.sum()
    seen = p > 0
    return float(np.sum(p[seen] * (np.log(p[seen]) - haar_fidelity_log_probabilities(n_qubits, bins)[seen])))


def meyer_wallach(states: torch.Tensor) -> torch.Tensor:
    """Meyer-Wallach measure ``Q = 2 (1 - 1/n sum_k tr(rho_k**2))`` of every state ``(S, 2**n)`` -> ``(S,)``.

    Example:
        >>> ghz = torch.zeros(1, 8, dtype=torch.complex128); ghz[0, 0] = ghz[0, 7] = 2**-0.5
        >>> round(float(meyer_wallach(ghz)[0]), 6)
        1.0
    """
    samples, dim = states.shape
    n = dim.bit_length() - 1
    purity = torch.zeros(samples, dtype=torch.float64, device=states.device)
    for k in range(n):
        view = states.reshape(samples, 2**k, 2, 2 ** (n - k - 1))
        rho = torch.einsum("sajb,sacb->sjc", view, view.conj())
        purity += rho.abs().square().sum((-2, -1)).to(torch.float64)
    return 2 * (1 - purity / n)


# ---------------------------------------------------------------------------- gradients
@dataclass
class GradientStatistics:
    """Over ``samples`` random parameter draws: ``var`` = Var[dC/dtheta_0] (the first weight),
    ``var_mean`` = the mean over weights of Var[dC/dtheta_k], ``var_cost`` = Var[C]."""

    var: float
    var_mean: float
    var_cost: float


def head_sizes(head_config: dict[str, Any] | None) -> dict[str, Any]:
    """``in_features``, ``n_classes`` and ``scaling`` of a head config, defaults from :data:`DEFAULT_HEAD`."""
    return {**DEFAULT_HEAD, **{k: v for k, v in (head_config or {}).items() if k in DEFAULT_HEAD}}


def _scaled(z: torch.Tensor, scaling: str) -> torch.Tensor:
    """Pre-activations to angles, as :meth:`qubert.heads.QuantumHead.angles`."""
    if scaling == "tanh_pi_2":
        return torch.tanh(z) * (math.pi / 2)
    if scaling == "tanh_pi":
        return torch.tanh(z) * math.pi
    return z * math.pi if scaling == "pi" else z


def _linear_init(generator: torch.Generator, samples: int, out_features: int, in_features: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``samples`` weight and bias draws of ``nn.Linear``'s default init (both U(+-1/sqrt(fan_in))),
    drawn as one tensor: building thousands of modules would cost more than the whole diagnosis."""
    bound = 1 / math.sqrt(in_features)
    weight = (torch.rand(samples, out_features, in_features, generator=generator, dtype=torch.float64) * 2 - 1) * bound
    bias = (torch.rand(samples, out_features, generator=generator, dtype=torch.float64) * 2 - 1) * bound
    return weight, bias


@dataclass
class DressingDraws:
    """Per-draw input and output layers of a dressed head: ``(S, n_qubits, d)``, ``(S, n_qubits)``,
    ``(S, n_classes, n_outputs)``, ``(S, n_classes)``, and the angle scaling."""

    pre_weight: torch.Tensor
    pre_bias: torch.Tensor
    post_weight: torch.Tensor
    post_bias: torch.Tensor
    scaling: str


def head_losses(circuit: Circuit, weights: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, dressing: DressingDraws) -> torch.Tensor:
    """``(S,)`` cross-entropy of ``S`` dressed heads (``QuantumHead``'s computation), head ``s`` with
    circuit weights ``weights[s]`` and layers ``dressing[s]``, on its own feature row and label."""
    angles = _scaled(torch.einsum("sd,sqd->sq", features, dressing.pre_weight) + dressing.pre_bias, dressing.scaling)
    probs = probabilities(batched_statevectors(circuit, weights, angles))
    signs = observable_signs(circuit.n_qubits, circuit.measurement)
    measured = probs if signs is None else probs @ signs.to(probs.dtype)
    logits = torch.einsum("sm,skm->sk", measured, dressing.post_weight) + dressing.post_bias
    return torch.nn.functional.cross_entropy(logits, labels, reduction="none")


def gradient_statistics(
    circuit: Circuit,
    strategy: str,
    cost: str = "z0",
    samples: int = 1000,
    seed: int = 0,
    inputs: str = "random",
    head_config: dict[str, Any] | None = None,
) -> GradientStatistics:
    """Variance of the gradient of ``cost`` over ``samples`` parameter draws of ``strategy``.

    ``cost="z0"``: ``<Z_0>`` with encoding angles from ``inputs`` (:func:`sample_inputs`).
    ``cost="loss"``: the cross-entropy of the dressed head at random init, ``QuantumHead``'s
    computation (input layer, scaling, this circuit, its measurement, output layer) with, per draw,
    its own freshly initialised input and output layers (``nn.Linear``'s default init), one random
    feature row ``N(0, I)`` and one uniformly random label; sizes and scaling from ``head_config``
    (default :data:`DEFAULT_HEAD`). Gradients are taken with respect to the circuit weights by
    autograd, one backward pass for all draws (the cost of draw ``s`` depends on its own weights only).

    Example:
        >>> stats = gradient_statistics(Circuit(n_qubits=2, n_layers=1), "uniform", samples=500, seed=0)
        >>> 0 < stats.var < 1
        True
    """
    check_choice("cost", cost, COSTS)
    circuit = strategy_circuit(circuit, strategy)
    generator = torch.Generator().manual_seed(seed)
    weights = sample_weights(circuit, strategy, samples, generator).reshape(samples, -1)
    head = head_sizes(head_config) if cost == "loss" else None
    grads, costs = [], []
    for part in _chunks(circuit, samples):
        size = part.stop - part.start
        w = weights[part].clone().requires_grad_(True)
        if head is None:
            angles = sample_inputs(circuit.n_qubits, inputs, size, generator)
            probs = probabilities(batched_statevectors(circuit, w.view(-1, *circuit.weight_shape), angles))
            values = probs @ observable_signs(circuit.n_qubits, "z")[:, 0].to(probs.dtype)
        else:
            features = torch.randn(size, head["in_features"], generator=generator, dtype=torch.float64)
            labels = torch.randint(head["n_classes"], (size,), generator=generator)
            dressing = DressingDraws(
                *_linear_init(generator, size, circuit.n_qubits, head["in_features"]),
                *_linear_init(generator, size, head["n_classes"], circuit.n_outputs),
                head["scaling"],
            )
            values = head_losses(circuit, w.view(-1, *circuit.weight_shape), features, labels, dressing)
        (grad,) = torch.autograd.grad(values.sum(), w)
        grads.append(grad.detach())
        costs.append(values.detach())
    grad, values = torch.cat(grads), torch.cat(costs)
    variances = grad.var(dim=0)
    return GradientStatistics(var=float(variances[0]), var_mean=float(variances.mean()), var_cost=float(values.var()))


def state_statistics(circuit: Circuit, strategy: str, samples: int = 1000, seed: int = 0, inputs: str = "random") -> tuple[float, float]:
    """(expressibility KL, mean Meyer-Wallach) of the states of ``samples`` pairs of parameter draws."""
    circuit = strategy_circuit(circuit, strategy)
    generator = torch.Generator().manual_seed(seed + 1)  # not the gradient draws
    states = []
    with torch.no_grad():
        weights = sample_weights(circuit, strategy, 2 * samples, generator)
        angles = sample_inputs(circuit.n_qubits, inputs, 2 * samples, generator)
        for part in _chunks(circuit, 2 * samples):
            states.append(batched_statevectors(circuit, weights[part], angles[part]))
        states = torch.cat(states)
        kl = expressibility(fidelities(states[:samples], states[samples:]).numpy(), circuit.n_qubits)
        entanglement = float(meyer_wallach(states[:samples]).mean()) if circuit.n_qubits > 1 else 0.0
    return kl, entanglement


# ---------------------------------------------------------------------------- sweep
@dataclass
class DiagnosticRow:
    """All measures of one (init strategy, qubits, layers) point."""

    init: str
    n_qubits: int
    n_layers: int
    var_z0: float
    var_z0_mean: float
    var_loss: float
    var_loss_mean: float
    expressibility: float
    entanglement: float


@dataclass
class SlopeFit:
    """``log2 Var[dC/dtheta_0] = intercept + slope * n`` over the qubit counts of one strategy, depth and cost."""

    init: str
    n_layers: int
    cost: str
    slope: float
    slope_stderr: float
    intercept: float
    qubits: list[int]


@dataclass
class Analysis:
    """The result of :func:`analyze`: the circuit swept, the options, one row per point, the fits."""

    circuit: dict[str, Any]
    samples: int
    seed: int
    inputs: str
    head: dict[str, Any]
    rows: list[DiagnosticRow] = field(default_factory=list)
    fits: list[SlopeFit] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_slope(qubits: Sequence[int], variances: Sequence[float]) -> tuple[float, float, float]:
    """(slope, its standard error, intercept) of ``log2 variance`` against the qubit count; NaN when
    fewer than two nonzero variances (the error needs three points). A variance below
    :data:`ZERO_VARIANCE` is a gradient that vanishes for every draw (a symmetry of the circuit,
    not a plateau) and is left out.

    Example:
        >>> [round(v, 6) for v in fit_slope([2, 4, 6], [2.0**-2, 2.0**-4, 2.0**-6])]
        [-1.0, 0.0, 0.0]
    """
    points = [(n, math.log2(v)) for n, v in zip(qubits, variances) if v > ZERO_VARIANCE and math.isfinite(v)]
    if len({n for n, _ in points}) < 2:
        return math.nan, math.nan, math.nan
    # Least squares in closed form (importing scipy.stats for it costs seconds).
    x, y = np.array([n for n, _ in points], dtype=float), np.array([v for _, v in points])
    sxx = float(np.sum((x - x.mean()) ** 2))
    slope = float(np.sum((x - x.mean()) * (y - y.mean())) / sxx)
    intercept = float(y.mean() - slope * x.mean())
    residuals = y - (intercept + slope * x)
    stderr = math.sqrt(float(np.sum(residuals**2)) / (len(x) - 2) / sxx) if len(x) > 2 else math.nan
    return slope, stderr, intercept


def analyze(
    circuit: Circuit,
    qubits: Sequence[int] = (2, 4, 6, 8),
    depths: Sequence[int] | None = None,
    inits: Sequence[str] = INIT_STRATEGIES,
    samples: int = 2000,
    seed: int = 0,
    inputs: str = "random",
    head_config: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Analysis:
    """Every measure for ``circuit`` resized to each qubit count and depth, per init strategy.

    Args:
        circuit: the design analysed; its ``n_qubits`` / ``n_layers`` are replaced by the sweep.
        qubits: register sizes (1 to :data:`MAX_QUBITS`).
        depths: numbers of variational layers; default the circuit's own.
        inits: init strategies from :data:`INIT_STRATEGIES`.
        samples: parameter draws per point (gradients) and state pairs (expressibility).
        seed: seed of all draws (each point draws from its own seeded generator).
        inputs: encoding angles for ``z0``, expressibility and entanglement (:func:`sample_inputs`).
        head_config: sizes and scaling of the head for the ``loss`` cost (a trained head's config).
        progress: called with a label after each point (for a progress bar).
    """
    depths = [circuit.n_layers] if depths is None else list(depths)
    check_sweep(qubits, depths, inits, samples, inputs)
    if circuit.measurement == "zz" and min(qubits) < 2:
        raise ValueError("measurement 'zz' needs at least 2 qubits; start --qubits-range at 2")
    head = head_sizes(head_config)
    result = Analysis(circuit.to_dict(), samples, seed, inputs, head)
    for init in inits:
        for depth in depths:
            for n in qubits:
                point = circuit.replace(n_qubits=n, n_layers=depth)
                point_seed = seed * 1_000_003 + 1009 * n + 17 * depth
                z0 = gradient_statistics(point, init, "z0", samples, point_seed, inputs) if depth else GradientStatistics(math.nan, math.nan, math.nan)
                loss = gradient_statistics(point, init, "loss", samples, point_seed, inputs, head) if depth else GradientStatistics(math.nan, math.nan, math.nan)
                kl, ent = state_statistics(point, init, samples, point_seed, inputs)
                result.rows.append(DiagnosticRow(init, n, depth, z0.var, z0.var_mean, loss.var, loss.var_mean, kl, ent))
                if progress is not None:
                    progress(f"{init}, {n} qubits, {depth} layers")
            for cost in COSTS:
                rows = [r for r in result.rows if r.init == init and r.n_layers == depth]
                variances = [r.var_z0 if cost == "z0" else r.var_loss for r in rows]
                slope, stderr, intercept = fit_slope([r.n_qubits for r in rows], variances)
                result.fits.append(SlopeFit(init, depth, cost, slope, stderr, intercept, [r.n_qubits for r in rows]))
    return result


def check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(choices)}")


def check_sweep(qubits: Sequence[int], depths: Sequence[int], inits: Sequence[str], samples: int, inputs: str) -> None:
    """Raise a one-line ValueError for a sweep analyze() cannot run."""
    if not qubits:
        raise ValueError("give at least one qubit count")
    if not depths:
        raise ValueError("give at least one depth")
    for n in qubits:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_QUBITS:
            raise ValueError(f"qubit counts must be integers from 1 to {MAX_QUBITS}, got {n!r}")
    for d in depths:
        if isinstance(d, bool) or not isinstance(d, int) or d < 0:
            raise ValueError(f"depths must be non-negative integers, got {d!r}")
    if not inits:
        raise ValueError("give at least one init strategy")
    for init in inits:
        check_choice("init strategy", init, INIT_STRATEGIES)
    check_choice("inputs", inputs, INPUT_MODES)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 10:
        raise ValueError(f"samples must be an integer >= 10 (a variance needs draws), got {samples!r}")


# ---------------------------------------------------------------------------- reporting
_COST_LABELS = {"z0": "⟨Z₀⟩", "loss": "head loss"}
_COLUMNS = (
    ("init", "init"), ("n_qubits", "qubits"), ("n_layers", "layers"), ("var_z0", "Var ∂⟨Z₀⟩"),
    ("var_loss", "Var ∂loss"), ("expressibility", "Expr (KL)"), ("entanglement", "Ent (MW)"),
)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3g}" if abs(value) < 1e-3 or abs(value) >= 100 else f"{value:.4f}"
    return str(value)


def table_rows(analysis: Analysis) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells of the per-point table (the rich and markdown tables share them)."""
    return [label for _, label in _COLUMNS], [[_format(getattr(row, key)) for key, _ in _COLUMNS] for row in analysis.rows]


def fit_rows(analysis: Analysis) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the slope table: ``Var ~ 2**(slope * n)``."""
    header = ["init", "layers", "cost", "slope of log2 Var per qubit", "± s.e.", "qubits"]
    rows = [
        [fit.init, str(fit.n_layers), fit.cost, _format(fit.slope), _format(fit.slope_stderr), ",".join(map(str, fit.qubits))]
        for fit in analysis.fits
    ]
    return header, rows


def to_markdown(analysis: Analysis) -> str:
    """Both tables as GitHub markdown."""

    def table(header: list[str], rows: list[list[str]]) -> str:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])

    return table(*table_rows(analysis)) + "\n\n" + table(*fit_rows(analysis)) + "\n"


def _grid_figure(analysis: Analysis, panels: list[tuple[str, str, bool]]):
    """One column per init strategy, one row per (row attribute, axis label, log scale); a line per depth."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    inits = list(dict.fromkeys(row.init for row in analysis.rows))
    depths = sorted({row.n_layers for row in analysis.rows})
    figure = Figure(figsize=(4.2 * len(inits), 3.4 * len(panels)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels), len(inits), squeeze=False, sharex=True, sharey="row")
    qubits = sorted({row.n_qubits for row in analysis.rows})
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    colors = [cmap(0.85 * i / max(1, len(depths) - 1)) for i in range(len(depths))]
    for r, (key, label, log) in enumerate(panels):
        for c, init in enumerate(inits):
            ax = axes[r][c]
            for depth, color in zip(depths, colors):
                rows = [row for row in analysis.rows if row.init == init and row.n_layers == depth]
                xs, ys = [row.n_qubits for row in rows], [getattr(row, key) for row in rows]
                legend = f"{depth} layer{'s' if depth != 1 else ''}"
                fit = next((f for f in analysis.fits if f.init == init and f.n_layers == depth and key == f"var_{f.cost}"), None)
                if fit is not None and math.isfinite(fit.slope):
                    legend += f" (slope {fit.slope:+.2f})"
                ax.plot(xs, ys, marker="o", color=color, label=legend)
            if log:
                ax.set_yscale("log")
            if key.startswith("var_"):
                top = max((getattr(row, key) for row in analysis.rows if row.init == init and math.isfinite(getattr(row, key))), default=1.0)
                ax.plot(qubits, [top * 2.0 ** (qubits[0] - n) for n in qubits], color="grey", linestyle="--", linewidth=1, label="∝ 2⁻ⁿ")
            ax.set_title(f"{init} init", fontsize=11)
            ax.set_ylabel(label, fontsize=10)
            ax.set_xticks(qubits)
            ax.tick_params(labelsize=9)
            ax.grid(True, which="major", alpha=0.3)
            ax.legend(fontsize=8.5)
            if r == len(panels) - 1:
                ax.set_xlabel("qubits", fontsize=10)
    return figure


def variance_figure(analysis: Analysis):
    """Var[dC/dtheta_0] against qubits on a log axis: rows ``<Z_0>`` and head loss, a column per init, a line per depth."""
    return _grid_figure(analysis, [("var_z0", "Var[∂⟨Z₀⟩/∂θ₀]", True), ("var_loss", "Var[∂loss/∂θ₀]", True)])


def states_figure(analysis: Analysis):
    """Expressibility (KL to Haar, log axis) and mean Meyer-Wallach against qubits, same layout."""
    return _grid_figure(analysis, [("expressibility", "expressibility: KL to Haar", True), ("entanglement", "Meyer-Wallach Q", False)])
