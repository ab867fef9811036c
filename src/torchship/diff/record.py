"""The typed values a diff passes around: what each task measures between two versions' answers on the same
requests (TaskDiff), latency side by side (LatencyComparison), and the whole record `torchship diff` prints,
saves as JSON and draws in HTML (DiffRecord)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Measure(_Frozen):
    """One number a promotion threshold can name: `promote.max_<name>` when lower is better, `min_<name>` when
    higher is better. `value` None: not measurable on these inputs (said in `meaning`)."""

    name: str
    value: float | None
    better: Literal["higher", "lower"]
    meaning: str  # one line a user reads: what the number is


class Changed(_Frozen):
    """One input whose answer changed between the versions, with what a user would notice."""

    index: int  # position in the diff's inputs
    request: Any
    old: Any  # the part of the answer that changed (label, entities, answer text, ...), not necessarily all of it
    new: Any
    why: str  # e.g. "label POSITIVE -> NEGATIVE", "cosine 0.912"


class Confusion(_Frozen):
    """Classification: counts[i][j] inputs labelled labels[i] by the old version and labels[j] by the new."""

    labels: list[str]
    counts: list[list[int]]


class EntityTypeChanges(_Frozen):
    """NER, per entity type (of the old entity; of the new one for added)."""

    unchanged: int = 0
    added: int = 0
    removed: int = 0
    relabelled: int = 0  # the same span, another type (counted under the old type)
    respanned: int = 0  # the same type, overlapping but other boundaries


class TaskDiff(_Frozen):
    """What a task measures between the old and the new answers to the same requests."""

    task: str
    inputs: int
    measures: list[Measure]
    changed: list[Changed] = []
    confusion: Confusion | None = None  # text-classification
    entity_types: dict[str, EntityTypeChanges] | None = None  # token-classification
    cosines: list[float] | None = None  # embeddings: per input, old vs new vector
    # embeddings: False when vectors of the two versions must not be mixed in one index (None: not a question
    # for this task).
    compatible: bool | None = None
    note: str = ""  # a plain sentence for the summary (e.g. why vectors are incompatible)

    def measure(self, name: str) -> Measure | None:
        return next((m for m in self.measures if m.name == name), None)


class LatencyRun(_Frozen):
    """One version's requests in the side-by-side run."""

    requests: int
    p50_ms: float
    p99_ms: float
    throughput_rps: float
    samples_ms: list[float] = []


class LatencyComparison(_Frozen):
    """Both versions measured in the same run, interleaved, on the same requests. Ratios are new / old."""

    old: LatencyRun
    new: LatencyRun
    clients: int

    @property
    def p50_ratio(self) -> float:
        return self.new.p50_ms / self.old.p50_ms if self.old.p50_ms else float("nan")

    @property
    def p99_ratio(self) -> float:
        return self.new.p99_ms / self.old.p99_ms if self.old.p99_ms else float("nan")

    @property
    def throughput_ratio(self) -> float:
        return self.new.throughput_rps / self.old.throughput_rps if self.old.throughput_rps else float("nan")


class VersionRef(_Frozen):
    """One side of a diff: which version, and where its answers came from."""

    version: str
    origin: str  # "outputs/<name>/<version> (local, verified)", "s3://.../1.0.0/ (production)", a live URL


class Breach(_Frozen):
    """A promotion threshold the diff breaks: the measure, its value, the limit, and the inputs behind it."""

    measure: str
    value: float | None
    limit: float
    kind: Literal["max", "min"]
    inputs: list[int] = []  # indexes into the diff's inputs (the changed ones), for the message

    @property
    def message(self) -> str:
        return self.describe("promote")

    def describe(self, section: str) -> str:
        """e.g. "flip_rate 0.2 is above promote.max_flip_rate 0.05", the limit named under `section`."""
        shown = "not measurable" if self.value is None else f"{self.value:.4g}"
        word = "above" if self.kind == "max" else "below"
        return f"{self.measure} {shown} is {word} {section}.{self.kind}_{self.measure} {self.limit:g}"


class SkippedInput(_Frozen):
    """A line of the inputs that could not be compared (a bad replay line, a request one version refused)."""

    where: str  # "diff.jsonl:12", "examples[3]"
    reason: str


class DiffRecord(_Frozen):
    """What `torchship diff` reports and saves (diff.json), and what an accepted promotion records."""

    name: str
    task: str
    old: VersionRef
    new: VersionRef
    inputs_origin: list[str]  # the files the inputs came from
    requests: list[Any]
    task_diff: TaskDiff
    latency: LatencyComparison | None = None
    skipped: list[SkippedInput] = []
    breaches: list[Breach] = []
    notes: list[str] = []  # plain sentences: label sets that differ, an answer sheet not reproduced, ...
    generated_at: str
    torchship_version: str

    @property
    def passed(self) -> bool:
        return not self.breaches
