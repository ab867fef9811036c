"""NER post-processing (handlers/ner.py) equals transformers' token-classification pipeline.

Tiny random BERT, DistilBERT and RoBERTa token classifiers are built from configs and saved with
save_pretrained; their classifier weights are scaled up so that they predict confident, varied labels
(otherwise every token would be a near-uniform guess and the tests could pass with no entities at all).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tiny_models import save_tiny_labelled
from torchship.handlers.ner import AGGREGATION_STRATEGIES, TokenizerFacts, entities

# The pipeline warns that byte-level BPE has no word boundaries; that heuristic is what is compared here.
pytestmark = pytest.mark.filterwarnings("ignore:Tokenizer does not support real words:UserWarning")

BIO_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC", 5: "B-ORG", 6: "I-ORG"}
# Labels without B-/I- prefixes: the pipeline treats each as a continuation of the same label.
PLAIN_LABELS = {0: "O", 1: "PER", 2: "LOC", 3: "ORG"}

TEXTS = [
    "John lives in Paris and works for Google.",
    "  johnson visited Parisian cafés in Zürich , twice!  ",  # subwords, accents, outer spaces
    "Mary's company: Apple-Google (London) 2024",  # "'" and ":" are not in the BERT vocab -> [UNK]
    "hello\tworld\nnew line  double  space",  # only plain spaces separate words for the heuristic
    "€100 for 北京 and İstanbul",
    # Decomposed (NFD) accents, which the BERT normalizer strips (and byte-level BPE splits into bytes).
    "john met e\u0301mile in Zu\u0308rich",
    "Johnathan Maryland Googleplex Londoner worked at AppleTorch in ParisTexas",
    "the cat sat on the mat",
    "x",
    "",
]


def _scale_classifier(model: torch.nn.Module, seed: int) -> None:
    """Make the random head decisive: large weights, and a bias that keeps some tokens "O"."""
    generator = torch.Generator().manual_seed(seed)
    head = model.classifier
    with torch.no_grad():
        head.weight.normal_(0.0, 1.0, generator=generator)
        head.bias.zero_()
        head.bias[0] = 1.0


def _saver(arch: str):
    def save(directory: Path, seed: int, labels: dict[int, str]) -> Path:
        return save_tiny_labelled(
            directory, arch, "token", labels, seed, lambda m: _scale_classifier(m, seed)
        )

    return save


save_bert, save_distilbert, save_roberta = _saver("bert"), _saver("distilbert"), _saver("roberta")


MODELS = {
    "bert-0": (save_bert, 0, BIO_LABELS),
    "bert-1": (save_bert, 1, BIO_LABELS),
    "bert-plain": (save_bert, 2, PLAIN_LABELS),
    "distilbert-0": (save_distilbert, 0, BIO_LABELS),
    "distilbert-1": (save_distilbert, 1, BIO_LABELS),
    "roberta-0": (save_roberta, 0, BIO_LABELS),
    "roberta-1": (save_roberta, 1, BIO_LABELS),
    "roberta-plain": (save_roberta, 2, PLAIN_LABELS),
}


class Loaded:
    """A saved model loaded back the way a handler would, plus the reference pipeline on it."""

    def __init__(self, directory: Path):
        from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

        self.model = AutoModelForTokenClassification.from_pretrained(str(directory)).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory))
        self.facts = TokenizerFacts.of(self.tokenizer)
        self.pipeline = pipeline("token-classification", model=self.model, tokenizer=self.tokenizer)

    def ours(self, text: str, strategy: str, **kwargs) -> list[dict]:
        encoded = self.tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
        model_inputs = {
            name: torch.tensor([encoded[name]])
            for name in self.tokenizer.model_input_names
            if name in encoded
        }
        with torch.inference_mode():
            logits = self.model(**model_inputs).logits[0]
        return entities(
            text,
            encoded["input_ids"],
            encoded["offset_mapping"],
            encoded["special_tokens_mask"],
            logits,
            self.model.config.id2label,
            strategy,
            self.facts,
            **kwargs,
        )

    def reference(self, text: str, strategy: str, **kwargs) -> list[dict]:
        return self.pipeline(text, aggregation_strategy=strategy, **kwargs)


@pytest.fixture(scope="module", params=sorted(MODELS))
def loaded(request, tmp_path_factory) -> Loaded:
    save, seed, labels = MODELS[request.param]
    return Loaded(save(tmp_path_factory.mktemp("ner") / request.param, seed, labels))


def assert_same(ours: list[dict], reference: list[dict], context: str) -> None:
    assert len(ours) == len(reference), f"{context}\nours: {ours}\nreference: {reference}"
    for mine, theirs in zip(ours, reference, strict=True):
        assert mine.keys() == theirs.keys(), context
        for key, value in theirs.items():
            if key == "score":
                assert type(mine[key]) is float, context
                assert mine[key] == pytest.approx(float(value), abs=1e-5), f"{context}: {mine} vs {theirs}"
            else:
                assert mine[key] == value, f"{context}: {key}: {mine} vs {theirs}"
                if key in ("start", "end", "index"):
                    assert type(mine[key]) is int, context


@pytest.mark.parametrize("strategy", AGGREGATION_STRATEGIES)
def test_matches_pipeline(loaded, strategy):
    found = 0
    for text in TEXTS:
        ours = loaded.ours(text, strategy)
        assert_same(ours, loaded.reference(text, strategy), f"{strategy} on {text!r}")
        found += len(ours)
    assert found > 0, "the tiny model predicts no entities: the comparison would be vacuous"


@pytest.mark.parametrize("strategy", ["none", "simple", "average"])
def test_matches_pipeline_with_custom_ignore_labels(loaded, strategy):
    for ignore in ([], ["O", "B-PER", "PER"]):
        for text in TEXTS[:3]:
            assert_same(
                loaded.ours(text, strategy, ignore_labels=ignore),
                loaded.reference(text, strategy, ignore_labels=ignore),
                f"{strategy} ignoring {ignore} on {text!r}",
            )


def test_word_strategies_are_exercised(loaded):
    """Some word gets labels from several tokens that disagree, so first/max/average are really tested."""
    outputs = {s: [loaded.ours(text, s) for text in TEXTS] for s in ("simple", "first", "max", "average")}
    assert outputs["first"] != outputs["simple"]
    assert len({json.dumps(o, sort_keys=True) for o in outputs.values()}) >= 3


def test_positions_slice_the_text(loaded):
    for text in TEXTS:
        for entity in loaded.ours(text, "first"):
            assert 0 <= entity["start"] <= entity["end"] <= len(text)


def test_rejects_unknown_strategy_and_padded_logits(loaded):
    encoded = loaded.tokenizer("john", return_offsets_mapping=True, return_special_tokens_mask=True)
    args = (encoded["input_ids"], encoded["offset_mapping"], encoded["special_tokens_mask"])
    labels = loaded.model.config.id2label
    with pytest.raises(ValueError, match="aggregation strategy"):
        entities("john", *args, torch.zeros(len(args[0]), len(labels)), labels, "mean", loaded.facts)
    with pytest.raises(ValueError, match="unpadded"):
        entities("john", *args, torch.zeros(len(args[0]) + 2, len(labels)), labels, "simple", loaded.facts)


def test_half_precision_logits_are_scored_in_float32(loaded):
    """The pipeline upcasts fp16/bf16 logits before the softmax; so does entities()."""
    text = TEXTS[0]
    encoded = loaded.tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    logits = torch.randn(len(encoded["input_ids"]), len(loaded.model.config.id2label)) * 4
    args = (text, encoded["input_ids"], encoded["offset_mapping"], encoded["special_tokens_mask"])
    half = entities(*args, logits.to(torch.bfloat16), loaded.model.config.id2label, "simple", loaded.facts)
    upcast = entities(
        *args, logits.to(torch.bfloat16).float(), loaded.model.config.id2label, "simple", loaded.facts
    )
    assert half == upcast
