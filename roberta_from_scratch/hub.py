"""The Hugging Face Hub and its file layout: whether the Hub can be reached, fetching from it, and reading and
writing models as transformers does (config.json + model.safetensors with transformers' parameter names).

Everything the course does offline has a Hub twin (WikiText-103, SST-2, the official roberta-base weights). This
module decides quickly whether the Hub is usable, so that offline a request fails at once with one line that says
what to use instead, rather than after the Hub client's retries with a traceback from deep inside it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

logger = logging.getLogger("roberta_from_scratch")

OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


class OfflineError(ConnectionError):
    """Something from the Hub was asked for and the Hub cannot be used."""


def offline_switch() -> str | None:
    """The offline variable that is set (``HF_HUB_OFFLINE=1``), or None."""
    for var in OFFLINE_SWITCHES:
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{var}={os.environ[var]}"
    return None


def unreachable_reason() -> str | None:
    """Why the Hub cannot be used now, or None when it can: an offline switch, else one quick connection attempt."""
    switch = offline_switch()
    if switch:
        return f"{switch} is set"
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        return f"cannot connect to {host}: {exc.strerror or exc}"
    return None


def looks_like_hub_id(name_or_path) -> bool:
    """'FacebookAI/roberta-base' or 'roberta-base' (and nothing on disk by that name), not a local path."""
    text = str(name_or_path)
    return not Path(text).exists() and not text.startswith((".", "/", "~")) and text.count("/") <= 1


def download(repo_id: str, filenames: list[str], offline_hint: str) -> dict[str, Path]:
    """Fetch files of a Hub model repository (or find them in the local Hub cache when an offline switch is set).

    ``offline_hint`` completes the one-line error: what to use instead when the Hub cannot be used.
    """
    from huggingface_hub import hf_hub_download

    reason = unreachable_reason()
    message = f"{repo_id!r} is on the Hugging Face Hub, which cannot be used here ({reason}); {offline_hint}"
    if reason is not None and offline_switch() is None:
        raise OfflineError(message)  # no network: fail now, not after the client's retries
    try:
        return {name: Path(hf_hub_download(repo_id, name)) for name in filenames}
    except Exception:
        if reason is None:
            raise
        raise OfflineError(message) from None


# ------------------------------------------------------------------------------------- transformers' file layout

CONFIG_FILE, SAFETENSORS_FILE, PYTORCH_FILE = "config.json", "model.safetensors", "pytorch_model.bin"

# Our parameter names and transformers' (RobertaForMaskedLM / RobertaForSequenceClassification), one pair per line;
# {n} is a layer number, {qkv} one of query/key/value. Anything not listed has the same name in both.
_NAME_PAIRS = [
    ("embeddings.norm.", "embeddings.LayerNorm."),
    ("layers.{n}.attention.{qkv}.", "encoder.layer.{n}.attention.self.{qkv}."),
    ("layers.{n}.attention.output.", "encoder.layer.{n}.attention.output.dense."),
    ("layers.{n}.attention_norm.", "encoder.layer.{n}.attention.output.LayerNorm."),
    ("layers.{n}.ffn_in.", "encoder.layer.{n}.intermediate.dense."),
    ("layers.{n}.ffn_out.", "encoder.layer.{n}.output.dense."),
    ("layers.{n}.ffn_norm.", "encoder.layer.{n}.output.LayerNorm."),
]


def _rule(source: str, target: str) -> tuple[str, str]:
    pattern = "^(roberta\\.)?" + re.escape(source).replace(re.escape("{n}"), r"(?P<n>\d+)").replace(
        re.escape("{qkv}"), r"(?P<qkv>query|key|value)")
    return pattern, r"\1" + target.replace("{n}", r"\g<n>").replace("{qkv}", r"\g<qkv>")


_OURS_TO_HF = [_rule(ours, theirs) for ours, theirs in _NAME_PAIRS]
_HF_TO_OURS = [_rule(theirs, ours) for ours, theirs in _NAME_PAIRS]
# Keys a transformers checkpoint may carry that we do not use, and that are no cause for a message: the pooler
# (our heads do not use it), the decoder's copies of tied tensors, buffers, and fairseq-era leftovers.
_IGNORED = re.compile(r"(^|\.)pooler\.|^lm_head\.decoder\.(weight|bias)$|position_ids$|token_type_ids$|"
                      r"^(roberta\.)?embeddings\.position_ids")


# The task heads on top of the encoder: a checkpoint of another task (or of the bare encoder) lacks them, and they
# start from random weights; every other tensor must be in the file.
HEAD_PREFIXES = ("lm_head.", "classifier.", "qa_outputs.")
# The layer with one output per label: out_proj in the sequence classifier, the whole (one-layer) token classifier.
_LABEL_LAYER = re.compile(r"^classifier\.(out_proj\.)?(weight|bias)$")


def _rename(key: str, rules) -> str:
    for pattern, replacement in rules:
        new, n = re.subn(pattern, replacement, key)
        if n:
            return new
    return key


def to_hf_state_dict(model, state_dict: dict | None = None) -> dict:
    """Our state dict (or ``state_dict``, the same keys) with transformers' key names (tied decoder weight left
    out, as transformers does) and shapes: a padded vocabulary (``pad_vocabulary``) cut to its real rows."""
    from .model import fit_vocabulary

    vocab = model.config.vocab_size
    return {_rename(k, _OURS_TO_HF): fit_vocabulary(k, v, vocab, vocab)
            for k, v in (model.state_dict() if state_dict is None else state_dict).items()}


def read_state_dict(path: Path) -> dict:
    """Tensors from a safetensors file, or from a .bin with ``torch.load(weights_only=True)`` (no pickled code)."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or not a checkpoint at all
        raise ValueError(f"{path}: cannot be read as a checkpoint ({type(exc).__name__}: {exc}); the file may be "
                         "truncated or corrupt: download or save it again") from None


@dataclass
class LoadReport:
    """What loading found: keys the model wanted but the file lacked (newly initialised) and keys it did not use."""

    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"newly initialised (not in the checkpoint): {_summarise(self.missing)}")
        if self.unused:
            parts.append(f"in the checkpoint but not used: {_summarise(self.unused)}")
        return "; ".join(parts) or "all weights loaded"


def _summarise(keys: list[str]) -> str:
    prefixes = sorted({".".join(k.split(".")[:2]) for k in keys})
    return ", ".join(prefixes) if len(keys) > 6 else ", ".join(keys)


def load_state_dict_into(model, state: dict) -> LoadReport:
    """Copy a transformers-named (or our-named) state dict into ``model``. Shape mismatches are an error that lists
    them all; missing and unused keys are reported (``model.load_report``), as transformers does."""
    import torch

    ours = model.state_dict()
    has_prefix = any(k.startswith("roberta.") for k in ours)
    renamed = {}
    for key, tensor in state.items():
        if _IGNORED.search(key):
            continue
        new = _rename(re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias",
                                                                                key)), _HF_TO_OURS)  # old TF names
        if has_prefix and not new.startswith(("roberta.", *HEAD_PREFIXES)):
            new = "roberta." + new  # a bare RobertaModel checkpoint into a model with a head
        elif not has_prefix and new.startswith("roberta."):
            new = new[len("roberta."):]  # a checkpoint with a head into a bare RobertaModel
        renamed[new] = tensor
    from .model import VOCAB_TENSOR, fit_vocabulary

    vocab = model.config.vocab_size
    renamed = {k: fit_vocabulary(k, v, ours[k].size(0), vocab)
               if k in ours and VOCAB_TENSOR.search(k) and v.dim() and v.size(0) < ours[k].size(0) else v
               for k, v in renamed.items()}  # the file's real rows into a padded vocabulary (never cut on loading)
    mismatched = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(ours[k].shape)}"
                  for k, v in renamed.items() if k in ours and tuple(v.shape) != tuple(ours[k].shape)]
    if mismatched:
        shown = mismatched[:12] + ([f"... and {len(mismatched) - 12} more"] if len(mismatched) > 12 else [])
        raise ValueError(f"the checkpoint does not fit this model's shapes (is the config right?), "
                         f"{len(mismatched)} tensors:\n  " + "\n  ".join(shown))
    report = LoadReport(missing=sorted(k for k in ours if k not in renamed),
                        unused=sorted(k for k in renamed if k not in ours))
    from .distributed import like

    with torch.no_grad():
        for key, tensor in renamed.items():
            if key in ours:
                ours[key].copy_(like(ours[key], tensor))  # sharded like the parameter under FSDP
    return report


def load_pretrained(cls, name_or_path, new_head: bool = False, **config_overrides):
    """Build ``cls`` from a directory or Hub model with config.json + model.safetensors (or pytorch_model.bin)."""
    from .config import RobertaConfig, read_config_file

    path = Path(name_or_path)
    if path.is_dir():
        config_path = path / CONFIG_FILE
        weights = path / SAFETENSORS_FILE if (path / SAFETENSORS_FILE).is_file() else path / PYTORCH_FILE
        if not config_path.is_file() or not weights.is_file():
            missing = CONFIG_FILE if not config_path.is_file() else f"{SAFETENSORS_FILE} (or {PYTORCH_FILE})"
            raise FileNotFoundError(f"{path}: {missing} is missing; save a model with .save_pretrained(directory)")
    elif not looks_like_hub_id(name_or_path):
        raise FileNotFoundError(f"{name_or_path}: not a model directory (config.json + model.safetensors), nor a "
                                "Hub model id such as 'FacebookAI/roberta-base'")
    else:
        files = download(str(name_or_path), [CONFIG_FILE, SAFETENSORS_FILE],
                         "offline, build a model from a RobertaConfig or load a saved directory")
        config_path, weights = files[CONFIG_FILE], files[SAFETENSORS_FILE]
    saved = read_config_file(config_path)
    if "num_labels" in config_overrides and "id2label" not in config_overrides and \
            len(saved.get("id2label") or {}) != config_overrides["num_labels"]:
        saved.pop("id2label", None)  # a new head of another size: the saved names describe the old one
        saved.pop("label2id", None)
    config = RobertaConfig.from_dict({**saved, **config_overrides})
    check_architecture(RobertaConfig.from_dict(saved), config, config_path)
    model = cls(config)
    state = read_state_dict(weights)
    if "num_labels" in config_overrides:  # a new head of another size: the old head's last layer does not apply
        projection = {k: v for k, v in state.items() if _LABEL_LAYER.match(k)}
        if any(v.shape[0] != config.num_labels for v in projection.values()):
            state = {k: v for k, v in state.items() if k not in projection}
    report = model.load_report = load_state_dict_into(model, state)
    encoder = [k for k in report.missing if not k.startswith(HEAD_PREFIXES)]
    if encoder:
        wanted = sum(1 for k in model.state_dict() if not k.startswith(HEAD_PREFIXES))
        raise ValueError(f"{weights}: {len(encoder)} of the encoder's {wanted} tensors are not in the file "
                         f"({_summarise(encoder)}), so they would stay random: is it a RoBERTa checkpoint? To start "
                         f"from random weights, build {cls.__name__}(config) instead")
    if report.missing and not new_head and not {"num_labels", "id2label"} & set(config_overrides):
        # A head the checkpoint lacks (an encoder or MLM checkpoint loaded for classification) starts random, as in
        # transformers; asking for num_labels or id2label (or new_head=True) says a new head is meant, and then no
        # warning is due.
        logger.warning("%s from %s: %s. Train the new head before using its outputs.", cls.__name__, name_or_path,
                       report)
    elif report.missing or report.unused:
        logger.info("%s from %s: %s", cls.__name__, name_or_path, report)
    return model.eval()


def check_architecture(saved, wanted, source) -> None:
    """Refuse to put weights trained with one architecture (``saved``, a RobertaConfig) into a model of another
    (``wanted``): pre-LN weights in a post-LN layer have the same names and shapes, and would load without a word."""
    differences = [f"{name}: the checkpoint has {value!r}, the model {getattr(wanted, name)!r}"
                   for name, value in saved.architecture().items() if getattr(wanted, name) != value]
    if differences:
        raise ValueError(f"{source}: the weights were trained for another architecture ({'; '.join(differences)}); "
                         "they would compute something else in this model. Load them without overriding these "
                         "settings (the file's config.json sets them), or train a new model")


def save_pretrained(model, directory, state_dict: dict | None = None) -> Path:
    """config.json (with ``architectures``) and model.safetensors in transformers' layout, each written atomically.
    ``state_dict``: the tensors to write instead of the model's own (whole tensors gathered from a sharded run)."""
    from safetensors.torch import save_file

    from .files import atomic_write

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {**model.config.to_dict(), "architectures": [type(model).__name__]}
    span_head = getattr(model, "qa_outputs", None)
    if span_head is not None and model.config.num_labels != span_head.out_features:
        # transformers sizes its question-answering layer with num_labels: write the size the layer has, so that
        # its RobertaForQuestionAnswering reads the file (our head is 2 outputs whatever the config says).
        config.update(num_labels=span_head.out_features,
                      id2label={str(i): f"LABEL_{i}" for i in range(span_head.out_features)},
                      label2id={f"LABEL_{i}": i for i in range(span_head.out_features)})
    atomic_write(directory / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    tensors = {k: v.detach().contiguous().cpu() for k, v in to_hf_state_dict(model, state_dict).items()}
    atomic_write(directory / SAFETENSORS_FILE, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    return directory
