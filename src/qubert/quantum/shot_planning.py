"""How many shots a trained head needs: expected macro-F1 at K shots, from the exact outcome probabilities.

A device returns K bit strings per sample, drawn from the circuit's outcome distribution
``p(b)`` (``2**n`` basis states): the counts are multinomial(K, p). The head turns the
frequencies into its measured values (``<Z_i>`` = frequency-weighted signs, ...), then into logits
with its trained output layer, and predicts the argmax. So the exact probabilities of the
evaluation rows fix the distribution of the predictions at every K, and with it the expected
macro-F1. :func:`expected_macro_f1` estimates it by Monte Carlo over that multinomial model
(``repeats`` draws of all rows at once); :func:`shots_for_gap` reads off the smallest K within a
gap of the exact (infinite-shot) macro-F1. Readout and gate noise are not part of this model:
it plans shots for the shot noise alone.

Example:
    >>> import torch
    >>> probs = torch.tensor([[0.9, 0.1], [0.2, 0.8]])            # 1 qubit, 2 samples
    >>> values = lambda f: f.float() @ torch.tensor([[1.0], [-1.0]])   # <Z>
    >>> layer = lambda v: torch.cat([v, -v], dim=-1)               # logits: class 0 when <Z> > 0
    >>> rows = expected_macro_f1(probs, [0, 1], values, layer, [1, 64], repeats=200, seed=0)
    >>> [round(r.mean, 1) for r in rows]
    [0.8, 1.0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_SHOTS_GRID = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


@dataclass(frozen=True)
class ShotPrediction:
    """Expected macro-F1 at ``shots`` shots per sample, and its spread over draws of the shots."""

    shots: int
    mean: float
    std: float

    def to_dict(self) -> dict[str, float]:
        return {"shots": self.shots, "expected_macro_f1": self.mean, "std": self.std}


def macro_f1(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro-F1 of each row of ``predictions`` ``(repeats, N)`` against ``labels`` ``(N,)``.

    Like scikit-learn's ``f1_score(average="macro", zero_division=0)`` (classes in the labels or
    the predictions count), vectorised over the rows. Hand-written because scikit-learn scores one
    row per call, and the planner scores hundreds of draws per shot count.

    Example:
        >>> float(macro_f1(np.array([0, 0, 1, 1]), np.array([[0, 1, 1, 1]]), 2)[0])
        0.7333333333333334
    """
    predictions = np.atleast_2d(predictions)
    true = np.eye(n_classes, dtype=np.int64)[labels]  # (N, C)
    pred = np.eye(n_classes, dtype=np.int64)[predictions]  # (R, N, C)
    tp = (pred * true).sum(1)
    predicted, support = pred.sum(1), true.sum(0)[None, :]
    denominator = predicted + support
    present = denominator > 0
    f1 = np.where(present, 2 * tp / np.maximum(denominator, 1), 0.0)
    return f1.sum(1) / np.maximum(present.sum(1), 1)


def expected_macro_f1(
    probabilities: torch.Tensor,
    labels: Sequence[int],
    measured_values: Callable[[torch.Tensor], torch.Tensor],
    output_layer: Callable[[torch.Tensor], torch.Tensor],
    shots: Sequence[int] = DEFAULT_SHOTS_GRID,
    *,
    repeats: int = 200,
    seed: int = 0,
) -> list[ShotPrediction]:
    """Expected macro-F1 at each K in ``shots``, by Monte Carlo over multinomial(K, p) readouts.

    Args:
        probabilities: exact outcome probabilities ``(N, 2**n)`` of the evaluation rows.
        labels: their true classes.
        measured_values: frequencies ``(..., 2**n)`` -> the head's measured values (e.g.
            :func:`qubert.quantum.shots.expectations_from_probabilities`).
        output_layer: measured values -> logits (the head's ``post_net``).
        shots: the K to evaluate.
        repeats: Monte Carlo draws per K.
        seed: seeds the draws.
    """
    if any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in shots):
        raise ValueError(f"shots must be positive integers, got {list(shots)}")
    if repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats}")
    p = probabilities.detach().to(torch.float64).clamp_min(0).numpy()
    p = p / p.sum(-1, keepdims=True)
    y = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        n_classes = int(output_layer(measured_values(torch.as_tensor(p[:1]))).shape[-1])
        result = []
        for k in shots:
            counts = rng.multinomial(int(k), p, size=(repeats, len(p)))  # (R, N, 2**n)
            logits = output_layer(measured_values(torch.from_numpy(counts / k)))
            f1 = macro_f1(y, logits.argmax(-1).numpy(), n_classes)
            result.append(ShotPrediction(int(k), float(f1.mean()), float(f1.std(ddof=1)) if repeats > 1 else 0.0))
    return result


def exact_macro_f1(probabilities: torch.Tensor, labels: Sequence[int], measured_values, output_layer) -> float:
    """Macro-F1 with exact (infinite-shot) measured values."""
    with torch.no_grad():
        logits = output_layer(measured_values(probabilities.to(torch.float64)))
        return float(macro_f1(np.asarray(labels, dtype=np.int64), logits.argmax(-1).numpy()[None], int(logits.shape[-1]))[0])


def shots_for_gap(predictions: Sequence[ShotPrediction], exact: float, gap: float) -> int | None:
    """The smallest K whose expected macro-F1 is within ``gap`` of ``exact`` (``None``: none of them).

    Example:
        >>> shots_for_gap([ShotPrediction(16, 0.80, 0.0), ShotPrediction(64, 0.89, 0.0)], exact=0.9, gap=0.02)
        64
    """
    if not gap > 0:
        raise ValueError(f"the gap must be a positive macro-F1 difference, got {gap!r}")
    return next((p.shots for p in sorted(predictions, key=lambda p: p.shots) if exact - p.mean <= gap), None)


def head_outcome_probabilities(head, features: torch.Tensor) -> torch.Tensor:
    """Exact outcome probabilities ``(N, 2**n)`` of a :class:`~qubert.heads.QuantumHead` on ``features`` (wire 0 most significant)."""
    from dataclasses import replace

    from qubert.quantum.engine import simulate

    with torch.no_grad():
        angles = head.angles(features.to(head.pre_net.weight.dtype)).to(torch.float64)
        circuit = replace(head.circuit, measurement="probs")
        return simulate(circuit, angles, head.q_weights.detach().to(torch.float64))


def plan_head_shots(head, features: torch.Tensor, labels: Sequence[int], shots: Sequence[int] = DEFAULT_SHOTS_GRID, *, repeats: int = 200, seed: int = 0):
    """``(exact macro-F1, [ShotPrediction per K])`` for a trained :class:`~qubert.heads.QuantumHead`."""
    from qubert.quantum.shots import expectations_from_probabilities

    probs = head_outcome_probabilities(head, features)

    def values(freq: torch.Tensor) -> torch.Tensor:
        return expectations_from_probabilities(freq, head.circuit)

    def layer(v: torch.Tensor) -> torch.Tensor:
        return head.post_net(v.to(head.post_net.weight.dtype))

    return exact_macro_f1(probs, labels, values, layer), expected_macro_f1(probs, labels, values, layer, shots, repeats=repeats, seed=seed)
