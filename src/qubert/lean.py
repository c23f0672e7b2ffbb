"""Lean training of heads on cached features: no Trainer, no checkpoints, many replicates at once.

:func:`train_replicates` trains one head configuration on several replicates (each its own
training / validation / test features and seed) and returns one :class:`LeanRun` per replicate.
It follows the frozen-mode Hugging Face Trainer path of :func:`qubert.training.run_training` step
for step, without its per-run costs:

- the same initialisation (torch's global generator seeded with the seed, then
  :func:`qubert.heads.build_head`), the same batch order (epoch ``e`` visits the rows in
  ``torch.randperm(n, generator=seed + e)``, as the Trainer's seedable sampler does), the same
  AdamW (fused, betas 0.9/0.999, eps 1e-8, no weight decay on biases, norms and circuit angles),
  learning-rate schedule, gradient clipping at norm 1.0 and mean cross-entropy loss;
- validation after every epoch, early stopping on validation macro-F1 with the Trainer's patience
  semantics (a new best must be strictly higher; training stops after ``patience`` epochs without
  one) and the best epoch's weights restored at the end;
- but features stay in memory as tensors, a split is evaluated in one forward pass, the best
  weights are kept in memory instead of a checkpoint per epoch, and several replicates of one
  head train at once (see ``batched``).

How replicates train together (``batched``): every replicate keeps its own seed, rows, batch
order, early stopping and best weights; they only share the loop. Linear and MLP heads become one
stacked model (each layer's weights of all replicates in one tensor, one batched matmul per layer,
one fused AdamW step); a replicate that stopped keeps its best weights aside, and once half of the
stack has stopped the stack is compacted to the replicates still training. Quantum heads stay
separate modules stepped in lockstep (one backward, one optimizer step; a stopped replicate gets no
gradient, so AdamW skips it): the circuit cannot be vmapped, because the engine's custom autograd
functions (``_AnalyticCircuit``, ``_AdjointCircuit``, ``_BasisPermutation``) use the old
``forward(ctx, ...)`` style without ``setup_context`` / a vmap rule, and the replicates cannot be
folded into the engine's batch dimension either, because :func:`qubert.quantum.simulate` takes one
weight tensor per call (no per-sample circuit weights).

What is not identical to the Trainer path: the floating-point order of whole-split evaluation
(one pass instead of batches of 256) and of stacked replicates (batched matmuls, per-replicate
gradient norms), so losses and probabilities agree to about 1e-7, not bitwise; dropout masks
(drawn from torch's global generator, reseeded with the seed before training as the Trainer does,
but in a batched run all replicates draw from one stream). Metrics are computed from the
confusion matrix with scikit-learn's definitions (macro over the classes present in the labels or
predictions, 0 where undefined). ``tests/test_lean.py`` checks the agreement.

Example:
    >>> import torch
    >>> from qubert.lean import LeanSettings, train_replicates
    >>> g = torch.Generator().manual_seed(0)
    >>> def split(n):
    ...     y = torch.arange(n) % 2
    ...     return torch.randn(n, 8, generator=g) + y[:, None].float(), y
    >>> runs = train_replicates({"type": "linear", "in_features": 8, "n_classes": 2},
    ...                         train=[split(64), split(64)], validation=[split(32), split(32)],
    ...                         test=[split(32), split(32)], seeds=[0, 1],
    ...                         settings=LeanSettings(max_epochs=20, patience=3))
    >>> len(runs), runs[0].stopped_by in ("patience", "epoch_cap"), runs[0].test_probabilities.shape
    (2, True, (32, 2))
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["LeanError", "LeanRun", "LeanSettings", "split_metrics", "train_replicates"]

Split = tuple[torch.Tensor, torch.Tensor]


class LeanError(ValueError):
    """An invalid lean-training setting or input (one-line message naming it)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class LeanSettings:
    """Optimisation settings; the defaults are those of ``qubert train --mode frozen``.

    Args:
        learning_rate: AdamW learning rate of the head.
        weight_decay: AdamW weight decay (not on biases, norms or circuit angles).
        batch_size: training batch size.
        max_epochs: epoch cap (early stopping usually ends training first).
        patience: stop after this many epochs without a strictly better validation macro-F1
            (``None``: never; the best epoch is still restored).
        lr_scheduler_type: learning-rate schedule, a ``transformers`` scheduler name (linear,
            constant, cosine, ...) over ``max_epochs`` epochs, as the Trainer schedules it.
        warmup_steps: warm-up steps of the schedule.
        max_grad_norm: gradient clipping (per replicate; 0 or ``None``: none).
        adam_beta1, adam_beta2, adam_epsilon: AdamW's constants (the Trainer's defaults).
        device: ``"cpu"``, ``"cuda"``, ...; ``None``: CUDA when available (as the Trainer).

    Example:
        >>> LeanSettings(batch_size=0)
        Traceback (most recent call last):
        ...
        qubert.lean.LeanError: batch_size must be a positive integer, got 0
    """

    learning_rate: float = 1e-2
    weight_decay: float = 0.0
    batch_size: int = 64
    max_epochs: int = 100
    patience: int | None = 5
    lr_scheduler_type: str = "linear"
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    device: str | None = None

    def __post_init__(self) -> None:
        def positive_number(name: str, value: Any, strict: bool = True) -> None:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or (value <= 0 if strict else value < 0):
                raise LeanError(f"{name} must be a {'positive' if strict else 'non-negative'} number, got {value!r}")

        positive_number("learning_rate", self.learning_rate)
        positive_number("weight_decay", self.weight_decay, strict=False)
        positive_number("adam_epsilon", self.adam_epsilon)
        for name in ("batch_size", "max_epochs"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise LeanError(f"{name} must be a positive integer, got {value!r}")
        if self.patience is not None and (not _is_int(self.patience) or self.patience < 1):
            raise LeanError(f"patience must be a positive integer or None, got {self.patience!r}")
        if not _is_int(self.warmup_steps) or self.warmup_steps < 0:
            raise LeanError(f"warmup_steps must be a non-negative integer, got {self.warmup_steps!r}")
        if self.max_grad_norm is not None:
            positive_number("max_grad_norm", self.max_grad_norm, strict=False)
        for name in ("adam_beta1", "adam_beta2"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
                raise LeanError(f"{name} must be in [0, 1), got {value!r}")
        from transformers import SchedulerType

        if self.lr_scheduler_type not in {s.value for s in SchedulerType}:
            raise LeanError(f"unknown lr_scheduler_type {self.lr_scheduler_type!r}; e.g. linear, constant, cosine")

    @classmethod
    def from_training_config(cls, config: Any) -> "LeanSettings":
        """The settings a frozen :class:`qubert.training.TrainingConfig` trains with.

        Example:
            >>> from qubert.training import TrainingConfig
            >>> LeanSettings.from_training_config(TrainingConfig(dataset="x", head="mlp")).learning_rate
            0.01
        """
        epochs = config.resolved_num_epochs
        if epochs != int(epochs):
            raise LeanError(f"num_epochs must be a whole number for lean training, got {epochs!r}")
        if config.max_steps != -1:
            raise LeanError("max_steps is not supported by lean training; use num_epochs")
        return cls(
            learning_rate=config.resolved_learning_rate, weight_decay=config.weight_decay, batch_size=config.resolved_batch_size,
            max_epochs=int(epochs), patience=config.early_stopping_patience, lr_scheduler_type=config.lr_scheduler_type,
        )


@dataclass
class LeanRun:
    """One trained replicate: its best epoch's validation and test scores, history and weights.

    ``train_runtime`` is the replicate's share of the training loop's wall time (the loop's time
    divided by the replicates trained together).
    """

    seed: int
    head_config: dict[str, Any]
    eval_metrics: dict[str, float]
    test_metrics: dict[str, float]
    test_probabilities: np.ndarray | None
    best_epoch: int
    epochs_run: int
    stopped_by: str
    history: list[dict[str, float]]
    train_loss: float
    train_runtime: float
    trainable_params: int
    train_samples: int
    eval_samples: int
    test_samples: int
    state_dict: dict[str, torch.Tensor] = field(repr=False)

    @property
    def eval_macro_f1(self) -> float:
        return self.eval_metrics["macro_f1"]

    @property
    def test_macro_f1(self) -> float | None:
        return self.test_metrics.get("macro_f1")

    @property
    def test_accuracy(self) -> float | None:
        return self.test_metrics.get("accuracy")

    def head(self) -> nn.Module:
        """The trained head (best epoch's weights), in eval mode."""
        from qubert.heads import build_head

        head = build_head(self.head_config, seed=self.seed)
        head.load_state_dict(self.state_dict)
        return head.eval()

    def metrics(self) -> dict[str, Any]:
        """Flat metrics with the keys of a run directory's ``metrics.json`` (those lean training knows)."""
        out: dict[str, Any] = {"train_runtime": round(self.train_runtime, 4), "train_loss": self.train_loss}
        out.update({f"eval_{k}": v for k, v in self.eval_metrics.items()})
        out.update({f"test_{k}": v for k, v in self.test_metrics.items()})
        out.update({
            "trainable_params": self.trainable_params, "encoder_trainable_params": 0, "best_epoch": float(self.best_epoch),
            "epochs_trained": float(self.epochs_run), "stopped_by": self.stopped_by, "train_samples": self.train_samples,
            "eval_samples": self.eval_samples, "test_samples": self.test_samples,
        })
        return out


# ---------------------------------------------------------------------------------------------
# Metrics from confusion matrices (per-epoch validation: scikit-learn's definitions, no round trip)
# ---------------------------------------------------------------------------------------------


def split_metrics(labels: torch.Tensor, predictions: torch.Tensor, n_classes: int) -> dict[str, float]:
    """Accuracy, macro-F1, weighted F1, macro precision and recall, as
    :func:`qubert.training.classification_metrics` gives them (scikit-learn, ``zero_division=0``),
    computed from one confusion matrix: averages run over the classes that occur in the labels or
    the predictions.

    Example:
        >>> m = split_metrics(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1]), 3)
        >>> m["accuracy"], round(m["macro_f1"], 3)
        (0.75, 0.733)
    """
    confusion = torch.bincount(labels.long() * n_classes + predictions.long(), minlength=n_classes * n_classes)
    confusion = confusion.reshape(n_classes, n_classes).double().cpu()
    tp = confusion.diagonal()
    support, predicted = confusion.sum(1), confusion.sum(0)
    present = (support + predicted) > 0
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), 0.0)
    recall = torch.where(support > 0, tp / support.clamp(min=1), 0.0)
    denominator = support + predicted  # 2 tp + fp + fn
    f1 = torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), 0.0)
    total = float(support.sum())
    return {
        "accuracy": float(tp.sum() / total),
        "macro_f1": float(f1[present].mean()),
        "weighted_f1": float((f1 * support).sum() / total),
        "precision": float(precision[present].mean()),
        "recall": float(recall[present].mean()),
    }


# ---------------------------------------------------------------------------------------------
# Replicate stacks: several heads of one configuration trained in lockstep
# ---------------------------------------------------------------------------------------------


def _no_decay(name: str, ndim: int) -> bool:
    # The rule of QubertForSequenceClassification.parameter_groups.
    return ndim < 2 or name.endswith("q_weights") or "norm" in name.lower()


class _ModuleStack:
    """Replicates as separate head modules; one backward and one optimizer step for all of them.

    Works for every head (the quantum engine's custom autograd functions included). A stopped
    replicate is skipped: its parameters get no gradient, so AdamW leaves them alone.
    """

    def __init__(self, heads: list[nn.Module]) -> None:
        self.heads = heads

    def parameter_groups(self, learning_rate: float, weight_decay: float) -> list[dict[str, Any]]:
        decay, no_decay = [], []
        for head in self.heads:
            for name, param in head.named_parameters():
                if param.requires_grad:
                    (no_decay if _no_decay(name, param.ndim) else decay).append(param)
        groups = [{"params": decay, "lr": learning_rate, "weight_decay": weight_decay}, {"params": no_decay, "lr": learning_rate, "weight_decay": 0.0}]
        return [g for g in groups if g["params"]]

    def train(self, mode: bool) -> None:
        for head in self.heads:
            head.train(mode)

    def set_data(self, train: list[Split], validation: list[Split]) -> None:
        self.train_data, self.validation = train, validation

    def losses(self, rows: list[int], index: list[torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy of each replicate in ``rows`` on its rows ``index``."""
        data = self.train_data
        return torch.stack([nn.functional.cross_entropy(self.heads[r](data[r][0][i]), data[r][1][i]) for r, i in zip(rows, index)])

    def validation_logits(self, rows: list[int]) -> list[torch.Tensor]:
        return [self.heads[r](self.validation[r][0]) for r in rows]

    def clip(self, active: list[int], max_norm: float) -> None:
        for r in active:
            torch.nn.utils.clip_grad_norm_(self.heads[r].parameters(), max_norm)

    def snapshot(self, r: int) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.heads[r].state_dict().items()}

    def final_logits(self, r: int, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Logits of replicate ``r`` with the weights ``state`` (a :meth:`snapshot`)."""
        self.heads[r].load_state_dict(state)
        return self.heads[r](x)


class _StackedLayers:
    """Linear / MLP replicates as one stacked model: each layer's weights of all replicates in one
    tensor (``torch.func.stack_module_state``), one batched matmul (``baddbmm``) per layer.

    Hand-written rather than ``torch.func.vmap`` over ``functional_call``: the same batched
    matmuls, but vmap's per-call tracing cost about 3x the matmul itself at these sizes (measured:
    ~1.0 ms against ~0.3 ms per call for 10 replicates of a 384x2 layer, batch 64), and the
    head's own forward cannot be vmapped anyway (its input check is a data-dependent branch).
    The features are checked once, before training, instead.
    """

    def __init__(self, heads: list[nn.Module]) -> None:
        from torch.func import stack_module_state

        self.heads = heads
        from qubert.heads import LinearHead

        self.kind = "linear" if isinstance(heads[0], LinearHead) else "mlp"
        inner = self._inner(heads[0])
        self.layers: list[tuple[str, Any]] = []
        for name, module in (inner.named_children() if isinstance(inner, nn.Sequential) else [("", inner)]):
            if isinstance(module, nn.Linear):
                self.layers.append(("linear", f"{name}." if name else ""))
            elif isinstance(module, nn.ReLU):
                self.layers.append(("relu", None))
            elif isinstance(module, nn.Dropout):
                self.layers.append(("dropout", module.p))
            else:  # pragma: no cover - a new layer type in MLPHead needs a line here
                raise TypeError(f"cannot stack a {type(module).__name__} layer")
        self.input_dropout = float(heads[0].dropout_p) if self.kind == "linear" else 0.0
        params, buffers = stack_module_state([self._inner(h) for h in heads])
        if buffers:  # pragma: no cover - linear / MLP heads hold none
            raise TypeError("cannot stack layers with buffers")
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        self.members = list(range(len(heads)))  # the replicate in each slot of the stack
        self.training = True

    def _inner(self, head: nn.Module) -> nn.Module:
        return head.linear if self.kind == "linear" else head.net

    def parameter_groups(self, learning_rate: float, weight_decay: float) -> list[dict[str, Any]]:
        decay = [p for k, p in self.params.items() if not _no_decay(k, p.ndim - 1)]
        no_decay = [p for k, p in self.params.items() if _no_decay(k, p.ndim - 1)]
        groups = [{"params": decay, "lr": learning_rate, "weight_decay": weight_decay}, {"params": no_decay, "lr": learning_rate, "weight_decay": 0.0}]
        return [g for g in groups if g["params"]]

    def train(self, mode: bool) -> None:
        self.training = mode

    def _forward(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Logits (S, b, C) of S stacked replicates' ``params`` on their inputs ``x`` (S, b, d)."""
        if self.input_dropout:
            x = nn.functional.dropout(x, self.input_dropout, self.training)
        for kind, arg in self.layers:
            if kind == "linear":
                x = torch.baddbmm(params[f"{arg}bias"].unsqueeze(1), x, params[f"{arg}weight"].transpose(1, 2))
            elif kind == "relu":
                x = torch.relu(x)
            else:
                x = nn.functional.dropout(x, arg, self.training)
        return x

    def _stacked_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(self.params, x)

    def set_data(self, train: list[Split], validation: list[Split]) -> None:
        self.x, self.y = torch.stack([x for x, _ in train]), torch.stack([y for _, y in train])  # (R, n, d), (R, n)
        self.validation = validation
        same = len({x.shape[0] for x, _ in validation}) == 1
        self.validation_x = torch.stack([x for x, _ in validation]) if same else None

    def losses(self, rows: list[int], index: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of every replicate in the stack (``rows``, its members) on its rows
        ``index`` (members, b). A replicate that stopped runs on until the stack is compacted
        (see :meth:`keep`); the caller leaves its loss out of backward."""
        S, n, d = self.x.shape
        flat = (torch.arange(S, device=index.device)[:, None] * n + index).flatten()  # index_select: ~4x faster than x[slots, index]
        logits = self._stacked_logits(self.x.view(S * n, d).index_select(0, flat).view(S, -1, d))
        return nn.functional.cross_entropy(logits.transpose(1, 2), self.y.view(-1).index_select(0, flat).view(S, -1), reduction="none").mean(1)

    def validation_logits(self, rows: list[int]) -> list[torch.Tensor]:
        if self.validation_x is not None:
            logits = self._stacked_logits(self.validation_x)
            return [logits[self.members.index(r)] for r in rows]
        return [self.final_logits(r, self._slot_params(r), self.validation[r][0]) for r in rows]

    def keep(self, members: list[int], optimizer: torch.optim.Optimizer) -> None:
        """Drop the replicates not in ``members`` from the stack, their optimizer state with them."""
        slots = torch.tensor([self.members.index(r) for r in members], device=self.x.device)
        replaced = {}
        for group in optimizer.param_groups:
            kept = []
            for p in group["params"]:
                q = p.detach()[slots].clone().requires_grad_(True)
                state = optimizer.state.pop(p, {})
                optimizer.state[q] = {k: v[slots].clone() if torch.is_tensor(v) and v.dim() > 0 else v for k, v in state.items()}
                replaced[id(p)] = q
                kept.append(q)
            group["params"] = kept
        self.params = {k: replaced[id(p)] for k, p in self.params.items()}
        self.x, self.y = self.x[slots], self.y[slots]
        if self.validation_x is not None:
            self.validation_x = self.validation_x[slots]
        self.members = list(members)

    def clip(self, active: list[int], max_norm: float) -> None:
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)  # torch.nn.utils.clip_grad_norm_'s formula
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.ndim - 1))))

    def _slot_params(self, r: int) -> dict[str, torch.Tensor]:
        slot = self.members.index(r)
        return {k: v[slot] for k, v in self.params.items()}

    def snapshot(self, r: int) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self._slot_params(r).items()}

    def final_logits(self, r: int, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Logits of replicate ``r`` with the weights ``state`` (a :meth:`snapshot`)."""
        return self._forward({k: v.unsqueeze(0) for k, v in state.items()}, x.unsqueeze(0))[0]

    def head_state(self, r: int, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A full head state dict for replicate ``r`` from a snapshot of the stacked layers."""
        head = self.heads[r]
        self._inner(head).load_state_dict(state)
        return {k: v.detach().clone() for k, v in head.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def _check_split(name: str, r: int, split: Any, in_features: int | None, n_classes: int) -> Split:
    where = f"{name}[{r}]"
    if not isinstance(split, (tuple, list)) or len(split) != 2:
        raise LeanError(f"{where} must be a (features, labels) pair")
    x, y = (torch.as_tensor(v) for v in split)
    if x.dim() != 2 or not x.is_floating_point():
        raise LeanError(f"{where}: features must be a 2-D float tensor (rows, features), got {x.dtype} of shape {tuple(x.shape)}")
    if in_features is not None and x.shape[1] != in_features:
        raise LeanError(f"{where}: features have {x.shape[1]} columns but the head's in_features is {in_features}")
    if y.dim() != 1 or y.shape[0] != x.shape[0] or y.is_floating_point() or y.is_complex():
        raise LeanError(f"{where}: labels must be a 1-D integer tensor with one label per row ({x.shape[0]}), got {y.dtype} of shape {tuple(y.shape)}")
    if x.shape[0] == 0:
        raise LeanError(f"{where} has no rows")
    if int(y.min()) < 0 or int(y.max()) >= n_classes:
        raise LeanError(f"{where}: labels must lie in 0..{n_classes - 1} (n_classes {n_classes}), got {int(y.min())}..{int(y.max())}")
    if not bool(torch.isfinite(x).all()):
        raise LeanError(f"{where}: features hold NaN or inf")
    return x.float(), y.long()


def _check_inputs(head_config: dict[str, Any], train, validation, test, seeds) -> tuple[dict[str, Any], list, list, list, list[int]]:
    if not isinstance(head_config, dict) or "type" not in head_config:
        raise LeanError("head_config must be a dict with a 'type' (as qubert.heads.build_head takes it)")
    if not _is_int(head_config.get("n_classes")):
        raise LeanError("head_config must give n_classes (an integer)")
    seeds = list(seeds)
    if not seeds:
        raise LeanError("seeds is empty: give one seed per replicate")
    if any(not _is_int(s) for s in seeds):
        raise LeanError(f"seeds must be integers, got {seeds!r}")
    train, validation, test = list(train), list(validation), list(test)
    if len(train) != len(seeds) or len(validation) != len(seeds):
        raise LeanError(f"train ({len(train)}), validation ({len(validation)}) and seeds ({len(seeds)}) must have one entry per replicate")
    if test and len(test) != len(seeds):
        raise LeanError(f"test must be empty or have one entry per replicate ({len(seeds)}), got {len(test)}")
    n_classes = int(head_config["n_classes"])
    first = torch.as_tensor(train[0][0]) if isinstance(train[0], (tuple, list)) and train[0] else None
    in_features = head_config.get("in_features", first.shape[-1] if first is not None and first.dim() == 2 else None)
    config = {**head_config, "in_features": in_features}
    checked = [[_check_split(name, r, s, in_features, n_classes) for r, s in enumerate(splits)] for name, splits in (("train", train), ("validation", validation), ("test", test))]
    return config, checked[0], checked[1], checked[2], [int(s) for s in seeds]


def _build_heads(config: dict[str, Any], seeds: list[int], device: torch.device) -> list[nn.Module]:
    from qubert.heads import build_head

    heads = []
    for seed in seeds:
        torch.manual_seed(seed)  # linear/MLP layers draw from the global generator, as in run_training
        try:
            heads.append(build_head(config, seed=seed).to(device))
        except (TypeError, ValueError) as err:
            raise LeanError(f"head_config: {' '.join(str(err).split())}") from None
    return heads


def _can_stack(heads: list[nn.Module]) -> bool:
    from qubert.heads import LinearHead, MLPHead

    return type(heads[0]) in (LinearHead, MLPHead)  # a subclass may change forward: modules then


@dataclass
class _Tracker:
    """One replicate's history and early-stopping state (the Trainer's rule: a new best must be
    strictly higher; stop after ``patience`` epochs without one)."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_f1: float | None = None
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    since_best: int = 0
    epochs_run: int = 0
    stopped_by: str = "epoch_cap"
    loss_sum: float = 0.0
    loss_steps: int = 0

    def record(self, row: dict[str, float], steps: int, snapshot, settings: LeanSettings) -> bool:
        """Add an epoch's row; keep the weights (``snapshot()``) if it is the best; True while training goes on."""
        self.history.append(row)
        self.loss_sum += row["train_loss"] * steps
        self.loss_steps += steps
        self.epochs_run = epoch = int(row["epoch"])
        if self.best_f1 is None or row["eval_macro_f1"] > self.best_f1:
            self.best_f1, self.best_epoch, self.since_best, self.best_state = row["eval_macro_f1"], epoch, 0, snapshot()
        else:
            self.since_best += 1
        if settings.patience is not None and self.since_best >= settings.patience and epoch < settings.max_epochs:
            self.stopped_by = "patience"
            return False
        return True


def _train_epoch(stack, rows: list[int], active: list[int], seeds: list[int], epoch: int, n: int, settings: LeanSettings, optimizer, scheduler, stacked: bool) -> list[float]:
    """One epoch of every replicate in ``rows`` (those not in ``active`` get no update); mean step losses."""
    device = next(stack.heads[0].parameters()).device
    # The Trainer's seedable sampler: epoch e visits the rows in randperm(n) drawn with seed + e.
    orders = [torch.randperm(n, generator=torch.Generator().manual_seed(seeds[r] + epoch)).to(device) for r in rows]
    if stacked:
        orders = torch.stack(orders)
    steps = math.ceil(n / settings.batch_size)
    total = torch.zeros(len(rows), dtype=torch.float64, device=device)
    stack.train(True)
    for step in range(steps):
        window = slice(step * settings.batch_size, (step + 1) * settings.batch_size)
        losses = stack.losses(rows, orders[:, window] if stacked else [order[window] for order in orders])
        picked = losses if len(active) == len(rows) else losses[[rows.index(r) for r in active]]
        picked.sum().backward()
        if settings.max_grad_norm:
            stack.clip(active, settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        total += losses.detach()
    stack.train(False)
    return (total / steps).tolist()


def _train_group(config: dict[str, Any], train: list[Split], validation: list[Split], test: list[Split], seeds: list[int], settings: LeanSettings, device: torch.device, stacked: bool) -> list[LeanRun]:
    """Train the replicates ``seeds`` in lockstep (all with the same number of training rows)."""
    from transformers import get_scheduler

    R, n, n_classes = len(seeds), train[0][0].shape[0], int(config["n_classes"])
    heads = _build_heads(config, seeds, device)
    stack = _StackedLayers(heads) if stacked else _ModuleStack(heads)
    steps_per_epoch = math.ceil(n / settings.batch_size)
    optimizer = torch.optim.AdamW(
        stack.parameter_groups(settings.learning_rate, settings.weight_decay), lr=settings.learning_rate,
        betas=(settings.adam_beta1, settings.adam_beta2), eps=settings.adam_epsilon, fused=device.type in ("cpu", "cuda"),
    )
    scheduler = get_scheduler(settings.lr_scheduler_type, optimizer, num_warmup_steps=settings.warmup_steps, num_training_steps=settings.max_epochs * steps_per_epoch)
    train = [(x.to(device), y.to(device)) for x, y in train]
    validation = [(x.to(device), y.to(device)) for x, y in validation]
    stack.set_data(train, validation)
    trackers = [_Tracker() for _ in seeds]
    active = list(range(R))
    torch.manual_seed(seeds[0])  # the Trainer reseeds the global generator (set_seed) before training; dropout draws from it
    start = time.perf_counter()
    for epoch in range(settings.max_epochs):
        rows = list(stack.members) if stacked else active
        epoch_loss = _train_epoch(stack, rows, active, seeds, epoch, n, settings, optimizer, scheduler, stacked)
        still = []
        with torch.no_grad():
            for r, logits in zip(active, stack.validation_logits(active)):
                y = validation[r][1]
                row = {"epoch": float(epoch + 1), "train_loss": epoch_loss[rows.index(r)], "eval_loss": float(nn.functional.cross_entropy(logits, y))}
                row.update({f"eval_{k}": v for k, v in split_metrics(y, logits.argmax(-1), n_classes).items()})
                if trackers[r].record(row, steps_per_epoch, lambda r=r: stack.snapshot(r), settings):
                    still.append(r)
        active = still
        if not active:
            break
        if stacked and len(active) <= len(rows) // 2:  # half the stack stopped: compute only the rest from now on
            stack.keep(active, optimizer)
    runtime = (time.perf_counter() - start) / R
    return [_finish(stack, r, seeds[r], trackers[r], validation[r], test[r] if test else None, n_classes, runtime, n, stacked, device) for r in range(R)]


def _finish(stack, r: int, seed: int, tracker: _Tracker, validation: Split, test: Split | None, n_classes: int, runtime: float, n: int, stacked: bool, device: torch.device) -> LeanRun:
    """Replicate ``r``'s run: its best weights scored on validation and test."""

    def score(x: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, float], torch.Tensor]:
        logits = stack.final_logits(r, tracker.best_state, x.to(device))
        y = y.to(device)
        return {"loss": float(nn.functional.cross_entropy(logits, y)), **split_metrics(y, logits.argmax(-1), n_classes)}, logits

    with torch.no_grad():
        eval_metrics, _ = score(*validation)
        test_metrics, probabilities = {}, None
        if test is not None:
            test_metrics, logits = score(*test)
            probabilities = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    state = stack.head_state(r, tracker.best_state) if stacked else tracker.best_state
    head = stack.heads[r]
    return LeanRun(
        seed=seed, head_config=head.config(), eval_metrics=eval_metrics, test_metrics=test_metrics, test_probabilities=probabilities,
        best_epoch=tracker.best_epoch, epochs_run=tracker.epochs_run, stopped_by=tracker.stopped_by, history=tracker.history,
        train_loss=tracker.loss_sum / max(tracker.loss_steps, 1), train_runtime=runtime, trainable_params=int(head.trainable_params),
        train_samples=n, eval_samples=int(validation[0].shape[0]), test_samples=int(test[0].shape[0]) if test is not None else 0,
        state_dict={k: v.cpu() for k, v in state.items()},
    )


def train_replicates(
    head_config: dict[str, Any],
    train: Sequence[Split],
    validation: Sequence[Split],
    test: Sequence[Split],
    seeds: Sequence[int],
    settings: LeanSettings | None = None,
    batched: bool | None = None,
) -> list[LeanRun]:
    """Train one head configuration on several replicates; one :class:`LeanRun` per seed, in order.

    Args:
        head_config: the head, as :func:`qubert.heads.build_head` takes it (``type``, ``n_classes``,
            ``in_features`` (default: the features' width), and the type's options).
        train, validation: per replicate a ``(features (n, d) float, labels (n,) int)`` pair.
        test: per replicate such a pair, or an empty list (no test scoring).
        seeds: per replicate the initialisation and batch-order seed (``seed`` of ``qubert train``).
        settings: optimisation settings (default: those of ``qubert train --mode frozen``).
        batched: ``None``: train the replicates together when they have the same number of
            training rows (one stacked model for linear / MLP heads, separate modules stepped
            together for quantum heads), else one by one; ``True``: together, or an error;
            ``False``: one by one.

    Raises:
        LeanError: a bad setting or input, in one line naming it.

    Example:
        >>> runs = train_replicates(config, train=[(x, y)], validation=[(xv, yv)], test=[], seeds=[42])  # doctest: +SKIP
        >>> runs[0].eval_macro_f1, runs[0].best_epoch  # doctest: +SKIP
        (0.91, 4)
    """
    settings = settings if settings is not None else LeanSettings()
    if not isinstance(settings, LeanSettings):
        raise LeanError(f"settings must be a LeanSettings, got {type(settings).__name__}")
    if batched not in (None, True, False):
        raise LeanError(f"batched must be None, True or False, got {batched!r}")
    config, train, validation, test, seeds = _check_inputs(head_config, train, validation, test, seeds)
    device = torch.device(settings.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    same_rows = len({x.shape[0] for x, _ in train}) == 1
    if batched and not same_rows:
        raise LeanError("batched=True needs the same number of training rows in every replicate; use batched=None to fall back")
    together = same_rows and len(seeds) > 1 and batched is not False
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # the caller's generator stays as it was
        if together:
            probe = _build_heads(config, seeds[:1], torch.device("cpu"))
            return _train_group(config, train, validation, test, seeds, settings, device, stacked=_can_stack(probe))
        runs = []
        for r, seed in enumerate(seeds):
            runs += _train_group(config, [train[r]], [validation[r]], [test[r]] if test else [], [seed], settings, device, stacked=False)
        return runs
