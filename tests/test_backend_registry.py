"""The compile backends agree everywhere they are named: the spec's allowed values, the registry, and the
handler's loaders for every compiled.json format a backend writes."""

from __future__ import annotations

import json
import typing

import pytest

from torchship.compile import BACKENDS, compile_backend
from torchship.errors import SpecError
from torchship.handlers.loading import LOADERS, load_compiled
from torchship.spec import CompileSpec


def test_the_spec_accepts_exactly_the_registered_backends():
    allowed = typing.get_args(CompileSpec.model_fields["backend"].annotation)
    assert set(allowed) == set(BACKENDS)
    assert all(name == backend.name for name, backend in BACKENDS.items())


def test_every_format_a_backend_writes_has_a_handler_loader():
    written = {fmt for backend in BACKENDS.values() for fmt in backend.formats}
    assert written == set(LOADERS), (written, set(LOADERS))


def test_an_unknown_backend_or_format_is_named(tmp_path):
    with pytest.raises(SpecError, match=r"unknown compile\.backend 'tensorrt'"):
        compile_backend("tensorrt")
    io = {"inputs": ["input_ids", "attention_mask"], "outputs": ["logits"]}
    (tmp_path / "compiled.json").write_text(json.dumps({"format": "tensorrt-engine"} | io))
    with pytest.raises(ValueError, match="unknown compiled format 'tensorrt-engine'"):
        load_compiled(tmp_path)


def test_a_compiled_json_without_input_and_output_names_asks_to_compile_again(tmp_path):
    (tmp_path / "compiled.json").write_text(json.dumps({"format": "torchscript", "file": "model.pt"}))
    with pytest.raises(ValueError, match="compile the model again"):
        load_compiled(tmp_path)


def test_a_compiled_json_naming_an_input_the_handler_cannot_feed_is_refused(tmp_path):
    io = {"inputs": ["input_ids", "attention_mask", "pixel_values"], "outputs": ["logits"]}
    (tmp_path / "compiled.json").write_text(json.dumps({"format": "torchscript", "file": "model.pt"} | io))
    with pytest.raises(ValueError, match=r"\['pixel_values'\] the handler cannot feed"):
        load_compiled(tmp_path)
