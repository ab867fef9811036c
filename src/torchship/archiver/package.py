"""Assemble a self-contained .mar with torch-model-archiver.

Inside the archive: the frozen TorchScript model, the handler package (`torchship_handlers/`, a copy of
torchship/handlers), the tokenizer files and `model-config.yaml` (TorchServe's batching and worker
settings plus the handler's own section). A plain TorchServe with torch and transformers serves it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import yaml

import torchship.handlers
from torchship.compile.torchscript import MODEL_FILE
from torchship.errors import PackageError
from torchship.modeling import load_tokenizer
from torchship.pipeline import StageContext
from torchship.sources import MODEL_DIRNAME
from torchship.spec import ModelSpec
from torchship.tasks import embedding_settings

HANDLER_PACKAGE = "torchship_handlers"
ENTRY_FILE = "torchship_entry.py"
MODEL_CONFIG_FILE = "model-config.yaml"
TOKENIZER_DIR = "tokenizer"
# TorchServe imports the --handler file by its base name from the extracted archive's root.
ENTRY_SOURCE = f'"""TorchServe entry point of a torchship .mar."""\nfrom {HANDLER_PACKAGE}.service import handle  # noqa: F401\n'
REQUIRED_IN_MAR = (
    "MAR-INF/MANIFEST.json",
    MODEL_FILE,
    ENTRY_FILE,
    MODEL_CONFIG_FILE,
    f"{HANDLER_PACKAGE}/service.py",
    f"{TOKENIZER_DIR}/tokenizer_config.json",
)


def mar_path(stage_dir: Path, spec: ModelSpec) -> Path:
    return stage_dir / f"{spec.name}.mar"


def handler_config(spec: ModelSpec, model_dir: Path) -> dict[str, Any]:
    config: dict[str, Any] = {
        "task": spec.task,
        "model_file": MODEL_FILE,
        "tokenizer_dir": TOKENIZER_DIR,
        "max_length": spec.compile.max_length,
        "truncation": spec.serve.truncation,
        "compute_batch_size": spec.compile.batch_size,
        "buckets": spec.compile.buckets,
        "workers": spec.serve.workers,
        "threads": spec.serve.threads,  # None: the serving host's cores divided by workers
        "max_texts_per_request": spec.serve.max_texts_per_request,
        "max_body_bytes": spec.serve.max_body_bytes,
    }
    if spec.task in ("embeddings", "keywords"):
        config["pooling"], config["normalize"] = embedding_settings(spec, model_dir)
    if spec.task == "token-classification":
        config["aggregation_strategy"] = spec.token_classification.aggregation_strategy
        config["ignore_labels"] = list(spec.token_classification.ignore_labels)
    if spec.task == "keywords":
        keywords = spec.keywords
        config.update(
            ngram_range=list(keywords.ngram_range),
            stop_words=stop_word_list(keywords.stop_words),
            top_n=keywords.top_n,
            use_mmr=keywords.use_mmr,
            diversity=keywords.diversity,
            max_candidates=keywords.max_candidates,
        )
    return config


def stop_word_list(choice: str | list[str]) -> list[str]:
    """The handler cannot import scikit-learn, so its English stop words travel as data in the config."""
    if choice == "none":
        return []
    if choice == "english":
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        return sorted(ENGLISH_STOP_WORDS)
    return sorted(set(choice))


def model_config(spec: ModelSpec, model_dir: Path) -> dict[str, Any]:
    """TorchServe's per-model settings; set explicitly because its defaults (batch 1, one worker per core,
    each with a full thread pool) are wrong for transformer models on CPU."""
    return {
        "minWorkers": spec.serve.workers,
        "maxWorkers": spec.serve.workers,
        "batchSize": spec.serve.batch_size,
        "maxBatchDelay": spec.serve.max_batch_delay_ms,
        "responseTimeout": spec.serve.response_timeout_s,
        "handler": handler_config(spec, model_dir),
    }


def _archiver_command() -> list[str]:
    script = Path(sys.executable).with_name("torch-model-archiver")
    if script.is_file():
        return [str(script)]
    return [
        sys.executable,
        "-c",
        "from model_archiver.model_packaging import generate_model_archive as g; g()",
    ]


def build_bundle(spec: ModelSpec, model_dir: Path, bundle: Path) -> None:
    """The extra files of the archive, laid out as they must appear in its root."""
    bundle.mkdir(parents=True)
    handlers_src = Path(torchship.handlers.__file__).parent
    shutil.copytree(handlers_src, bundle / HANDLER_PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    load_tokenizer(model_dir).save_pretrained(str(bundle / TOKENIZER_DIR))
    shutil.copy2(model_dir / "config.json", bundle / "config.json")


def run_archiver(
    name: str,
    version: str,
    model_file: Path,
    handler: Path,
    extra: Path,
    config_file: Path,
    export: Path,
    workdir: Path,
) -> Path:
    """Run the real torch-model-archiver; returns the path of the .mar it wrote into `export`."""
    args = [
        "--model-name", name, "--version", version, "--serialized-file", str(model_file),
        "--handler", str(handler), "--extra-files", str(extra), "--config-file", str(config_file),
        "--runtime", "python", "--export-path", str(export),
    ]  # fmt: skip
    # torch-model-archiver stages files in $TMPDIR/<model name>: a private TMPDIR keeps parallel runs apart.
    env = {**os.environ, "TMPDIR": str(workdir), "TEMP": str(workdir)}
    result = subprocess.run(
        [*_archiver_command(), *args], capture_output=True, text=True, env=env, check=False
    )
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip().splitlines()
        raise PackageError(
            f"torch-model-archiver failed (exit {result.returncode}): {output[-1] if output else 'no output'}",
            details="\n".join(output[-20:]),
        )
    return export / f"{name}.mar"


def check_archive(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as exc:
        raise PackageError(f"{path} is not a valid archive: {exc}") from None
    missing = [name for name in REQUIRED_IN_MAR if name not in names]
    if missing:
        raise PackageError(f"{path.name} lacks {', '.join(missing)}: it would not be self-contained")
    return names


def run_package(ctx: StageContext) -> dict[str, Any]:
    spec = ctx.spec
    model_dir = ctx.input_dir("fetch") / MODEL_DIRNAME
    work = ctx.out_dir / ".build"
    bundle = work / "bundle"
    build_bundle(spec, model_dir, bundle)
    entry = work / ENTRY_FILE
    entry.write_text(ENTRY_SOURCE)
    config_file = ctx.out_dir / MODEL_CONFIG_FILE
    config_file.write_text(yaml.safe_dump(model_config(spec, model_dir), sort_keys=False))
    ctx.progress("running torch-model-archiver")
    run_archiver(
        spec.name,
        spec.version,
        ctx.input_dir("compile") / MODEL_FILE,
        entry,
        bundle,
        config_file,
        ctx.out_dir,
        work,
    )
    shutil.rmtree(work)
    mar = mar_path(ctx.out_dir, spec)
    names = check_archive(mar)
    return {
        "mar": mar.name,
        "bytes": mar.stat().st_size,
        "files_in_mar": len(names),
        "model_config": model_config(spec, model_dir),
    }


def summarize_package(details: dict[str, Any]) -> str:
    return (
        f"{details.get('mar')} · {details.get('bytes', 0) / 1e6:.1f} MB · {details.get('files_in_mar')} files"
    )
