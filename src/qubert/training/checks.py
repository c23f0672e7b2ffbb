"""Everything a run refuses before any work: :func:`check_run` (options, tracker, register
memory, encoder and ``max_length``), checkpoint and model folders holding pickles.

Each refusal is one line (a :class:`~qubert.training.TrainingConfigError`,
:class:`~qubert.modeling.ModelConfigError` or :class:`~qubert.training.RunDirectoryError`).

Example:
    >>> looks_like_path("./encoders/mini"), looks_like_path("org/model")
    (True, False)
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from qubert.data.hub import hub_unreachable_reason
from qubert.training.config import is_int, TrainingConfig
from qubert.training.errors import RunDirectoryError, TrainingConfigError
from qubert.training.rundir import say


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def check_no_pickles(folder: str | os.PathLike[str]) -> None:
    """Refuse a model folder that holds pickle files (``pytorch_model.bin``, ``*.pt``, ``*.pkl``, ...).

    qubert saves and loads safetensors only: unpickling a file can run arbitrary code, so a folder
    with pickles is refused rather than trusted, even where a loader would skip them.

    Example:
        >>> check_no_pickles("runs/sst2-quantum-frozen-s42/model")  # doctest: +SKIP
    """
    from qubert.modeling import ModelConfigError

    pickles = sorted(p.name for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise ModelConfigError(
            f"{folder} holds pickle files ({', '.join(pickles)}): qubert does not load pickle files, since "
            "unpickling can run arbitrary code; keep the weights as model.safetensors and remove the pickles"
        )


def check_run(config: TrainingConfig) -> None:
    """Refuse a run that cannot work, before any data is read or anything written.

    Checks the options (:meth:`TrainingConfig.validate`), that the ``report_to`` tracker is
    installed, that a quantum register fits in memory for the train and the eval batch, and the
    encoder (a missing folder, an unreachable Hub, ``max_length`` above its positions).
    """
    config.validate()
    from qubert.tracking import check_tracker

    check_tracker(config.report_to)
    from qubert.heads import HEAD_REGISTRY, check_head_memory

    if HEAD_REGISTRY[config.head].quantum:

        circuit, device = config.circuit(), "cuda" if torch.cuda.is_available() else "cpu"
        for size in (config.resolved_batch_size, config.resolved_eval_batch_size):
            check_head_memory(circuit, size, config.strategy, device=device)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    check_encoder(config)


def check_checkpoint_pickles(checkpoint: Path) -> None:
    """Refuse, before any work, a checkpoint whose trainer state is not plain tensors.

    The Trainer reloads optimizer, scheduler and RNG state with ``torch.load(weights_only=True)``
    (plus a few numpy types), which stops at anything else (a crafted pickle could run code) with
    a multi-line traceback. ``training_args.bin`` is never read back, so it is not opened here.
    """
    import warnings

    from transformers.trainer_pt_utils import safe_globals  # the numpy types the Trainer allows in rng_state.pth

    for path in sorted(checkpoint.iterdir()):
        if path.suffix.lower() not in PICKLE_SUFFIXES or path.name == "training_args.bin":
            continue
        try:
            with warnings.catch_warnings(), safe_globals():
                warnings.simplefilter("ignore")  # torch warns about pickle protocols first
                torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise RunDirectoryError(
                f"cannot resume from {checkpoint}: {path.name} holds pickled objects other than tensors, and qubert does "
                "not unpickle those (unpickling can run arbitrary code); delete the checkpoint or use another --output-dir"
            ) from None
        except Exception as err:  # a truncated or corrupted file
            raise RunDirectoryError(f"cannot resume from {checkpoint}: {path.name} is unreadable ({first_line(err)}); delete the checkpoint") from None


def first_line(err: BaseException) -> str:
    """The first non-empty line of an error's message (its type name when empty)."""
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)


def check_encoder(config: TrainingConfig) -> None:
    """Read the encoder's config (small, local or cached) and check ``max_length`` against it.

    A name that is neither a folder nor reachable is refused at once, instead of after the Hub
    client's retries; a path-like name that does not exist is "no such folder", not a bad repo id.
    """
    from transformers import AutoConfig

    from qubert.modeling import ModelConfigError, resolve_model_path

    name = resolve_model_path(config.model)
    local = Path(name).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelConfigError(f"--model {name}: is a file; pass a model folder or a Hugging Face Hub name")
    elif looks_like_path(name):
        raise ModelConfigError(f"--model {name}: no such folder")
    elif not in_hub_cache(name):
        offline = hub_unreachable_reason("models", timeout=1.0)
        if offline is not None:
            raise ModelConfigError(f"{name} is not a local folder, and the Hugging Face Hub is unreachable ({offline})")
    try:
        encoder_config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise ModelConfigError(f"cannot load encoder {config.model!r}: {first_line(err)}") from None
    limit = position_limit(encoder_config)
    if limit is not None and config.max_length > limit:
        raise TrainingConfigError(
            f"max_length {config.max_length} is above the encoder's limit of {limit} tokens "
            f"(max_position_embeddings in {name}/config.json); use --max-length {limit} or less"
        )


def looks_like_path(name: str) -> bool:
    """``./enc``, ``~/m``, ``/abs/m``, ``a/b/c``: a folder, never a Hub id (``org/name``)."""
    seps = {os.sep, os.altsep or os.sep}
    return name.startswith((".", "~", *seps)) or any(sep != "/" and sep in name for sep in seps) or name.count("/") > 1


def in_hub_cache(name: str) -> bool:
    """Whether the Hub model ``name`` is in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # an invalid repo id: certainly not cached
        return False


def position_limit(encoder_config) -> int | None:
    """Tokens the encoder can position: ``max_position_embeddings``, less RoBERTa-style padding offsets."""
    limit = getattr(encoder_config, "max_position_embeddings", None)
    if not is_int(limit):
        return None
    model_type = str(getattr(encoder_config, "model_type", ""))
    if "roberta" in model_type or model_type in ("camembert", "longformer", "mpnet"):
        limit -= int(getattr(encoder_config, "pad_token_id", 1) or 1) + 1  # positions start after the padding index
    return limit


def warn_batch_size(config: TrainingConfig, rows: int) -> None:
    """Warn when a ``batch_size`` given is above the training rows (each epoch is then one batch).

    The option is kept as given: the data loader makes the same single batch either way, and the
    run's config.yaml stays reusable (``--config`` of it resumes or seeds new runs).
    """
    if config.batch_size is not None and config.batch_size > rows:
        say(f"[yellow]Warning: batch_size {config.batch_size} is more than the {rows} training rows; every epoch is one batch of {rows}.[/yellow]")
