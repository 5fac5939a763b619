"""The model's configuration, with Hugging Face's field names so that ``config.json`` works both ways (notebook 03).

The defaults are roberta-base's (not ``transformers.RobertaConfig()``'s, which are BERT's: 512 positions, two token
types, LayerNorm eps 1e-12). Presets give the sizes the course trains at.

Five architecture switches give the encoders that came after RoBERTa (notebook 11); their defaults are RoBERTa's,
and a config that keeps them writes exactly transformers' ``config.json``. A config that changes one writes the
switches too, under ``model_type`` ``"roberta-variant"``: transformers has no such model and says so, instead of
loading the weights into the wrong architecture.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

# name: (hidden_size, num_hidden_layers, num_attention_heads, intermediate_size)
PRESETS: dict[str, tuple[int, int, int, int]] = {
    "tiny": (128, 2, 2, 512),  # tests, the smoke and the cpu scales
    "mini": (256, 4, 4, 1024),  # the next size up (notebook 05, section 9, times both)
    "small": (512, 4, 8, 2048),  # a free Colab T4 in half an hour
    "base": (768, 12, 12, 3072),  # roberta-base: 124,697,433 parameters with the MLM head
    "large": (1024, 24, 16, 4096),  # roberta-large
}
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu")
# The architecture switches and RoBERTa's value of each (notebook 11). ``norm_position``: "post" (BERT, RoBERTa) or
# "pre" (LayerNorm before each sub-block and once after the last layer); ``bias``: False drops the biases of the
# encoder's linear layers and LayerNorms (the MLM decoder keeps its own); ``feed_forward``: "mlp" or "glu" (the
# gated feed-forward of Shazeer 2020, GeGLU with hidden_act gelu, SwiGLU with silu); ``position_embedding_type``:
# "absolute" (the learned table) or "rotary" (RoPE, Su et al. 2021); ``rope_theta``: RoPE's base.
ARCHITECTURE = {"norm_position": "post", "bias": True, "feed_forward": "mlp", "position_embedding_type": "absolute",
                "rope_theta": 10000.0}
CHOICES = {"norm_position": ("post", "pre"), "feed_forward": ("mlp", "glu"),
           "position_embedding_type": ("absolute", "rotary")}
MODEL_TYPE, VARIANT_MODEL_TYPE = "roberta", "roberta-variant"

IGNORE_INDEX = -100  # the label of positions that carry no loss (transformers' and PyTorch's convention)


@dataclass
class RobertaConfig:
    vocab_size: int = 50265
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"  # exact (erf) GELU, as fairseq and roberta-base use
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 514  # 512 tokens + the padding offset (positions start at pad_token_id + 1)
    type_vocab_size: int = 1  # RoBERTa has no segments; the one row is kept so the official weights load
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2
    classifier_dropout: float | None = None  # None: hidden_dropout_prob
    num_labels: int = 2
    id2label: dict[int, str] | None = field(default=None)
    norm_position: str = "post"
    bias: bool = True
    feed_forward: str = "mlp"
    position_embedding_type: str = "absolute"
    rope_theta: float = 10000.0

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size", "num_labels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}={value!r}: must be a positive integer")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size={self.hidden_size} must be a multiple of "
                             f"num_attention_heads={self.num_attention_heads}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act={self.hidden_act!r}: use one of {', '.join(ACTIVATIONS)}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id={self.pad_token_id} is outside the vocabulary of {self.vocab_size}")
        if self.max_position_embeddings <= self.pad_token_id + 1:
            raise ValueError(f"max_position_embeddings={self.max_position_embeddings} leaves no position after the "
                             f"padding offset {self.pad_token_id + 1}")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}: use one of {', '.join(map(repr, allowed))}"
                                 + (" (transformers' relative_key positions are not built here)"
                                    if name == "position_embedding_type" else ""))
        if not isinstance(self.bias, bool):
            raise ValueError(f"bias={self.bias!r}: must be True or False")
        if not (isinstance(self.rope_theta, (int, float)) and self.rope_theta > 1):
            raise ValueError(f"rope_theta={self.rope_theta!r}: RoPE's base must be a number above 1 (usually 10000)")
        if self.position_embedding_type == "rotary" and self.head_dim % 2:
            raise ValueError(f"rotary positions turn pairs of dimensions: head_dim={self.head_dim} must be even")
        if self.id2label is not None:
            self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
            self.num_labels = len(self.id2label)

    @property
    def max_tokens(self) -> int:
        """The longest sequence the position table allows (512 for 514 rows): positions start after padding."""
        return self.max_position_embeddings - self.pad_token_id - 1

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def architecture(self) -> dict:
        """The switches of ARCHITECTURE and their values here."""
        return {name: getattr(self, name) for name in ARCHITECTURE}

    @property
    def is_variant(self) -> bool:
        """True when a switch differs from RoBERTa's: transformers cannot run this model."""
        return self.architecture() != ARCHITECTURE

    @classmethod
    def from_preset(cls, name: str, **overrides) -> RobertaConfig:
        """``tiny``, ``mini``, ``small``, ``base`` or ``large``; keyword arguments override any field."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}: use one of {', '.join(PRESETS)}")
        hidden, layers, heads, intermediate = PRESETS[name]
        return cls(**{"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
                      "intermediate_size": intermediate, **overrides})

    def to_dict(self) -> dict:
        """A transformers-compatible ``config.json`` dictionary; a variant's has its switches and its own
        model_type."""
        d = dataclasses.asdict(self)
        if not self.is_variant:
            for name in ARCHITECTURE:
                d.pop(name)
        id2label = d.pop("id2label")
        if id2label is not None:
            d["id2label"] = {str(k): v for k, v in id2label.items()}
            d["label2id"] = {v: k for k, v in id2label.items()}
        else:
            d["id2label"] = {str(i): f"LABEL_{i}" for i in range(self.num_labels)}
            d["label2id"] = {f"LABEL_{i}": i for i in range(self.num_labels)}
        return {"model_type": VARIANT_MODEL_TYPE if self.is_variant else MODEL_TYPE, **d}

    @classmethod
    def from_dict(cls, d: dict) -> RobertaConfig:
        """From a ``config.json`` dictionary (ours or transformers'); fields we do not use are ignored."""
        if d.get("model_type", MODEL_TYPE) not in (MODEL_TYPE, "xlm-roberta", VARIANT_MODEL_TYPE):
            raise ValueError(f"config is for model_type={d['model_type']!r}, not 'roberta'")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        id2label = d.get("id2label")
        if id2label and not all(str(v) == f"LABEL_{k}" for k, v in id2label.items()):
            kwargs["id2label"] = id2label
        else:  # default names (LABEL_0, ...) carry only a count; an explicit num_labels wins over it
            kwargs.pop("id2label", None)
            if id2label:
                kwargs.setdefault("num_labels", len(id2label))
        return cls(**kwargs)

    def save(self, directory: str | os.PathLike) -> Path:
        from .files import atomic_write

        return atomic_write(Path(directory) / "config.json", json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> RobertaConfig:
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no config.json (a model directory holds config.json and "
                                    "model.safetensors; write one with save_pretrained)")
        return cls.from_dict(read_config_file(path))


def read_config_file(path: str | os.PathLike) -> dict:
    """A ``config.json`` as a dictionary, or a ValueError naming the file when it is not JSON or not an object."""
    path = Path(path)
    try:
        d = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path}: not valid JSON ({exc}); the file is damaged: save the model again") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: holds a JSON {type(d).__name__}, not an object of settings; the file is damaged "
                         "or is not a model's config.json")
    return d


def glu_intermediate_size(intermediate_size: int) -> int:
    """The width of a gated feed-forward layer with the weights of a plain one of ``intermediate_size``: it has
    three matrices instead of two, so two thirds of the width (Shazeer 2020, arXiv 2002.05202, section 2)."""
    return round(2 * intermediate_size / 3)
