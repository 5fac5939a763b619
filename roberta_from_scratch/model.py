"""The RoBERTa encoder in one file, read top to bottom (notebook 03).

    ids -> embeddings (token + position, LayerNorm, dropout)
        -> N x post-LN layer: x = LN(x + Dropout(Attention(x)));  x = LN(x + Dropout(W2 GELU(W1 x)))
        -> a head: masked-language modelling (dense, GELU, LN, decoder tied to the token embeddings)
                   or classification on <s> (dropout, dense, tanh, dropout, out_proj)
                   or token classification, one label per token (dropout, linear), for tagging
                   or question answering, a start and an end score per token (linear to 2), for extractive spans

The architecture switches of ``RobertaConfig`` (notebook 11) change the layer to pre-LN with a final LayerNorm,
drop the biases, gate the feed-forward layer (GeGLU, SwiGLU) or replace the position table by rotary positions
(``attention.RotaryEmbedding``); with their defaults the model is RoBERTa's.

Liu et al. 2019 (arXiv 1907.11692) kept BERT's architecture (Devlin et al. 2019, arXiv 1810.04805) and changed the
training. The numbers equal transformers' ``RobertaForMaskedLM``, ``RobertaForSequenceClassification``,
``RobertaForTokenClassification`` and ``RobertaForQuestionAnswering`` within 1e-5 in fp32 (tested), and
``from_pretrained``/``save_pretrained`` read and write their files (``weights.py``).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import MultiHeadSelfAttention, RotaryEmbedding
from .config import IGNORE_INDEX, RobertaConfig
from .weights import fit_vocabulary


ACTIVATION = {
    "gelu": F.gelu,  # exact, with erf
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


@dataclass
class ModelOutput:
    """What every model returns. ``hidden_states``: the embeddings' output then each layer's, ``num_layers + 1``
    tensors (batch, seq, hidden). ``attentions``: one (batch, heads, seq, seq) tensor per layer, bertviz's format.
    ``start_logits`` and ``end_logits``: question answering only, (batch, seq) each."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None


# ----------------------------------------------------------------------------------------------- embeddings


def create_position_ids(input_ids: torch.Tensor, padding_idx: int) -> torch.Tensor:
    """Positions as fairseq counts them: real tokens get padding_idx + 1, + 2, ...; padding gets padding_idx.

    With <pad> = 1 a sequence's positions are 2, 3, 4, ... and the table needs 512 + 2 = 514 rows for 512 tokens;
    rows 0 and 1 are never used for real tokens (row 1, the padding row, is kept at zero).
    """
    real = input_ids.ne(padding_idx).int()
    return (torch.cumsum(real, dim=1) * real).long() + padding_idx


class RobertaEmbeddings(nn.Module):
    def __init__(self, config: RobertaConfig):
        super().__init__()
        self.padding_idx = config.pad_token_id
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        # Rotary positions act inside attention: then there is no table to add here.
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size,
                                                padding_idx=config.pad_token_id) \
            if config.position_embedding_type == "absolute" else None
        # One row, added to every token: kept only so that the official weights load one to one.
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, bias=config.bias)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0]
        if self.position_embeddings is not None:
            x = x + self.position_embeddings(create_position_ids(input_ids, self.padding_idx))
        return self.dropout(self.norm(x))


# ----------------------------------------------------------------------------------------------- the layer


class RobertaLayer(nn.Module):
    """Post-LN, as in BERT and RoBERTa: each sub-block's output is added to its input, then normalised. With
    ``norm_position="pre"`` the input of each sub-block is normalised instead and the sum is left alone (Xiong et al.
    2020, arXiv 2002.04745); with ``feed_forward="glu"`` the feed-forward layer is gated."""

    def __init__(self, config: RobertaConfig):
        super().__init__()
        bias, eps = config.bias, config.layer_norm_eps
        rotary = RotaryEmbedding(config.head_dim, config.rope_theta) \
            if config.position_embedding_type == "rotary" else None
        self.attention = MultiHeadSelfAttention(config.hidden_size, config.num_attention_heads,
                                                dropout=config.attention_probs_dropout_prob, bias=bias, rotary=rotary)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=eps, bias=bias)
        self.gated = config.feed_forward == "glu"
        # gated: one matrix gives the value and the gate side by side, activation(gate) * value
        self.ffn_in = nn.Linear(config.hidden_size, config.intermediate_size * (2 if self.gated else 1), bias=bias)
        self.ffn_out = nn.Linear(config.intermediate_size, config.hidden_size, bias=bias)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=eps, bias=bias)
        self.activation = ACTIVATION[config.hidden_act]
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.pre_norm = config.norm_position == "pre"

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ffn_in(x)
        if self.gated:
            value, gate = h.chunk(2, dim=-1)
            return self.ffn_out(value * self.activation(gate))
        return self.ffn_out(self.activation(h))

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None, output_attentions: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.pre_norm:
            attended, weights = self.attention(self.attention_norm(x), attention_mask, output_attentions)
            x = x + self.dropout(attended)
            return x + self.dropout(self.feed_forward(self.ffn_norm(x))), weights
        attended, weights = self.attention(x, attention_mask, output_attentions)
        x = self.attention_norm(x + self.dropout(attended))
        x = self.ffn_norm(x + self.dropout(self.feed_forward(x)))
        return x, weights


# ----------------------------------------------------------------------------------------------- the encoder


class RobertaPreTrainedModel(nn.Module):
    """Initialisation, input checks, and HF-format files, shared by the model classes."""

    config: RobertaConfig

    def init_weights(self) -> None:
        """RoBERTa's initialisation: N(0, 0.02) for linear and embedding weights, zero biases and padding rows,
        LayerNorm weight 1 and bias 0. Tied weights are shared, so they are initialised once."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.padding_idx is not None:
                    with torch.no_grad():
                        module.weight[module.padding_idx].zero_()
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, RobertaLMHead):
                nn.init.zeros_(module.bias)

    def check_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> None:
        """Bad input fails here, with the fix in the message, not deep inside an embedding lookup."""
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
            raise ValueError(f"input_ids must be a (batch, seq) tensor of token ids, got {shape}")
        if input_ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
            raise ValueError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
        if input_ids.numel() == 0:
            raise ValueError(f"input_ids is empty (shape {tuple(input_ids.shape)}): give at least one sequence of at "
                             "least one token")
        low, high = torch.aminmax(input_ids)
        if low < 0 or high >= self.config.vocab_size:
            bad = int(low) if low < 0 else int(high)
            raise ValueError(f"token id {bad} is outside the vocabulary [0, {self.config.vocab_size}): was the "
                             "tokenizer trained with a different vocabulary size than the model?")
        if input_ids.size(1) > self.config.max_tokens:
            raise ValueError(f"sequence of {input_ids.size(1)} tokens is longer than the {self.config.max_tokens} "
                             f"the position table allows (max_position_embeddings={self.config.max_position_embeddings}"
                             "); truncate it, e.g. tokenizer(texts, max_length=...)")
        if attention_mask is not None and tuple(attention_mask.shape) != tuple(input_ids.shape):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}; expected "
                             f"{tuple(input_ids.shape)}, the shape of input_ids (1 = token, 0 = padding)")

    def set_activation_checkpointing(self, enabled: bool = True) -> None:
        """Trade compute for memory: keep only each layer's input in the forward pass and recompute the layer's
        activations during backward (Chen et al. 2016, arXiv 1604.06174). Results are unchanged."""
        (self if isinstance(self, RobertaModel) else self.roberta).activation_checkpointing = enabled

    def num_parameters(self) -> int:
        """The parameters, a tied matrix counted once and the rows of a padded vocabulary left out."""
        vocab = self.config.vocab_size
        return sum(fit_vocabulary(name, p, vocab, vocab).numel() for name, p in self.named_parameters())

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, new_head: bool = False, **config_overrides):
        """Load a directory or Hub model in transformers' layout (config.json + model.safetensors). ``new_head``:
        a task head the checkpoint lacks is meant to start random (finetuning), so it is not warned about."""
        from .weights import load_pretrained

        return load_pretrained(cls, name_or_path, new_head=new_head, **config_overrides)

    def save_pretrained(self, directory: str | os.PathLike, state_dict: dict | None = None):
        """Write config.json and model.safetensors with transformers' key names, each file atomically."""
        from .weights import save_pretrained

        return save_pretrained(self, directory, state_dict)


class RobertaModel(RobertaPreTrainedModel):
    """Embeddings and the stack of layers: token ids in, one contextual vector per token out. No pooler (RoBERTa's
    heads do not use it, and roberta-base ships none)."""

    def __init__(self, config: RobertaConfig):
        super().__init__()
        self.config = config
        self.embeddings = RobertaEmbeddings(config)
        self.layers = nn.ModuleList(RobertaLayer(config) for _ in range(config.num_hidden_layers))
        # pre-LN leaves the residual sum unnormalised: one LayerNorm after the last layer
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, bias=config.bias) \
            if config.norm_position == "pre" else None
        self.activation_checkpointing = False  # set_activation_checkpointing(): recompute layers in backward
        self.skip_input_checks = False  # the Trainer checks each batch on the CPU before the copy (training.py)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_attentions: bool = False, output_hidden_states: bool = False) -> ModelOutput:
        if not self.skip_input_checks:  # (each check reads the tensors: on a GPU it waits for them)
            self.check_inputs(input_ids, attention_mask)
            if attention_mask is not None and bool(attention_mask.all()):
                attention_mask = None  # nothing to mask (full packed blocks): lets SDPA pick its fastest kernel
        x = self.embeddings(input_ids)
        hidden_states, attentions = [x], []
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.layers:
            if recompute:  # keep only each layer's input; run the layer again in backward (notebook 08)
                x, weights = checkpoint(layer, x, attention_mask, output_attentions, use_reentrant=False)
            else:
                x, weights = layer(x, attention_mask, output_attentions)
            hidden_states.append(x)
            attentions.append(weights)
        if self.final_norm is not None:
            x = hidden_states[-1] = self.final_norm(x)
        return ModelOutput(last_hidden_state=x,
                           hidden_states=tuple(hidden_states) if output_hidden_states else None,
                           attentions=tuple(attentions) if output_attentions else None)


# ----------------------------------------------------------------------------------------------- heads


def labelled_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (in fp32) of the rows that carry a label, already selected. With no row at all, a zero loss
    that still has a graph, instead of the NaN of an empty mean: a batch with nothing to learn from."""
    return F.cross_entropy(logits.float(), targets) if targets.numel() else logits.sum() * 0.0


class RobertaLMHead(nn.Module):
    """dense -> GELU -> LayerNorm -> decoder. The decoder's weight *is* the token-embedding matrix (tied), so the
    model scores a vector against every token's embedding; it adds a bias of its own."""

    def __init__(self, config: RobertaConfig, embeddings: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=config.bias)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, bias=config.bias)
        self.activation = F.gelu  # exact GELU whatever hidden_act says, as transformers' and fairseq's LM heads
        self.embeddings = [embeddings]  # a list: borrowed, not registered twice
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.vocab_size = config.vocab_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(self.activation(self.dense(x)))
        logits = F.linear(x, self.embeddings[0].weight, self.bias)
        # a padded vocabulary (pad_vocabulary): the extra rows are no token, their scores are cut off
        return logits if logits.size(-1) == self.vocab_size else logits[..., :self.vocab_size]


class RobertaClassificationHead(nn.Module):
    """On the <s> token's vector: dropout -> dense -> tanh -> dropout -> out_proj."""

    def __init__(self, config: RobertaConfig):
        super().__init__()
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.dropout(hidden[:, 0])  # <s>
        return self.out_proj(self.dropout(torch.tanh(self.dense(x))))


class RobertaForMaskedLM(RobertaPreTrainedModel):
    """The pretraining model. With ``labels`` (the original ids at masked positions, -100 elsewhere), the head runs
    only on the labelled positions, as fairseq does (``masked_tokens``): with 15% masking that is about 7x less
    work in the largest matrix product, and the loss is the same. ``logits`` is then (num_labelled, vocab_size);
    without labels it is (batch, seq, vocab_size)."""

    def __init__(self, config: RobertaConfig):
        super().__init__()
        self.config = config
        self.roberta = RobertaModel(config)
        self.lm_head = RobertaLMHead(config, self.roberta.embeddings.word_embeddings)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_attentions: bool = False,
                output_hidden_states: bool = False, label_positions: torch.Tensor | None = None) -> ModelOutput:
        """``label_positions`` (with ``labels``): the labelled positions' indices in the flattened batch, in order,
        as ``label_positions_of(labels)`` computes them. Selecting rows with the boolean ``labels != -100`` gives a
        tensor whose size depends on the data, so on a GPU the host waits for the device to count them; with the
        indices computed on the CPU beforehand (the Trainer does) the head gathers its rows without a wait."""
        out = self.roberta(input_ids, attention_mask, output_attentions=output_attentions,
                           output_hidden_states=output_hidden_states)
        loss = None
        if labels is None:
            logits = self.lm_head(out.last_hidden_state)
        else:
            if tuple(labels.shape) != tuple(input_ids.shape):
                raise ValueError(f"labels have shape {tuple(labels.shape)}; expected {tuple(input_ids.shape)}, "
                                 "the shape of input_ids (-100 where there is nothing to predict)")
            if label_positions is None:
                selected = labels != IGNORE_INDEX
                hidden, targets = out.last_hidden_state[selected], labels[selected]
            else:
                hidden = out.last_hidden_state.flatten(0, 1).index_select(0, label_positions)
                targets = labels.flatten().index_select(0, label_positions)
            logits = self.lm_head(hidden)  # (num_labelled, vocab)
            loss = labelled_cross_entropy(logits, targets)
        return ModelOutput(loss=loss, logits=logits, last_hidden_state=out.last_hidden_state,
                           hidden_states=out.hidden_states, attentions=out.attentions)

    def pad_vocabulary(self, multiple: int = 64) -> int:
        """Give the token-embedding matrix (which the decoder shares) and the decoder's bias a number of rows that
        is a multiple of ``multiple`` (notebook 08, section 1): the decoder's matrix multiply then has a width the
        GPU's matrix engines tile without a ragged edge (50,265 -> 50,304 for roberta-base). The extra rows start
        at zero, no token id reaches them (``check_inputs`` refuses ids from ``vocab_size`` up) and their logits
        are cut off before anything reads them, so outputs, loss and the gradients of the real rows are unchanged
        and the extra rows get no gradient. ``save_pretrained`` and checkpoints write the real rows only, in
        transformers' shapes; loading pads again. Call it before building the optimizer. Returns the row count."""
        if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
            raise ValueError(f"multiple={multiple!r}: the row count is rounded up to a multiple of a positive "
                             "integer (64 for the matrix engines, 1 for no padding)")
        vocab, embedding = self.config.vocab_size, self.roberta.embeddings.word_embeddings
        rows = -(-vocab // multiple) * multiple
        if rows != embedding.num_embeddings:
            with torch.no_grad():
                embedding.weight = nn.Parameter(fit_vocabulary("embeddings.word_embeddings.weight",
                                                               embedding.weight[:vocab], rows, vocab))
                self.lm_head.bias = nn.Parameter(fit_vocabulary("lm_head.bias", self.lm_head.bias[:vocab], rows,
                                                                vocab))
            embedding.num_embeddings = rows
        return rows


@contextmanager
def evaluating(model: nn.Module):
    """Run the block with ``model`` in eval mode (no dropout); afterwards, even after an error, the model is back in
    the mode it was in, so an evaluation inside a training loop leaves the loop training."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def label_positions_of(labels: torch.Tensor) -> torch.Tensor:
    """The indices of the labelled positions (label != -100) in the flattened (batch * seq) labels, in order: what
    ``RobertaForMaskedLM(label_positions=...)`` takes. Computed on a CPU batch, it costs the device nothing."""
    return (labels.flatten() != IGNORE_INDEX).nonzero().squeeze(1)


class RobertaForSequenceClassification(RobertaPreTrainedModel):
    """The finetuning model: the classification head on <s>. ``num_labels == 1`` is regression (MSE loss)."""

    pooling = "cls"  # what the head reads: the <s> vector (RoBERTa's); MeanPooledSequenceClassification: the mean

    def __init__(self, config: RobertaConfig):
        super().__init__()
        self.config = config
        self.roberta = RobertaModel(config)
        self.classifier = RobertaClassificationHead(config)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_attentions: bool = False,
                output_hidden_states: bool = False) -> ModelOutput:
        out = self.roberta(input_ids, attention_mask, output_attentions=output_attentions,
                           output_hidden_states=output_hidden_states)
        hidden = out.last_hidden_state
        if self.pooling == "mean":  # the mean of the real tokens' vectors, where the head looks for <s>'s
            mask = (attention_mask if attention_mask is not None else torch.ones_like(input_ids))
            mask = mask.unsqueeze(-1).to(hidden.dtype)
            hidden = ((hidden * mask).sum(1) / mask.sum(1)).unsqueeze(1)
        logits = self.classifier(hidden)
        loss = None
        if labels is not None:
            if self.config.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1).float(), labels.float())
            else:
                if labels.dim() != 1 or labels.size(0) != input_ids.size(0):
                    raise ValueError(f"labels have shape {tuple(labels.shape)}; expected ({input_ids.size(0)},), "
                                     "one class index per sequence")
                if labels.numel() and (labels.min() < 0 or labels.max() >= self.config.num_labels):
                    raise ValueError(f"label {int(labels.max() if labels.max() >= 0 else labels.min())} is outside "
                                     f"[0, {self.config.num_labels}): set num_labels in the config")
                loss = F.cross_entropy(logits.float(), labels)
        return ModelOutput(loss=loss, logits=logits, last_hidden_state=out.last_hidden_state,
                           hidden_states=out.hidden_states, attentions=out.attentions)


class MeanPooledSequenceClassification(RobertaForSequenceClassification):
    """RoBERTa's classification head on the mean of the real tokens' final vectors instead of the <s> vector.
    RoBERTa never trained <s> for a task: it dropped BERT's next-sentence prediction, and the MLM never masks
    special tokens, so the <s> vector of a model that was only pretrained carries no trained summary of the text.
    Not a transformers class: its files load there as the <s> head (notebook 06 uses it for a probe only)."""

    pooling = "mean"


class RobertaForTokenClassification(RobertaPreTrainedModel):
    """One label per token (named entities, parts of speech): dropout, then a linear layer on every token's vector.
    ``labels`` is (batch, seq) with -100 at positions that carry no loss (padding, special tokens, and the second
    and later sub-word tokens of a word when only a word's first token is labelled)."""

    def __init__(self, config: RobertaConfig):
        super().__init__()
        self.config = config
        self.roberta = RobertaModel(config)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_attentions: bool = False,
                output_hidden_states: bool = False) -> ModelOutput:
        out = self.roberta(input_ids, attention_mask, output_attentions=output_attentions,
                           output_hidden_states=output_hidden_states)
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (batch, seq, num_labels)
        loss = None
        if labels is not None:
            self.check_labels(labels, input_ids)
            selected = labels != IGNORE_INDEX
            loss = labelled_cross_entropy(logits[selected], labels[selected])
        return ModelOutput(loss=loss, logits=logits, last_hidden_state=out.last_hidden_state,
                           hidden_states=out.hidden_states, attentions=out.attentions)

    def check_labels(self, labels: torch.Tensor, input_ids: torch.Tensor) -> None:
        """A label that does not fit fails here with its fix, not as a device-side assert inside cross_entropy."""
        if tuple(labels.shape) != tuple(input_ids.shape):
            raise ValueError(f"labels have shape {tuple(labels.shape)}; expected {tuple(input_ids.shape)}, the shape "
                             f"of input_ids: one label per token ({IGNORE_INDEX} where there is nothing to predict)")
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"labels must hold integer class ids, got dtype {labels.dtype}")
        outside = labels[(labels != IGNORE_INDEX) & ((labels < 0) | (labels >= self.config.num_labels))]
        if outside.numel():
            raise ValueError(f"label {int(outside[0])} is outside [0, {self.config.num_labels}) (and is not "
                             f"{IGNORE_INDEX}, the label of positions without a loss): set num_labels in the config")


class RobertaForQuestionAnswering(RobertaPreTrainedModel):
    """Extractive question answering (SQuAD): the answer is a span of the input, and a linear layer scores every
    token twice, once as the span's start and once as its end. ``start_positions`` and ``end_positions`` are
    (batch,) token indices.

    The layer has 2 outputs whatever ``config.num_labels`` says. transformers sizes it with ``num_labels``, whose
    default is 2, so ``save_pretrained`` writes ``num_labels: 2`` for this model, and its files load into
    transformers' ``RobertaForQuestionAnswering`` even when the config was built for another task.

    The loss is transformers': a position outside the sequence is clamped to ``seq_len`` and ignored (an answer cut
    off by truncation carries no loss), and the loss is the mean of the start and end cross-entropies. Where every
    start (or every end) in the batch is ignored, that term is a zero with a graph, where transformers gives NaN.
    """

    def __init__(self, config: RobertaConfig):
        super().__init__()
        self.config = config
        self.roberta = RobertaModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                start_positions: torch.Tensor | None = None, end_positions: torch.Tensor | None = None,
                output_attentions: bool = False, output_hidden_states: bool = False) -> ModelOutput:
        out = self.roberta(input_ids, attention_mask, output_attentions=output_attentions,
                           output_hidden_states=output_hidden_states)
        logits = self.qa_outputs(out.last_hidden_state)  # (batch, seq, 2): start scores, then end scores
        start_logits, end_logits = logits[..., 0], logits[..., 1]
        loss = None
        if start_positions is not None or end_positions is not None:
            self.check_positions(start_positions, end_positions, input_ids)
            seq_len = input_ids.size(1)
            loss = (span_position_loss(start_logits, start_positions, seq_len) +
                    span_position_loss(end_logits, end_positions, seq_len)) / 2
        return ModelOutput(loss=loss, logits=logits, start_logits=start_logits, end_logits=end_logits,
                           last_hidden_state=out.last_hidden_state, hidden_states=out.hidden_states,
                           attentions=out.attentions)

    @staticmethod
    def check_positions(start_positions: torch.Tensor | None, end_positions: torch.Tensor | None,
                        input_ids: torch.Tensor) -> None:
        if start_positions is None or end_positions is None:
            given, absent = ("start", "end") if end_positions is None else ("end", "start")
            raise ValueError(f"{given}_positions given without {absent}_positions: a span needs both (give both "
                             "for a loss, or neither for predictions only)")
        batch = input_ids.size(0)
        for name, positions in (("start_positions", start_positions), ("end_positions", end_positions)):
            if tuple(positions.shape) != (batch,):
                raise ValueError(f"{name} has shape {tuple(positions.shape)}; expected ({batch},), one token index "
                                 "per sequence")
            if positions.is_floating_point() or positions.dtype == torch.bool:
                raise ValueError(f"{name} must hold integer token indices, got dtype {positions.dtype}")


def span_position_loss(logits: torch.Tensor, positions: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Cross-entropy of one end of the span (start or end) over the sequence's positions. A position outside
    [0, seq_len) is clamped to seq_len, which names no token, and carries no loss (transformers' rule)."""
    positions = positions.clamp(0, seq_len)
    kept = positions != seq_len
    return labelled_cross_entropy(logits[kept], positions[kept])


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters by component: embeddings, attention, feed-forward, LayerNorms, heads (tied weights once, the
    rows of a padded vocabulary left out)."""
    groups = {"token embeddings": 0, "position + type embeddings": 0, "attention": 0, "feed-forward": 0,
              "LayerNorm": 0, "MLM head": 0, "classification head": 0, "question-answering head": 0}
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    for name, p in model.named_parameters():
        if vocab is not None:
            p = fit_vocabulary(name, p, vocab, vocab)
        if "word_embeddings" in name:
            key = "token embeddings"
        elif "position_embeddings" in name or "token_type" in name:
            key = "position + type embeddings"
        elif "lm_head" in name:
            key = "MLM head"
        elif "classifier" in name:
            key = "classification head"
        elif "qa_outputs" in name:
            key = "question-answering head"
        elif "norm" in name:
            key = "LayerNorm"
        elif ".attention." in name:
            key = "attention"
        else:
            key = "feed-forward"
        groups[key] += p.numel()
    return {k: v for k, v in groups.items() if v}
