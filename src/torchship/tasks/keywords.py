"""keywords: KeyBERT-style key phrases, ranked by the similarity of their embedding to the text's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from torchship.diff.measures import check_lengths, mean, measure, rate, set_overlap
from torchship.diff.record import Changed, TaskDiff
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

    # Not the embeddings' measures: users read the phrases, never the vectors they were ranked by.
    diff_measures: ClassVar[tuple[str, ...]] = ("topk_overlap", "changed_rate")
    precision_limits: ClassVar[Mapping[str, float]] = {"min_topk_overlap": 0.9}

    def diff(self, requests: Sequence[Any], old: Sequence[Any], new: Sequence[Any]) -> TaskDiff:
        check_lengths(requests, old, new)
        old_lists = [self.agreement_key(answer) for answer in old]
        new_lists = [self.agreement_key(answer) for answer in new]
        pairs = list(zip(old_lists, new_lists, strict=True))
        return TaskDiff(
            task=self.name,
            inputs=len(requests),
            measures=[
                measure(
                    "topk_overlap",
                    mean(set_overlap(a, b) for a, b in pairs),
                    "higher",
                    "mean fraction of keywords both versions return (shared / the longer list; 1.0 when both "
                    "return none)",
                ),
                measure(
                    "changed_rate",
                    rate(a != b for a, b in pairs),
                    "lower",
                    "fraction of inputs whose keyword list differs in content or order",
                ),
            ],
            changed=[
                Changed(index=i, request=requests[i], old=a, new=b, why=_keyword_changes(a, b))
                for i, (a, b) in enumerate(pairs)
                if a != b
            ],
        )


def _keyword_changes(old: list[str], new: list[str]) -> str:
    """What a reader of the two keyword lists sees differ: phrases gained and lost, else only the order."""
    gained = [k for k in new if k not in old]
    lost = [k for k in old if k not in new]
    parts = [f"added {', '.join(map(repr, gained))}"] if gained else []
    parts += [f"dropped {', '.join(map(repr, lost))}"] if lost else []
    return "; ".join(parts) or "the same keywords in another order"
