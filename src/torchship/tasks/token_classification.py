"""token-classification: entities with character offsets (transformers' token-classification pipeline)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from torchship.diff.measures import (
    EntityMatch,
    EntitySpan,
    check_lengths,
    entity_f1,
    match_entities,
    measure,
    rate,
)
from torchship.diff.record import Changed, EntityTypeChanges, TaskDiff
from torchship.handlers.tasks.token_classification import EntitySettings, TokenClassificationTask
from torchship.spec import ModelSpec
from torchship.tasks.base import BUILTIN_TEXTS, Reduce, TaskDefinition, text_bodies
from torchship.tasks.checkpoints import TOKEN_HEAD, require_label_names
from torchship.validate.eval_set import ENTITY_SPANS


class TokenClassification(TaskDefinition):
    runtime = TokenClassificationTask
    checkpoint = TOKEN_HEAD
    spec_sections = ("token_classification",)
    eval_set = ENTITY_SPANS
    builtin_examples = tuple(text_bodies(BUILTIN_TEXTS))

    def settings(self, spec: ModelSpec, model_dir: Path) -> EntitySettings:
        section = spec.token_classification
        return EntitySettings(
            aggregation_strategy=section.aggregation_strategy, ignore_labels=tuple(section.ignore_labels)
        )

    def output(self, spec: ModelSpec, model_dir: Path) -> Reduce:
        # Label probabilities per token: what the entities are decoded from.
        return lambda outputs, mask: outputs["logits"].float().softmax(dim=-1)

    def check_head(self, source: Path, id2label: dict[Any, str], num_labels: int) -> None:
        require_label_names(source, self.name, id2label, num_labels)

    def agreement_key(self, answer: Any) -> Any:
        return [_span(e) for e in answer]

    diff_measures: ClassVar[tuple[str, ...]] = ("changed_rate", "entity_f1")
    # Entities found against the fp32 source's, exact spans and types: a boundary moved by a token counts.
    precision_limits: ClassVar[Mapping[str, float]] = {"min_entity_f1": 0.95}

    def diff(self, requests: Sequence[Any], old: Sequence[Any], new: Sequence[Any]) -> TaskDiff:
        check_lengths(requests, old, new)
        counts: defaultdict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        matches: list[EntityMatch] = []
        changed = []
        for i, (old_answer, new_answer) in enumerate(zip(old, new, strict=True)):
            old_spans, new_spans = self.agreement_key(old_answer), self.agreement_key(new_answer)
            match = match_entities(old_spans, new_spans)
            matches.append(match)
            # Every kind counts under the old entity's type, except an added one, which has only a new type.
            for kind, pairs in (
                ("unchanged", match.unchanged),
                ("relabelled", match.relabelled),
                ("respanned", match.respanned),
            ):
                for a, _ in pairs:
                    counts[old_spans[a][0]][kind] += 1
            for a in match.removed:
                counts[old_spans[a][0]]["removed"] += 1
            for b in match.added:
                counts[new_spans[b][0]]["added"] += 1
            if match.changed:
                kept_old = {a for a, _ in match.unchanged}
                kept_new = {b for _, b in match.unchanged}
                changed.append(
                    Changed(
                        index=i,
                        request=requests[i],
                        old=[e for a, e in enumerate(old_answer) if a not in kept_old],
                        new=[e for b, e in enumerate(new_answer) if b not in kept_new],
                        why=_entity_changes(match, old_answer, new_answer),
                    )
                )
        matched = sum(len(m.unchanged) for m in matches)
        return TaskDiff(
            task=self.name,
            inputs=len(requests),
            measures=[
                measure(
                    "changed_rate",
                    rate(m.changed for m in matches),
                    "lower",
                    "fraction of inputs with an entity added, removed, relabelled or respanned",
                ),
                measure(
                    "entity_f1",
                    entity_f1(matched, sum(map(len, old)), sum(map(len, new))) if requests else None,
                    "higher",
                    "F1 of the new version's entities against the old's (same type, start and end; "
                    "1.0 when neither finds any)",
                ),
            ],
            changed=changed,
            entity_types={kind: EntityTypeChanges(**counts[kind]) for kind in sorted(counts)},
        )


def _span(entity: dict[str, Any]) -> EntitySpan:
    # "entity_group" when the pipeline aggregates tokens into words or phrases, "entity" per token otherwise.
    kind = entity["entity_group"] if "entity_group" in entity else entity["entity"]
    return (kind, entity["start"], entity["end"])


def _entity_changes(match: EntityMatch, old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]) -> str:
    """One line per input: what a reader of the extracted entities would see differ."""

    def shown(entity: dict[str, Any]) -> str:
        kind, start, end = _span(entity)
        return f"{kind} {entity.get('word', '')!r} {start}-{end}"

    parts = [f"relabelled {shown(old[a])} -> {_span(new[b])[0]}" for a, b in match.relabelled]
    parts += [f"respanned {shown(old[a])} -> {shown(new[b])}" for a, b in match.respanned]
    parts += [f"removed {shown(old[a])}" for a in match.removed]
    parts += [f"added {shown(new[b])}" for b in match.added]
    return "; ".join(parts)
