"""text-classification: every label with its score, best first (transformers' pipeline, top_k=None)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from torchship.diff.measures import NO_INPUTS, check_lengths, confusion_counts, mean, measure, rate
from torchship.diff.record import Changed, Confusion, TaskDiff
from torchship.handlers.tasks import read_model_config
from torchship.handlers.tasks.text_classification import TextClassificationTask, class_scores, score_function
from torchship.spec import ModelSpec
from torchship.tasks.base import BUILTIN_TEXTS, Reduce, TaskDefinition, text_bodies
from torchship.tasks.checkpoints import SEQUENCE_HEAD, require_label_names
from torchship.validate.eval_set import LABELLED_TEXTS


class TextClassification(TaskDefinition):
    runtime = TextClassificationTask
    checkpoint = SEQUENCE_HEAD
    eval_set = LABELLED_TEXTS
    builtin_examples = tuple(text_bodies(BUILTIN_TEXTS))

    def output(self, spec: ModelSpec, model_dir: Path) -> Reduce:
        # The handler's own rule (softmax, sigmoid or raw), so the gate checks the scores clients get.
        function = score_function(read_model_config(model_dir))
        return lambda outputs, mask: class_scores(outputs["logits"], function)

    def check_head(self, source: Path, id2label: dict[Any, str], num_labels: int) -> None:
        require_label_names(source, self.name, id2label, num_labels)

    def agreement_key(self, answer: Any) -> Any:
        return answer[0]["label"]

    diff_measures: ClassVar[tuple[str, ...]] = ("flip_rate", "score_shift")
    # A label flip is what a client sees; one in a hundred inputs at most (none on a small example set).
    precision_limits: ClassVar[Mapping[str, float]] = {"max_flip_rate": 0.01}

    def diff(self, requests: Sequence[Any], old: Sequence[Any], new: Sequence[Any]) -> TaskDiff:
        check_lengths(requests, old, new)
        old_top = [self.agreement_key(answer) for answer in old]
        new_top = [self.agreement_key(answer) for answer in new]
        # The same label's score in both versions: a top label kept with much less confidence is a change
        # users feel (thresholds on the score) even where nothing flips. A new answer cut by top_k may not
        # hold the old top label: that input has no shift to read.
        shifts = []
        for label, old_answer, new_answer in zip(old_top, old, new, strict=True):
            new_score = next((entry["score"] for entry in new_answer if entry["label"] == label), None)
            if new_score is not None:
                shifts.append(abs(new_score - old_answer[0]["score"]))
        labels = sorted({entry["label"] for answer in (*old, *new) for entry in answer})
        old_labels = {entry["label"] for answer in old for entry in answer}
        new_labels = {entry["label"] for answer in new for entry in answer}
        note = ""
        if old and new and old_labels != new_labels:
            # Compared anyway, on the labels' names: a renamed label counts as a flip, which is what a client
            # that reads the label sees.
            note = (
                f"the label sets differ: only the old version has {sorted(old_labels - new_labels)}, only the "
                f"new one has {sorted(new_labels - old_labels)}; an input whose label was renamed counts as flipped"
            )
        flipped = [i for i, (a, b) in enumerate(zip(old_top, new_top, strict=True)) if a != b]
        return TaskDiff(
            task=self.name,
            inputs=len(requests),
            measures=[
                measure(
                    "flip_rate",
                    rate(a != b for a, b in zip(old_top, new_top, strict=True)),
                    "lower",
                    "fraction of inputs whose top label differs between the versions",
                ),
                measure(
                    "score_shift",
                    mean(shifts),
                    "lower",
                    "mean |new - old| score of each input's old top label (the new version's score for that label)",
                    unmeasurable=(
                        "no new answer holds its input's old top label (cut by top_k)" if old else NO_INPUTS
                    ),
                ),
            ],
            changed=[
                Changed(
                    index=i,
                    request=requests[i],
                    old=old_top[i],
                    new=new_top[i],
                    why=f"{old_top[i]} -> {new_top[i]}",
                )
                for i in flipped
            ],
            confusion=Confusion(labels=labels, counts=confusion_counts(old_top, new_top, labels)),
            note=note,
        )
