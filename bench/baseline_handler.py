"""Baseline for bench/serving.py: a handler that behaves like TorchServe's stock Hugging Face example.

It pads every text to max_length and answers one request at a time (batch size 1 in its model-config),
the way hand-written handlers commonly do. It is here only to be measured against; never ship it.
"""

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoTokenizer


class BaselineHandler:
    def initialize(self, context):
        config = (context.model_yaml_config or {}).get("handler", {})
        torch.set_num_threads(int(config.get("threads") or os.cpu_count() or 1))
        model_dir = Path(context.system_properties["model_dir"])
        self.model = torch.jit.load(str(model_dir / "model.pt")).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir / "tokenizer"))
        self.max_length = int(config.get("max_length", 256))
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
            inputs = self.tokenizer(
                body["text"],
                max_length=self.max_length,
                padding="max_length",
                truncation=True,
                return_tensors="pt",
            )
            with torch.inference_mode():
                hidden = self.model(*(inputs[name] for name in self.inputs))
                hidden = hidden[0] if isinstance(hidden, tuple) else hidden
                mask = inputs["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                answers.append(F.normalize(pooled, dim=1)[0].tolist())
        return answers
