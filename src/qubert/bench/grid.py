"""Grid expansion: a :class:`~qubert.bench.config.BenchConfig` becomes one :class:`RunSpec` per training run.

Heads get automatic labels (``quantum_q4_l2``, or ``quantum_q4`` when the depth is tuned); every
quantum head brings its controls, the matched MLP sized to the head's trainable parameters at its
nominal depth (:func:`encoder_hidden_size` gives its input width). With tuning on, every spec
records which settings the search varies (``search``); the values it picks replace them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qubert.bench.config import QUANTUM_KEYS, BenchConfig, BenchConfigError, Resources, training_fields
from qubert.bench.data import DataEntry

# Settings that describe how a run is executed, not what it computes: ignored when deciding
# whether a finished run still matches the config.
_NON_SEMANTIC_KEYS = ("progress", "cache_dir", "output_dir", "resume", "overwrite_output_dir")
# Circuit fields that go into an automatic head label when they differ from the default.
_LABEL_KEYS = ("encoding", "ansatz", "rotation", "measurement", "init", "reupload", "scaling")


@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid.

    Attributes:
        run_id: ``<dataset>/<mode>/<head>/seed<seed>``; also the run directory under ``runs/``.
        dataset, mode, head, seed: the grid coordinates (``head`` is the head's label).
        head_type: ``linear``, ``mlp``, ``quantum`` or ``logreg`` (the scikit-learn yardstick).
        control: which control this run is (``""`` for a regular head).
        base_head: for a control, the label of the quantum head it controls.
        settings: the TrainingConfig keyword arguments, except ``output_dir``.
        resources: what the run asks of a Ray cluster.
        keep_model: keep the trained model (``model/``) after the run; otherwise only the small
            result files stay (metrics, history, predictions, config).
        search: the settings the tuning searches for this head (empty: tuning off).
    """

    run_id: str
    dataset: str
    mode: str
    head: str
    head_type: str
    control: str
    base_head: str
    seed: int
    settings: dict[str, Any]
    resources: Resources
    keep_model: bool = False
    search: tuple[str, ...] = ()
    sampling: str = ""

    @property
    def replicate(self) -> int:
        """The replicate index ``r`` (also the run's initialisation and batch-order seed)."""
        return self.seed

    @property
    def group(self) -> str:
        """``<dataset>/<mode>/<head>``: the replicates of one head."""
        return f"{self.dataset}/{self.mode}/{self.head}"

    def training_config(self, output_dir: str | os.PathLike[str]) -> Any:
        """The :class:`qubert.training.TrainingConfig` of this run, writing to ``output_dir/runs/<run_id>``
        (a yardstick's own options, such as logistic regression's ``C``, are left out)."""
        from qubert.training import TrainingConfig

        return TrainingConfig(**_training_settings(self.settings), output_dir=str(self.run_dir(output_dir)))

    def run_dir(self, output_dir: str | os.PathLike[str]) -> Path:
        return Path(output_dir) / "runs" / self.run_id

    def semantic_settings(self) -> dict[str, Any]:
        """The settings that determine the result (compared to decide whether a run is finished),
        with the pools and draws the replicate's rows come from."""
        out = {k: v for k, v in self.settings.items() if k not in _NON_SEMANTIC_KEYS}
        if self.sampling:
            out["sampling"] = self.sampling
        return out


def _training_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as TrainingConfig takes them: the yardstick's ``C`` dropped, its head read as linear."""
    out = {k: v for k, v in settings.items() if k != "C"}
    if out.get("head") == "logreg":
        out["head"] = "linear"
    return out


def expand_grid(config: BenchConfig) -> list[RunSpec]:
    """All runs of a grid, in a fixed order: data set, mode, head (controls after their quantum head), seed.

    Raises:
        BenchConfigError: two different heads get the same label, or the grid is empty.

    Example:
        >>> from qubert.bench import parse_bench_config
        >>> c = parse_bench_config({"datasets": ["sms_spam"], "seeds": [0, 1], "controls": ["matched_mlp"],
        ...                         "heads": ["linear", {"head": "quantum", "qubits": 2}]}, online=False)
        >>> [s.run_id for s in expand_grid(c)][::2]
        ['sms_spam/frozen/linear/seed0', 'sms_spam/frozen/quantum_q2/seed0', 'sms_spam/frozen/matched_mlp_q2/seed0']
        >>> expand_grid(c)[2].search  # the quantum head: its depth is tuned, so its label has none
        ('learning_rate', 'weight_decay', 'layers', 'scaling')
    """
    import json

    fields = training_fields()
    sampling = json.dumps({"pool": config.pool, "draws": config.draws}, sort_keys=True)
    base_resources = {"num_cpus": 1, "num_gpus": 0, **config.resources}
    specs: list[RunSpec] = []
    seen: dict[str, RunSpec] = {}
    for dataset_entry in config.datasets:
        dataset = dataset_entry["dataset"]
        entry = DataEntry(**dataset_entry["data"])
        n_classes = _n_classes(entry)
        for mode_entry in config.modes:
            mode = mode_entry["mode"]
            for i, head_entry in enumerate(config.heads):
                settings = {**config.training, **entry.load_settings(), **_settings(dataset_entry), **_settings(mode_entry),
                            **_settings(head_entry), "mode": mode, "head": head_entry["head"]}
                if entry.dataset is None:
                    settings.pop("dataset", None)
                # Runs outside the replicate draws (tuning trials) read subsets of the draws' sizes.
                settings.setdefault("max_train_samples", config.draws["train"])
                settings.setdefault("max_eval_samples", config.draws["validation"])
                resources = {**base_resources, **dataset_entry.get("resources", {}),
                             **mode_entry.get("resources", {}), **head_entry.get("resources", {})}
                # What a data set, mode or head entry sets itself is fixed; the tuning searches the rest.
                fixed = {*_settings(dataset_entry), *_settings(mode_entry), *_settings(head_entry)}
                search = _searcher(config, mode, fixed)
                for head, head_type, control, base_head, head_settings in _head_variants(
                    settings, head_entry.get("name"), head_entry.get("controls", config.controls), fields, n_classes,
                    f"heads[{i}]", depth_tuned="layers" in search("quantum", ""),
                ):
                    where = f"{dataset}/{mode}/{head} (heads[{i}])"
                    _validate_settings(head_settings, config.seeds[0], where)
                    _validate_search(head_settings, config, mode, search(head_type, control), control, where)
                    for seed in config.seeds:
                        full = {**head_settings, "seed": seed}
                        full.setdefault("progress", False)
                        spec = RunSpec(
                            run_id=f"{dataset}/{mode}/{head}/seed{seed}", dataset=dataset, mode=mode, head=head,
                            head_type=head_type, control=control, base_head=base_head, seed=seed,
                            settings=full, resources=Resources(**resources), keep_model=config.keep_models,
                            search=search(head_type, control), sampling=sampling,
                        )
                        previous = seen.get(spec.run_id)
                        if previous is not None:
                            if previous.semantic_settings() != spec.semantic_settings():
                                raise BenchConfigError(
                                    f"heads[{i}]: head label {head!r} is used by two different heads; "
                                    "give one of them a `name`"
                                )
                            continue  # the same run listed twice (e.g. a control that is also a head)
                        seen[spec.run_id] = spec
                        specs.append(spec)
    if not specs:
        raise BenchConfigError("the grid is empty: no runs to do")
    return specs


def _validate_settings(settings: Mapping[str, Any], seed: int, where: str) -> None:
    """Let TrainingConfig check the run's options now, before any run starts."""
    from qubert.training import TrainingConfig

    try:
        config = TrainingConfig(**_training_settings(settings), seed=seed)
    except (TypeError, ValueError) as err:
        raise BenchConfigError(f"{where}: {' '.join(str(err).split())}") from None
    _check_encoder_limits(config, where)


def _check_encoder_limits(config: Any, where: str) -> None:
    """What only the encoder knows: ``top<k>`` needs k layers, ``max_length`` its position limit."""
    from qubert.modeling import parse_mode

    encoder = _encoder_config(config.model)
    if encoder is None:
        return
    layers = getattr(encoder, "num_hidden_layers", None)
    k = parse_mode(config.mode)
    if isinstance(k, int) and k > 0 and isinstance(layers, int) and k > layers:
        raise BenchConfigError(f"{where}: mode {config.mode} trains the top {k} layers, but the encoder has {layers}")
    limit = getattr(encoder, "max_position_embeddings", None)
    if isinstance(limit, int) and config.max_length > limit:
        raise BenchConfigError(f"{where}: max_length {config.max_length} exceeds the encoder's limit of {limit} tokens")


def _searcher(config: BenchConfig, mode: str, fixed: set[str]):
    """``(head_type, control) -> names of the settings the tuning searches`` (nothing when it is off)."""
    from qubert.bench.tuning import space_for

    tuning = config.tuning

    def search(head_type: str, control: str) -> tuple[str, ...]:
        if tuning is None or not tuning.enabled:
            return ()
        return tuple(space_for(tuning.space, head_type, mode, fixed=sorted(fixed), control=control))

    return search


def _settings(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in ("dataset", "data", "mode", "head", "name", "resources", "controls")}


def _n_classes(entry: DataEntry) -> int:
    from qubert.data import REGISTRY

    if entry.dataset in REGISTRY and entry.train_file is None:
        return REGISTRY[entry.dataset].n_classes
    from qubert.bench.data import DataEntryError, check_entry

    try:
        return check_entry(entry).n_classes
    except DataEntryError as err:
        raise BenchConfigError(f"datasets: {entry.name}: {err}") from None


def _validate_search(settings: Mapping[str, Any], config: BenchConfig, mode: str, names: Sequence[str], control: str,
                     where: str) -> None:
    """Every value the tuning may pick must be a setting ``qubert train`` accepts (checked now, not mid-grid)."""
    if not names:
        return
    from qubert.bench.tuning import space_for

    dimensions = space_for(config.tuning.space, settings["head"], mode, control=control)
    for name in names:
        dimension = dimensions.get(name)
        if dimension is None or name == "C":
            continue
        values = list(dimension.choices) if dimension.choices else [dimension.low, dimension.high]
        for value in values:
            if dimension.integer and not dimension.choices:
                value = int(value)
            _validate_settings({**settings, name: value}, config.seeds[0], f"{where}, tuning.space {name}={value!r}")


def _head_variants(settings: dict[str, Any], name: str | None, controls: Sequence[str],
                   fields: Mapping[str, Any], n_classes: int, where: str, *, depth_tuned: bool = False,
                   ) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """``(label, head_type, control, base_head, settings)`` for a head entry and its controls."""
    head_type = settings["head"]
    resolved = {**fields, **settings}
    if head_type != "quantum":
        # quantum settings on a classical head (or MLP settings on the yardstick) would only confuse the csv
        for key in QUANTUM_KEYS + (("hidden_sizes", "dropout") if head_type == "logreg" else ()):
            settings.pop(key, None)
        return [(name or _classical_label(head_type, resolved, fields), head_type, "", "", settings)]

    circuit = _circuit_for(resolved, where)
    label = name or _quantum_label(resolved, fields, depth_tuned=depth_tuned)
    variants = [(label, "quantum", "", "", settings)]
    for control in controls:
        if control == "matched_mlp":
            hidden = _matched_hidden_size(resolved, circuit, n_classes)
            mlp = {k: v for k, v in settings.items() if k not in QUANTUM_KEYS}
            mlp.update(head="mlp", hidden_sizes=[hidden])
            variants.append((f"matched_mlp_{label.removeprefix('quantum_')}", "mlp", control, label, mlp))
        elif control == "no_entanglement" and resolved["entanglement"] != "none" and resolved["qubits"] > 1:
            variants.append((f"{label}_noent", "quantum", control, label, {**settings, "entanglement": "none"}))
        elif control == "frozen_circuit" and not resolved["freeze_circuit"]:
            variants.append((f"{label}_frozen", "quantum", control, label, {**settings, "freeze_circuit": True}))
    return variants


def _classical_label(head_type: str, resolved: Mapping[str, Any], fields: Mapping[str, Any]) -> str:
    if head_type == "mlp" and list(resolved["hidden_sizes"]) != list(fields["hidden_sizes"]):
        return "mlp_" + "x".join(str(h) for h in resolved["hidden_sizes"])
    return head_type


def _quantum_label(resolved: Mapping[str, Any], fields: Mapping[str, Any], depth_tuned: bool = False) -> str:
    label = f"quantum_q{resolved['qubits']}" + ("" if depth_tuned else f"_l{resolved['layers']}")
    for key in _LABEL_KEYS:
        if resolved[key] != fields[key]:
            label += f"_{key}-{resolved[key]}"
    if resolved["entanglement"] == "none":
        label += "_noent"
    elif resolved["entanglement"] != fields["entanglement"]:
        label += f"_entanglement-{resolved['entanglement']}"
    if resolved["freeze_circuit"]:
        label += "_frozen"
    return label


def _circuit_for(resolved: Mapping[str, Any], where: str) -> Any:
    from qubert.quantum.circuit import Circuit

    try:
        return Circuit(
            n_qubits=resolved["qubits"], n_layers=resolved["layers"], encoding=resolved["encoding"],
            reupload=resolved["reupload"], ansatz=resolved["ansatz"], entanglement=resolved["entanglement"],
            rotation=resolved["rotation"], measurement=resolved["measurement"], init=resolved["init"],
        )
    except (TypeError, ValueError) as err:
        raise BenchConfigError(f"{where}: invalid quantum head: {err}") from None


def _matched_hidden_size(resolved: Mapping[str, Any], circuit: Any, n_classes: int) -> int:
    """Hidden width of the MLP with as many trainable parameters as this quantum head."""
    from qubert.heads import QuantumHead, matched_mlp_head

    head = QuantumHead(
        in_features=encoder_hidden_size(resolved["model"]), n_classes=n_classes, circuit=circuit,
        scaling=resolved["scaling"], freeze_circuit=resolved["freeze_circuit"], seed=0,
    )
    return int(matched_mlp_head(head).hidden_sizes[0])


_HIDDEN_SIZES: dict[str, int] = {}
_ENCODER_CONFIGS: dict[str, Any] = {}


def _encoder_config(model: str) -> Any:
    """The encoder's transformers config, or None when it cannot be read here (checked later by the run)."""
    if model not in _ENCODER_CONFIGS:
        from transformers import AutoConfig

        try:
            _ENCODER_CONFIGS[model] = AutoConfig.from_pretrained(_model_location(model))
        except (OSError, ValueError, AttributeError, ImportError):
            _ENCODER_CONFIGS[model] = None
    return _ENCODER_CONFIGS[model]


def encoder_hidden_size(model: str) -> int:
    """Width of an encoder's output (``hidden_size`` of its transformers config); ``default`` is MiniLM.

    Example:
        >>> encoder_hidden_size("default")  # doctest: +SKIP
        384
    """
    if model not in _HIDDEN_SIZES:
        from transformers import AutoConfig

        try:
            location = _model_location(model)
            _HIDDEN_SIZES[model] = int(AutoConfig.from_pretrained(location).hidden_size)
        except (OSError, ValueError, AttributeError, ImportError) as err:
            detail = " ".join(str(err).split())[:200]
            raise BenchConfigError(f"training.model: cannot read the encoder config of {model!r} ({detail})") from None
    return _HIDDEN_SIZES[model]


def _model_location(model: str) -> str:
    from qubert.modeling import resolve_model_path

    return str(resolve_model_path(model))
