"""What a device evaluation will submit, and its QPU seconds, before anything runs.

qiskit-ibm-runtime reports a job's usage estimate (``job.usage_estimation``) only once the job
is submitted, so the estimate here is a stated model, computed from the transpiled circuits and
the device's calibration:

    QPU seconds = JOB_OVERHEAD_SECONDS
                + sum over circuits of rows x shots x (rep_delay + circuit duration)

``rep_delay`` is the device's default repetition delay (250 us on the snapshots), the circuit
duration Qiskit's ``QuantumCircuit.estimate_duration`` on the device's target (gates and
measurement). ZNE multiplies the circuits by the noise factors (each folded circuit has its own,
longer duration); twirling splits the same shots over randomizations and adds none; readout
correction adds its calibration circuits (mthree: 2 x 4096 shots on a snapshot; TREX's
measurement-noise learning on hardware is not counted). Queue time is not QPU time.

Example:
    >>> check_budget(None) is None
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Assumed fixed cost of loading one job on the QPU (compilation, upload, readout of results).
JOB_OVERHEAD_SECONDS = 2.0
# Repetition delay used when a backend reports none.
DEFAULT_REP_DELAY_SECONDS = 250e-6
# mthree's calibration on a snapshot: the 'balanced' method's 2 circuits.
READOUT_CALIBRATION_CIRCUITS, READOUT_CALIBRATION_SHOTS = 2, 4096


class BudgetError(ValueError):
    """An invalid budget, or a job over it."""


def check_budget(max_qpu_seconds: float | None) -> float | None:
    """``max_qpu_seconds`` if ``None`` or a positive number, else a :class:`BudgetError`."""
    if max_qpu_seconds is None:
        return None
    if isinstance(max_qpu_seconds, bool) or not isinstance(max_qpu_seconds, (int, float)) or not max_qpu_seconds > 0:
        raise BudgetError(f"--max-qpu-seconds must be a positive number of seconds, got {max_qpu_seconds!r}")
    return float(max_qpu_seconds)


@dataclass(frozen=True)
class CircuitPlan:
    """One parameter sweep (one PUB): a circuit, its rows and shots."""

    name: str
    depth: int
    two_qubit_gates: int
    rows: int
    shots: int
    duration_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class JobPlan:
    """Everything one evaluation submits, with the estimated QPU seconds (see the module notes)."""

    device: str
    primitive: str
    mitigation: str
    circuits: tuple[CircuitPlan, ...]
    rep_delay_seconds: float
    calibration_shots: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def total_shots(self) -> int:
        return sum(c.rows * c.shots for c in self.circuits) + self.calibration_shots

    @property
    def qpu_seconds(self) -> float:
        sweeps = sum(c.rows * c.shots * (self.rep_delay_seconds + c.duration_seconds) for c in self.circuits)
        return JOB_OVERHEAD_SECONDS + sweeps + self.calibration_shots * self.rep_delay_seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device, "primitive": self.primitive, "mitigation": self.mitigation,
            "circuits": [c.to_dict() for c in self.circuits], "total_shots": self.total_shots,
            "rep_delay_seconds": self.rep_delay_seconds, "calibration_shots": self.calibration_shots,
            "estimated_qpu_seconds": round(self.qpu_seconds, 3), "notes": list(self.notes),
        }

    def check(self, max_qpu_seconds: float | None) -> None:
        """Raise a :class:`BudgetError` when the estimate exceeds ``max_qpu_seconds``."""
        budget = check_budget(max_qpu_seconds)
        if budget is not None and self.qpu_seconds > budget:
            raise BudgetError(
                f"the evaluation would take about {self.qpu_seconds:.1f} QPU seconds on {self.device} "
                f"({len(self.circuits)} circuit(s), {self.total_shots:,} shots), over --max-qpu-seconds {budget:g}; "
                "use fewer --shots or --max-eval-samples, or a lighter --mitigation; nothing was submitted"
            )


def rep_delay(backend: Any) -> float:
    """The device's default repetition delay in seconds."""
    value = getattr(backend, "default_rep_delay", None)
    if value is None and hasattr(backend, "configuration"):
        try:
            value = getattr(backend.configuration(), "default_rep_delay", None)
        except Exception:  # a BackendV2 without a V1 configuration
            value = None
    return float(value) if value else DEFAULT_REP_DELAY_SECONDS


def _two_qubit_gates(circuit) -> int:
    return sum(1 for inst in circuit.data if inst.operation.num_qubits == 2 and inst.operation.name != "barrier")


def _duration(circuit, target) -> float:
    try:
        return float(circuit.estimate_duration(target, unit="s"))
    except Exception:  # a target without durations (or an instruction without one)
        return 0.0


def plan_evaluation(head, rows: int, shots: int, mitigation, *, seed: int | None = None) -> JobPlan:
    """The sweeps an evaluation of ``rows`` samples submits on ``head``'s device under ``mitigation``.

    Args:
        head: a :class:`~qubert.quantum.devices.TranspiledHead`.
        rows: samples (parameter rows per sweep).
        shots: shots per sample.
        mitigation: a :class:`~qubert.quantum.mitigation.Mitigation`.
    """
    from qubert.quantum.mitigation import circuit_variants, fold_gates

    target = head.backend.target
    circuits = []
    notes = []
    if head.runtime and mitigation.method != "none":
        # One PUB; the runtime folds and twirls on its side: count the folded circuits it will execute.
        primitive = "EstimatorV2"
        for factor in mitigation.factors:
            c = fold_gates(head.isa, factor, seed=seed)
            circuits.append(CircuitPlan(f"{head.circuit.n_qubits}-qubit head, noise x{factor:g}", int(c.depth()), _two_qubit_gates(c), rows, shots, _duration(c, target)))
        if mitigation.readout:
            notes.append("TREX measurement-noise learning adds calibration shots that are not counted")
    else:
        primitive = "SamplerV2"
        for factor, group in zip(mitigation.factors, circuit_variants(head, mitigation, seed=seed)):
            per = max(1, shots // len(group))
            for k, c in enumerate(group):
                label = f"{head.circuit.n_qubits}-qubit head" + (f", noise x{factor:g}" if mitigation.zne else "") + (f", twirl {k + 1}/{len(group)}" if len(group) > 1 else "")
                circuits.append(CircuitPlan(label, int(c.depth()), _two_qubit_gates(c), rows, per, _duration(c, target)))
    calibration = READOUT_CALIBRATION_CIRCUITS * READOUT_CALIBRATION_SHOTS if (mitigation.readout and not head.runtime) else 0
    return JobPlan(head.device, primitive, mitigation.describe(), tuple(circuits), rep_delay(head.backend), calibration, tuple(notes))


def format_plan(plan: JobPlan) -> str:
    """The plan as text: one line per sweep, then the totals and the estimate."""
    lines = [f"Dry run on {plan.device}: {plan.primitive}, {plan.mitigation}; nothing was submitted."]
    for c in plan.circuits:
        lines.append(
            f"  {c.name}: {c.rows} parameter rows x {c.shots} shots, transpiled depth {c.depth}, "
            f"{c.two_qubit_gates} two-qubit gates, {c.duration_seconds * 1e6:.1f} us per shot"
        )
    if plan.calibration_shots:
        lines.append(f"  readout calibration: {plan.calibration_shots:,} shots")
    lines.append(
        f"{len(plan.circuits)} sweep(s), {plan.total_shots:,} shots; estimated QPU time {plan.qpu_seconds:.1f} s "
        f"({JOB_OVERHEAD_SECONDS:g} s job overhead + shots x (rep delay {plan.rep_delay_seconds * 1e6:.0f} us + circuit duration))"
    )
    lines += [f"  note: {note}" for note in plan.notes]
    return "\n".join(lines)


@dataclass(frozen=True)
class DeviceRunOptions:
    """What ``qubert eval --device`` was asked beyond the device: mitigation, a QPU budget, a dry run.

    Example:
        >>> DeviceRunOptions.from_cli("fake_manila", mitigation="readout").mitigation.method
        'readout'
        >>> DeviceRunOptions.from_cli(None, mitigation="zne")
        Traceback (most recent call last):
        ...
        qubert.quantum.qpu_budget.BudgetError: --mitigation needs --device (mitigation corrects a device's errors)
    """

    mitigation: Any = None  # a Mitigation, or None: the device's raw counts through the batched Sampler path
    max_qpu_seconds: float | None = None
    dry_run: bool = False
    shots: int | None = None

    @classmethod
    def from_cli(cls, device: Any, *, mitigation: str | None = None, zne_factors: str | None = None, max_qpu_seconds: float | None = None,
                 dry_run: bool = False, shots: int | None = None) -> DeviceRunOptions:
        """Validated options; every bad input is a one-line error naming the option."""
        from qubert.quantum.mitigation import Mitigation, parse_zne_factors

        if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int) or shots < 1):
            raise BudgetError(f"--shots must be a positive integer, got {shots!r}")
        budget = check_budget(max_qpu_seconds)
        if device is None:
            for given, flag, why in (
                (mitigation, "--mitigation", "mitigation corrects a device's errors"), (zne_factors, "--zne-factors", "ZNE runs on a device"),
                (budget, "--max-qpu-seconds", "only a device job has QPU seconds"), (dry_run or None, "--dry-run", "it plans a device job"),
            ):
                if given is not None:
                    raise BudgetError(f"{flag} needs --device ({why})")
            return cls()
        if zne_factors is not None and mitigation not in ("zne", "all"):
            raise BudgetError("--zne-factors needs --mitigation zne or all")
        chosen = Mitigation(mitigation, zne_factors=parse_zne_factors(zne_factors)) if mitigation is not None else None
        return cls(chosen, budget, bool(dry_run), shots)

    def plan(self, head, rows: int, *, seed: int | None = None) -> JobPlan:
        """The job plan for ``rows`` samples, checked against the budget."""
        from qubert.quantum.devices import DEFAULT_DEVICE_SHOTS
        from qubert.quantum.mitigation import Mitigation

        plan = plan_evaluation(head, rows, self.shots or DEFAULT_DEVICE_SHOTS, self.mitigation or Mitigation(), seed=seed)
        plan.check(self.max_qpu_seconds)
        return plan

    @staticmethod
    def format(plan: JobPlan) -> str:
        return format_plan(plan)
