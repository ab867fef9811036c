"""keywords: KeyBERT-style key phrases, ranked by the similarity of their embedding to the text's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchship.spec import ModelSpec
from torchship.tasks.embeddings import Embeddings


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

    name = "keywords"
    spec_sections = ("embeddings", "keywords")
    handler_class = "KeywordsTask"
    auto_class = "AutoModel"

    def handler_settings(self, spec: ModelSpec, model_dir: Path) -> dict[str, Any]:
        keywords = spec.keywords
        return {
            **super().handler_settings(spec, model_dir),
            "ngram_range": tuple(keywords.ngram_range),
            "stop_words": tuple(stop_word_list(keywords.stop_words)),
            "top_n": keywords.top_n,
            "use_mmr": keywords.use_mmr,
            "diversity": keywords.diversity,
            "max_candidates": keywords.max_candidates,
            "max_candidates_per_request": keywords.max_candidates_per_request,
            "max_candidate_tokens_per_request": keywords.max_candidate_tokens_per_request,
        }

    def agreement_key(self, answer: Any) -> Any:
        return [k["keyword"] for k in answer]

    def agrees(self, compiled: Any, source: Any) -> bool:
        # The same phrases in the same order; embeddings' cosine rule does not apply to a phrase list.
        return self.agreement_key(compiled) == self.agreement_key(source)
