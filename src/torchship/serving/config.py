"""TorchServe's config.properties: typed, validated values rendered through templates/config.properties.j2.

Java's Properties format ends a property at a line break, so one value carrying "\\n" (from a `.env` line, a
TORCHSHIP_* variable or a TMPDIR) could append properties of its own — `disable_token_authorization=true`,
`inference_address=http://0.0.0.0:80`. Every value is therefore typed (ports are ints, the host a loopback
address, the heap `^\\d+[kKmMgG]$`) and every text checked for control characters before it is rendered.
"""

from __future__ import annotations

import ipaddress
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from torchship.errors import ServingError
from torchship.rendering import render_template
from torchship.settings import HEAP_PATTERN
from torchship.spec import ServeSpec

TEMPLATE = "config.properties.j2"
# Per TorchServe batch, every request is buffered whole in the frontend's heap. Bodies up to twice the
# spec's serve.max_body_bytes still reach our handler, so a body a bit over the limit gets the handler's
# 400 that names the limit and the spec key; only a body over twice the limit is cut off by TorchServe
# itself (413 without a message), before it is buffered whole.
REQUEST_SIZE_HEADROOM = 2
# The frontend checks each response body of a batch against max_response_size (ModelResponseDecoder);
# the handler keeps every body within serve.max_response_bytes and answers 413 past it. The margin only
# covers a body counted slightly differently (a trailing newline): it never lets the worker be killed.
RESPONSE_SIZE_MARGIN = 64 * 1024

Port = Annotated[int, Field(ge=1, le=65535)]


def _problem_in_text(value: str) -> str | None:
    """Why `value` cannot be written into a properties file, or None when it can."""
    for ch in value:
        if ch in "\r\n":
            return "a line break"
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            return f"the control character U+{ord(ch):04X}"
    return None


def check_text(value: str, what: str) -> str:
    problem = _problem_in_text(value)
    if problem:
        raise ValueError(f"{what} contains {problem}: {value!r}")
    return value


class ServerPorts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    inference: Port
    management: Port
    metrics: Port
    # TorchServe always starts its gRPC servers too: they need free ports as well.
    grpc_inference: Port
    grpc_management: Port


class TorchServeConfig(BaseModel):
    """Everything config.properties says; built once per start, rendered by `render_config`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: ipaddress.IPv4Address
    ports: ServerPorts
    model_store: Path
    log_config: Path  # torchship's log4j2.xml (templates/log4j2.xml.j2 says why not TorchServe's)
    metrics_config: Path  # the metrics TorchServe serves (serving/metrics_config.py)
    heap: Annotated[str, Field(pattern=HEAP_PATTERN)]
    token_expiration_min: Annotated[float, Field(gt=0, le=525_600)]
    max_request_size: Annotated[int, Field(ge=1024, le=2**31 - 1)]
    max_response_size: Annotated[int, Field(ge=65_536, le=2**31 - 1)]
    default_response_timeout: Annotated[int, Field(ge=1, le=86_400)]

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, host: ipaddress.IPv4Address) -> ipaddress.IPv4Address:
        if not host.is_loopback:
            raise ValueError(
                f"{host} is not a loopback address (torchship binds TorchServe to 127.0.0.1 only)"
            )
        return host

    @field_validator("model_store", "log_config", "metrics_config")
    @classmethod
    def _plain_absolute_path(cls, path: Path, info: ValidationInfo) -> Path:
        what = f"the {(info.field_name or 'path').replace('_', ' ')} path"
        text = check_text(str(path), what)
        if not path.is_absolute():
            raise ValueError(f"{what} {text} is not absolute")
        # A backslash is an escape in Java's Properties (read differently by TorchServe's Python
        # launcher), a comma separates entries of allowed_urls, whitespace separates the JVM's vmargs.
        for bad in ("\\", ",", " ", "\t"):
            if bad in text:
                raise ValueError(f"{what} {text} contains {bad!r}")
        return path

    @property
    def allowed_urls(self) -> str:
        """Only archives directly inside the model store may be named by URL (workflows included)."""
        return rf"^file://\Q{self.model_store}\E/[^/]+$"


def _properties_escape(value: Any) -> str:
    """A value as Java's Properties reads it back: backslashes doubled; line breaks were refused before."""
    text = str(value)
    if _problem_in_text(text):
        raise ValueError(f"refusing to write {text!r} into config.properties")
    return text.replace("\\", "\\\\")


def render_config(config: TorchServeConfig) -> str:
    text = render_template(
        TEMPLATE,
        host=_properties_escape(config.host),
        ports=config.ports,
        model_store=_properties_escape(config.model_store),
        metrics_config=_properties_escape(config.metrics_config),
        allowed_urls=_properties_escape(config.allowed_urls),
        token_expiration_min=f"{config.token_expiration_min:g}",
        max_request_size=config.max_request_size,
        max_response_size=config.max_response_size,
        default_response_timeout=config.default_response_timeout,
        heap=_properties_escape(config.heap),
        log_config=_properties_escape(config.log_config),
    )
    return text


def render_log_config(access_log: bool = False) -> str:
    """The log4j2.xml TorchServe's frontend is started with (-Dlog4j2.configurationFile)."""
    return render_template("log4j2.xml.j2", access_log=access_log)


def build_config(**values: Any) -> TorchServeConfig:
    """A TorchServeConfig, or a ServingError that names the setting and what is wrong with it."""
    try:
        return TorchServeConfig(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        origin = _ORIGIN.get(key.split(".")[0], "")
        raise ServingError(
            f"TorchServe setting '{key}'{origin} is invalid: {first['msg']} (got {first.get('input')!r})",
            hint="Fix that value: TorchServe's config.properties is written only from validated values.",
        ) from None


_ORIGIN = {
    "heap": " (TORCHSHIP_TORCHSERVE_HEAP)",
    "token_expiration_min": " (TORCHSHIP_TOKEN_EXPIRATION_MIN)",
    "model_store": " (under TMPDIR)",
    "metrics_config": " (under TMPDIR)",
    "max_request_size": " (spec serve.max_body_bytes)",
    "max_response_size": " (spec serve.max_response_bytes)",
}


# --- limits taken from the archives served -------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveLimits:
    """What one .mar's model-config.yaml says about request and response sizes and timeouts."""

    max_body_bytes: int
    max_response_bytes: int
    response_timeout_s: int


def archive_limits(mar: Path) -> ArchiveLimits:
    """The limits packaged into `mar` (model-config.yaml); the spec defaults where an older .mar lacks one."""
    defaults = ServeSpec()
    try:
        with zipfile.ZipFile(mar) as archive:
            config = yaml.safe_load(archive.read("model-config.yaml")) or {}
    except (KeyError, zipfile.BadZipFile, OSError, yaml.YAMLError):
        config = {}
    if not isinstance(config, dict):
        config = {}
    handler = config.get("handler")
    if not isinstance(handler, dict):
        handler = {}

    def number(section: dict[str, Any], key: str, default: int) -> int:
        value = section.get(key, default)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default

    return ArchiveLimits(
        max_body_bytes=number(handler, "max_body_bytes", defaults.max_body_bytes),
        max_response_bytes=number(handler, "max_response_bytes", defaults.max_response_bytes),
        response_timeout_s=number(config, "responseTimeout", defaults.response_timeout_s),
    )


@dataclass(frozen=True)
class ServerLimits:
    """TorchServe's server-wide sizes: one frontend serves every model, so the largest limit wins and each
    model's handler enforces its own (smaller) one with a clear 4xx."""

    max_request_size: int
    max_response_size: int
    default_response_timeout: int

    @staticmethod
    def for_archives(mars: list[Path]) -> ServerLimits:
        limits = [archive_limits(mar) for mar in mars] or [archive_limits(Path("/nonexistent"))]
        return ServerLimits(
            max_request_size=max(lim.max_body_bytes for lim in limits) * REQUEST_SIZE_HEADROOM,
            max_response_size=max(lim.max_response_bytes for lim in limits) + RESPONSE_SIZE_MARGIN,
            default_response_timeout=max(lim.response_timeout_s for lim in limits),
        )
