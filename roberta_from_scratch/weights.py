"""Weights in files, as transformers reads and writes them (notebook 03): config.json + model.safetensors with
transformers' parameter names, the mapping between their names and ours, loading with a report of what was missing
or unused, and the padding of the vocabulary's rows (notebook 08), which files never hold.

The model (``from_pretrained``, ``save_pretrained``), the checkpoints and the distributed engine all use this one
module, so that a name or a padding rule is written once.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import hub
from .distributed import like

logger = logging.getLogger("roberta_from_scratch")

# The tensors with one row per token of the vocabulary, in our names and in transformers' (the same): the token
# embeddings, which the MLM decoder shares, and the decoder's bias. ``pad_vocabulary`` gives them extra rows.
VOCAB_TENSOR = re.compile(r"(^|\.)(embeddings\.word_embeddings\.weight|lm_head\.bias)$")


def fit_vocabulary(name: str, tensor: torch.Tensor, rows: int, vocab_size: int) -> torch.Tensor:
    """A vocabulary tensor (``VOCAB_TENSOR``) with ``rows`` rows: a padded one (see ``pad_vocabulary``) cut to
    the ``vocab_size`` real rows, or a real one given zero rows up to ``rows``. Any other tensor, or a row count
    that is neither, comes back as it is (a real mismatch, for the caller to report)."""
    have = tensor.size(0) if tensor.dim() else 0
    if have == rows or not VOCAB_TENSOR.search(name):
        return tensor
    if rows == vocab_size < have:
        return tensor[:vocab_size]
    if have == vocab_size < rows:
        return torch.cat([tensor, tensor.new_zeros((rows - have, *tensor.shape[1:]))])
    return tensor



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
    elif not hub.looks_like_hub_id(name_or_path):
        raise FileNotFoundError(f"{name_or_path}: not a model directory (config.json + model.safetensors), nor a "
                                "Hub model id such as 'FacebookAI/roberta-base'")
    else:
        files = hub.download(str(name_or_path), [CONFIG_FILE, SAFETENSORS_FILE],
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
    check_tied_decoder(model, saved, state, weights)
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


def check_tied_decoder(model, saved: dict, state: dict, source) -> None:
    """Our MLM head's decoder *is* the token-embedding matrix (tied). A checkpoint saved with
    ``tie_word_embeddings: false`` may hold a decoder of its own; loading it here would silently put the
    embeddings in its place, so that is refused (for a model without the MLM head the decoder is not used)."""
    if saved.get("tie_word_embeddings", True) or getattr(model, "lm_head", None) is None:
        return
    decoder = state.get("lm_head.decoder.weight")
    embeddings = next((v for k, v in state.items() if re.search(r"(^|\.)embeddings\.word_embeddings\.weight$", k)),
                      None)
    if decoder is None or (embeddings is not None and decoder.shape == embeddings.shape
                           and bool((decoder == embeddings).all())):  # exact: the same matrix saved twice
        return
    raise ValueError(f"{source}: the checkpoint's MLM decoder is its own matrix (tie_word_embeddings: false), while "
                     f"{type(model).__name__} ties its decoder to the token embeddings, so the file's decoder would "
                     "be replaced by the embeddings. Load the encoder with a task head (RobertaModel, "
                     "RobertaForSequenceClassification, ...), or use transformers' RobertaForMaskedLM for this file")


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
