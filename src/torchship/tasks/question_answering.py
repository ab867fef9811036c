"""question-answering: the answer span of a context, with character offsets (extractive, SQuAD-style)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from torchship.diff.measures import answers_equal, check_lengths, mean, measure, rate, token_f1
from torchship.diff.record import Changed, TaskDiff
from torchship.errors import SpecError
from torchship.handlers.tasks.question_answering import AnswerSettings, QuestionAnsweringTask
from torchship.spec import ModelSpec
from torchship.tasks.base import Reduce, TaskDefinition
from torchship.tasks.checkpoints import SPAN_HEAD
from torchship.validate.eval_set import ANSWERED_QUESTIONS

BUILTIN_QUESTIONS = (
    {
        "question": "Where did the cat sit?",
        "context": "The cat sat on the mat while the dog slept by the door.",
    },
    {
        "question": "Who won the Nobel Prize in Physics in 1903?",
        "context": "Marie Curie won the Nobel Prize in Physics in 1903, together with Pierre Curie and "
        "Henri Becquerel. She won a second Nobel Prize, in Chemistry, in 1911.",
    },
    {
        "question": "What does TorchServe serve?",
        "context": "TorchServe serves PyTorch models over HTTP. It batches requests and scales workers.",
    },
)
# Tokens shared by neighbouring windows when the spec leaves doc_stride out: transformers' old pipeline
# default (128), or a quarter of a short window.
MAX_DEFAULT_STRIDE = 128


def doc_stride(spec: ModelSpec) -> int:
    """The spec's doc_stride, or the default for its window length; a stride that leaves a window no
    room to advance is a spec error."""
    max_length = spec.compile.known_max_length()
    stride = spec.question_answering.doc_stride
    if stride is None:
        return min(MAX_DEFAULT_STRIDE, max_length // 4)
    if stride >= max_length // 2:
        raise SpecError(
            f"{spec.spec_path}: key 'question_answering.doc_stride': {stride} tokens shared by neighbouring "
            f"windows of {max_length} tokens leave too little of each window to advance",
            hint=f"Set it below {max_length // 2} (a quarter of compile.max_length is usual), or leave it out.",
        )
    return stride


class QuestionAnswering(TaskDefinition):
    runtime = QuestionAnsweringTask
    checkpoint = SPAN_HEAD
    spec_sections = ("question_answering",)
    eval_set = ANSWERED_QUESTIONS
    builtin_examples = BUILTIN_QUESTIONS

    def settings(self, spec: ModelSpec, model_dir: Path) -> AnswerSettings:
        section = spec.question_answering
        return AnswerSettings(
            max_answer_tokens=section.max_answer_tokens,
            doc_stride=doc_stride(spec),
            max_windows_per_context=section.max_windows_per_context,
        )

    def output(self, spec: ModelSpec, model_dir: Path) -> Reduce:
        # Start and end logits at the real tokens: what the span search reads.
        return lambda outputs, mask: (
            torch.stack([outputs["start_logits"], outputs["end_logits"]], dim=1).float() * mask[:, None, :]
        )

    def agreement_key(self, answer: Any) -> Any:
        return (answer["start"], answer["end"])  # the same span of the context

    def prediction(self, answer: Any) -> Any:
        return answer["answer"]  # exact match and F1 compare answer texts

    diff_measures: ClassVar[tuple[str, ...]] = ("exact_match", "answer_f1", "changed_rate")
    precision_limits: ClassVar[Mapping[str, float]] = {"min_answer_f1": 0.95}

    def diff(self, requests: Sequence[Any], old: Sequence[Any], new: Sequence[Any]) -> TaskDiff:
        check_lengths(requests, old, new)
        texts = [(self.prediction(a), self.prediction(b)) for a, b in zip(old, new, strict=True)]
        spans = [(self.agreement_key(a), self.agreement_key(b)) for a, b in zip(old, new, strict=True)]
        return TaskDiff(
            task=self.name,
            inputs=len(requests),
            measures=[
                measure(
                    "exact_match",
                    rate(answers_equal(a, b) for a, b in texts),
                    "higher",
                    "fraction of inputs whose answer texts are equal (SQuAD normalization: case, punctuation, "
                    "articles)",
                ),
                measure(
                    "answer_f1",
                    mean(token_f1(a, b) for a, b in texts),
                    "higher",
                    "mean SQuAD token F1 between each input's old and new answer text",
                ),
                measure(
                    "changed_rate",
                    rate(a != b for a, b in spans),
                    "lower",
                    "fraction of inputs whose answer span (start, end) in the context differs",
                ),
            ],
            changed=[
                Changed(
                    index=i,
                    request=requests[i],
                    old=_shown(old[i]),
                    new=_shown(new[i]),
                    why=f"{old[i]['answer']!r} {a[0]}-{a[1]} -> {new[i]['answer']!r} {b[0]}-{b[1]}",
                )
                for i, (a, b) in enumerate(spans)
                if a != b
            ],
        )


def _shown(answer: dict[str, Any]) -> dict[str, Any]:
    """The part of an answer a diff shows: the text and where it is (the score changes with every version)."""
    return {"answer": answer["answer"], "start": answer["start"], "end": answer["end"]}
