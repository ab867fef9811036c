"""The FastAPI peer for bench/serving.py and bench/tasks.py: the server a team writes by hand, per task.

The shape the seed pipelines serve with: one uvicorn process, a plain `def` endpoint (FastAPI runs it
in its thread pool), one model call per request, JSON out. sentence-transformers where it applies
(`SentenceTransformer.encode` for embeddings, and for keywords KeyBERT's own recipe: CountVectorizer
candidates, the text and the candidates encoded, cosine; `CrossEncoder.predict` for reranking), plain
transformers `AutoModelFor…` in eager mode for the other tasks, each request tokenized on its own (no
padding beyond its own length). It answers POST /predictions with the same bodies as torchship's handler
({"text"}, {"query", "texts"}, {"question", "context"}), so the same load generator drives both. Run as
`python bench/fastapi_peer.py MODEL_DIR PORT THREADS [TASK]` (TASK default embeddings); it is measured,
never shipped.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import uvicorn
from fastapi import FastAPI

MAX_LENGTH = 256  # the served specs' compile.max_length
MAX_ANSWER_TOKENS = 30
TOP_KEYWORDS = 5


def sentence_embeddings(model_dir: str) -> Callable[[dict], Any]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device="cpu")
    return lambda body: model.encode([body["text"]], normalize_embeddings=True)[0].tolist()


def keybert_keywords(model_dir: str) -> Callable[[dict], Any]:
    from sentence_transformers import SentenceTransformer
    from sklearn.feature_extraction.text import CountVectorizer

    model = SentenceTransformer(model_dir, device="cpu")

    def answer(body: dict) -> Any:
        text = body["text"]
        words = CountVectorizer(stop_words="english").fit([text]).get_feature_names_out().tolist()
        if not words:
            return []
        doc = model.encode([text], normalize_embeddings=True)
        candidates = model.encode(words, normalize_embeddings=True)
        scores = (candidates @ doc[0]).tolist()
        best = sorted(zip(words, scores, strict=True), key=lambda pair: -pair[1])[:TOP_KEYWORDS]
        return [{"keyword": word, "score": score} for word, score in best]

    return answer


def cross_encoder_ranking(model_dir: str) -> Callable[[dict], Any]:
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(model_dir, device="cpu", max_length=MAX_LENGTH)

    def answer(body: dict) -> Any:
        texts = body["texts"]
        scores = model.predict([(body["query"], text) for text in texts]).tolist()
        order = sorted(range(len(texts)), key=lambda i: -scores[i])
        return [{"index": i, "score": scores[i], "text": texts[i]} for i in order]

    return answer


def transformers_task(model_dir: str, task: str) -> Callable[[dict], Any]:
    import transformers

    auto_class = {
        "text-classification": transformers.AutoModelForSequenceClassification,
        "token-classification": transformers.AutoModelForTokenClassification,
        "question-answering": transformers.AutoModelForQuestionAnswering,
    }[task]
    model = auto_class.from_pretrained(model_dir).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]

    def classify(body: dict) -> Any:
        inputs = tokenizer(body["text"], truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        with torch.inference_mode():
            scores = model(**inputs).logits[0].softmax(-1).tolist()
        ranked = sorted(zip(labels, scores, strict=True), key=lambda pair: -pair[1])
        return [{"label": label, "score": score} for label, score in ranked]

    def entities(body: dict) -> Any:
        text = body["text"]
        inputs = tokenizer(
            text, truncation=True, max_length=MAX_LENGTH, return_tensors="pt", return_offsets_mapping=True
        )
        offsets = inputs.pop("offset_mapping")[0].tolist()
        with torch.inference_mode():
            probabilities = model(**inputs).logits[0].softmax(-1)
        found = []
        for i, (start, end) in enumerate(offsets):
            label = int(probabilities[i].argmax())
            if end > start and labels[label] != "O":
                found.append(
                    {
                        "entity": labels[label],
                        "score": float(probabilities[i, label]),
                        "word": text[start:end],
                        "start": start,
                        "end": end,
                    }
                )
        return found

    def answer_span(body: dict) -> Any:
        context = body["context"]
        inputs = tokenizer(
            body["question"],
            context,
            truncation="only_second",
            max_length=MAX_LENGTH,
            return_tensors="pt",
            return_offsets_mapping=True,
        )
        offsets = inputs.pop("offset_mapping")[0].tolist()
        in_context = torch.tensor([s == 1 for s in inputs.sequence_ids(0)])
        with torch.inference_mode():
            output = model(**inputs)
        start = output.start_logits[0].masked_fill(~in_context, -1e9)
        end = output.end_logits[0].masked_fill(~in_context, -1e9)
        scores = start[:, None] + end[None, :]
        length = scores.shape[0]
        allowed = torch.ones(length, length).triu().tril(MAX_ANSWER_TOKENS - 1).bool()
        best = int(scores.masked_fill(~allowed, -1e9).argmax())
        first, last = divmod(best, length)
        begin, finish = offsets[first][0], offsets[last][1]
        return {
            "answer": context[begin:finish],
            "start": begin,
            "end": finish,
            "score": float(scores.flatten()[best]),
        }

    return {
        "text-classification": classify,
        "token-classification": entities,
        "question-answering": answer_span,
    }[task]


def answerer(model_dir: str, task: str) -> Callable[[dict], Any]:
    if task == "embeddings":
        return sentence_embeddings(model_dir)
    if task == "keywords":
        return keybert_keywords(model_dir)
    if task == "reranking":
        return cross_encoder_ranking(model_dir)
    return transformers_task(model_dir, task)


def build_app(model_dir: str, task: str = "embeddings") -> FastAPI:
    answer = answerer(model_dir, task)
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict:
        return {"status": "Healthy"}

    @app.post("/predictions")
    def predict(body: dict[str, Any]) -> Any:
        return answer(body)

    return app


if __name__ == "__main__":
    model_dir, port, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    task = sys.argv[4] if len(sys.argv) > 4 else "embeddings"
    torch.set_num_threads(threads)
    uvicorn.run(
        build_app(model_dir, task), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
