"""Sentence embeddings and search (notebook 10): pooling, the contrastive loss, encoding, the index, the retrieval
scores, the lexical baselines and the python-docs-retrieval benchmark."""

import math
import re

import pytest
import torch

from roberta_from_scratch import embeddings as E
from roberta_from_scratch.config import RobertaConfig
from roberta_from_scratch.data import same_text_key
from roberta_from_scratch.model import RobertaModel


def scrambled_model(vocab_size, seed=0, **overrides):
    """A tiny encoder with weights far from N(0, 0.02), so that a mask left out or a position off by one shows."""
    torch.manual_seed(seed)
    config = RobertaConfig.from_preset("tiny", vocab_size=vocab_size, max_position_embeddings=66,
                                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **overrides)
    model = RobertaModel(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


# ------------------------------------------------------------------------------------------------ pooling


def test_mean_pooling_ignores_padding_exactly():
    """Catches: padding averaged in (dividing by the padded length, or summing without the mask), and a nan under
    the padding that multiplying by a zero mask would carry into the mean."""
    torch.manual_seed(0)
    lengths = [5, 2, 7]
    hidden = torch.randn(3, 7, 4)
    mask = torch.zeros(3, 7, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        hidden[i, n:] = float("nan") if i == 0 else 1e6  # whatever sits under the padding must not count
    pooled = E.mean_pool(hidden, mask)
    for i, n in enumerate(lengths):
        torch.testing.assert_close(pooled[i], hidden[i, :n].mean(0), rtol=1e-6, atol=1e-6)
    assert torch.equal(E.cls_pool(hidden, mask), hidden[:, 0])  # exact: a copy of the <s> rows, no arithmetic


def test_pooling_rejects_bad_input_with_the_fix():
    hidden = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="all zeros"):
        E.mean_pool(hidden, torch.tensor([[1, 1, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match=r"expected \(2, 3\)"):
        E.mean_pool(hidden, torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"\(batch, seq, hidden\)"):
        E.mean_pool(torch.randn(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        E.embed(None, {}, pooling="max")


def test_a_text_gets_the_same_vector_alone_and_padded_in_a_batch(small_tokenizer):
    """Catches: the attention mask not passed to the encoder (padding would change the real tokens' vectors), and
    the result put back in the wrong order after the batches sorted by length."""
    model = scrambled_model(small_tokenizer.vocab_size)
    texts = ["Return the number of bytes read.", "x", "Open the file and read every line of it into a list " * 3,
             "Raise ValueError if the argument is negative.", "A socket."]
    for pooling in ("mean", "cls"):
        alone = torch.cat([E.encode(model, small_tokenizer, [t], pooling=pooling) for t in texts])
        for batch_size in (2, 3, 64):
            together = E.encode(model, small_tokenizer, texts, batch_size=batch_size, pooling=pooling)
            torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
    raw = E.encode(model, small_tokenizer, texts, normalize=False)
    torch.testing.assert_close(raw.norm(dim=-1) > 0, torch.ones(len(texts), dtype=torch.bool))
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(len(texts)))  # normalize=False keeps the lengths
    # Check against a direct computation of one padded text.
    batch = small_tokenizer(texts, max_length=64)
    hidden = model(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    n = int(batch["attention_mask"][1].sum())
    torch.testing.assert_close(raw[1], hidden[1, :n].mean(0), rtol=1e-5, atol=1e-5)


def test_encode_leaves_the_mode_and_rejects_a_single_string(small_tokenizer):
    model = scrambled_model(small_tokenizer.vocab_size).train()
    E.encode(model, small_tokenizer, ["a text"])
    assert model.training, "encode must give the model back in the mode it found it in"
    with pytest.raises(ValueError, match=r"pass \[text\]"):
        E.encode(model, small_tokenizer, "a text")
    assert E.encode(model, small_tokenizer, []).shape == (0, model.config.hidden_size)


def test_texts_longer_than_the_positions_are_cut_to_fit(small_tokenizer):
    model = scrambled_model(small_tokenizer.vocab_size)
    long_text = "word " * 500
    vector = E.encode(model, small_tokenizer, [long_text])
    assert vector.shape == (1, model.config.hidden_size)
    assert E.max_length_for(model, 10) == 10
    assert E.max_length_for(model) == model.config.max_tokens


# ------------------------------------------------------------------------------------------------- the loss


def test_contrastive_loss_equals_a_hand_computation():
    """Catches: no normalisation (dot products instead of cosines), the temperature multiplied instead of divided,
    the wrong axis of the softmax (columns instead of rows), and the diagonal left out of the denominator."""
    anchors = torch.tensor([[1.0, 0.0], [0.6, 0.8], [-1.0, 2.0]])
    positives = torch.tensor([[2.0, 0.5], [0.0, 1.0], [3.0, -1.0]])
    t = 0.3

    def cos(u, v):
        return sum(a * b for a, b in zip(u, v)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))

    rows = []
    for i, u in enumerate(anchors.tolist()):
        logits = [cos(u, v) / t for v in positives.tolist()]
        rows.append(-logits[i] + math.log(sum(math.exp(x) for x in logits)))
    expected = sum(rows) / len(rows)
    # fp32 cosines against float64 Python: seen 1.3e-7 apart relatively, a few roundings of 1.2e-7 each; 1e-5 leaves
    # room for any kernel, a wrong axis or temperature changes the loss by 1e-2 and more
    assert E.contrastive_loss(anchors, positives, t).item() == pytest.approx(expected, rel=1e-5)
    # Not symmetric: the negatives of anchor i are the other positives, not the other anchors.
    assert E.contrastive_loss(positives, anchors, t).item() != pytest.approx(expected, rel=1e-3)
    # Scale does not matter (cosines), order does.
    assert E.contrastive_loss(5 * anchors, 0.1 * positives, t).item() == pytest.approx(expected, rel=1e-5)
    # A batch whose pairs match scores lower than the same batch with its partners shuffled.
    assert E.contrastive_loss(anchors, anchors + 0.1, t) < E.contrastive_loss(anchors, anchors.roll(1, 0) + 0.1, t)
    # Hard negatives: every anchor is also compared with each extra row, after the positives.
    negatives = torch.tensor([[0.0, -1.0], [1.0, 1.0]])
    rows = []
    for i, u in enumerate(anchors.tolist()):
        logits = [cos(u, v) / t for v in positives.tolist() + negatives.tolist()]
        rows.append(-logits[i] + math.log(sum(math.exp(x) for x in logits)))
    assert E.contrastive_loss(anchors, positives, t, negatives).item() == pytest.approx(sum(rows) / 3, rel=1e-5)
    with pytest.raises(ValueError, match=r"negatives must be \(M, 2\)"):
        E.contrastive_loss(anchors, positives, t, torch.ones(2, 3))


def test_contrastive_loss_rejects_bad_input():
    a = torch.randn(4, 8)
    with pytest.raises(ValueError, match="one positive per anchor"):
        E.contrastive_loss(a, torch.randn(3, 8))
    with pytest.raises(ValueError, match="at least 2 pairs"):
        E.contrastive_loss(a[:1], a[:1])
    with pytest.raises(ValueError, match="temperature must be positive"):
        E.contrastive_loss(a, a, temperature=0)


# --------------------------------------------------------------------------------------- search and metrics


def brute_force_ranks(scores, relevant):
    ranks = []
    for row, target in zip(scores.tolist(), relevant):
        # best first; among equal scores the relevant document comes last
        order = sorted(range(len(row)), key=lambda j: (-row[j], j == target))
        ranks.append(order.index(target) + 1)
    return ranks


def test_retrieval_metrics_equal_a_brute_force_computation():
    """Catches: an optimistic tie rule (a method that scores everything alike would look perfect), ranks counted
    from 0, recall@k taken as rank < k."""
    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        scores = torch.randint(0, 4 + trial, (30, 25), generator=g).float()  # many ties
        relevant = torch.randint(0, 25, (30,), generator=g).tolist()
        ranks = brute_force_ranks(scores, relevant)
        assert E.relevant_ranks(scores, relevant).tolist() == ranks
        got = E.retrieval_metrics(scores, relevant, ks=(1, 5, 10))
        for k in (1, 5, 10):
            assert got[f"recall@{k}"] == pytest.approx(sum(r <= k for r in ranks) / len(ranks))
        assert got["mrr"] == pytest.approx(sum(1 / r for r in ranks) / len(ranks))
    flat = torch.zeros(3, 5)
    assert E.retrieval_metrics(flat, [0, 2, 4])["recall@1"] == 0.0
    with pytest.raises(ValueError, match="outside"):
        E.relevant_ranks(flat, [0, 1, 5])
    with pytest.raises(ValueError, match="one relevant document per query"):
        E.relevant_ranks(flat, [0, 1])


def test_search_returns_the_best_documents_first_and_checks_dimensions():
    g = torch.Generator().manual_seed(1)
    docs, queries = torch.randn(50, 8, generator=g), torch.randn(6, 8, generator=g)
    index = E.SearchIndex(3 * docs)  # any length: the index normalises
    scores, ids = index.search(queries, k=7)
    cos = torch.nn.functional.cosine_similarity(queries[:, None], docs[None], dim=-1)
    best = cos.sort(dim=-1, descending=True).values[:, :8]
    # Two computations of the cosines (normalise then multiply, against cosine_similarity) round differently, by
    # about 1e-7 (the scores agree within 1e-5, below). The ranks are integers and compared exactly: no two of a
    # query's 8 best cosines lie within 1e-4 of each other with this seed (1.6e-3 apart at least), so rounding
    # cannot swap two of the first 7.
    assert (best[:, :-1] - best[:, 1:]).min() > 1e-4
    assert ids.tolist() == cos.argsort(dim=-1, descending=True)[:, :7].tolist()
    torch.testing.assert_close(scores, cos.sort(dim=-1, descending=True).values[:, :7], rtol=1e-5, atol=1e-5)
    assert index.search(queries[0], k=100)[1].shape == (1, 50)  # k capped at the index's size; one query as 1-D
    with pytest.raises(ValueError, match="same model"):
        index.search(torch.randn(2, 9))
    with pytest.raises(ValueError, match="at least one document"):
        E.SearchIndex(docs[:0])


def test_search_results_are_stable_under_batching(small_tokenizer):
    """Catches: batching that changes the ranking (padding leaking into the vectors, order lost)."""
    model = scrambled_model(small_tokenizer.vocab_size, seed=3)
    docs = [f"Return the {w} of the {v}." * (1 + i % 4) for i, (w, v) in
            enumerate((w, v) for w in ("size", "name", "mode", "path") for v in ("file", "socket", "queue"))]
    queries = ["the size of a file", "a socket's name", "queue mode"]
    runs = []
    for batch_size in (1, 5, 64):
        index = E.SearchIndex(E.encode(model, small_tokenizer, docs, batch_size=batch_size))
        runs.append(index.search(E.encode(model, small_tokenizer, queries, batch_size=batch_size), k=6))
    (scores, ids), others = runs[0], runs[1:]
    # Other batch sizes pad to other lengths and multiply other shapes, so the vectors differ in the last bits: fp32
    # cosines near 1, seen 1.2e-7 (one ulp) apart. 2e-6 leaves 16x room and still catches padding averaged into the
    # mean (tried: 3.6e-5 off; this scrambled encoder's vectors all point one way, so every cosine is near 0.99).
    for other_scores, _ in others:
        torch.testing.assert_close(other_scores, scores, rtol=0, atol=2e-6)
    # No two of a query's 6 best scores lie within twice that tolerance of each other (1e-5 apart at least with
    # this seed), so rounding within it cannot swap two of the first 5...
    assert (scores[:, :-1] - scores[:, 1:]).min() > 4e-6
    # ...and the rankings, integers, compare exactly
    assert all(torch.equal(other_ids[:, :5], ids[:, :5]) for _, other_ids in others)


def test_anisotropy_is_near_one_for_one_direction_and_near_zero_for_random_ones():
    g = torch.Generator().manual_seed(0)
    same = torch.ones(100, 16) + 0.01 * torch.randn(100, 16, generator=g)
    spread = torch.randn(2000, 64, generator=g)
    assert E.anisotropy(same) > 0.99
    assert abs(E.anisotropy(spread)) < 0.02
    with pytest.raises(ValueError, match="at least 2"):
        E.anisotropy(torch.ones(1, 3))


# ------------------------------------------------------------------------------------------ lexical baselines


def test_bm25_equals_the_lucene_formula():
    """Catches: the parameters not reaching the library (k1, b), or a different BM25 variant behind the name. Lucene's
    variant has no (k1 + 1) factor in the term weight (it scales every score alike: the ranking is BM25's)."""
    docs = ["socket timeout value socket", "file path file", "socket file buffer buffer buffer",
            "queue timeout", "path"]
    queries = ["socket timeout", "buffer path", "missing"]
    got = E.bm25_scores(queries, docs)
    k1, b = E.BM25_PARAMETERS["k1"], E.BM25_PARAMETERS["b"]
    words = [d.split() for d in docs]
    avgdl = sum(map(len, words)) / len(words)
    for qi, query in enumerate(queries):
        for di, doc in enumerate(words):
            expected = 0.0
            for term in query.split():
                df = sum(term in d for d in words)
                if not df:
                    continue
                idf = math.log(1 + (len(words) - df + 0.5) / (df + 0.5))
                tf = doc.count(term)
                expected += idf * tf / (tf + k1 * (1 - b + b * len(doc) / avgdl))
            assert got[qi, di].item() == pytest.approx(expected, rel=1e-5, abs=1e-6), (query, docs[di])
    # A query with no word left after the stop words scores 0 everywhere, instead of bm25s's IndexError.
    # exact: such a row is made of zeros, not computed
    assert torch.equal(E.bm25_scores(["", "what is it"], docs), torch.zeros(2, len(docs)))


def test_tfidf_equals_a_hand_computation():
    """scikit-learn's defaults: smoothed idf ln((1 + n) / (1 + df)) + 1, raw counts, rows of unit length."""
    docs = ["socket timeout socket", "file path", "socket file"]
    queries = ["socket file", "path path"]
    got = E.tfidf_scores(queries, docs)
    vocab = sorted({w for d in docs for w in d.split()})
    idf = {w: math.log((1 + len(docs)) / (1 + sum(w in d.split() for d in docs))) + 1 for w in vocab}

    def vector(text):
        v = [text.split().count(w) * idf[w] for w in vocab]
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / norm for x in v]

    for qi, q in enumerate(queries):
        for di, d in enumerate(docs):
            expected = sum(a * b for a, b in zip(vector(q), vector(d)))
            assert got[qi, di].item() == pytest.approx(expected, rel=1e-5, abs=1e-7)


# ------------------------------------------------------------------------------------- contrastive training


def test_pair_batches_cover_every_pair_once_per_pass():
    first = [f"q{i}" for i in range(10)]
    second = [f"d{i}" for i in range(10)]
    batches = list(E.pair_batches(first, second, batch_size=5, steps=4, seed=0))
    assert len(batches) == 4 and all(len(a) == 5 for a, _ in batches)
    for a, b in batches:
        assert [x[1:] for x in a] == [y[1:] for y in b]  # pairs stay aligned
    assert sorted(x for a, _ in batches[:2] for x in a) == sorted(first)  # one pass: each pair once
    with pytest.raises(ValueError, match="fewer than a batch"):
        next(E.pair_batches(first, second, batch_size=11, steps=1, seed=0))
    with pytest.raises(ValueError, match="aligned"):
        next(E.pair_batches(first, second[:3], batch_size=2, steps=1, seed=0))


def test_supervised_training_pulls_pairs_together(small_tokenizer):
    """Catches: a loop that does not learn (no step, the gradient zeroed after the backward, the schedule at zero)."""
    torch.manual_seed(0)
    config = RobertaConfig.from_preset("tiny", vocab_size=small_tokenizer.vocab_size, max_position_embeddings=66)
    model = RobertaModel(config)
    names = ["file", "socket", "queue", "thread", "path", "number", "string", "list"]
    first = [f"Open the {n}." for n in names]
    # Each partner names another text's word: word overlap points the wrong way, only training can match them.
    second = [f"This function works with a {names[(i + 3) % len(names)]}." for i in range(len(names))]
    relevant = list(range(len(names)))

    def recall():
        index = E.SearchIndex(E.encode(model, small_tokenizer, second))
        return E.retrieval_metrics(index.scores(E.encode(model, small_tokenizer, first)), relevant)["recall@1"]

    before = recall()
    losses = E.train_contrastive(model, small_tokenizer, first, second,
                                 E.ContrastiveConfig(steps=60, batch_size=8, lr=1e-3, temperature=0.1))
    assert len(losses) == 60
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert before < 0.5 and recall() == 1.0
    assert not model.training
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="at step 0: lower the learning rate"):
        E.train_contrastive(model, small_tokenizer, first, second, E.ContrastiveConfig(steps=2, batch_size=8))


def test_unsupervised_views_differ_only_through_dropout(small_tokenizer):
    """Catches: the two views of unsupervised SimCSE made without dropout (identical views give a loss that only
    pushes texts apart), or from two different batches."""
    texts = [f"Return the {w} of the object." for w in ("size", "name", "mode", "path", "type", "id")]
    for dropout, identical in ((0.0, True), (0.1, False)):
        torch.manual_seed(0)
        config = RobertaConfig.from_preset("tiny", vocab_size=small_tokenizer.vocab_size, max_position_embeddings=66,
                                           hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
        model = RobertaModel(config).train()
        batch = small_tokenizer(texts + texts)
        a, b = E.embed(model, batch).chunk(2)
        assert torch.allclose(a, b, atol=1e-6) == identical
    losses = E.train_contrastive(model, small_tokenizer, texts, None, E.ContrastiveConfig(steps=3, batch_size=6))
    assert len(losses) == 3 and all(x > 0 for x in losses)


# ---------------------------------------------------------------------------------------------- the benchmark


def test_the_retrieval_benchmark_keeps_its_parts_apart(python_docs):
    """Catches: a query with two relevant documents, a test text among the training pairs, a relevant document
    pretraining saw, and fewer than 1,000 documents to search."""
    corpus, topics = python_docs
    data = E.build_retrieval(corpus, topics)
    queries, documents, train = data["queries"], data["documents"], data["train"]
    assert len(documents) >= 1000 and len(queries) >= 500 and len(train) >= 1000
    assert sorted(queries["relevant"]) == [i for i, h in enumerate(documents["held_out"]) if h]
    assert len({same_text_key(q) for q in queries["query"]}) == len(queries)
    assert len({same_text_key(d) for d in documents["document"]}) == len(documents)
    test_texts = {same_text_key(t) for t in [*queries["query"], *documents["document"]]}
    assert not test_texts & {same_text_key(t) for t in [*train["query"], *train["document"]]}
    pretraining = " ".join(same_text_key(t) for t in corpus["train"]["text"])
    for i in queries["relevant"][:200]:  # a relevant document is never part of a docstring pretraining saw
        assert same_text_key(documents[i]["document"]) not in pretraining
    distractors = [d for d, h in zip(documents["document"], documents["held_out"]) if not h]
    assert all(same_text_key(d) in pretraining for d in distractors[:100])
    source = [*corpus["validation"], *[r for s in topics.values() for r in s]]
    for q in queries.select(range(50)):  # the query and its document are one docstring's two parts
        text = next(r["text"] for r in source if r["source"] == q["source"] and
                    same_text_key(r["text"]).startswith(same_text_key(q["query"])))
        assert same_text_key(text) == same_text_key(q["query"] + " " + documents[q["relevant"]]["document"])
    held = documents["held_out"]
    assert not all(held[:len(queries)]), "relevant documents must not sit together at the front"
    for q in queries.select(range(20)):
        assert held[q["relevant"]]
    small = E.sample_retrieval(data, 30, 20)
    assert len(small["queries"]) == 30 and len(small["documents"]) == 50
    for q, big in zip(small["queries"], queries.select(range(30))):
        assert small["documents"][q["relevant"]]["document"] == documents[big["relevant"]]["document"]
    again = E.build_retrieval(corpus, topics)
    assert again["queries"]["query"] == queries["query"] and again["train"]["query"] == train["query"]


def test_split_docstring_takes_the_first_sentence():
    assert E.split_docstring("Return the size.  It is in bytes.\n\nMore here.") == \
        ("Return the size.", "It is in bytes.\n\nMore here.")
    assert E.split_docstring("Open a\nfile for reading\n\nThe mode is r.") == ("Open a file for reading",
                                                                              "The mode is r.")
    assert E.split_docstring("Compare e.g. two values") == ("Compare e.g. two values", "")
    assert not re.search(r"\s{2}", E.split_docstring("A   b.\n c")[0])


def test_reciprocal_rank_fusion_equals_a_brute_force_computation():
    """Catches: ranks from 0 instead of 1, ranks taken in ascending order of score, the constant k left out."""
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(4, 9, generator=g), torch.randn(4, 9, generator=g)
    fused = E.reciprocal_rank_fusion(a, b, k=60)
    for q in range(4):
        for d in range(9):
            rank_a = sorted(range(9), key=lambda j: -a[q, j].item()).index(d) + 1
            rank_b = sorted(range(9), key=lambda j: -b[q, j].item()).index(d) + 1
            assert fused[q, d].item() == pytest.approx(1 / (60 + rank_a) + 1 / (60 + rank_b))
    # ties share the average of their ranks: no document is favoured by its position
    assert E.rank_positions(torch.tensor([[0.5, 0.5, 0.9, 0.5]])).tolist() == [[3.0, 3.0, 1.0, 3.0]]
    tied = torch.zeros(2, 6)
    # exact: rank 3.5 everywhere, and 1 / 63.5 + 1 / 63.5 is 2 / 63.5 in any IEEE float64 (doubling is exact)
    assert torch.equal(E.reciprocal_rank_fusion(tied, tied), torch.full((2, 6), 2 / 63.5, dtype=torch.float64))
    with pytest.raises(ValueError, match="one shape"):
        E.reciprocal_rank_fusion(a, b[:2])


def test_text_pieces_cover_the_tokens_in_order(small_tokenizer):
    """Catches: a first piece that is not what the encoder reads (its tokens must be the text's first ones), pieces
    that drop or repeat tokens, and pieces longer than asked."""
    from roberta_from_scratch.embeddings import text_pieces

    text = "Return the number of bytes read from the socket, or None if the peer closed it before any data came."
    ids = small_tokenizer.encode(text, add_special_tokens=False)
    _, offsets, _ = small_tokenizer.encode_with_offsets(text, add_special_tokens=False)
    for size in (1, 5, 7, len(ids), len(ids) + 3):
        pieces = text_pieces(small_tokenizer, text, size)
        assert len(pieces) == -(-len(ids) // size)
        assert "".join(pieces) == text.strip()  # contiguous: every character once, in order
        # each piece ends where its last token ends
        assert [len("".join(pieces[:k + 1])) for k in range(len(pieces))] == \
            [offsets[min((k + 1) * size, len(ids)) - 1][1] for k in range(len(pieces))]
        first = small_tokenizer.encode(pieces[0], add_special_tokens=False)
        assert first[:-1] == ids[:len(first) - 1] and abs(len(first) - min(size, len(ids))) <= 1
    assert text_pieces(small_tokenizer, "", 4) == [""]
    with pytest.raises(ValueError, match="at least one token"):
        text_pieces(small_tokenizer, text, 0)


def test_best_chunk_scores_take_each_documents_best_chunk():
    from roberta_from_scratch.embeddings import best_chunk_scores

    torch.manual_seed(0)
    queries, chunks = torch.randn(5, 8), torch.randn(9, 8)
    owner = [0, 0, 1, 2, 2, 2, 3, 1, 0]
    scores = best_chunk_scores(queries, chunks, owner, 4)
    cosines = queries @ chunks.T
    for d in range(4):
        mine = [c for c, o in enumerate(owner) if o == d]
        # exact: a maximum picks one of the same products
        assert torch.equal(scores[:, d], cosines[:, mine].max(1).values)
    with pytest.raises(ValueError, match="has no chunk"):
        best_chunk_scores(queries, chunks, owner, 5)
    with pytest.raises(ValueError, match="one document per chunk"):
        best_chunk_scores(queries, chunks, owner[:-1], 4)
