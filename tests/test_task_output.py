"""The gate checks the scores clients get: its text-classification task output is the served one.

Independent reference: transformers' pipeline(top_k=None), which applies sigmoid for multi-label heads
and nothing for regression. Before the shared rule the gate applied softmax to every head.
"""

import json

import pytest
import torch

from tiny_models import EXAMPLES, save_tiny_classifier, write_spec
from torchship.archiver.package import handler_config
from torchship.handlers.requests import ParsedRequest
from torchship.handlers.service import build_task, predict
from torchship.modeling import load_source_model
from torchship.spec import load_spec
from torchship.tasks import task_output

HEADS = {
    "multi-label": ({0: "sports", 1: "politics", 2: "science"}, "multi_label_classification"),
    "regression": ({0: "rating"}, "regression"),
    "single-label": ({0: "negative", 1: "neutral", 2: "positive"}, None),
}


@pytest.fixture(scope="module", params=list(HEADS))
def head(request, tmp_path_factory):
    labels, problem = HEADS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    model_dir = save_tiny_classifier(root / "model", labels=labels)
    if problem:
        config_path = model_dir / "config.json"
        config = json.loads(config_path.read_text())
        config["problem_type"] = problem
        config_path.write_text(json.dumps(config))
    spec = load_spec(write_spec(root / "spec", str(model_dir), name="tiny-head", task="text-classification"))
    return request.param, model_dir, spec


def pipeline_scores(model_dir, texts):
    """Scores in label-id order from transformers' own pipeline."""
    from transformers import pipeline

    reference = pipeline("text-classification", model=str(model_dir), tokenizer=str(model_dir), top_k=None)
    order = reference.model.config.id2label
    return [
        [next(r["score"] for r in row if r["label"] == order[i]) for i in range(len(order))]
        for row in reference(texts)
    ]


def test_gate_task_output_is_the_served_score(head):
    name, model_dir, spec = head
    source = load_source_model(model_dir, spec.task, spec.spec_path)
    task = build_task(
        model_dir, {**handler_config(spec, model_dir), "tokenizer_dir": "."}, model=source.as_model()
    )
    reduce = task_output(spec, model_dir)
    expected = pipeline_scores(model_dir, EXAMPLES)
    served = predict(task, [ParsedRequest([t], single=True) for t in EXAMPLES])
    for text, want, answer in zip(EXAMPLES, expected, served, strict=True):
        features = task.encoder.pad(task.encoder.tokenize([text]).rows([0]))
        with torch.inference_mode():
            gate = reduce(source.named(features), features["attention_mask"])[0].tolist()
        assert gate == pytest.approx(want, abs=1e-5), f"{name}: gate scores differ from the pipeline's"
        by_label = {r["label"]: r["score"] for r in answer}
        assert [by_label[label] for label in HEADS[name][0].values()] == pytest.approx(gate, abs=1e-5)
    if name == "multi-label":
        # Sigmoid scores are independent per label: they do not sum to 1 as softmax would.
        assert any(abs(sum(row) - 1) > 1e-3 for row in expected)
