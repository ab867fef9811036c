"""keywords: KeyBERT-style key phrases, ranked by the similarity of their embedding to the text's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchship.handlers.tasks.keywords import KeywordSettings, KeywordsTask
from torchship.spec import ModelSpec
from torchship.tasks.embeddings import Embeddings, embedding_settings


def stop_word_list(choice: str | list[str]) -> list[str]:
    """The handler cannot import scikit-learn, so its English stop words travel as data in the config."""
    if choice == "none":
        return []
    if choice == "english":
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        return sorted(ENGLISH_STOP_WORDS)
    return sorted(set(choice))


class Keywords(Embeddings):
    """The gate's output is the embedding the phrases are ranked by (pooled as for embeddings)."""

    runtime = KeywordsTask
    spec_sections = ("embeddings", "keywords")

    def settings(self, spec: ModelSpec, model_dir: Path) -> KeywordSettings:
        keywords = spec.keywords
        pooling, normalize = embedding_settings(spec, model_dir)
        return KeywordSettings(
            pooling=pooling,
            normalize=normalize,
            ngram_range=(keywords.ngram_range[0], keywords.ngram_range[1]),
            stop_words=tuple(stop_word_list(keywords.stop_words)),
            top_n=keywords.top_n,
            use_mmr=keywords.use_mmr,
            diversity=keywords.diversity,
            max_candidates=keywords.max_candidates,
            max_candidates_per_request=keywords.max_candidates_per_request,
            max_candidate_tokens_per_request=keywords.max_candidate_tokens_per_request,
        )

    def agreement_key(self, answer: Any) -> Any:
        return [k["keyword"] for k in answer]

    def agrees(self, compiled: Any, source: Any) -> bool:
        # The same phrases in the same order; embeddings' cosine rule does not apply to a phrase list.
        return self.agreement_key(compiled) == self.agreement_key(source)
