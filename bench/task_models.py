"""The models bench/tasks.py serves: every task on MiniLM and on a bert-base-sized encoder, packaged.

* minilm: all-MiniLM-L6-v2's real encoder (the weights the demo model ships, models/minilm-embeddings);
  embeddings and keywords serve it as it is, the other tasks under bench/minilm_heads.py's seeded random
  heads.
* bert-base: transformers' BertConfig() defaults (hidden 768, 12 layers, 12 heads, intermediate 3072), seeded
  random weights, saved with save_pretrained beside MiniLM's tokenizer (the same 30522-token vocabulary).

Speed does not depend on the weights (the same shapes run the same kernels), so random weights measure a
trained model's cost; only the answers are meaningless.
"""

from __future__ import annotations

from pathlib import Path

from minilm_heads import HEADS, SPEC_TAIL, minilm_dir, packaged, spec_with_head

from torchship.settings import Settings
from torchship.spec import ModelSpec

SIZES = ("minilm", "bert-base")
ENCODER_TASKS = ("embeddings", "keywords")  # tasks served on the bare encoder (no head)
# Mean pooling, normalized: MiniLM's own sentence-transformers config; said explicitly for bert-base,
# whose directory has none, so both sizes pool alike (and like the peer's SentenceTransformer).
ENCODER_SECTION = "embeddings: {pooling: mean, normalize: true}\n"


def _write_spec(name: str, task: str, source: Path, root: Path) -> Path:
    """root/<name>/model.yaml: the spec of `task` on the model at `source`."""
    spec = root / name / "model.yaml"
    spec.parent.mkdir(parents=True, exist_ok=True)
    section = ENCODER_SECTION if task in ENCODER_TASKS else ""
    spec.write_text(f"name: {name}\nversion: 1.0.0\ntask: {task}\nsource: {source}\n{section}" + SPEC_TAIL)
    return spec


def _bert_base_dir(task: str, root: Path) -> Path:
    """A BertConfig()-default model with `task`'s head (none for the encoder tasks), seeded random weights."""
    import torch
    import transformers

    kind = "encoder" if task in ENCODER_TASKS else task
    model_dir = root / f"bert-base-{kind}" / "model"
    if (model_dir / "config.json").is_file():
        return model_dir
    torch.manual_seed(0)
    if task in ENCODER_TASKS:
        model = transformers.BertModel(transformers.BertConfig())
    else:
        auto_class, labels = HEADS[task]
        config = transformers.BertConfig()
        # id2label sets num_labels too (the head's outputs); BertConfig's own signature does not list it.
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
        model_class = getattr(transformers, auto_class.replace("AutoModel", "Bert"))
        model = model_class(config)
    model.save_pretrained(str(model_dir))
    transformers.AutoTokenizer.from_pretrained(str(minilm_dir())).save_pretrained(str(model_dir))
    return model_dir


def spec_for(size: str, task: str, root: Path) -> Path:
    """The spec of `task` on `size`, written under `root` (models built once, reused by later runs)."""
    if size == "minilm":
        if task in ENCODER_TASKS:
            return _write_spec(f"minilm-{task}", task, minilm_dir(), root)
        return spec_with_head(task, root)
    if size == "bert-base":
        # embeddings and keywords share one encoder's weights, each with its own spec.
        return _write_spec(f"bert-base-{task}", task, _bert_base_dir(task, root), root)
    raise ValueError(f"unknown size {size!r}; the sizes are {', '.join(SIZES)}")


def packaged_model(size: str, task: str, root: Path, settings: Settings) -> tuple[ModelSpec, Path]:
    """fetch → compile → validate (the gate) → package, cached by torchship's stages; the spec and .mar."""
    return packaged(spec_for(size, task, root), settings)
