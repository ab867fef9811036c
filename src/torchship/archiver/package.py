"""Assemble a self-contained .mar with torch-model-archiver.

Inside the archive: the frozen TorchScript model, the handler package (`torchship_handlers/`, a copy of
torchship/handlers), the tokenizer files and `model-config.yaml` (TorchServe's batching and worker
settings plus the handler's own section). A plain TorchServe with torch and transformers serves it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import yaml

import torchship.handlers
from torchship.archiver.stored import write_stored
from torchship.errors import PackageError
from torchship.handler_settings import COMPILED_DIR, TOKENIZER_DIR, handler_settings
from torchship.handlers.loading import COMPILED_MANIFEST, read_manifest
from torchship.hashing import sha256_file
from torchship.modeling import load_tokenizer
from torchship.pipeline import RECORD_NAME, StageContext, read_record
from torchship.sources import MODEL_DIRNAME
from torchship.spec import ModelSpec
from torchship.validate.records import read_report

HANDLER_PACKAGE = "torchship_handlers"
ENTRY_FILE = "torchship_entry.py"
MODEL_CONFIG_FILE = "model-config.yaml"
# TorchServe imports the --handler file by its base name from the extracted archive's root.
ENTRY_SOURCE = f'"""TorchServe entry point of a torchship .mar."""\nfrom {HANDLER_PACKAGE}.service import handle  # noqa: F401\n'
PACKAGE_MANIFEST = "torchship.json"
GATE_REPORT = "report.json"
REQUIRED_IN_MAR = (
    "MAR-INF/MANIFEST.json",
    f"{COMPILED_DIR}/{COMPILED_MANIFEST}",
    ENTRY_FILE,
    MODEL_CONFIG_FILE,
    f"{HANDLER_PACKAGE}/service.py",
    f"{TOKENIZER_DIR}/tokenizer_config.json",
    PACKAGE_MANIFEST,
)


def mar_path(stage_dir: Path, spec: ModelSpec) -> Path:
    return stage_dir / f"{spec.name}.mar"


def handler_config(spec: ModelSpec, model_dir: Path, compiled_dir: Path | None = None) -> dict[str, Any]:
    """The handler's section of model-config.yaml, as written into the archive."""
    return handler_settings(spec, model_dir, compiled_dir).to_dict()


def model_config(spec: ModelSpec, model_dir: Path, compiled_dir: Path) -> dict[str, Any]:
    """TorchServe's per-model settings; set explicitly because its defaults (batch 1, one worker per core,
    each with a full thread pool) are wrong for transformer models on CPU."""
    return {
        "minWorkers": spec.serve.workers,
        "maxWorkers": spec.serve.workers,
        "batchSize": spec.serve.batch_size,
        "maxBatchDelay": spec.serve.max_batch_delay_ms,
        "responseTimeout": spec.serve.response_timeout_s,
        "handler": handler_config(spec, model_dir, compiled_dir),
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


def build_bundle(spec: ModelSpec, model_dir: Path, bundle: Path, compiled_dir: Path | None = None) -> None:
    """The extra files of the archive, laid out as they must appear in its root."""
    bundle.mkdir(parents=True)
    if compiled_dir is not None:
        shutil.copytree(compiled_dir, bundle / COMPILED_DIR, ignore=shutil.ignore_patterns(RECORD_NAME))
    handlers_src = Path(torchship.handlers.__file__).parent
    shutil.copytree(handlers_src, bundle / HANDLER_PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    load_tokenizer(model_dir).save_pretrained(str(bundle / TOKENIZER_DIR))
    shutil.copy2(model_dir / "config.json", bundle / "config.json")


def run_archiver(
    name: str,
    version: str,
    handler: Path,
    extra: Path,
    config_file: Path,
    export: Path,
    workdir: Path,
    model_file: Path | None = None,
) -> Path:
    """Run the real torch-model-archiver; returns the path of the .mar it wrote into `export`."""
    args = [
        "--model-name", name, "--version", version,
        "--handler", str(handler), "--extra-files", str(extra), "--config-file", str(config_file),
        "--runtime", "python", "--export-path", str(export),
    ]  # fmt: skip
    if model_file is not None:  # the baseline in bench/ ships one serialized file the classic way
        args += ["--serialized-file", str(model_file)]
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


def gate_manifest(ctx: StageContext) -> dict[str, Any]:
    """What the archive carries about its own validation: publish refuses a .mar whose gate did not pass."""
    import torchship

    report = read_report(ctx.input_dir("validate") / GATE_REPORT)
    if report.verdict != "pass":
        raise PackageError(
            f"the validation gate of {ctx.spec.name} {ctx.spec.version} did not pass: nothing is packaged",
            hint="Run `torchship validate SPEC` and fix what it reports.",
        )
    fetch = read_record(ctx.input_dir("fetch")) or {}
    return {
        "name": ctx.spec.name,
        "version": ctx.spec.version,
        "task": ctx.spec.task,
        "torchship_version": torchship.__version__,
        "source": {"spec": ctx.spec.source, "sha256": fetch.get("inputs", {}).get("source")},
        "compiled": read_manifest(ctx.input_dir("compile"))["format"],
        "gate": {
            "verdict": report.verdict,
            "checks": [c.model_dump() for c in report.checks],
            "report_sha256": sha256_file(ctx.input_dir("validate") / GATE_REPORT),
        },
    }


def run_package(ctx: StageContext) -> dict[str, Any]:
    spec = ctx.spec
    model_dir = ctx.input_dir("fetch") / MODEL_DIRNAME
    compiled_dir = ctx.input_dir("compile")
    manifest = gate_manifest(ctx)
    work = ctx.out_dir / ".build"
    bundle = work / "bundle"
    build_bundle(spec, model_dir, bundle, compiled_dir)
    (bundle / PACKAGE_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    entry = work / ENTRY_FILE
    entry.write_text(ENTRY_SOURCE)
    config = model_config(spec, model_dir, compiled_dir)
    config_file = ctx.out_dir / MODEL_CONFIG_FILE
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    ctx.progress("running torch-model-archiver")
    (work / "archive").mkdir()
    mar = run_archiver(spec.name, spec.version, entry, bundle, config_file, work / "archive", work)
    ctx.progress("storing the archive uncompressed (TorchServe extracts it at every start)")
    write_stored(mar, ctx.out_dir / mar.name)
    mar = ctx.out_dir / mar.name
    shutil.rmtree(work)
    names = check_archive(mar)
    # The same manifest beside the archive, for readers that should not unzip 100 MB to check a gate.
    (ctx.out_dir / PACKAGE_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return {
        "mar": mar.name,
        "bytes": mar.stat().st_size,
        "files_in_mar": len(names),
        "gate": manifest["gate"]["verdict"],
        "model_config": config,
    }


def summarize_package(details: dict[str, Any]) -> str:
    return (
        f"{details.get('mar')} · {details.get('bytes', 0) / 1e6:.1f} MB · {details.get('files_in_mar')} files"
    )
