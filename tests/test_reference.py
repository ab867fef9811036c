"""The in-process reference that image and rehearse compare served answers with: a spec as `torchship init`
writes it (no compile.max_length) gets the model's own limit, as the stages fit it."""

from __future__ import annotations

from tiny_models import save_tiny_classifier
from torchship.modeling import default_max_length, token_limit
from torchship.reference import source_results
from torchship.spec import parse_spec


def test_a_spec_without_max_length_gets_the_models_limit_like_the_stages(tmp_path):
    model_dir = save_tiny_classifier(tmp_path / "model", "roberta")
    data = {"name": "sentiment", "version": "0.1.0", "task": "text-classification", "source": str(model_dir)}
    as_written = parse_spec(data, tmp_path / "model.yaml")
    assert as_written.compile.max_length is None
    limit = default_max_length(token_limit(model_dir))
    fitted = parse_spec({**data, "compile": {"max_length": limit}}, tmp_path / "model.yaml")
    texts = ["the cat sat on the mat.", "hello world " * 200]  # the second is cut at the model's limit
    assert source_results(as_written, model_dir, texts) == source_results(fitted, model_dir, texts)
