"""ModelSpec: the single description of a model, loaded from `models/<name>/model.yaml`.

Every stage derives what it does from this spec. Loading errors name the file, the key and what is
allowed, because the spec is hand-written YAML and the user needs to know exactly which line to fix.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from torchship.errors import SpecError
from torchship.handlers.tasks import TASKS  # the task registry: tasks are declared there, not here

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
# Semantic version 2.0.0 (major.minor.patch with optional pre-release and build metadata).
SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
PKG_PREFIX = "pkg:"


class _Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NeuronSpec(_Strict):
    # inf2 / trn1: torch-neuronx (torch_neuronx.trace). inf1: torch-neuron (torch.neuron.trace), which AWS
    # retired; kept for existing fleets.
    target: Literal["inf2", "trn1", "inf1"] = "inf2"
    compiler_args: list[str] = []


class CompileSpec(_Strict):
    # torchscript: trace + freeze (one dynamic trace, or one per bucket); onnx: ONNX export run by ONNX
    # Runtime (dynamic shapes); neuron: AWS Neuron, one fixed-shape module per bucket and batch size;
    # eager: no compilation, for models that cannot trace. compile/__init__.py registers each.
    backend: Literal["torchscript", "onnx", "neuron", "eager"] = "torchscript"
    # None: what the model supports (modeling.fit_to_model fills it in after fetch); an explicit value
    # beyond the model's position table is a spec error naming the limit.
    max_length: Annotated[int, Field(ge=2, le=8192)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 8
    # Sequence-length buckets: each sub-batch is padded to the smallest bucket that fits, instead of to
    # its longest text. Fixed-shape backends need them; max_length is always the last bucket.
    buckets: list[Annotated[int, Field(ge=2, le=8192)]] | None = None
    # Batch sizes a fixed-shape backend compiles for (partial batches are padded up); default [1, batch_size].
    batch_sizes: list[Annotated[int, Field(ge=1, le=1024)]] | None = None
    # torch.jit.optimize_for_inference, kept only where the result still matches the source model. Off by
    # default: on CPU it made MiniLM slower here (8x16: 20.3 vs 18.5 ms frozen; 8x200: 345 vs 341 ms).
    optimize: bool = False
    # onnx: fuse the exported graph with ONNX Runtime's transformer optimizer where it knows the architecture
    # (compile/onnx_fusion.py). Off by default: on MiniLM here (bench/backends.py, 2 threads, one run) the
    # fused graph was slower batched (8x14: 12.5 vs 9.3 ms; 8x200: 125.8 vs 113.9 ms) and faster alone
    # (1x16: 3.5 vs 4.5 ms) than the plain export that ONNX Runtime optimizes itself at load.
    onnx_fusion: bool = False
    # The numbers the compiled model computes in. fp32: the source model's own weights, held to parity
    # tolerances. The reduced ones trade exactness for speed and size, so the gate judges them on what
    # users see (validate.precision_limits on the task's measures) instead of raw tensors; which backend
    # can produce which on this machine is compile/precision.py's table (bf16 needs native CPU support).
    precision: Literal["fp32", "bf16", "int8-dynamic", "int8-static"] = "fp32"
    # int8 precisions: matrix products kept fp32 beyond the attention's products of two activations, for a
    # model the gate refuses fully quantized. "ffn-output": each layer's feed-forward output projection,
    # whose input (after GELU) has the widest range. MiniLM int8-dynamic (bench/precision.py, one disturbed
    # run): mean cosine to fp32 0.989 (refused) -> 0.994; 8x16 tokens 7.7 -> 10.8 ms, 8x200 135 -> 189 ms
    # (fp32 ONNX: 23.4, 293 ms).
    int8_keep_fp32: list[Literal["ffn-output"]] = []
    neuron: NeuronSpec = NeuronSpec()

    def fixed_batch_sizes(self) -> list[int]:
        return sorted(set(self.batch_sizes or [1, self.batch_size]))

    def bucket_lengths(self) -> list[int]:
        return list(self.buckets or [self.known_max_length()])

    def known_max_length(self) -> int:
        """max_length once fetch has filled it in; every stage after fetch relies on it."""
        if self.max_length is None:
            raise ValueError("compile.max_length is not known before the model is fetched")
        return self.max_length

    @model_validator(mode="after")
    def _keep_fp32_is_for_int8(self) -> CompileSpec:
        if self.int8_keep_fp32 and not self.precision.startswith("int8"):
            raise ValueError(
                f"compile.int8_keep_fp32 applies to the int8 precisions, not compile.precision {self.precision}"
            )
        return self

    @model_validator(mode="after")
    def _buckets_up_to_max_length(self) -> CompileSpec:
        if self.buckets is None:
            return self
        if self.buckets != sorted(set(self.buckets)):
            raise ValueError(f"compile.buckets must be strictly ascending, got {self.buckets}")
        if self.max_length is None:  # checked again once the model's limit fills max_length in
            return self
        if self.buckets[-1] > self.max_length:
            raise ValueError(f"compile.buckets {self.buckets} go beyond compile.max_length {self.max_length}")
        if self.buckets[-1] != self.max_length:
            object.__setattr__(self, "buckets", [*self.buckets, self.max_length])
        return self


class LatencySpec(_Strict):
    """Budgets in milliseconds for one text, measured in-process (validate) and served (verify)."""

    p50: Annotated[float, Field(gt=0)] | None = None
    p95: Annotated[float, Field(gt=0)] | None = None


DEFAULT_EXAMPLES = "examples.jsonl"


class ValidateSpec(_Strict):
    # None: examples.jsonl beside the spec when it exists, else the built-in texts (examples.py).
    examples: str | None = None
    atol: Annotated[float, Field(ge=0)] = 1e-4
    rtol: Annotated[float, Field(ge=0)] = 1e-3
    # Labelled JSONL (relative to the spec file) for metrics; thresholds: {accuracy: 0.9, f1: {PER: 0.8}}.
    eval_set: str | None = None
    thresholds: dict[
        str, Annotated[float, Field(ge=0, le=1)] | dict[str, Annotated[float, Field(ge=0, le=1)]]
    ] = {}
    latency_ms: LatencySpec | None = None
    # compile.precision other than fp32: limits on the task's own measures of compiled vs source answers
    # (max_flip_rate: 0.01, min_mean_cosine: 0.99, ...; the names of promote's limits, without latency).
    # Each overrides the task's default for that key (README "Reduced precision" lists them).
    precision_limits: dict[str, float] = {}

    @model_validator(mode="after")
    def _thresholds_need_an_eval_set(self) -> ValidateSpec:
        if self.thresholds and not self.eval_set:
            raise ValueError("validate.thresholds needs validate.eval_set (the labelled examples to score)")
        return self

    @field_validator("precision_limits", mode="before")
    @classmethod
    def _limit_keys(cls, limits: Any) -> Any:
        # Before pydantic's coercion, so `true` or "0.9" is an error here rather than a number.
        for key, value in limits.items() if isinstance(limits, dict) else ():
            check_limit_key("validate.precision_limits", str(key), value)
        return limits


class ServeSpec(_Strict):
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 8
    max_batch_delay_ms: Annotated[int, Field(ge=0, le=60_000)] = 5
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    # torch intra-op threads per worker; None: the host's cores divided by workers.
    threads: Annotated[int, Field(ge=1, le=256)] | None = None
    # Texts longer than compile.max_length tokens: truncate (true) or answer 400 (false).
    truncation: bool = True
    max_texts_per_request: Annotated[int, Field(ge=1, le=10_000)] = 64
    max_body_bytes: Annotated[int, Field(ge=1024, le=100 * 1024 * 1024)] = 1024 * 1024
    response_timeout_s: Annotated[int, Field(ge=1, le=3600)] = 120
    # What torch's OpenMP threads do between parallel regions (OMP_WAIT_POLICY in TorchServe's environment,
    # set before the workers load torch). passive: they sleep. active: they spin, which wins a little on an
    # idle machine and loses badly when the cores are shared (frontend, other workers, other pods): measured
    # on a loaded 2-core VM, MiniLM short texts at 16 clients, 1 worker x 2 threads: 98.5 vs 8.6 req/s and
    # 5.5 vs 44 ms of worker CPU per request. `tune` measures both where a worker has more than one thread.
    omp_wait_policy: Literal["passive", "active"] = "passive"
    # TorchServe's access log (a line per request in access_log.log) in the image. Off by default: with its
    # other per-request logging it cost the Java frontend ~1 ms of CPU per request on MiniLM short texts
    # (templates/log4j2.xml.j2); an ingress or service mesh logs requests without taking the model's CPU.
    access_log: bool = False
    # Largest response body a request may get; TorchServe's max_response_size is set from it and a
    # larger answer is that request's 413, never a dead worker. TorchServe's own default is 6553500.
    max_response_bytes: Annotated[int, Field(ge=65_536, le=1024 * 1024 * 1024)] = 6_553_500
    # Tokens one request may run through the model, all its texts together after truncation; more is a
    # 413 decided before any model work. A batch costs up to serve.batch_size times this, which must stay
    # well under response_timeout_s: README "Limits and failure behaviour" has the measured times.
    max_tokens_per_request: Annotated[int, Field(ge=2, le=10_000_000)] = 4096


class EmbeddingsSpec(_Strict):
    # auto: read the sentence-transformers pooling config shipped with the model (1_Pooling/config.json).
    pooling: Literal["auto", "mean", "cls", "max"] = "auto"
    # auto: normalize when the model's modules.json lists a Normalize module.
    normalize: Literal["auto"] | bool = "auto"


class TokenClassificationSpec(_Strict):
    # How sub-word predictions merge into entities, as in transformers' token-classification pipeline.
    aggregation_strategy: Literal["none", "simple", "first", "max", "average"] = "simple"
    ignore_labels: list[str] = ["O"]


class RerankingSpec(_Strict):
    # sigmoid: a relevance probability, as sentence-transformers' CrossEncoder.predict gives by default;
    # raw: the cross-encoder's logit.
    score: Literal["sigmoid", "raw"] = "sigmoid"


class QuestionAnsweringSpec(_Strict):
    max_answer_tokens: Annotated[int, Field(ge=1, le=512)] = 30  # the longest answer, in tokens
    # Tokens shared by neighbouring windows of a long context (None: a quarter of compile.max_length, at most 128).
    doc_stride: Annotated[int, Field(ge=0)] | None = None
    # A context needing more windows is refused per request (413): each window is one model row.
    max_windows_per_context: Annotated[int, Field(ge=1, le=1024)] = 16


class KeywordsSpec(_Strict):
    """KeyBERT-style extraction; per-request `top_n`, `use_mmr`, `diversity` override these defaults."""

    ngram_range: tuple[Annotated[int, Field(ge=1, le=6)], Annotated[int, Field(ge=1, le=6)]] = (1, 1)
    # "english": scikit-learn's English stop words (what KeyBERT uses); "none"; or your own list.
    stop_words: Literal["english", "none"] | list[str] = "english"
    top_n: Annotated[int, Field(ge=1, le=100)] = 5
    use_mmr: bool = False
    diversity: Annotated[float, Field(ge=0, le=1)] = 0.5
    # Candidate phrases per text, and per request (all its texts together): each one is embedded, so
    # they bound a request's work; more is a 413 decided before any model work.
    max_candidates: Annotated[int, Field(ge=1, le=10_000)] = 1000
    max_candidates_per_request: Annotated[int, Field(ge=1, le=100_000)] = 2000
    # Tokens of those candidates together: words that split into many word pieces make a phrase long.
    max_candidate_tokens_per_request: Annotated[int, Field(ge=2, le=10_000_000)] = 8192

    @field_validator("ngram_range")
    @classmethod
    def _ordered(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] > value[1]:
            raise ValueError(f"must be [min, max] with min <= max, got {list(value)}")
        return value


class NeptuneRegistrySpec(_Strict):
    project: str = "torchship/models"
    # neptune.ai's hosted service closed in 2026: use a self-hosted server, or "debug" (nothing kept) to try it.
    mode: Literal["async", "sync", "offline", "debug"] = "async"


class PublishSpec(_Strict):
    # s3://BUCKET/PREFIX; the TORCHSHIP_PUBLISH_URI environment variable takes precedence.
    uri: str | None = None
    registry: Literal["s3", "neptune", "none"] = "s3"
    neptune: NeptuneRegistrySpec = NeptuneRegistrySpec()

    @field_validator("uri")
    @classmethod
    def _s3_uri(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("s3://"):
            raise ValueError(f"must be s3://BUCKET[/PREFIX], got {value!r}")
        return value


DEFAULT_DIFF_INPUTS = "diff.jsonl"
_LIMIT_KEY = re.compile(r"(max|min)_[a-z][a-z0-9_]*")


def check_limit_key(section: str, key: str, value: object) -> None:
    """A limit on a task measure (promote's, validate.precision_limits'): named max_<measure> or
    min_<measure>, a number >= 0. Whether the task has that measure is checked where the task is known
    (diff/limits.py)."""
    if not _LIMIT_KEY.fullmatch(key):
        raise ValueError(
            f"{section}.{key}: a limit is named max_<measure> or min_<measure> (e.g. max_flip_rate)"
        )
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{section}.{key} must be a number >= 0, got {value!r}")


class PromoteSpec(BaseModel):
    """How a new version is compared with the one a stage serves (`torchship diff`, `promote`).

    Besides the keys below, every `max_<measure>` / `min_<measure>` is a promotion limit on one of the task's
    diff measures (README "Diff and promotion" lists them per task) or on latency (`max_p99_ratio`, ...).
    Which names a task has is checked where the task is known (diff/limits.py), with the list in the error."""

    model_config = ConfigDict(extra="allow", frozen=True)

    # Request bodies of real traffic to compare on, beside the examples (relative to the spec); None:
    # diff.jsonl beside the spec when there is one.
    inputs: str | None = None
    # Side-by-side latency: passes over the inputs (each input sent to both versions per pass) and clients.
    latency_passes: Annotated[int, Field(ge=1, le=100)] = 3
    clients: Annotated[int, Field(ge=1, le=64)] = 4

    @model_validator(mode="after")
    def _limits_are_numbers(self) -> PromoteSpec:
        for key, value in (self.model_extra or {}).items():
            if not _LIMIT_KEY.fullmatch(key):
                raise ValueError(
                    f"unknown key {key!r}: promote takes inputs, latency_passes, clients and limits named "
                    "max_<measure> or min_<measure> (e.g. max_flip_rate: 0.05)"
                )
            check_limit_key("promote", key, value)
        return self

    def limits(self) -> dict[str, float]:
        """{"max_flip_rate": 0.05, ...}: every limit the spec sets."""
        return {key: float(value) for key, value in (self.model_extra or {}).items()}


# A Kubernetes quantity such as "500m", "2", "1.5Gi" (what the API server accepts for cpu/memory/storage).
K8S_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
_LABEL_KEY = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"


class DeploySpec(_Strict):
    """How `torchship render/deploy/rehearse` run the model on Kubernetes (one flat section on purpose).

    Probe thresholds, threads and grace periods are not here: they are derived from measurements
    (image.json / verify) and from these limits, so they cannot drift from what the image really does.
    """

    # Image repository when image.json has none to offer (e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/x).
    image: Annotated[str, Field(min_length=1)] | None = None
    namespace: Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)] | None = None
    # Two or more: one pod can be drained or evicted while the other serves (PDB maxUnavailable 1).
    replicas: Annotated[int, Field(ge=1, le=100)] = 2
    # HorizontalPodAutoscaler ceiling; default twice `replicas`.
    max_replicas: Annotated[int, Field(ge=1, le=1000)] | None = None
    target_cpu_percent: Annotated[int, Field(ge=10, le=100)] = 70
    cpu_request: Annotated[str, Field(pattern=K8S_QUANTITY)] = "1"
    cpu_limit: Annotated[str, Field(pattern=K8S_QUANTITY)] = "2"
    # Requests = limits for memory: a model server's memory is its weights, and overcommit means OOM kills.
    memory: Annotated[str, Field(pattern=K8S_QUANTITY)] = "3Gi"
    # /tmp holds the extracted archive (the demo's is 88 MB) and the logs; this bounds both.
    ephemeral_storage: Annotated[str, Field(pattern=K8S_QUANTITY)] = "2Gi"
    # Pods with these labels (same namespace) may reach the inference port; default {torchship/client-of: NAME}.
    client_labels: dict[Annotated[str, Field(pattern=_LABEL_KEY)], str] = {}
    # Namespace whose pods (Prometheus) may scrape the metrics port.
    monitoring_namespace: Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)] = "monitoring"
    # Seconds a terminating pod keeps serving while endpoints controllers drop it from the Service.
    prestop_sleep_s: Annotated[int, Field(ge=0, le=120)] = 5
    priority_class: Annotated[str, Field(min_length=1)] | None = None
    # Kubernetes versions whose schemas the manifests must validate against; default the three newest known.
    kubernetes_versions: list[Annotated[str, Field(pattern=r"^v?1\.[0-9]+(\.[0-9]+)?$")]] = []
    # AWS Neuron devices per pod (aws.amazon.com/neuron); 0 runs on CPU nodes. Needs compile.backend: neuron.
    neuron: Annotated[int, Field(ge=0, le=16)] = 0
    # Extra node selector; with `neuron` the default selects the instance type of compile.neuron.target.
    node_selector: dict[Annotated[str, Field(pattern=_LABEL_KEY)], str] = {}

    @model_validator(mode="after")
    def _ceiling_not_below_floor(self) -> DeploySpec:
        # The API server refuses an autoscaler whose maxReplicas is below its minReplicas.
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ValueError(
                f"deploy.max_replicas {self.max_replicas} is below deploy.replicas {self.replicas}"
            )
        return self


class MonitoringSpec(_Strict):
    """The alerts `torchship render` writes beside the manifests (monitoring/prometheusrule.yaml): each
    threshold, and where a key is null, no such alert. README "Monitoring" says what fires each one."""

    # Labels the Prometheus Operator selects ServiceMonitors and PrometheusRules by (kube-prometheus-stack:
    # `release: <its release name>`).
    labels: dict[Annotated[str, Field(pattern=_LABEL_KEY)], str] = {}
    scrape_interval_s: Annotated[int, Field(ge=5, le=300)] = 30
    # Share of requests answered 5xx over 5 minutes.
    error_ratio: Annotated[float, Field(gt=0, le=1)] | None = 0.05
    # p99 of the handler's time per request; default validate.latency_ms.p95, else p50; null: none set there.
    latency_p99_ms: Annotated[float, Field(gt=0)] | None = None
    # Mean fill of TorchServe's batches (requests / serve.batch_size) over 15 minutes: the model is saturated.
    batch_fill: Annotated[float, Field(gt=0, le=1)] | None = 0.9
    # Mean wait in TorchServe's queue over 10 minutes.
    queue_wait_ms: Annotated[float, Field(gt=0)] | None = 250.0
    # No request at all for this long.
    no_traffic_minutes: Annotated[int, Field(ge=1, le=10_080)] | None = 30
    # A model worker (or the container) started again within 15 minutes.
    worker_restarts: bool = True
    # Classification: how far a label's share of served texts (1 hour) may move from its share among the
    # verified examples' answers. Default 0.25 where the task's answers have labels; an error elsewhere.
    label_shift: Annotated[float, Field(gt=0, le=1)] | None = None


class ModelSpec(_Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]
    version: Annotated[str, Field(pattern=SEMVER_PATTERN)]
    task: str  # a name in the task registry (handlers/tasks/): checked below, declared once there
    source: Annotated[str, Field(min_length=1)]
    description: str = ""
    compile: CompileSpec = CompileSpec()
    validate_: ValidateSpec = Field(default=ValidateSpec(), alias="validate")
    serve: ServeSpec = ServeSpec()
    embeddings: EmbeddingsSpec = EmbeddingsSpec()
    token_classification: TokenClassificationSpec = TokenClassificationSpec()
    keywords: KeywordsSpec = KeywordsSpec()
    reranking: RerankingSpec = RerankingSpec()
    question_answering: QuestionAnsweringSpec = QuestionAnsweringSpec()
    publish: PublishSpec = PublishSpec()
    deploy: DeploySpec = DeploySpec()
    promote: PromoteSpec = PromoteSpec()
    monitoring: MonitoringSpec = MonitoringSpec()

    # Where the spec file lives; relative paths in the spec resolve against it. Not a YAML key.
    spec_path: Path = Field(default=Path("model.yaml"), exclude=True)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; the tasks are {', '.join(TASKS)}")
        return task

    @field_validator("source")
    @classmethod
    def _source_form(cls, value: str) -> str:
        if "://" in value and not value.startswith("s3://"):
            raise ValueError(f"'{value}': the only remote source is s3://BUCKET/PREFIX")
        if value.startswith(PKG_PREFIX):
            rest = value[len(PKG_PREFIX) :]
            module = rest.split("/", 1)[0]
            if not module or not all(part.isidentifier() for part in module.split(".")):
                raise ValueError(
                    f"'{value}' is not of the form pkg:MODULE/SUBDIR (MODULE an importable Python module)"
                )
        return value

    @property
    def validate(self) -> ValidateSpec:  # type: ignore[override]  # the spec key shadows BaseModel.validate (deprecated)
        return self.validate_

    @property
    def spec_dir(self) -> Path:
        return self.spec_path.parent

    def resolve(self, relative: str) -> Path:
        """A path from the spec, resolved against the spec file's directory."""
        path = Path(os.path.expanduser(relative))
        return path if path.is_absolute() else (self.spec_dir / path).resolve()

    def examples_path(self) -> Path | None:
        """The examples file: the spec's, else `examples.jsonl` beside the spec if there is one; None
        means the built-in example texts (examples.py)."""
        if self.validate.examples:
            return self.resolve(self.validate.examples)
        default = self.spec_dir / DEFAULT_EXAMPLES
        return default.resolve() if default.is_file() else None

    def diff_inputs_path(self) -> Path | None:
        """The file of real requests `diff` compares on: promote.inputs, else diff.jsonl beside the spec if
        there is one; None: the examples alone."""
        if self.promote.inputs:
            return self.resolve(self.promote.inputs)
        default = self.spec_dir / DEFAULT_DIFF_INPUTS
        return default.resolve() if default.is_file() else None

    def with_max_length(self, max_length: int) -> ModelSpec:
        """This spec with compile.max_length set (buckets re-checked and completed against it)."""
        try:
            compile_ = CompileSpec.model_validate(
                {**self.compile.model_dump(), "max_length": max_length, "buckets": self.compile.buckets}
            )
        except ValidationError as exc:
            raise SpecError(
                f"{self.spec_path}: " + "; ".join(_describe(e) for e in exc.errors()),
                hint="Fix compile.buckets / compile.max_length in the spec file.",
            ) from None
        return self.model_copy(update={"compile": compile_})

    def fingerprint(self) -> str:
        """The spec's content as canonical JSON: a stage's cache key includes it."""
        return json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed at the mapping that holds `loc` (for 'unknown key' errors)."""
    current: Any = model
    for part in loc[:-1]:
        field = next(
            (f for name, f in current.model_fields.items() if (f.alias or name) == part),
            None,
        )
        if field is None or not (
            isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        ):
            return []
        current = field.annotation
    return sorted((f.alias or name) for name, f in current.model_fields.items() if not f.exclude)


def _describe(error: ErrorDetails) -> str:
    loc = tuple(error["loc"])
    key = ".".join(str(p) for p in loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(ModelSpec, loc)
        return f"unknown key '{key}'; allowed keys here: {', '.join(allowed)}"
    if kind == "missing":
        return f"missing required key '{key}'"
    message = error["msg"]
    if kind == "value_error":  # our own validators' messages, without pydantic's "Value error, " prefix
        message = str(error.get("ctx", {}).get("error", message))
    if kind == "string_pattern_mismatch":
        if loc[-1] == "name":
            message = "must be lowercase letters, digits and '-', e.g. 'minilm-embeddings'"
        elif loc[-1] == "version":
            message = "must be a semantic version MAJOR.MINOR.PATCH, e.g. '1.0.0'"
    got = error.get("input")
    if loc == ("version",) and isinstance(got, (int, float)) and not isinstance(got, bool):
        # YAML reads `version: 1.0` as the number 1.0; the user meant a version string.
        return (
            f"key 'version': YAML read {got!r} as a number; write a semantic version in quotes, "
            'e.g. version: "1.0.0"'
        )
    shown = "" if kind == "missing" or isinstance(got, dict) else f" (got {got!r})"
    return f"key '{key}': {message}{shown}"


def parse_spec(data: Any, spec_path: Path) -> ModelSpec:
    if not isinstance(data, dict):
        raise SpecError(
            f"{spec_path}: the spec must be a YAML mapping of keys (name, version, task, source, ...), "
            f"not {type(data).__name__}",
            hint="See the README's 'Model spec' section for an example.",
        )
    if "spec_path" in data:
        raise SpecError(f"{spec_path}: unknown key 'spec_path'")
    try:
        return ModelSpec.model_validate({**data, "spec_path": spec_path.resolve()})
    except ValidationError as exc:
        problems = [_describe(e) for e in exc.errors()]
        raise SpecError(
            f"{spec_path}: " + "; ".join(problems),
            hint="Fix the spec file; the README's 'Model spec' section lists every key and its allowed values.",
        ) from None


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate a spec file; every failure is a SpecError naming the file and the key."""
    spec_path = Path(path)
    if spec_path.is_dir():
        spec_path = spec_path / "model.yaml"
    if not spec_path.is_file():
        raise SpecError(
            f"spec file {spec_path} does not exist",
            hint="Pass the path of a model.yaml, e.g. models/minilm-embeddings/model.yaml.",
        )
    try:
        data = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SpecError(f"{spec_path}: the file is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"{spec_path}{where}: invalid YAML: {problem}") from None
    return parse_spec(data, spec_path)
