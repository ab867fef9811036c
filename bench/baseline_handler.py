"""Baseline for bench/serving.py and bench/tasks.py: a handler that behaves like TorchServe's stock Hugging
Face example, for every task.

It pads every model row to max_length and answers one request at a time (batch size 1 in its
model-config), the way hand-written handlers commonly do; the model is torchship's traced one (model.pt,
its outputs a tuple in the task's order). Its model-config `handler:` section names the task (default
embeddings). Answers have each task's shape, computed the plain way (argmax spans, per-token labels,
KeyBERT's CountVectorizer candidates). It is here only to be measured against; never ship it.
"""

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

MAX_ANSWER_TOKENS = 30
TOP_KEYWORDS = 5


class BaselineHandler:
    def initialize(self, context):
        config = (context.model_yaml_config or {}).get("handler", {})
        torch.set_num_threads(int(config.get("threads") or os.cpu_count() or 1))
        model_dir = Path(context.system_properties["model_dir"])
        self.model = torch.jit.load(str(model_dir / "model.pt")).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir / "tokenizer"))
        self.max_length = int(config.get("max_length", 256))
        self.task = config.get("task", "embeddings")
        id2label = json.loads((model_dir / "config.json").read_text()).get("id2label") or {}
        self.labels = [id2label[k] for k in sorted(id2label, key=int)]
        # The traced module takes the model contract's inputs in order (input_ids, attention_mask, then
        # token_type_ids for BERT-family models): as many as its forward has arguments besides self.
        arguments = len(self.model.forward.schema.arguments) - 1
        self.inputs = ["input_ids", "attention_mask", "token_type_ids"][:arguments]

    def handle(self, data, context):
        answers = []
        for item in data:  # one request at a time, as the stock example does
            body = item.get("body") or item.get("data")
            if isinstance(body, (bytes, bytearray)):
                body = json.loads(body.decode("utf-8"))
            with torch.inference_mode():
                answers.append(getattr(self, self.task.replace("-", "_"))(body))
        return answers

    def forward(self, *texts, **options):
        """The model on `texts` (or text pairs), every row padded to max_length; its outputs as a tuple."""
        inputs = self.tokenizer(
            *texts,
            max_length=self.max_length,
            padding="max_length",
            truncation=options.pop("truncation", True),
            return_tensors="pt",
            **options,
        )
        outputs = self.model(*(inputs[name] for name in self.inputs))
        return inputs, outputs if isinstance(outputs, tuple) else (outputs,)

    def pooled(self, texts):
        inputs, (hidden, *_) = self.forward(texts)
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        return F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=1)

    def embeddings(self, body):
        return self.pooled([body["text"]])[0].tolist()

    def text_classification(self, body):
        _, (logits, *_) = self.forward([body["text"]])
        scores = logits[0].softmax(-1).tolist()
        ranked = sorted(zip(self.labels, scores, strict=True), key=lambda pair: -pair[1])
        return [{"label": label, "score": score} for label, score in ranked]

    def token_classification(self, body):
        inputs, (logits, *_) = self.forward([body["text"]], return_offsets_mapping=True)
        probabilities = logits[0].softmax(-1)
        entities = []
        for i, (start, end) in enumerate(inputs["offset_mapping"][0].tolist()):
            label = int(probabilities[i].argmax())
            if end > start and self.labels[label] != "O":
                entities.append(
                    {
                        "entity": self.labels[label],
                        "score": float(probabilities[i, label]),
                        "word": body["text"][start:end],
                        "start": start,
                        "end": end,
                    }
                )
        return entities

    def keywords(self, body):
        from sklearn.feature_extraction.text import CountVectorizer

        text = body["text"]
        words = CountVectorizer(stop_words="english").fit([text]).get_feature_names_out().tolist()
        if not words:
            return []
        vectors = self.pooled([text, *words])  # the text and its candidates in one call
        scores = (vectors[1:] @ vectors[0]).tolist()
        best = sorted(zip(words, scores, strict=True), key=lambda pair: -pair[1])[:TOP_KEYWORDS]
        return [{"keyword": word, "score": score} for word, score in best]

    def reranking(self, body):
        texts = body["texts"]
        _, (logits, *_) = self.forward([body["query"]] * len(texts), texts)
        scores = logits[:, 0].tolist()
        order = sorted(range(len(texts)), key=lambda i: -scores[i])
        return [{"index": i, "score": scores[i], "text": texts[i]} for i in order]

    def question_answering(self, body):
        context = body["context"]
        inputs, (start_logits, end_logits) = self.forward(
            [body["question"]], [context], truncation="only_second", return_offsets_mapping=True
        )
        in_context = torch.tensor([s == 1 for s in inputs.sequence_ids(0)])
        start, end = (
            start_logits[0].masked_fill(~in_context, -1e9),
            end_logits[0].masked_fill(~in_context, -1e9),
        )
        scores = start[:, None] + end[None, :]
        length = scores.shape[0]
        allowed = torch.ones(length, length).triu().tril(MAX_ANSWER_TOKENS - 1).bool()
        best = int(scores.masked_fill(~allowed, -1e9).argmax())
        first, last = divmod(best, length)
        offsets = inputs["offset_mapping"][0].tolist()
        begin, finish = offsets[first][0], offsets[last][1]
        return {
            "answer": context[begin:finish],
            "start": begin,
            "end": finish,
            "score": float(scores.flatten()[best]),
        }
