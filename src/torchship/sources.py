"""The fetch stage: bring the model source to a local Hugging Face-format directory.

Sources: a directory (relative to the spec file), or `pkg:MODULE/SUBDIR` for a model shipped inside an
installed Python package (how the demo model arrives without network).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

from torchship.errors import SourceError
from torchship.hashing import sha256_json
from torchship.pipeline import StageContext, tree_input
from torchship.settings import Settings
from torchship.spec import PKG_PREFIX, ModelSpec

MODEL_DIRNAME = "model"
# Files that describe a repository, not the model; copying them would only churn hashes.
_NOT_MODEL = frozenset({".gitattributes", ".gitignore"})
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "spiece.model", "vocab.json")


def resolve_source(spec: ModelSpec) -> Path:
    """The local directory the spec's `source` names, checked to look like a Hugging Face model."""
    source = spec.source
    if source.startswith(PKG_PREFIX):
        module, _, subdir = source[len(PKG_PREFIX) :].partition("/")
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is None or not (found.origin or found.submodule_search_locations):
            raise SourceError(
                f"source '{source}': Python package module '{module}' is not installed",
                hint=f"Install the package that provides '{module}' (e.g. `pip install {module.replace('_', '-')}`).",
            )
        base = (
            Path(found.origin).parent if found.origin else Path(next(iter(found.submodule_search_locations)))
        )
        path = base / subdir if subdir else base
    elif "://" in source:
        raise SourceError(f"source '{source}' is remote: it is downloaded by the fetch stage, not resolved")
    else:
        path = spec.resolve(source)
    if not path.is_dir():
        builder = spec.spec_dir / "build_model.py"  # the demo specs build their checkpoint first
        raise SourceError(
            f"source directory {path} does not exist (from source '{source}' in {spec.spec_path})",
            hint=f"Build it first: python {builder}"
            if builder.is_file()
            else "Point `source` at a directory made by `save_pretrained` (relative paths start at the spec file).",
        )
    if not (path / "config.json").is_file():
        raise SourceError(
            f"source directory {path} has no config.json: it is not a Hugging Face model directory",
            hint="Save the model with `model.save_pretrained(dir)` and `tokenizer.save_pretrained(dir)`.",
        )
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        raise SourceError(
            f"source directory {path} has no tokenizer files ({', '.join(_TOKENIZER_FILES)})",
            hint="Save the tokenizer beside the model with `tokenizer.save_pretrained(dir)`.",
        )
    return path


def is_s3(spec: ModelSpec) -> bool:
    return spec.source.startswith("s3://")


def s3_client(settings: Settings):
    from torchship.publish import make_client

    return make_client(settings.aws_endpoint_url, settings.aws_region)


def source_inputs(spec: ModelSpec, settings: Settings) -> dict[str, str]:
    if is_s3(spec):
        from torchship.publish import list_model_dir

        # Object sizes and ETags: a changed object re-runs fetch without downloading to find out.
        return {"source": sha256_json(list_model_dir(spec.source, s3_client(settings)))}
    return {"source": tree_input(resolve_source(spec))}


def run_fetch(ctx: StageContext) -> dict[str, Any]:
    target = ctx.out_dir / MODEL_DIRNAME
    if is_s3(ctx.spec):
        from torchship.publish import download_model_dir

        source = ctx.spec.source
        ctx.progress(f"downloading {source}")
        download_model_dir(source, target, s3_client(ctx.settings))
        for name in _NOT_MODEL:
            (target / name).unlink(missing_ok=True)
    else:
        source = resolve_source(ctx.spec)
        ctx.progress(f"copying {source}")
        shutil.copytree(source, target, ignore=shutil.ignore_patterns(*_NOT_MODEL, "__pycache__"))
    config = json.loads((target / "config.json").read_text())
    files = [p for p in target.rglob("*") if p.is_file()]
    return {
        "source": str(source),
        "model_type": config.get("model_type"),
        "architectures": config.get("architectures"),
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
    }


def summarize_fetch(details: dict[str, Any]) -> str:
    return (
        f"{details.get('model_type')} · {details.get('files')} files · {details.get('bytes', 0) / 1e6:.1f} MB"
    )
