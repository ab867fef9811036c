"""The runtime tasks, one module each, registered here by their spec name (CONTRIBUTING.md, "Adding a task")."""

from __future__ import annotations

from .base import RequestSchema, Task, TaskSettings, read_model_config
from .embeddings import EmbeddingsTask
from .keywords import KeywordsTask
from .question_answering import QuestionAnsweringTask
from .reranking import RerankingTask
from .text_classification import TextClassificationTask, class_scores, score_function
from .token_classification import TokenClassificationTask

__all__ = [
    "TASKS",
    "RequestSchema",
    "Task",
    "TaskSettings",
    "class_scores",
    "read_model_config",
    "score_function",
]

TASKS: dict[str, type[Task]] = {
    task.name: task
    for task in (
        EmbeddingsTask,
        KeywordsTask,
        TextClassificationTask,
        TokenClassificationTask,
        RerankingTask,
        QuestionAnsweringTask,
    )
}
