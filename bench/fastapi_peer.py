"""The FastAPI + sentence-transformers peer for bench/serving.py: the server a team writes by hand.

The shape the seed pipelines serve with: one uvicorn process, a plain `def` endpoint (FastAPI runs it
in its thread pool), `SentenceTransformer.encode` per request, JSON out. It answers POST /predictions
with {"text": ...} like torchship's handler, so the same load generator drives both. Run as
`python bench/fastapi_peer.py MODEL_DIR PORT THREADS`; it is measured, never shipped.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer


class Request(BaseModel):
    text: str


def build_app(model_dir: str) -> FastAPI:
    model = SentenceTransformer(model_dir, device="cpu")
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict:
        return {"status": "Healthy"}

    @app.post("/predictions")
    def predict(request: Request) -> list[float]:
        return model.encode([request.text], normalize_embeddings=True)[0].tolist()

    return app


if __name__ == "__main__":
    model_dir, port, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    uvicorn.run(build_app(model_dir), host="127.0.0.1", port=port, log_level="warning", access_log=False)
