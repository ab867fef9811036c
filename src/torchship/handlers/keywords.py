"""KeyBERT keyword extraction for one document, re-implemented on torch alone.

Equal to `KeyBERT(model).extract_keywords(doc, keyphrase_ngram_range, stop_words, top_n, use_mmr,
diversity)` with a sentence-transformers model: candidates are built the way KeyBERT's default
scikit-learn CountVectorizer builds them, and are ranked by cosine similarity to the document, optionally
diversified with Maximal Marginal Relevance. The handler cannot import sklearn or keybert, so the stop
word list arrives as data (the packager writes `sorted(ENGLISH_STOP_WORDS)` into the handler config).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection

import torch

# CountVectorizer's default token_pattern: runs of two or more word characters (Unicode aware), so
# single letters and punctuation never become candidates.
_TOKEN = re.compile(r"\b\w\w+\b")


class TooManyCandidates(Exception):
    """More distinct candidate phrases than the budget allows; generation stopped there."""

    def __init__(self, limit: int):
        super().__init__(f"more than {limit} candidate phrases")
        self.limit = limit


def candidates(
    doc: str,
    ngram_range: tuple[int, int],
    stop_words: Collection[str] | None,
    limit: int | None = None,
) -> list[str]:
    """Candidate keyphrases in CountVectorizer's vocabulary order (sorted, each once).

    With `limit`, raises TooManyCandidates as soon as the distinct phrases exceed it, so a hostile text
    costs at most `limit` + 1 set insertions beyond its word split (which is linear in its length).
    """
    min_n, max_n = ngram_range
    if not 1 <= min_n <= max_n:
        # KeyBERT swallows sklearn's error here and returns []; a service should reject the config instead.
        raise ValueError(f"ngram_range must satisfy 1 <= min <= max, got {ngram_range}")
    tokens = _TOKEN.findall(doc.lower())
    if stop_words:
        # Stop words are dropped before n-grams are formed, so an n-gram can join words that were not
        # adjacent in the text ("state of the art" -> "state art"), exactly as CountVectorizer does.
        stop = frozenset(stop_words)
        tokens = [token for token in tokens if token not in stop]
    phrases: set[str] = set()
    for n in range(min_n, max_n + 1):
        for start in range(len(tokens) - n + 1):
            phrases.add(" ".join(tokens[start : start + n]))
            if limit is not None and len(phrases) > limit:
                raise TooManyCandidates(limit)
    # Plain code-point order: the order of CountVectorizer's vocabulary, which fixes how ties resolve.
    return sorted(phrases)


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    # Like sklearn's normalize() inside cosine_similarity: an all-zero row stays zero instead of NaN.
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    return x / torch.where(norms == 0, torch.ones_like(norms), norms)


def _as_float(x: torch.Tensor) -> torch.Tensor:
    # Half precision would round the similarities before ranking; KeyBERT works on float32 numpy arrays.
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def select(
    doc_embedding: torch.Tensor,
    candidate_embeddings: torch.Tensor,
    candidates: list[str],
    top_n: int,
    use_mmr: bool = False,
    diversity: float = 0.5,
) -> list[dict]:
    """[{"keyword": str, "score": float}, ...] best first, scores rounded to 4 places as KeyBERT reports.

    Embeddings need not be normalized: similarity is cosine, as in KeyBERT. `doc_embedding` is (dim,) or
    (1, dim); `candidate_embeddings` is (len(candidates), dim).
    """
    if top_n < 1:
        # KeyBERT returns every candidate for top_n=0 (a [-0:] slice) and one for MMR; reject instead.
        raise ValueError(f"top_n must be at least 1, got {top_n}")
    if candidate_embeddings.shape[0] != len(candidates):
        raise ValueError(
            f"{candidate_embeddings.shape[0]} candidate embeddings for {len(candidates)} candidates"
        )
    if not candidates:
        return []
    doc = _unit_rows(_as_float(doc_embedding).reshape(1, -1))
    words = _unit_rows(_as_float(candidate_embeddings).to(doc.dtype))
    scores = (words @ doc.T).squeeze(1)
    count = len(candidates)

    if not use_mmr:
        # KeyBERT takes the tail of an ascending argsort and reverses it. Exact ties then come out later
        # vocabulary entry first when numpy sorts stably (small arrays); sorting the reversed scores stably
        # reproduces that deterministically.
        order = torch.argsort(scores.flip(0), descending=True, stable=True)[:top_n]
        return [_keyword(candidates, scores, count - 1 - int(i)) for i in order]

    # Maximal Marginal Relevance: start from the best match, then repeatedly add the candidate that
    # balances similarity to the document against similarity to the closest keyword already chosen.
    # The closest-keyword similarity is kept as a running maximum, updated with one matrix-vector
    # product per pick: O(candidates x dim) per pick and no candidates x candidates matrix, which at a
    # few thousand candidates would cost more than embedding them did.
    first = int(torch.argmax(scores))  # argmax keeps the first of equal maxima, like numpy
    chosen = [first]
    taken = torch.zeros(count, dtype=torch.bool)
    taken[first] = True
    redundancy = words @ words[first]
    for _ in range(min(top_n, count) - 1):
        gain = (1 - diversity) * scores - diversity * redundancy
        # Chosen ones can never win again; among equal gains the lowest index wins, as before.
        best = int(torch.argmax(gain.masked_fill(taken, float("-inf"))))
        chosen.append(best)
        taken[best] = True
        redundancy = torch.maximum(redundancy, words @ words[best])
    keywords = [_keyword(candidates, scores, i) for i in chosen]
    # KeyBERT orders MMR picks by their rounded score; sorted() is stable, so rounded ties keep pick order.
    return sorted(keywords, key=lambda keyword: keyword["score"], reverse=True)


def _keyword(candidates: list[str], scores: torch.Tensor, index: int) -> dict:
    return {"keyword": candidates[index], "score": round(float(scores[index]), 4)}


def extract_keywords(
    doc: str,
    embed: Callable[[list[str]], torch.Tensor],
    ngram_range: tuple[int, int] = (1, 1),
    stop_words: Collection[str] | None = None,
    top_n: int = 5,
    use_mmr: bool = False,
    diversity: float = 0.5,
) -> list[dict]:
    """Keywords of `doc`; `embed` maps texts to a (len(texts), dim) tensor, and is called once."""
    phrases = candidates(doc, ngram_range, stop_words)
    if not phrases:
        # An empty, too short or all-stop-word document: KeyBERT returns [] without embedding anything.
        return []
    embeddings = embed([doc, *phrases])
    return select(embeddings[0], embeddings[1:], phrases, top_n, use_mmr, diversity)
