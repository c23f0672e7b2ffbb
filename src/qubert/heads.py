"""Classification heads with one interface: ``head(features (B, d)) -> logits (B, n_classes)``.

Every head exposes ``in_features``, ``n_classes``, ``trainable_params`` and ``config()`` (a plain
dict that :func:`build_head` turns back into the same head), so models, benchmarks and reports can
treat them alike.

**One registry of head types.** A head type registers itself once (:func:`register_head`): its
class, the :class:`~qubert.training.TrainingConfig` options it reads, how they become its config,
the CLI help panel of those options and whether it is quantum. :func:`build_head`, the config's
validation, ``qubert train``'s options, the scikit-learn estimator and the bench read
:data:`HEAD_REGISTRY`; nothing else lists heads.

Example:
    >>> import torch
    >>> q = QuantumHead(in_features=384, n_classes=2, n_qubits=4, n_layers=2)
    >>> mlp = matched_mlp_head(q)                      # the fair classical control
    >>> abs(mlp.trainable_params - q.trainable_params) <= 0.1 * q.trainable_params
    True
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from qubert.quantum.circuit import Circuit
from qubert.quantum.engine import check_strategy, simulate
from qubert.quantum.execution import ExecutionOptions, execute
from qubert.quantum.execution import describe as describe_execution
from qubert.quantum.noise import DEFAULT_TRAJECTORIES, NoiseModel
from qubert.quantum.shots import make_generator

HEAD_TYPES: tuple[str, ...] = ()  # names in HEAD_REGISTRY, kept up to date by register_head
SCALINGS = ("tanh_pi_2", "tanh_pi", "pi", "none")


class NonFiniteError(ValueError):
    """NaN or inf reached a head: in its input features, or in the circuit's angles or weights.

    Example:
        >>> LinearHead(2, 2)(torch.tensor([[0.0, float("nan")]]))
        Traceback (most recent call last):
        ...
        qubert.heads.NonFiniteError: LinearHead got NaN or inf in 1 of 1 rows of its input features; ...
    """

    def __init__(self, head: str, what: str, bad: torch.Tensor) -> None:
        if what == "input features":
            count = f"{int(bad.any(-1).sum())} of {bad.shape[0]} rows of its input features"
            fix = "check the encoder's outputs (or the embedding cache), or lower the learning rate if training diverged"
        elif what == "encoding angles":
            count = f"{int(bad.any(-1).sum())} of {bad.shape[0]} rows of its encoding angles although features and weights are finite"
            fix = "the input layer (pre_net) overflowed: scale the features down, or compute the head in full precision"
        else:
            count = f"{int(bad.sum())} of {bad.numel()} {what}"
            fix = "training diverged: lower the learning rate, or start again from a saved model"
        super().__init__(f"{head} got NaN or inf in {count}; {fix}")


class Head(nn.Module):
    """Base class: a module from pooled features to logits."""

    head_type: str = ""

    def __init__(self, in_features: int, n_classes: int) -> None:
        super().__init__()
        if in_features < 1:
            raise ValueError(f"in_features must be >= 1, got {in_features}")
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.in_features = in_features
        self.n_classes = n_classes

    @property
    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def config(self) -> dict[str, Any]:
        return {"type": self.head_type, "in_features": self.in_features, "n_classes": self.n_classes}

    def _check_input(self, features: torch.Tensor) -> None:
        """Refuse features of the wrong shape, or holding NaN or inf."""
        self._check_shape(features)
        self._check_finite(features)

    def _check_shape(self, features: torch.Tensor) -> None:
        if features.dim() != 2 or features.shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__} expects features of shape (batch, {self.in_features}), got {tuple(features.shape)}")

    def _check_finite(self, features: torch.Tensor, **also: torch.Tensor) -> None:
        """Raise :class:`NonFiniteError` when ``features`` or a tensor of ``also`` holds NaN or inf."""
        tensors = {"input features": features, **also}
        # Fast path, one device sync: a sum is finite unless a term is NaN or inf (several times
        # cheaper than isfinite().all() on CPU). A finite sum that overflowed is cleared below.
        sums = torch.stack([t.detach().sum(dtype=torch.float32 if t.element_size() < 4 else None) for t in tensors.values()])
        if bool(sums.sum().isfinite()):
            return
        for what, tensor in tensors.items():
            bad = ~torch.isfinite(tensor.detach())
            if bad.any():
                raise NonFiniteError(type(self).__name__, what, bad)


class LinearHead(Head):
    """``Linear(d -> n_classes)``, with optional dropout: BERT's usual classifier.

    Example:
        >>> LinearHead(8, 3)(torch.randn(2, 8)).shape
        torch.Size([2, 3])
    """

    head_type = "linear"

    def __init__(self, in_features: int, n_classes: int, dropout: float = 0.0) -> None:
        super().__init__(in_features, n_classes)
        self.dropout_p = dropout
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_features, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        self._check_input(features)
        return self.linear(self.dropout(features))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "dropout": self.dropout_p}


class MLPHead(Head):
    """``Linear -> ReLU (-> Dropout)`` per hidden size, then ``Linear(-> n_classes)``: the paper's MLP baseline.

    Example:
        >>> MLPHead(8, 2, hidden_sizes=(16, 4)).trainable_params
        222
    """

    head_type = "mlp"

    def __init__(self, in_features: int, n_classes: int, hidden_sizes: tuple[int, ...] | list[int] = (256,), dropout: float = 0.0) -> None:
        super().__init__(in_features, n_classes)
        hidden_sizes = tuple(int(h) for h in hidden_sizes)
        if any(h < 1 for h in hidden_sizes):
            raise ValueError(f"hidden sizes must be >= 1, got {hidden_sizes}")
        self.hidden_sizes = hidden_sizes
        self.dropout_p = dropout
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        self._check_input(features)
        return self.net(features)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "hidden_sizes": list(self.hidden_sizes), "dropout": self.dropout_p}


class QuantumHead(Head):
    """The dressed quantum circuit (Mari et al. 2020; the paper's hybrid head).

    ``Linear(d -> n_qubits) -> scaling -> circuit -> measurement -> Linear(n_outputs -> n_classes)``.

    Args:
        in_features: width of the pooled encoder output.
        n_classes: number of classes.
        n_qubits, n_layers: register size and circuit depth (ignored when ``circuit`` is given).
        circuit: a full :class:`~qubert.quantum.Circuit` description, or a dict of its fields.
        scaling: how pre-activations become angles: ``tanh_pi_2`` (the paper: tanh(z) * pi/2),
            ``tanh_pi`` (tanh(z) * pi), ``pi`` (z * pi) or ``none``.
        strategy: simulator strategy (``auto``, ``analytic``, ``adjoint``, ``fused``, ``gates``; see :func:`qubert.quantum.simulate`).
        freeze_circuit: keep the circuit weights at their initial values (an ablation control:
            only the dressing layers train).
        seed: seed for the circuit-weight initialisation (``None``: torch's global generator).
        shots, noise, gradient, execution_seed, noise_method, trajectories: how the circuit is run
            (:func:`qubert.quantum.execution.execute`): finite shots, a noise model or spec string
            such as ``"depolarizing:0.01,readout:0.02"``, ``"backprop"`` or ``"parameter_shift"``
            gradients, the seed of the shot/trajectory sampler, and the noise simulator. The
            defaults are exact simulation; see :meth:`set_execution`.
        backend, device_simulator, optimization_level: run as on an IBM quantum backend
            (``"fake_manila"``, ``"ibm_kyiv"`` or a backend object; needs ``qubert[devices]``):
            ``"aer"`` evaluates the transpiled circuit on Aer with the device's noise model (no
            gradient), ``"qubert"`` maps the device's calibration to qubert's channels, so training
            can see it (see :mod:`qubert.quantum.devices`).
        device: deprecated name of ``backend`` (``device`` means the torch device elsewhere).

    Example:
        >>> head = QuantumHead(16, 2, circuit={"n_qubits": 3, "ansatz": "strongly_entangling"})
        >>> head(torch.randn(4, 16)).shape
        torch.Size([4, 2])
        >>> head.set_execution(shots=1024, noise="depolarizing:0.01,readout:0.02", seed=0)
        >>> head(torch.randn(4, 16)).shape
        torch.Size([4, 2])
    """

    head_type = "quantum"

    def __init__(
        self,
        in_features: int,
        n_classes: int,
        n_qubits: int = 4,
        n_layers: int = 2,
        *,
        circuit: Circuit | dict[str, Any] | None = None,
        scaling: str = "tanh_pi_2",
        strategy: str = "auto",
        freeze_circuit: bool = False,
        seed: int | None = None,
        shots: int | None = None,
        noise: str | NoiseModel | None = None,
        gradient: str = "backprop",
        execution_seed: int | None = None,
        noise_method: str = "auto",
        trajectories: int = DEFAULT_TRAJECTORIES,
        backend: Any = None,
        device_simulator: str = "aer",
        optimization_level: int = 1,
        device: Any = None,
    ) -> None:
        super().__init__(in_features, n_classes)
        if circuit is None:
            circuit = Circuit(n_qubits=n_qubits, n_layers=n_layers)
        elif isinstance(circuit, dict):
            circuit = Circuit.from_dict(circuit)
        if scaling not in SCALINGS:
            raise ValueError(f"unknown scaling {scaling!r}; expected one of {', '.join(SCALINGS)}")
        check_strategy(circuit, strategy)
        self.circuit = circuit
        self.scaling = scaling
        self.strategy = strategy
        self.freeze_circuit = freeze_circuit
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.pre_net = nn.Linear(in_features, circuit.n_qubits)
        self.q_weights = nn.Parameter(circuit.init_weights(generator), requires_grad=not freeze_circuit)
        self.post_net = nn.Linear(circuit.n_outputs, n_classes)
        self.set_execution(
            shots=shots, noise=noise, gradient=gradient, seed=execution_seed, noise_method=noise_method, trajectories=trajectories,
            device_simulator=device_simulator, optimization_level=optimization_level,
            **({"device": device} if device is not None and backend is None else {"backend": backend}),
        )

    def set_execution(self, **options: Any) -> None:
        """Change how the circuit runs: ``shots``, ``noise``, ``gradient``, ``seed``, ``noise_method``, ``trajectories``,
        ``backend``, ``device_simulator``, ``optimization_level`` (``device``: the deprecated name of ``backend``).

        Options not given keep their current values; pass ``shots=None`` / ``noise=None`` to go back
        to exact expectation values / no noise. Every call restarts the shot/trajectory sampler from
        ``seed`` (stored as ``execution_seed``; ``None``: from torch's global RNG), so evaluating the
        same batches again after ``set_execution(seed=s)`` repeats the same shots. Invalid options
        raise a ``ValueError`` and leave the head unchanged.

        Example:
            >>> head = QuantumHead(8, 2, n_qubits=2, n_layers=1)
            >>> head.set_execution(shots=256, noise="readout:0.02", seed=0)
            >>> head.shots, head.noise, head.config()["noise"]
            (256, NoiseModel(depolarizing=0.0, amplitude_damping=0.0, readout=0.02), 'readout:0.02')
        """
        if "device" in options:
            import warnings

            if "backend" in options:
                raise ValueError("give backend=, not both backend= and its deprecated name device=")
            warnings.warn("QuantumHead device= is deprecated: the quantum backend is now backend= (device means the torch device)", DeprecationWarning, stacklevel=2)
            options["backend"] = options.pop("device")
        if "backend" in options:
            options["device"] = options.pop("backend")  # ExecutionOptions' field for the backend
        known = {"shots", "noise", "gradient", "seed", "noise_method", "trajectories", "device", "device_simulator", "optimization_level"}
        unknown = sorted(set(options) - known)
        if unknown:
            expected = sorted(known - {"device"} | {"backend"})
            raise ValueError(f"unknown execution option(s) {', '.join(unknown)}; expected {', '.join(expected)}")
        current = getattr(self, "execution", ExecutionOptions())
        names = ("shots", "noise", "gradient", "noise_method", "trajectories", "device", "device_simulator", "optimization_level")
        fields = {name: options.get(name, getattr(current, name)) for name in names}
        execution = ExecutionOptions(**fields)
        seed = options.get("seed", getattr(self, "execution_seed", None))
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"execution seed must be an integer or None, got {seed!r}")
        self.execution = execution
        self.execution_seed = seed
        self._sampler = None  # created on first use, from execution_seed

    @property
    def shots(self) -> int | None:
        return self.execution.shots

    @property
    def noise(self) -> NoiseModel | None:
        return self.execution.noise

    @property
    def gradient(self) -> str:
        return self.execution.gradient

    def angles(self, features: torch.Tensor) -> torch.Tensor:
        """Encoding angles for a batch of features (the "dressing in")."""
        z = self.pre_net(features)
        if self.scaling == "tanh_pi_2":
            return torch.tanh(z) * (math.pi / 2)
        if self.scaling == "tanh_pi":
            return torch.tanh(z) * math.pi
        if self.scaling == "pi":
            return z * math.pi
        return z

    def measure(self, features: torch.Tensor) -> torch.Tensor:
        """The circuit's measured values for a batch, before the output layer."""
        self._check_shape(features)
        angles = self.angles(features)
        self._check_finite(
            features,
            **{
                "input layer weights (pre_net.weight)": self.pre_net.weight,
                "input layer biases (pre_net.bias)": self.pre_net.bias,
                "circuit weights (q_weights)": self.q_weights,
                "encoding angles": angles,
            },
        )
        if self.execution.is_exact:
            return simulate(self.circuit, angles, self.q_weights, strategy=self.strategy)
        if self._sampler is None:
            self._sampler = make_generator(self.execution_seed)
        options = self.execution
        return execute(
            self.circuit,
            angles,
            self.q_weights,
            shots=options.shots,
            noise=options.noise,
            gradient=options.gradient,
            seed=self._sampler,
            strategy=self.strategy,
            noise_method=options.noise_method,
            trajectories=options.trajectories,
            device=options.device,
            device_simulator=options.device_simulator,
            optimization_level=options.optimization_level,
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # Autocast never reaches the circuit: angles in bf16 would round away the differences it
        # measures. The head computes in its own dtype (float32 / float64) whatever the caller uses.
        with torch.autocast(device_type=features.device.type, enabled=False):
            features = features.to(self.pre_net.weight.dtype)
            return self.post_net(self.measure(features).to(self.post_net.weight.dtype))

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "circuit": self.circuit.to_dict(),
            "scaling": self.scaling,
            "strategy": self.strategy,
            "freeze_circuit": self.freeze_circuit,
            # Execution options only when not the defaults, so configs of exact heads stay as they were.
            **{("backend" if k == "device" else k): v for k, v in describe_execution(self.execution).items()},
            **({"execution_seed": self.execution_seed} if self.execution_seed is not None else {}),
        }

    def extra_repr(self) -> str:
        return f"circuit={self.circuit}".replace("\n", "\n  ") if self.circuit.n_qubits <= 8 else f"n_qubits={self.circuit.n_qubits}"


def check_head_memory(
    circuit: Circuit, batch_size: int, strategy: str = "auto", dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> None:
    """Refuse, before any data is loaded or encoded, a circuit the simulator would refuse on its first batch.

    Raises the :class:`~qubert.quantum.RegisterTooLargeError` (a ``ValueError``, one line) that a
    forward + backward pass on ``batch_size`` samples of ``dtype`` features would raise on ``device``.

    Example:
        >>> check_head_memory(Circuit(n_qubits=40), batch_size=64)
        Traceback (most recent call last):
        ...
        qubert.quantum.engine.RegisterTooLargeError: simulating 40 qubits with batch 64 (gates strategy, torch.float32) needs about ...
    """
    from qubert.quantum import engine

    device = torch.device(device)
    state_dtype, _ = engine.resolve_dtypes(torch.empty(0, dtype=dtype), None, circuit.is_real)
    if strategy == "auto":
        strategy = engine.choose_strategy(circuit, batch_size, state_dtype, device)
    engine.check_memory(circuit, batch_size, strategy, state_dtype, device)


def build_head(config: dict[str, Any], seed: int | None = None) -> Head:
    """A head from its ``config()`` dict (``type``: a name in :data:`HEAD_REGISTRY`).

    Example:
        >>> build_head({"type": "mlp", "in_features": 8, "n_classes": 2, "hidden_sizes": [4]}).hidden_sizes
        (4,)
    """
    config = dict(config)
    name = config.pop("type", None)
    if name not in HEAD_REGISTRY:
        raise ValueError(f"unknown head type {name!r}; expected one of {', '.join(HEAD_REGISTRY)}")
    cls = HEAD_REGISTRY[name].cls
    if "seed" in inspect.signature(cls).parameters:
        config["seed"] = seed
    return cls(**config)


def _options_as_config(options: tuple[str, ...]) -> Callable[[Any], dict[str, Any]]:
    def config_from(run_config: Any) -> dict[str, Any]:
        values = {name: getattr(run_config, name) for name in options}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    return config_from


@dataclass(frozen=True)
class HeadType:
    """One kind of head, registered once with :func:`register_head`.

    Attributes:
        name: the ``head`` option's value (``--head``) and the ``type`` in the head's config.
        cls: the :class:`Head` subclass, built as ``cls(in_features, n_classes, **config)``.
        options: the :class:`~qubert.training.TrainingConfig` fields (``qubert train`` options)
            the head reads; shown in the CLI help panel ``panel``.
        panel: the ``qubert train --help`` panel of those options.
        quantum: whether the head runs a circuit (quantum options are validated, its register's
            memory is checked, and shots / noise / backends apply).
        help: one line for listings.
        config_from: a run config -> the head's config dict (without ``type``, ``in_features``,
            ``n_classes``); default: the ``options`` by name.

    Example:
        >>> HEAD_REGISTRY["mlp"].options, HEAD_REGISTRY["quantum"].quantum
        (('hidden_sizes', 'dropout'), True)
    """

    name: str
    cls: type
    options: tuple[str, ...] = ()
    panel: str = "Classical heads"
    quantum: bool = False
    help: str = ""
    config_from: Callable[[Any], dict[str, Any]] | None = field(default=None, compare=False)

    def head_config(self, run_config: Any) -> dict[str, Any]:
        """The head's config dict for :func:`build_head` from a run config (with ``type``)."""
        read = self.config_from or _options_as_config(self.options)
        return {"type": self.name, **read(run_config)}


HEAD_REGISTRY: dict[str, HeadType] = {}


def register_head(head_type: HeadType) -> HeadType:
    """Make a head type known to :func:`build_head`, the training config, the CLI and the bench.

    Example:
        >>> class TinyHead(LinearHead):
        ...     head_type = "tiny"
        >>> _ = register_head(HeadType("tiny", TinyHead, options=("dropout",)))  # doctest: +SKIP
    """
    global HEAD_TYPES
    HEAD_REGISTRY[head_type.name] = head_type
    HEAD_TYPES = tuple(HEAD_REGISTRY)
    return head_type


def _quantum_config(run_config: Any) -> dict[str, Any]:
    return {"circuit": run_config.circuit().to_dict(), "scaling": run_config.scaling, "strategy": run_config.strategy, "freeze_circuit": run_config.freeze_circuit}


def _mlp_params(d: int, h: int, k: int) -> int:
    return d * h + h + h * k + k


def matched_mlp_head(head: Head, hidden_layers: int = 1) -> MLPHead:
    """An MLP with (as near as possible) the same number of trainable parameters as ``head``.

    The fair classical control for a quantum head: one hidden layer whose width is chosen to
    minimise the difference in trainable parameters (ties go to the smaller net).

    Example:
        >>> q = QuantumHead(384, 2, n_qubits=8, n_layers=2)
        >>> m = matched_mlp_head(q)
        >>> m.hidden_sizes, m.trainable_params, q.trainable_params
        ((8,), 3098, 3114)
    """
    if hidden_layers != 1:
        raise ValueError("matched_mlp_head supports one hidden layer")
    target = head.trainable_params
    d, k = head.in_features, head.n_classes
    # params(h) = h * (d + k + 1) + k is increasing in h: take the best of floor/ceil of the solution.
    h_exact = (target - k) / (d + k + 1)
    candidates = {max(1, math.floor(h_exact)), max(1, math.ceil(h_exact))}
    best = min(sorted(candidates), key=lambda h: abs(_mlp_params(d, h, k) - target))
    return MLPHead(d, k, hidden_sizes=(best,))


register_head(HeadType("linear", LinearHead, options=("dropout",), help="one linear layer on the pooled vector"))
register_head(HeadType("mlp", MLPHead, options=("hidden_sizes", "dropout"), help="a multi-layer perceptron"))
register_head(HeadType(
    "quantum", QuantumHead, quantum=True, panel="Quantum head", help="the dressed variational circuit",
    options=("qubits", "layers", "encoding", "ansatz", "entanglement", "rotation", "measurement", "init", "reupload", "scaling", "freeze_circuit", "strategy"),
    config_from=_quantum_config,
))
