"""Sentence embeddings and semantic search (notebook 10): one vector per text from the encoder's token vectors, a
contrastive loss that pulls a text towards its partner and away from the rest of the batch (SimCSE, Gao et al.
2021, arXiv 2104.08821), cosine search over an index, the retrieval scores, the lexical baselines, and the
``python-docs-retrieval`` benchmark made from this Python's documentation.

    vectors = encode(model, tokenizer, texts)           # (n, hidden), unit length
    scores, ids = SearchIndex(vectors).search(encode(model, tokenizer, ["read a file"]), k=5)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import datasets
import torch
import torch.nn.functional as F

from .batching import StepBatches
from .data import module_area, same_text_key, load_classification, load_corpus, stable_hash
from .model import evaluating
from .optim import linear_schedule, parameter_groups
from .packing import SENTENCE_END

# --------------------------------------------------------------------------------------------------- pooling


def _check_hidden(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> None:
    if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3:
        shape = tuple(hidden.shape) if isinstance(hidden, torch.Tensor) else type(hidden).__name__
        raise ValueError(f"hidden must be the encoder's (batch, seq, hidden) token vectors, got {shape}")
    if attention_mask is not None and tuple(attention_mask.shape) != tuple(hidden.shape[:2]):
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}; expected "
                         f"{tuple(hidden.shape[:2])}, one entry per token (1 = token, 0 = padding)")


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The average of each text's real token vectors, ``<s>`` and ``</s>`` included, padding left out (whatever
    it holds, even inf or nan): ``(batch, seq, hidden)`` and ``(batch, seq)`` in, ``(batch, hidden)`` out."""
    _check_hidden(hidden, attention_mask)
    mask = attention_mask.bool().unsqueeze(-1)  # (batch, seq, 1)
    counts = mask.sum(1)
    if bool((counts == 0).any()):
        raise ValueError("a row of attention_mask is all zeros: every text needs at least one token to average")
    return torch.where(mask, hidden, torch.zeros((), dtype=hidden.dtype)).sum(1) / counts.to(hidden.dtype)


def cls_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The vector of the first token, ``<s>`` (BERT's [CLS]): ``(batch, seq, hidden)`` in, ``(batch, hidden)`` out."""
    _check_hidden(hidden, attention_mask)
    return hidden[:, 0]


POOLINGS = {"mean": mean_pool, "cls": cls_pool}


def _pooling(name: str):
    if name not in POOLINGS:
        raise ValueError(f"unknown pooling {name!r}: use one of {', '.join(POOLINGS)}")
    return POOLINGS[name]


# ------------------------------------------------------------------------------------------ the contrastive loss


def contrastive_loss(anchors: torch.Tensor, positives: torch.Tensor, temperature: float = 0.05,
                     negatives: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE with in-batch negatives (SimCSE's loss): row i of ``anchors`` should be most similar, by cosine, to
    row i of ``positives`` among all rows of ``positives``; the other rows are its negatives. ``negatives``, an
    optional ``(M, hidden)`` tensor, adds M more for every anchor (supervised SimCSE's hard negatives). The cosines
    are divided by ``temperature`` and scored by cross-entropy with target i, averaged over the rows."""
    if anchors.dim() != 2 or anchors.shape != positives.shape:
        raise ValueError(f"anchors {tuple(anchors.shape)} and positives {tuple(positives.shape)} must both be "
                         "(batch, hidden), one positive per anchor")
    if anchors.size(0) < 2 and negatives is None:
        raise ValueError("a batch of one has no in-batch negatives: use at least 2 pairs per batch")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature} (SimCSE uses 0.05)")
    candidates = positives
    if negatives is not None:
        if negatives.dim() != 2 or negatives.size(1) != anchors.size(1):
            raise ValueError(f"negatives must be (M, {anchors.size(1)}), the anchors' width; got "
                             f"{tuple(negatives.shape)}")
        candidates = torch.cat([positives, negatives.to(positives.dtype)])
    similarity = F.normalize(anchors.float(), dim=-1) @ F.normalize(candidates.float(), dim=-1).T
    return F.cross_entropy(similarity / temperature, torch.arange(anchors.size(0), device=anchors.device))


# ----------------------------------------------------------------------------------------------- encoding


def max_length_for(model, max_length: int | None = None) -> int:
    """The longest input the model's position table takes, capped at ``max_length`` when given."""
    limit = model.config.max_tokens
    return min(limit, max_length) if max_length else limit


def embed(model, batch: dict, pooling: str = "mean") -> torch.Tensor:
    """One vector per text of a tokenized batch (``input_ids``, ``attention_mask``), in the model's current mode."""
    pool = _pooling(pooling)
    out = model(batch["input_ids"], attention_mask=batch["attention_mask"])
    return pool(out.last_hidden_state, batch["attention_mask"])


@torch.no_grad()
def encode(model, tokenizer, texts: Sequence[str], batch_size: int = 64, pooling: str = "mean",
           max_length: int | None = None, normalize: bool = True) -> torch.Tensor:
    """The vectors of ``texts`` in evaluation mode (no dropout), ``(len(texts), hidden)`` on the CPU, unit length
    unless ``normalize`` is False. Texts are batched by length (less padding); the order of the result is that of
    ``texts``, and the vectors do not depend on the batch size (padding is masked)."""
    if isinstance(texts, str):
        raise ValueError("texts must be a list of strings; for one text, pass [text]")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    texts = list(texts)
    if not texts:
        return torch.empty(0, model.config.hidden_size)
    limit = max_length_for(model, max_length)
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    parts = []
    with evaluating(model):
        for start in range(0, len(order), batch_size):
            chunk = [texts[i] for i in order[start:start + batch_size]]
            batch = {k: v.to(device) for k, v in tokenizer(chunk, max_length=limit).items()}
            parts.append(embed(model, batch, pooling).float().cpu())
    vectors = torch.empty(len(texts), parts[0].size(1))
    vectors[torch.tensor(order)] = torch.cat(parts)
    return F.normalize(vectors, dim=-1) if normalize else vectors


def anisotropy(vectors: torch.Tensor, pairs: int = 10_000, seed: int = 0) -> float:
    """The average cosine similarity of random pairs of distinct rows: near 0 when directions are spread out,
    near 1 when every vector points the same way (Ethayarajh 2019, arXiv 1909.00512)."""
    n = vectors.size(0)
    if n < 2:
        raise ValueError("anisotropy needs at least 2 vectors")
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(n, (pairs,), generator=g)
    j = (i + torch.randint(1, n, (pairs,), generator=g)) % n  # never i itself
    unit = F.normalize(vectors.float(), dim=-1)
    return float((unit[i] * unit[j]).sum(-1).mean())


# ------------------------------------------------------------------------------------------ index and search


class SearchIndex:
    """Unit vectors of documents; ``search`` ranks them by cosine similarity (a dot product of unit vectors)."""

    def __init__(self, vectors: torch.Tensor):
        if vectors.dim() != 2 or vectors.size(0) == 0:
            raise ValueError(f"vectors must be (documents, hidden) with at least one document, got "
                             f"{tuple(vectors.shape)}")
        self.vectors = F.normalize(vectors.float(), dim=-1)

    def __len__(self) -> int:
        return self.vectors.size(0)

    def scores(self, queries: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of every query with every document: ``(queries, documents)``."""
        if queries.dim() == 1:
            queries = queries.unsqueeze(0)
        if queries.size(-1) != self.vectors.size(1):
            raise ValueError(f"queries have {queries.size(-1)} dimensions, the index {self.vectors.size(1)}: encode "
                             "them with the same model")
        return F.normalize(queries.float(), dim=-1) @ self.vectors.T

    def search(self, queries: torch.Tensor, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` best documents per query, best first: ``(scores, indices)``, each ``(queries, k)``."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        return self.scores(queries).topk(min(k, len(self)), dim=-1)


# ---------------------------------------------------------------------------------------------- the scores


def relevant_ranks(scores: torch.Tensor, relevant: Sequence[int]) -> torch.Tensor:
    """The rank (1 = best) of each query's relevant document among all documents, by score. A tie counts against
    the relevant document (it is ranked after every document with the same score), so that a method that scores
    everything 0 ranks it last, not first."""
    scores = torch.as_tensor(scores, dtype=torch.float64)
    target = torch.as_tensor(list(relevant), dtype=torch.long)
    if scores.dim() != 2 or target.numel() != scores.size(0):
        raise ValueError(f"scores must be (queries, documents) with one relevant document per query; got scores "
                         f"{tuple(scores.shape)} and {target.numel()} relevant indices")
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= scores.size(1)):
        raise ValueError(f"a relevant index is outside [0, {scores.size(1)}): give positions in the document list")
    own = scores.gather(1, target.unsqueeze(1))
    return (scores >= own).sum(1)  # the document itself, and every other one that scores at least as high


def retrieval_metrics(scores: torch.Tensor, relevant: Sequence[int], ks: Sequence[int] = (1, 10)
                      ) -> dict[str, float]:
    """Recall@k (the share of queries whose relevant document is in the top k) and the mean reciprocal rank."""
    ranks = relevant_ranks(scores, relevant).double()
    result = {f"recall@{k}": float((ranks <= k).double().mean()) for k in ks}
    result["mrr"] = float((1.0 / ranks).mean())
    return result


def rank_positions(scores: torch.Tensor) -> torch.Tensor:
    """The rank of every document for every query, 1 = best; documents with equal scores share the average of their
    ranks (fractional ranking), so that ties favour no document."""
    scores = scores.contiguous()
    ascending = scores.sort(dim=-1).values
    at_most = torch.searchsorted(ascending, scores, right=True)  # documents scoring at most as high
    below = torch.searchsorted(ascending, scores)  # documents scoring lower
    return (scores.size(1) - at_most) + (at_most - below + 1) / 2


def reciprocal_rank_fusion(*score_matrices: torch.Tensor, k: int = 60) -> torch.Tensor:
    """Reciprocal rank fusion (Cormack, Clarke & Büttcher 2009): a document's score is the sum over the methods of
    1 / (k + its rank by that method); the scores of different methods need no common scale."""
    if not score_matrices:
        raise ValueError("give at least one (queries, documents) score matrix to fuse")
    shapes = {tuple(s.shape) for s in score_matrices}
    if len(shapes) != 1:
        raise ValueError(f"the score matrices must have one shape, (queries, documents); got {sorted(shapes)}")
    return sum(1.0 / (k + rank_positions(s).double()) for s in score_matrices)


# ------------------------------------------------------------------------------------ what the encoder reads


def text_pieces(tokenizer, text: str, max_tokens: int) -> list[str]:
    """``text`` cut into consecutive pieces of ``max_tokens`` of its tokens each (the last may hold fewer), as the
    text's own characters: a piece runs from where the one before it ended (the first from its first token) to the
    end of its last token, so the pieces joined give the text back, less the white space at its two ends. With
    ``max_tokens`` the encoder's window less ``<s>`` and ``</s>``, the first piece is what the encoder reads of the
    text, and the pieces are the chunks a long document is encoded in. (A piece that starts or ends inside a word can
    take a token more or fewer when encoded again alone.) A text of no tokens gives one empty piece."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens={max_tokens}: a piece needs at least one token")
    _, offsets, _ = tokenizer.encode_with_offsets(text, add_special_tokens=False)
    if not offsets:
        return [""]
    ends = [offsets[min(i + max_tokens, len(offsets)) - 1][1] for i in range(0, len(offsets), max_tokens)]
    return [text[start:end] for start, end in zip([offsets[0][0]] + ends[:-1], ends)]


def best_chunk_scores(query_vectors: torch.Tensor, chunk_vectors: torch.Tensor, chunk_document: Sequence[int],
                      num_documents: int) -> torch.Tensor:
    """A document's score is its best chunk's: ``(queries, documents)`` from the cosines of the queries with every
    chunk, ``chunk_document[c]`` the document chunk ``c`` belongs to (every document has at least one)."""
    owner = torch.as_tensor(list(chunk_document), dtype=torch.long)
    if owner.numel() != chunk_vectors.size(0):
        raise ValueError(f"{chunk_vectors.size(0)} chunk vectors but {owner.numel()} owners: one document per chunk")
    if owner.numel() and (int(owner.min()) < 0 or int(owner.max()) >= num_documents):
        raise ValueError(f"a chunk's document is outside [0, {num_documents})")
    if torch.bincount(owner, minlength=num_documents).min() == 0:
        raise ValueError("a document has no chunk: give every document at least one (an empty one scores too)")
    cosines = query_vectors @ chunk_vectors.T  # (queries, chunks)
    best = torch.full((cosines.size(0), num_documents), float("-inf"), dtype=cosines.dtype)
    return best.scatter_reduce(1, owner.expand_as(cosines), cosines, reduce="amax")


# ------------------------------------------------------------------------------------------ lexical baselines


def tfidf_scores(queries: Sequence[str], documents: Sequence[str]) -> torch.Tensor:
    """Cosine similarity of TF-IDF vectors (scikit-learn's ``TfidfVectorizer`` with its defaults, fitted on the
    documents): ``(queries, documents)``."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer()
    docs = vectorizer.fit_transform(list(documents))  # rows of unit length
    return torch.from_numpy((vectorizer.transform(list(queries)) @ docs.T).toarray()).float()


BM25_PARAMETERS = {"k1": 1.5, "b": 0.75, "method": "lucene"}  # bm25s's defaults


def bm25_scores(queries: Sequence[str], documents: Sequence[str]) -> torch.Tensor:
    """Okapi BM25 (Robertson & Zaragoza 2009) with the ``bm25s`` library, Lucene's variant (its term weight lacks
    the (k1 + 1) factor, which scales every score alike), and its tokenizer (lower case, words of two or more
    characters, English stop words removed): ``(queries, documents)``. A query with no word left (empty, or
    only stop words) scores 0 everywhere (bm25s itself fails on it)."""
    import bm25s

    retriever = bm25s.BM25(**BM25_PARAMETERS)
    retriever.index(bm25s.tokenize(list(documents), stopwords="en", show_progress=False), show_progress=False)
    tokenized = bm25s.tokenize(list(queries), stopwords="en", return_ids=False, show_progress=False)
    return torch.stack([torch.from_numpy(retriever.get_scores(words)).float() if words else
                        torch.zeros(len(documents)) for words in tokenized])


# -------------------------------------------------------------------------------------- contrastive training


@dataclass(frozen=True)
class ContrastiveConfig:
    """What a contrastive run trains with. SimCSE's values for BERT-base: temperature 0.05, batch 64, rate 3e-5,
    dropout 0.1 (the only augmentation of the unsupervised variant)."""

    steps: int
    batch_size: int = 64
    lr: float = 3e-5
    temperature: float = 0.05
    warmup_fraction: float = 0.1
    max_length: int | None = None
    pooling: str = "mean"
    seed: int = 0


def pair_batches(first: Sequence[str], second: Sequence[str], batch_size: int, steps: int, seed: int
                 ) -> Iterator[tuple[list[str], list[str]]]:
    """``steps`` batches of ``batch_size`` aligned pairs: the pretraining loop's :class:`StepBatches` (each pass
    over the pairs shuffled anew from ``seed``, the incomplete last batch of a pass dropped)."""
    if len(first) != len(second):
        raise ValueError(f"{len(first)} first texts but {len(second)} second texts: give the pairs aligned")
    if len(first) < max(batch_size, 2):
        raise ValueError(f"{len(first)} pairs are fewer than a batch of {batch_size}: lower batch_size")
    batches = StepBatches(list(zip(first, second)), batch_size, seed)
    for step in range(steps):
        a, b = zip(*batches(step))
        yield list(a), list(b)


def train_contrastive(model, tokenizer, first: Sequence[str], second: Sequence[str] | None, cfg: ContrastiveConfig
                      ) -> list[float]:
    """Contrastive training of ``model`` (a ``RobertaModel``) in place; the loss of each step.

    ``second`` None: unsupervised SimCSE, each text of ``first`` twice through the encoder in one batch, so that
    two dropout masks make its two views. Otherwise supervised: ``first[i]`` is pulled towards ``second[i]``.
    AdamW (weight decay 0.01, none on biases and LayerNorm), the pretraining loop's linear warm-up and decay to
    zero, gradients clipped to norm 1; a loss that is not finite stops the run with an error."""
    unsupervised = second is None
    second = list(first) if unsupervised else list(second)
    limit = max_length_for(model, cfg.max_length)
    device = next(model.parameters()).device
    torch.manual_seed(cfg.seed)  # the dropout masks
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.01), lr=cfg.lr)
    warmup = max(1, round(cfg.warmup_fraction * cfg.steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_schedule(s, warmup, cfg.steps))
    model.train()
    losses = []
    for a_texts, b_texts in pair_batches(first, second, cfg.batch_size, cfg.steps, cfg.seed):
        if unsupervised:
            both = tokenizer(a_texts + a_texts, max_length=limit)
            vectors = embed(model, {k: v.to(device) for k, v in both.items()}, cfg.pooling)
            a, b = vectors.chunk(2)
        else:
            a = embed(model, {k: v.to(device) for k, v in tokenizer(a_texts, max_length=limit).items()}, cfg.pooling)
            b = embed(model, {k: v.to(device) for k, v in tokenizer(b_texts, max_length=limit).items()}, cfg.pooling)
        loss = contrastive_loss(a, b, cfg.temperature)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the contrastive loss is {loss.item()} at step {len(losses)}: lower the "
                                     f"learning rate (now {schedule.get_last_lr()[0]:.2e})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return losses


# --------------------------------------------------------------------------------- the retrieval benchmark

RETRIEVAL_NAME = "python-docs-retrieval"
MIN_QUERY_WORDS, MIN_DOCUMENT_WORDS = 4, 8
DISTRACTOR_PER_MILLE = 200  # of the pretraining-train docstrings: index-only documents, never trained on


def split_docstring(text: str) -> tuple[str, str]:
    """A docstring's first sentence (of its first paragraph, white space joined) and the rest of it."""
    paragraph, _, rest = text.partition("\n\n")
    end = SENTENCE_END.search(paragraph)  # where packing splits sentences
    if end:
        first, body = paragraph[:end.start()], paragraph[end.end():] + ("\n\n" + rest if rest else "")
    else:
        first, body = paragraph, rest
    return " ".join(first.split()), body.strip()


def _pairs(rows) -> list[dict]:
    found = []
    for row in rows:
        kind = row.get("kind", "function")
        if kind == "topic":
            continue
        query, document = split_docstring(row["text"])
        if len(query.split()) >= MIN_QUERY_WORDS and len(document.split()) >= MIN_DOCUMENT_WORDS:
            found.append({"query": query, "document": document, "source": row["source"],
                          "area": module_area(row["source"], kind) or "other"})
    return found


def _unique(rows: list[dict], taken: set[str] = frozenset()) -> list[dict]:
    """Rows whose query and document occur once among ``rows`` and never in ``taken``: one relevant document per
    query, and no text shared across parts."""
    count: dict[str, int] = {}
    for row in rows:
        for text in (row["query"], row["document"]):
            count[same_text_key(text)] = count.get(same_text_key(text), 0) + 1
    return [row for row in rows if all(count[same_text_key(t)] == 1 and same_text_key(t) not in taken
                                       for t in (row["query"], row["document"]))]


def build_retrieval(corpus: datasets.DatasetDict, topics: datasets.DatasetDict) -> datasets.DatasetDict:
    """The ``python-docs-retrieval`` benchmark: a query is a docstring's first sentence, its relevant document the
    rest of that docstring.

    - ``queries`` and their documents: the docstrings pretraining never saw (the corpus's validation split and the
      labelled set of notebook 06, less those whose rest pretraining read inside another docstring), each query
      with the index of its document in ``documents``;
    - ``documents``: those documents, then distractors (the bodies of a fifth of the pretraining docstrings, chosen
      by hash), which no query asks for and no training pair holds;
    - ``train``: pairs from the other pretraining docstrings, for supervised contrastive training.
    """
    held_out = _pairs(corpus["validation"]) + [p for split in ("train", "validation", "test")
                                               for p in _pairs(topics[split])]
    seen = _pairs(corpus["train"])
    distractor = [stable_hash(p["document"], "retrieval") % 1000 < DISTRACTOR_PER_MILLE for p in seen]
    # Some docstrings repeat another's text (decimal's Context and Decimal methods): a held-out document that
    # pretraining read inside another docstring is dropped, so that "never seen" holds.
    read = "\n".join(same_text_key(row["text"]) for row in corpus["train"])
    held_out = _unique([p for p in held_out if same_text_key(p["document"]) not in read])
    taken = {same_text_key(t) for p in held_out for t in (p["query"], p["document"])}
    distractors = _unique([p for p, d in zip(seen, distractor) if d], taken)
    taken |= {same_text_key(p["document"]) for p in distractors}
    train = _unique([p for p, d in zip(seen, distractor) if not d], taken)
    # Queries and documents each in an order of their own (by hash), relevant documents among the distractors: a
    # position tells nothing about relevance.
    held_out.sort(key=lambda p: stable_hash(p["query"], "retrieval-order"))
    documents = [{"document": p["document"], "source": p["source"], "area": p["area"], "held_out": True}
                 for p in held_out]
    documents += [{"document": p["document"], "source": p["source"], "area": p["area"], "held_out": False}
                  for p in distractors]
    documents.sort(key=lambda d: stable_hash(d["document"], "retrieval-documents"))
    position = {same_text_key(d["document"]): i for i, d in enumerate(documents)}
    queries = [{"query": p["query"], "relevant": position[same_text_key(p["document"])], "source": p["source"],
                "area": p["area"]} for p in held_out]
    train_rows = [{"query": p["query"], "document": p["document"], "source": p["source"]} for p in train]

    def table(rows: list[dict]) -> datasets.Dataset:
        return datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in rows[0]})

    return datasets.DatasetDict({"train": table(train_rows), "queries": table(queries),
                                 "documents": table(documents)})


def sample_retrieval(data: datasets.DatasetDict, num_queries: int, num_distractors: int) -> datasets.DatasetDict:
    """A smaller benchmark (the smoke scale's): the first ``num_queries`` queries with their documents and the
    first ``num_distractors`` distractors, in the documents' order, the relevant indices renumbered."""
    queries = data["queries"].select(range(min(num_queries, len(data["queries"]))))
    wanted = set(queries["relevant"])
    distractors = [i for i, held in enumerate(data["documents"]["held_out"]) if not held][:num_distractors]
    keep = sorted(wanted | set(distractors))
    new_index = {old: new for new, old in enumerate(keep)}
    queries = queries.map(lambda row: {"relevant": new_index[row["relevant"]]})
    return datasets.DatasetDict({"train": data["train"], "queries": queries,
                                 "documents": data["documents"].select(keep)})


def load_retrieval(verbose: bool = True) -> datasets.DatasetDict:
    """``python-docs-retrieval`` (see :func:`build_retrieval` and data/README.md), made from the cached corpus in a
    second."""
    data = build_retrieval(load_corpus(verbose=False), load_classification(verbose=False))
    if verbose:
        n = data["documents"]["held_out"]
        print(f"{RETRIEVAL_NAME}: {len(data['queries']):,} queries over {len(data['documents']):,} documents "
              f"({sum(n):,} relevant to one query each, {len(n) - sum(n):,} distractors); "
              f"{len(data['train']):,} training pairs")
    return data

