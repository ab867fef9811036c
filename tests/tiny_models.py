"""Tiny Hugging Face models built from configs and saved with save_pretrained, so the real loading code
runs on small data (no hub downloads here)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from torchship.handlers.model_io import NamedIO

WORDS = [
    "the",
    "a",
    "an",
    "is",
    "was",
    "be",
    "to",
    "of",
    "and",
    "in",
    "on",
    "at",
    "for",
    "with",
    "cat",
    "dog",
    "mat",
    "rug",
    "sat",
    "ran",
    "fast",
    "slow",
    "model",
    "serve",
    "torch",
    "text",
    "word",
    "token",
    "hello",
    "world",
    "good",
    "bad",
    "great",
    "terrible",
    "movie",
    "film",
    "love",
    "hate",
    "paris",
    "london",
    "john",
    "mary",
    "works",
    "lives",
    "city",
    "company",
    "apple",
    "google",
    "search",
    "vector",
    "embed",
    "short",
    "long",
    "sentence",
    "test",
    "ok",
    "yes",
    "no",
    "it",
    "this",
    "that",
    "he",
    "she",
    "they",
    "we",
    "you",
    "i",
    ".",
    ",",
    "!",
    "?",
    "-",
]


def write_vocab(directory: Path) -> Path:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [
        f"##{chr(c)}" for c in range(ord("a"), ord("z") + 1)
    ]
    vocab = specials + WORDS + letters + [str(d) for d in range(10)]
    path = directory / "vocab.txt"
    path.write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    return path


def save_tiny_bert(directory: Path, *, seed: int = 0, sentence_transformers: bool = True) -> Path:
    """A 2-layer BERT (hidden 32) with a word-piece tokenizer and a sentence-transformers pooling config."""
    from transformers import BertConfig, BertModel, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab_file = write_vocab(directory)
    vocab = {token: i for i, token in enumerate(vocab_file.read_text().split())}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    BertModel(config).eval().save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    if sentence_transformers:
        (directory / "modules.json").write_text(
            json.dumps(
                [
                    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                    {
                        "idx": 1,
                        "name": "1",
                        "path": "1_Pooling",
                        "type": "sentence_transformers.models.Pooling",
                    },
                    {
                        "idx": 2,
                        "name": "2",
                        "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize",
                    },
                ]
            )
        )
        (directory / "1_Pooling").mkdir(exist_ok=True)
        (directory / "1_Pooling" / "config.json").write_text(
            json.dumps(
                {
                    "word_embedding_dimension": 32,
                    "pooling_mode_cls_token": False,
                    "pooling_mode_mean_tokens": True,
                    "pooling_mode_max_tokens": False,
                }
            )
        )
        (directory / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": 64, "do_lower_case": False})
        )
    return directory


EXAMPLES = [
    "the cat sat on the mat .",
    "hello world",
    "john lives in paris and works for google .",
    "a great movie , i love it !",
    "ok",
]


def write_spec(
    directory: Path, source: str, *, name: str = "tiny-embeddings", task: str = "embeddings", extra: str = ""
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "examples.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in EXAMPLES))
    spec = directory / "model.yaml"
    spec.write_text(
        f"name: {name}\nversion: 0.1.0\ntask: {task}\nsource: {source}\n"
        "compile: {backend: torchscript, max_length: 64, batch_size: 4}\n"
        "validate: {examples: examples.jsonl, atol: 1.0e-5, rtol: 1.0e-4}\n"
        "serve: {batch_size: 4, max_batch_delay_ms: 50, workers: 1, threads: 1, max_texts_per_request: 8}\n"
        + extra
    )
    return spec


SENTIMENT_LABELS = {0: "negative", 1: "neutral", 2: "positive"}

# Sentences the RoBERTa byte-level BPE is trained on: a small vocabulary, so most words split.
BPE_CORPUS = [
    "the cat sat on the mat.",
    "John lives in Paris and works for Google.",
    "Mary loves London!",
    "hello world, a great movie",
    "the company Apple is in the city",
]


def roberta_tokenizer(workdir: Path):
    """A RoBERTa tokenizer with a byte-level BPE trained here on a few sentences (no downloads)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        BPE_CORPUS * 3 + [" ".join(WORDS)],
        vocab_size=400,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    workdir.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(workdir))
    vocab = json.loads((workdir / "vocab.json").read_text())
    merges = [
        tuple(line.split(" "))
        for line in (workdir / "merges.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    return RobertaTokenizer(vocab=vocab, merges=merges)


def tiny_tokenizer(arch: str, directory: Path):
    """The tokenizer of a tiny model: word-piece for BERT/DistilBERT, byte-level BPE for RoBERTa."""
    from transformers import BertTokenizer, DistilBertTokenizer, ElectraTokenizer

    if arch == "roberta":
        return roberta_tokenizer(directory / "bpe")
    vocab = {token: i for i, token in enumerate(write_vocab(directory).read_text().split())}
    tokenizer_class = {"distilbert": DistilBertTokenizer, "electra": ElectraTokenizer}.get(
        arch, BertTokenizer
    )
    return tokenizer_class(vocab=vocab, do_lower_case=True)


def tiny_config(arch: str, tokenizer, labels: dict[int, str]):
    """A 2-layer, 32-wide config of the architecture, with the labels in id2label."""
    from transformers import BertConfig, DistilBertConfig, ElectraConfig, RobertaConfig

    common = {"vocab_size": len(tokenizer), "id2label": labels, "label2id": {v: k for k, v in labels.items()}}
    if arch == "bert":
        return BertConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=128,
            **common,
        )
    if arch == "distilbert":
        return DistilBertConfig(
            dim=32, n_layers=2, n_heads=2, hidden_dim=37, max_position_embeddings=128, **common
        )
    if arch == "roberta":
        return RobertaConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=130,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **common,
        )
    if arch == "electra":
        return ElectraConfig(
            embedding_size=16,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=128,
            **common,
        )
    raise ValueError(f"unknown tiny architecture {arch!r}")


def save_tiny_labelled(
    directory: Path, arch: str, head: str, labels: dict[int, str], seed: int, shape_head
) -> Path:
    """A tiny sequence- or token-classification model saved with save_pretrained, with its tokenizer.
    `shape_head(model)` makes the random classifier decisive, so tests compare meaningful answers."""
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer(arch, directory)
    auto = {
        "sequence": AutoModelForSequenceClassification,
        "token": AutoModelForTokenClassification,
        "span": AutoModelForQuestionAnswering,
    }[head]
    torch.manual_seed(seed)
    model = auto.from_config(tiny_config(arch, tokenizer, labels)).eval()
    shape_head(model)
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


def _amplify_head(model) -> None:
    # Random heads give near-uniform scores; a larger head makes the ranking of labels meaningful.
    head = getattr(model.classifier, "out_proj", model.classifier)
    with torch.no_grad():
        head.weight.mul_(20)


def save_tiny_classifier(directory: Path, arch: str = "bert", *, seed: int = 0, labels=None) -> Path:
    """A tiny sequence classifier (BERT, DistilBERT or RoBERTa) and its tokenizer, labels in id2label."""
    return save_tiny_labelled(directory, arch, "sequence", labels or SENTIMENT_LABELS, seed, _amplify_head)


class LengthDependent(NamedIO):
    """A real model plus Python control flow on the sequence length: right in eager mode at every length,
    but a trace bakes in the branch taken at the traced length (16 tokens)."""

    def __init__(self, inner: NamedIO):
        super().__init__(inner.model, inner.io)

    def forward(self, *tensors):
        outputs = super().forward(*tensors)
        return tuple(out + 0.5 for out in outputs) if tensors[0].shape[1] > 16 else outputs


def _decisive_spans(model) -> None:
    # Random span heads give flat logits; scaled up, one span clearly wins, so answers are comparable.
    with torch.no_grad():
        model.qa_outputs.weight.mul_(30)


def save_tiny_qa(directory: Path, arch: str = "roberta", *, seed: int = 0) -> Path:
    """A tiny extractive question-answering model (start and end logits per token) and its tokenizer."""
    return save_tiny_labelled(directory, arch, "span", {0: "LABEL_0", 1: "LABEL_1"}, seed, _decisive_spans)


def save_tiny_cross_encoder(directory: Path, *, seed: int = 0) -> Path:
    """A tiny BERT cross-encoder whose score depends strongly on the token types: at the default init
    (std 0.02) attention barely mixes tokens, so [CLS] (whose logit it is) hardly sees the passage's
    types; with larger weights (std 0.3) and a large type-1 embedding, feeding a (query, passage) pair
    without its token types moves the logit by more than 0.5."""
    from transformers import BertForSequenceClassification

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer("bert", directory)
    config = tiny_config("bert", tokenizer, {0: "LABEL_0"})
    config.type_vocab_size = 2
    config.initializer_range = 0.3
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        types = model.bert.embeddings.token_type_embeddings.weight
        types[0].zero_()
        types[1].copy_(torch.randn(types.shape[1], generator=torch.Generator().manual_seed(seed)) * 3)
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory
