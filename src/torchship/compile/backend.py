"""What a compile backend is: a name the spec accepts, the function that compiles, the compiled.json
formats it writes (each one loaded on the handler side by handlers/loading.LOADERS), and the packages a
server of its .mar needs. compile/__init__.py registers one per backend; tests/test_backend_registry.py
proves the registry, the spec's allowed values and the handler's loaders agree."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torchship.handlers.model_io import NamedIO
from torchship.pipeline import StageContext

# (stage context, the source model as a NamedIO (handlers/model_io.py: positional inputs in io.inputs
# order, a tuple in io.outputs order), tokenizer) -> the stage record's details. The function writes
# compiled.json with write_manifest, which records io's input and output names.
CompileFunction = Callable[[StageContext, NamedIO, Any], dict[str, Any]]


@dataclass(frozen=True)
class CompileBackend:
    name: str  # the spec's compile.backend value
    description: str  # one line, shown while the stage runs
    compile: CompileFunction
    formats: tuple[str, ...]  # compiled.json "format" values it may write
    serve_requirements: tuple[str, ...] = ()  # packages beyond torch that serving its .mar needs
