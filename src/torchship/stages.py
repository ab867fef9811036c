"""The stages in order, with what each depends on and which spec keys it reads."""

from __future__ import annotations

from torchship.archiver.package import run_package, summarize_package
from torchship.compile import run_compile, summarize_compile
from torchship.examples import load_examples
from torchship.hashing import sha256_file, sha256_json
from torchship.modeling import fit_to_model
from torchship.pipeline import Stage
from torchship.settings import Settings
from torchship.sources import run_fetch, source_inputs, summarize_fetch
from torchship.spec import ModelSpec
from torchship.tasks import spec_sections
from torchship.validate.gate import run_validate, summarize_validate
from torchship.validate.served import run_verify, summarize_verify


def _examples_input(spec: ModelSpec, settings: Settings) -> dict[str, str]:
    inputs = {"examples": sha256_json(load_examples(spec))}
    if spec.validate.eval_set and spec.resolve(spec.validate.eval_set).is_file():
        inputs["eval_set"] = sha256_file(spec.resolve(spec.validate.eval_set))
    return inputs


def _verify_inputs(spec: ModelSpec, settings: Settings) -> dict[str, str]:
    # verify records the answer sheet on the diff inputs too: a changed diff.jsonl re-runs it.
    inputs = _examples_input(spec, settings)
    diff_file = spec.diff_inputs_path()
    if diff_file is not None and diff_file.is_file():
        inputs["diff_inputs"] = sha256_file(diff_file)
    return inputs


# The task-specific spec sections (pooling, aggregation, keyword settings) shape handler results;
# each task definition names its own.
TASK_KEYS = spec_sections()

STAGES: list[Stage] = [
    Stage("fetch", "fetch the source model", run_fetch, (), ("source",), source_inputs, summarize_fetch),
    Stage(
        "compile",
        "compile the model with compile.backend",
        run_compile,
        ("fetch",),
        ("task", "compile", "validate"),
        summarize=summarize_compile,
        fit_spec=fit_to_model,
    ),
    Stage(
        "validate",
        "compiled vs source parity",
        run_validate,
        ("fetch", "compile"),
        ("task", "compile", "validate", *TASK_KEYS),
        _examples_input,
        summarize_validate,
        fit_to_model,
    ),
    Stage(
        "package",
        "build the .mar (torch-model-archiver)",
        run_package,
        ("fetch", "compile", "validate"),
        ("name", "version", "task", "compile", "serve", *TASK_KEYS),
        summarize=summarize_package,
        fit_spec=fit_to_model,
    ),
    Stage(
        "verify",
        "serve in a real TorchServe, check parity",
        run_verify,
        ("fetch", "validate", "package"),
        ("name", "task", "compile", "validate", "serve", *TASK_KEYS),
        _verify_inputs,
        summarize_verify,
        fit_to_model,
    ),
]
STAGE_NAMES = [s.name for s in STAGES]
