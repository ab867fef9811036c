"""The compile backends agree everywhere they are named: the spec's allowed values, the registry, and the
handler's loaders for every compiled.json format a backend writes."""

from __future__ import annotations

import json
import typing

import pytest

from torchship.compile import BACKENDS, compile_backend
from torchship.errors import SpecError
from torchship.handlers.loading import LOADERS, load_forward
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
    (tmp_path / "compiled.json").write_text(json.dumps({"format": "tensorrt-engine"}))
    with pytest.raises(ValueError, match="unknown compiled format 'tensorrt-engine'"):
        load_forward(tmp_path, "embeddings")
