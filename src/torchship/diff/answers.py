"""The answer sheet of a version (`answers.json`): what it served, in verify's real TorchServe, for every
request `diff` compares on (the examples and the user's diff.jsonl). Published beside the .mar and hashed in
the manifest like every other file, so the answers a version gave when it was verified stay on record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from torchship.diff.record import SkippedInput
from torchship.errors import TorchshipError
from torchship.publish.layout import ANSWERS_JSON

__all__ = ["ANSWERS_JSON", "AnswerSheet", "read_answer_sheet"]
ANSWERS_FORMAT = 1


class AnswerSheet(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    answers_format: int = ANSWERS_FORMAT
    name: str
    version: str
    task: str
    inputs_origin: list[str]
    requests: list[Any]
    answers: list[Any]  # answers[i]: the served JSON result of requests[i]
    skipped: list[SkippedInput] = []

    def write(self, folder: Path) -> Path:
        path = Path(folder) / ANSWERS_JSON
        path.write_text(json.dumps(self.model_dump(mode="json"), ensure_ascii=False) + "\n", encoding="utf-8")
        return path


def read_answer_sheet(path: Path) -> AnswerSheet:
    try:
        return AnswerSheet.model_validate_json(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TorchshipError(
            f"{path} does not exist: this version has no answer sheet",
            hint="Versions published before torchship recorded answer sheets have none; verify and publish again.",
        ) from None
    except (ValidationError, ValueError) as exc:
        raise TorchshipError(
            f"{path} is not a torchship answer sheet: {str(exc).splitlines()[0]}",
            hint="It was not written by torchship's verify; pull the version again.",
        ) from None
