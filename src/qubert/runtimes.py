"""Inference runtimes for the encoder passes that do not train: PyTorch, ONNX Runtime or OpenVINO.

Frozen-feature encoding, ``qubert eval`` / ``predict`` / ``serve`` and the scikit-learn estimator's
``predict`` run the encoder without training it. There a graph runtime can beat eager PyTorch on a
CPU: :func:`use_runtime` exports the encoder and its pooling once to ONNX (``torch.onnx.export``
with dynamic batch and sequence axes) into ``<cache_dir>/onnx/<key>/`` - the key names the exact
encoder (a hash of its weights), the pooling and the exporter - and attaches a runtime session to
the model: :meth:`qubert.modeling.QubertForSequenceClassification.encode` then calls it instead of
PyTorch whenever the encoder is not training. The head always stays in PyTorch (float32).

``top<k>`` training has a pass that does not train too: the fixed bottom ``L - k`` layers, computed
once per split into :mod:`qubert.layer_cache`. :func:`use_bottom_runtime` exports just that part
(embeddings -> bottom layers -> hidden states ``(B, T, hidden)``, ``bottom-top<k>.onnx`` next to
the encoder graph) and attaches it as ``model.bottom_runtime``, which
:meth:`~qubert.modeling.QubertForSequenceClassification.encode_bottom` then uses. The whole-encoder
runtime is never attached while top layers train: its exported top layers would go stale.

Runtimes, named ``name`` or ``name:precision`` (``--runtime`` on the command line; not "backend",
which in ``qubert eval`` already names the quantum hardware a circuit runs on, as in Qiskit):

- ``torch``: PyTorch, in the model's ``precision`` (fp32, or bf16 / fp16 autocast).
- ``onnx``: ONNX Runtime, ``fp32``; ``onnx:int8`` is dynamic int8 quantization of the exported
  graph (an explicit opt-in: it moves pooled features by a few percent, see docs/benchmarks.md).
- ``openvino``: OpenVINO, ``fp32`` or ``bf16`` (its inference-precision hint; only where the CPU
  computes bf16 natively). Without a precision it follows the model's: a model trained under bf16
  autocast runs OpenVINO in bf16, an fp32 model in fp32.
- ``auto``: ``openvino`` where the openvino extra is installed and the model is on the CPU, else
  ``torch`` (:func:`concrete_runtime`); the default of ``qubert serve``.

Why export ourselves rather than through Hugging Face Optimum: optimum-onnx pins transformers 4.x
and optimum-intel pulls another torch, both incompatible with qubert's transformers 5 / torch pins;
the encoder + pooling graph is a few lines of ``torch.onnx.export``.

The runtimes live in extras: ``pip install "qubert[onnx]"`` or ``pip install "qubert[openvino]"``.

Example:
    >>> parse_runtime("openvino:bf16"), parse_runtime("onnx")
    (('openvino', 'bf16'), ('onnx', None))
    >>> from qubert.runtimes import use_runtime
    >>> use_runtime(model, "openvino")  # doctest: +SKIP
    >>> model.encode(input_ids, attention_mask).shape  # runs in OpenVINO  # doctest: +SKIP
    torch.Size([2, 384])
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from qubert.modeling import QubertForSequenceClassification

__all__ = [
    "AUTO",
    "OPSET",
    "RUNTIMES",
    "RUNTIME_HELP",
    "EncoderRuntime",
    "MissingRuntimeError",
    "RuntimeOptionError",
    "cached_bottom_graph",
    "cached_encoder_graph",
    "concrete_runtime",
    "example_inputs",
    "export_bottom",
    "export_encoder",
    "onnx_export",
    "parse_runtime",
    "require_runtime",
    "resolve_runtime",
    "runtime_tag",
    "use_bottom_runtime",
    "use_runtime",
]

RUNTIMES = ("torch", "onnx", "openvino")
AUTO = "auto"
RUNTIME_HELP = (
    "Encoder runtime for the passes that do not train: torch, onnx (ONNX Runtime) or openvino, optionally name:precision "
    "(onnx:int8 = dynamic int8 quantization, opt-in; openvino:bf16), or auto (openvino where installed, else torch). A runtime "
    "without a precision follows the model's (bf16 -> openvino bf16). The graph is exported once into the cache folder. "
    "Needs qubert[onnx] / qubert[openvino]."
)
# Precisions each runtime computes in (besides torch's own, see qubert.precision).
_RUNTIME_PRECISIONS = {"onnx": ("fp32", "int8"), "openvino": ("fp32", "bf16")}
_EXPORT_VERSION = "1"  # bump when the exported graph changes, so cached exports are redone
OPSET = 18
INPUT_NAMES = ("input_ids", "attention_mask")


class RuntimeOptionError(ValueError):
    """An inference runtime that cannot run here (unknown name, precision, device); one line."""


class MissingRuntimeError(ImportError, ValueError):
    """The package a runtime needs is not installed; the message names the extra (a ValueError
    too, so the CLI reports it as one line like any other bad option)."""


_RUNTIME_MODULES = {
    "onnx": (("onnxruntime",), "ONNX Runtime", "onnx"),
    "openvino": (("openvino",), "OpenVINO", "openvino"),
    "export": (("onnx", "onnxscript"), "the ONNX exporter (onnx, onnxscript)", "onnx"),
}


def require_runtime(runtime: str):
    """Import and return the module of ``runtime`` (``onnx``, ``openvino``, or ``export``
    for the ONNX exporter), or raise :class:`MissingRuntimeError` naming the extra to install.

    Example:
        >>> require_runtime("onnx").__name__  # doctest: +SKIP
        'onnxruntime'
    """
    import importlib

    modules, name, extra = _RUNTIME_MODULES[runtime]
    try:
        return [importlib.import_module(m) for m in modules][-1]
    except ImportError:
        what = "ONNX export" if runtime == "export" else f"the {runtime} runtime"
        raise MissingRuntimeError(f'{what} needs {name}: pip install "qubert[{extra}]"') from None


def parse_runtime(spec: str) -> tuple[str, str | None]:
    """``"name"`` or ``"name:precision"`` -> ``(name, precision or None)``, checked. ``auto`` (no
    precision) stands for the fastest installed runtime, see :func:`concrete_runtime`.

    Example:
        >>> parse_runtime("onnx:int8"), parse_runtime("auto")
        (('onnx', 'int8'), ('auto', None))
        >>> parse_runtime("tensorrt")
        Traceback (most recent call last):
        ...
        qubert.runtimes.RuntimeOptionError: unknown runtime 'tensorrt'; expected auto, torch, onnx or openvino (optionally name:precision, e.g. onnx:int8)
    """
    name, _, precision = str(spec).strip().lower().partition(":")
    if name == AUTO:
        if precision:
            raise RuntimeOptionError("runtime auto takes no precision: it runs in the model's (use openvino:bf16 or torch:bf16 to choose one)")
        return name, None
    if name not in RUNTIMES:
        raise RuntimeOptionError(f"unknown runtime {name!r}; expected auto, torch, onnx or openvino (optionally name:precision, e.g. onnx:int8)")
    if not precision:
        return name, None
    allowed = ("auto", "fp32", "bf16", "fp16") if name == "torch" else _RUNTIME_PRECISIONS[name]
    if precision not in allowed:
        raise RuntimeOptionError(f"runtime {name} has no precision {precision!r}; expected one of {', '.join(allowed)}")
    return name, precision


def concrete_runtime(spec: str, device: str = "cpu") -> str:
    """``spec`` with ``auto`` replaced by what runs: ``openvino`` (in the model's precision) where the
    openvino extra is installed and the model is on the CPU, else ``torch``. Why OpenVINO: it was the
    fastest runtime in every row of ``benchmarks/inference.py`` and ``benchmarks/serve.py``, and in
    fp32 its answers equal PyTorch's to about 1e-7 (in bf16 both stay within 1e-3 of fp32; see
    docs/serving.md).

    Example:
        >>> concrete_runtime("onnx:int8"), concrete_runtime("auto", device="cuda")
        ('onnx:int8', 'torch')
    """
    if parse_runtime(spec)[0] != AUTO:
        return spec
    if str(device).split(":")[0] != "cpu":
        return "torch"
    try:
        require_runtime("openvino")
    except MissingRuntimeError:
        return "torch"
    return "openvino"


def resolve_runtime(spec: str, model_precision: str = "fp32") -> tuple[str, str]:
    """``(name, precision)`` that will run: an ONNX / OpenVINO runtime without a precision follows the
    model's (``bf16`` -> OpenVINO bf16; ONNX Runtime has no fast bf16 CPU kernels, so fp32).

    Example:
        >>> resolve_runtime("onnx", "bf16"), resolve_runtime("openvino", "fp32")
        (('onnx', 'fp32'), ('openvino', 'fp32'))
    """
    from qubert.precision import bf16_supported, resolve_precision

    name, precision = parse_runtime(concrete_runtime(spec))
    if name == "torch":
        return name, resolve_precision(precision or model_precision, "cpu" if precision else None)
    if precision is None:
        precision = "bf16" if name == "openvino" and model_precision == "bf16" and bf16_supported("cpu") else "fp32"
    if precision == "bf16" and not bf16_supported("cpu"):
        raise RuntimeOptionError("runtime openvino:bf16 needs a CPU with AVX512-BF16 or AMX; use openvino:fp32")
    return name, precision


def runtime_tag(model: "QubertForSequenceClassification", *, bottom: bool = False) -> str:
    """What computes the model's pooled features (``bottom=True``: its ``top<k>`` bottom-layer
    states), for cache keys: the torch precision (``fp32``, ``bf16``, ...: the keys torch always
    had) or ``<runtime>-<precision>`` (``openvino-bf16``).

    Example:
        >>> class M: config = type("C", (), {"precision": "fp32"})(); inference_runtime = None
        >>> runtime_tag(M()), runtime_tag(M(), bottom=True)
        ('fp32', 'fp32')
    """
    runtime = getattr(model, "bottom_runtime" if bottom else "inference_runtime", None)
    if bottom and runtime is not None and runtime.top_k != model.trainable_layers:
        runtime = None  # exported for another k: encode_bottom runs in torch (see there)
    if runtime is not None:
        return runtime.tag
    return getattr(model.config, "precision", "fp32")


class _EncoderWithPooling(torch.nn.Module):
    """encoder -> pooling of a qubert model, in float32: the graph the runtimes run."""

    def __init__(self, model: "QubertForSequenceClassification") -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        outputs = self.model.encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return self.model.pool(outputs.last_hidden_state, attention_mask, getattr(outputs, "pooler_output", None))


class _BottomLayers(torch.nn.Module):
    """embeddings -> the fixed bottom layers of a ``top<k>`` model, in float32: the bottom graph."""

    def __init__(self, model: "QubertForSequenceClassification") -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.bottom_layers(input_ids, attention_mask)


def onnx_export(module: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path, *, input_names: tuple[str, ...], output_names: tuple[str, ...]) -> None:
    """``torch.onnx.export`` (the dynamo exporter: the TorchScript one bakes transformers' attention
    mask shapes into the graph) with dynamic batch and sequence axes on every token input, into one
    self-contained file."""
    require_runtime("export")
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dynamic = {name: {0: batch, 1: sequence} for name in input_names}
    import io
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad(), _quiet_logging():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, example, input_names=list(input_names), output_names=list(output_names), dynamic_shapes=dynamic,
            opset_version=OPSET, dynamo=True, verbose=False,
        )
        program.save(str(path), external_data=False)


@contextlib.contextmanager
def _quiet_logging():
    """Silence the exporter's and the quantizer's log lines (torchvision ops it skips, advice to
    pre-process) for the duration; a failure still raises."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def example_inputs(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask to trace an export with: two rows of different lengths (so the
    mask has zeros) and more than one of each axis, which the exporter needs to keep both dynamic.

    Example:
        >>> [t.shape for t in example_inputs(30522)]
        [torch.Size([2, 5]), torch.Size([2, 5])]
    """
    ids = torch.tensor([[101, 2000, 2001, 2002, 102], [101, 2003, 102, 0, 0]]) % max(vocab_size, 2)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    return ids, mask


def export_encoder(model: "QubertForSequenceClassification", path: str | os.PathLike[str]) -> Path:
    """Write the model's encoder + pooling as an ONNX graph ``(input_ids, attention_mask) -> features``
    with dynamic batch and sequence axes (float32). Token type ids are left at the encoder's default
    (all zeros), which is what a single text per row gets.

    Example:
        >>> export_encoder(model, "encoder.onnx")  # doctest: +SKIP
        PosixPath('encoder.onnx')
    """
    return _export_part(model, _EncoderWithPooling(model), path, "features")


def export_bottom(model: "QubertForSequenceClassification", path: str | os.PathLike[str]) -> Path:
    """Write the fixed bottom of a ``top<k>`` model (embeddings, ELECTRA's projection, the bottom
    ``L - k`` layers) as an ONNX graph ``(input_ids, attention_mask) -> hidden (B, T, hidden)``:
    what :meth:`~qubert.modeling.QubertForSequenceClassification.encode_bottom` computes, in float32.

    Example:
        >>> export_bottom(model, "bottom-top2.onnx")  # doctest: +SKIP
        PosixPath('bottom-top2.onnx')
    """
    if not model.trainable_layers:
        raise RuntimeOptionError(f"only a top<k> model has fixed bottom layers to export; this one is {model.config.mode!r}")
    model._split()  # an encoder family that cannot be split fails here, in one line, not inside the exporter
    return _export_part(model, _BottomLayers(model), path, "hidden")


def _export_part(model: "QubertForSequenceClassification", wrapper: torch.nn.Module, path: str | os.PathLike[str], output: str) -> Path:
    """Export ``wrapper`` (a part of ``model``) in eval mode (no dropout), restoring the model's mode."""
    path = Path(path)
    was_training = model.training
    model.eval()
    try:
        ids, mask = example_inputs(model.config.encoder.vocab_size)
        onnx_export(wrapper.eval(), (ids, mask), path, input_names=INPUT_NAMES, output_names=(output,))
    finally:
        model.train(was_training)
    return path


def _export_key(model: "QubertForSequenceClassification", encoder_id: str) -> str:
    parts = [_EXPORT_VERSION, encoder_id, model.config.pooling, str(OPSET), torch.__version__.split("+")[0]]
    return f"{encoder_id}-{model.config.pooling}-{hashlib.sha256('|'.join(parts).encode()).hexdigest()[:12]}"


def cached_encoder_graph(model: "QubertForSequenceClassification", precision: str = "fp32", *, cache_dir: str | os.PathLike[str] | None = None,
                         encoder_id: str | None = None, progress: bool = True) -> Path:
    """The exported encoder graph for ``model`` (``encoder.onnx``, or ``encoder-int8.onnx`` for
    ``precision="int8"``) from the cache, exporting (and quantizing) it on a miss.

    Files are written to a temporary name and renamed, under an inter-process lock, so a second
    process waits for the first one's export and a crash never leaves half a graph behind.
    """
    return _cached_graph(model, "encoder", "the encoder", lambda tmp: export_encoder(model, tmp), precision,
                         cache_dir=cache_dir, encoder_id=encoder_id, progress=progress)


def cached_bottom_graph(model: "QubertForSequenceClassification", precision: str = "fp32", *, cache_dir: str | os.PathLike[str] | None = None,
                        encoder_id: str | None = None, progress: bool = True) -> Path:
    """The exported bottom graph of a ``top<k>`` model (``bottom-top<k>.onnx``, or
    ``bottom-top<k>-int8.onnx``; :func:`export_bottom`) from the cache, next to its encoder graph,
    exported (and quantized) on a miss under the same lock as :func:`cached_encoder_graph`.

    Example:
        >>> cached_bottom_graph(model, cache_dir="cache").name  # a top2 model  # doctest: +SKIP
        'bottom-top2.onnx'
    """
    k = model.trainable_layers
    if not k:
        raise RuntimeOptionError(f"only a top<k> model has fixed bottom layers to export; this one is {model.config.mode!r}")
    return _cached_graph(model, f"bottom-top{k}", f"the bottom layers (all but the top {k})", lambda tmp: export_bottom(model, tmp), precision,
                         cache_dir=cache_dir, encoder_id=encoder_id, progress=progress)


def _cached_graph(model: "QubertForSequenceClassification", stem: str, what: str, export, precision: str, *,
                  cache_dir: str | os.PathLike[str] | None, encoder_id: str | None, progress: bool) -> Path:
    """``<cache_dir>/onnx/<key>/<stem>.onnx`` (``<stem>-int8.onnx`` for int8), written by
    ``export(path)`` (and quantized) on a miss; see :func:`cached_encoder_graph`."""
    from qubert.embeddings import default_cache_dir
    from qubert.files import atomic_path, exclusive_lock
    from qubert.modeling import encoder_identity

    encoder_id = encoder_id or encoder_identity(model.encoder)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = folder / "onnx" / _export_key(model, encoder_id)
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / f"{stem}.onnx"
    target = folder / (f"{stem}-int8.onnx" if precision == "int8" else f"{stem}.onnx")
    with exclusive_lock(folder / ".export.lock"):
        if not fp32.is_file():
            _say(progress, f"Exporting {what} to ONNX ({fp32}) ...")
            with atomic_path(fp32) as tmp:
                export(tmp)
        if precision == "int8" and not target.is_file():
            require_runtime("onnx")
            from onnxruntime.quantization import QuantType, quantize_dynamic

            _say(progress, f"Quantizing {what} to int8 ({target}) ...")
            with _quiet_logging(), atomic_path(target) as tmp:
                quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8)
    return target


def _say(progress: bool, message: str) -> None:
    if progress:
        import sys

        print(message, file=sys.stderr, flush=True)


class EncoderRuntime:
    """A compiled encoder + pooling graph in ONNX Runtime or OpenVINO: token ids in, pooled
    float32 features out (a callable like :meth:`~qubert.modeling.QubertForSequenceClassification.encode`);
    or, with ``top_k``, a ``top<k>`` model's bottom graph: token ids in, float32 hidden states
    ``(B, T, hidden)`` out (like :meth:`~qubert.modeling.QubertForSequenceClassification.encode_bottom`).

    Args:
        path: the ONNX file (from :func:`cached_encoder_graph` / :func:`export_encoder`, or
            :func:`cached_bottom_graph` / :func:`export_bottom`).
        runtime: ``onnx`` or ``openvino``.
        precision: ``fp32`` / ``int8`` (onnx), ``fp32`` / ``bf16`` (openvino).
        threads: intra-op threads (default: torch's, so peers compare fairly).
        top_k: the k of the ``top<k>`` model whose bottom graph ``path`` is (None: encoder + pooling).

    Example:
        >>> runtime = EncoderRuntime("encoder.onnx", "openvino", "bf16")  # doctest: +SKIP
        >>> runtime(input_ids, attention_mask).shape  # doctest: +SKIP
        torch.Size([2, 384])
    """

    def __init__(self, path: str | os.PathLike[str], runtime: str, precision: str = "fp32", *, threads: int | None = None,
                 top_k: int | None = None) -> None:
        if runtime not in _RUNTIME_PRECISIONS:
            raise RuntimeOptionError(f"EncoderRuntime runs onnx or openvino, not {runtime!r}")
        if precision not in _RUNTIME_PRECISIONS[runtime]:
            raise RuntimeOptionError(f"runtime {runtime} has no precision {precision!r}; expected one of {', '.join(_RUNTIME_PRECISIONS[runtime])}")
        self.path, self.runtime, self.precision, self.top_k = Path(path), runtime, precision, top_k
        self.threads = int(threads or torch.get_num_threads())
        start = time.perf_counter()
        self._run = self._load_onnxruntime() if runtime == "onnx" else self._load_openvino()
        self.load_seconds = time.perf_counter() - start

    @property
    def tag(self) -> str:
        return f"{self.runtime}-{self.precision}"

    def _load_onnxruntime(self):
        ort = require_runtime("onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        return lambda feeds: session.run(None, {k: feeds[k] for k in names})[0]

    def _load_openvino(self):
        ov = require_runtime("openvino")
        core = ov.Core()
        # The CPU plugin picks bf16 by itself on CPUs that have it: fp32 must be asked for.
        config = {"INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32", "INFERENCE_NUM_THREADS": self.threads,
                  "PERFORMANCE_HINT": "LATENCY"}
        compiled = core.compile_model(core.read_model(str(self.path)), "CPU", config)
        request = compiled.create_infer_request()
        names = [port.get_any_name() for port in compiled.inputs]

        def run(feeds):
            request.infer({k: feeds[k] for k in names})
            return request.get_output_tensor(0).data.copy()

        return run

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if token_type_ids is not None and bool(token_type_ids.any()):
            raise RuntimeOptionError("the exported encoder takes single texts (token_type_ids all 0); run text pairs with --runtime torch")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        feeds = {"input_ids": input_ids.detach().cpu().long().numpy(), "attention_mask": attention_mask.detach().cpu().long().numpy()}
        return torch.from_numpy(self._run(feeds)).float().to(input_ids.device)

    def __repr__(self) -> str:
        bottom = f", top_k={self.top_k}" if self.top_k is not None else ""
        return f"EncoderRuntime({str(self.path)!r}, runtime={self.runtime!r}, precision={self.precision!r}{bottom})"


def use_runtime(model: "QubertForSequenceClassification", runtime: str = "torch", *, cache_dir: str | os.PathLike[str] | None = None,
                encoder_id: str | None = None, threads: int | None = None, progress: bool = True) -> str:
    """Run ``model``'s non-training encoder passes in ``runtime`` (``torch`` detaches any runtime).

    Only for an encoder whose weights no longer change: a loaded model, or a frozen one (a ``top<k>``
    model in training takes :func:`use_bottom_runtime` instead). The model's
    :meth:`~qubert.modeling.QubertForSequenceClassification.encode` uses the runtime whenever the
    encoder is not training; training a top-k / full encoder always runs in PyTorch.

    Returns:
        The runtime tag now in use (``fp32``, ``bf16``, ``onnx-fp32``, ``openvino-bf16``, ...).

    Raises:
        RuntimeOptionError: unknown runtime or precision, a model on a GPU (the runtimes here run on the CPU).
        MissingRuntimeError: the runtime is not installed (the message names the extra).
    """
    runtime = concrete_runtime(runtime, next(model.parameters()).device.type)
    if parse_runtime(runtime) == ("torch", None):  # PyTorch in the precision the model has
        model.inference_runtime = None
        return runtime_tag(model)
    name, precision = resolve_runtime(runtime, getattr(model.config, "precision", "fp32"))
    if name == "torch":
        model.inference_runtime = None
        model.config.precision = precision
        return runtime_tag(model)
    _check_cpu(model, name)
    path = cached_encoder_graph(model, precision if precision == "int8" else "fp32", cache_dir=cache_dir, encoder_id=encoder_id, progress=progress)
    model.inference_runtime = EncoderRuntime(path, name, precision, threads=threads)
    return runtime_tag(model)


def _check_cpu(model: "QubertForSequenceClassification", name: str) -> None:
    require_runtime(name)
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise RuntimeOptionError(f"runtime {name} runs on the CPU; the model is on {device} (use --runtime torch there)")


def use_bottom_runtime(model: "QubertForSequenceClassification", runtime: str = "torch", *, cache_dir: str | os.PathLike[str] | None = None,
                       encoder_id: str | None = None, threads: int | None = None, progress: bool = True) -> str:
    """Compute a ``top<k>`` model's fixed bottom layers (:meth:`~qubert.modeling.QubertForSequenceClassification.encode_bottom`,
    so the :mod:`qubert.layer_cache` states) in ``runtime``; ``torch`` detaches it. The top layers keep
    training in PyTorch: only the bottom, which never changes, is exported (``bottom-top<k>.onnx``).

    The runtime is a plain attribute (``model.bottom_runtime``), not a module: ``save_pretrained``
    and the weights never see it. A runtime without a precision follows the model's, as in
    :func:`use_runtime` (a bf16 model -> OpenVINO bf16).

    Returns:
        The tag the bottom-layer states are now computed in (``fp32``, ``bf16``, ``onnx-fp32``,
        ``openvino-bf16``, ...): part of the hidden-state cache key.

    Raises:
        RuntimeOptionError: unknown runtime or precision, a model that is not ``top<k>``, a model
            on a GPU, ``torch:<precision>`` other than the model's (use ``--precision``).
        MissingRuntimeError: the runtime is not installed (the message names the extra).

    Example:
        >>> use_bottom_runtime(model, "openvino:bf16", cache_dir="cache")  # a top2 model  # doctest: +SKIP
        'openvino-bf16'
        >>> cached_hidden_states(model, tokenizer, texts, fingerprint=fp, split="train")  # doctest: +SKIP
    """
    model_precision = getattr(model.config, "precision", "fp32")
    runtime = concrete_runtime(runtime, next(model.parameters()).device.type)
    name = parse_runtime(runtime)[0]
    if name == "torch":
        if resolve_runtime(runtime, model_precision)[1] != model_precision:
            raise RuntimeOptionError(f"runtime {runtime}: the bottom layers run in the model's precision ({model_precision}) under torch; set it with --precision")
        model.bottom_runtime = None
        return runtime_tag(model, bottom=True)
    if not model.trainable_layers:
        raise RuntimeOptionError(f"only a top<k> model has fixed bottom layers to run in {name}; this one is {model.config.mode!r}")
    name, precision = resolve_runtime(runtime, model_precision)
    _check_cpu(model, name)
    path = cached_bottom_graph(model, precision if precision == "int8" else "fp32", cache_dir=cache_dir, encoder_id=encoder_id, progress=progress)
    model.bottom_runtime = EncoderRuntime(path, name, precision, threads=threads, top_k=model.trainable_layers)
    return runtime_tag(model, bottom=True)
