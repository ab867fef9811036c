"""Every rendered manifest against the Kubernetes API schemas, offline, with kubernetes-validate.

Strict schemas (no unknown fields): a misspelt key that the API server would silently drop (and a probe
or limit with it) is an error here.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import jsonschema

from torchship.deploy.errors import DeployError
from torchship.deploy.gateway_schema import OWN_SCHEMAS as GATEWAY_SCHEMAS
from torchship.deploy.monitoring_schema import MONITORING_SCHEMAS
from torchship.deploy.render import Manifest

NEWEST_VERSIONS = 3
# CRD kinds checked against torchship's own schemas: the Gateway API route, the Prometheus Operator's kinds.
OWN_SCHEMAS = {**GATEWAY_SCHEMAS, **MONITORING_SCHEMAS}


@dataclass(frozen=True)
class SchemaFinding:
    version: str
    resource: str  # Kind/name (file)
    message: str


def _minor(version: str) -> str:
    return ".".join(version.lstrip("v").split(".")[:2])


def known_versions() -> list[str]:
    """Kubernetes minor versions ("1.37") whose schemas the installed kubernetes-validate bundles."""
    from kubernetes_validate.utils import all_versions

    return sorted({_minor(v) for v in all_versions()}, key=lambda v: tuple(int(p) for p in v.split(".")))


def versions_to_check(requested: list[str]) -> list[str]:
    known = known_versions()
    if not requested:
        return known[-NEWEST_VERSIONS:]
    wanted = [_minor(v) for v in requested]
    unknown = [v for v in wanted if v not in known]
    if unknown:
        raise DeployError(
            f"deploy.kubernetes_versions: no bundled schemas for {', '.join(unknown)}; "
            f"kubernetes-validate has {known[0]} to {known[-1]}",
            hint="Pick versions from that range, or upgrade kubernetes-validate for newer ones.",
        )
    return list(dict.fromkeys(wanted))


@functools.lru_cache(maxsize=64)
def _validator(version: str, kind: str, api_version: str):
    """kubernetes-validate's own schema files and resolution, with the parsed schemas kept.

    `kubernetes_validate.validate` re-reads the multi-megabyte definitions file on every call (~0.2 s);
    one check of a base is 7 manifests x 3 versions, so the validators are built once per kind.
    """
    import jsonschema
    from kubernetes_validate.utils import all_versions, schema_contents
    from referencing import Registry, Resource

    full = next(v for v in all_versions() if _minor(v) == version)
    schema_dir = f"kubernetes-json-schema/v{full}-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = schema_contents(f"{schema_dir}/{kind.lower()}-{group}.json", version)
    except FileNotFoundError:
        return None
    definitions = schema_contents(f"{schema_dir}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


@functools.lru_cache(maxsize=8)
def _own_validator(kind: str, api_version: str):
    """torchship's own schema for a CRD kind it renders (gateway_schema.py), the same in every version."""
    schema = OWN_SCHEMAS.get((kind, api_version))
    return None if schema is None else jsonschema.validators.Draft202012Validator(schema)


def own_schema_kinds(manifests: list[Manifest]) -> list[str]:
    """The kinds checked against torchship's own schema rather than kubernetes-validate's (said in the report)."""
    return sorted({m.kind for m in manifests if (m.kind, str(m.doc.get("apiVersion"))) in OWN_SCHEMAS})


def validate_schemas(manifests: list[Manifest], versions: list[str]) -> list[SchemaFinding]:
    findings = []
    for version in versions:
        for manifest in manifests:
            where = f"{manifest.kind}/{manifest.name} ({manifest.file})"
            api_version = str(manifest.doc.get("apiVersion"))
            validator = _own_validator(manifest.kind, api_version) or _validator(
                version, manifest.kind, api_version
            )
            if validator is None:
                message = f"no schema for kind {manifest.kind} in {api_version} (unknown kind or apiVersion)"
                findings.append(SchemaFinding(version, where, message))
                continue
            # best_match: the one error that explains the most (jsonschema's own ranking).
            error = jsonschema.exceptions.best_match(validator.iter_errors(manifest.doc))
            if error is not None:
                path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
                findings.append(SchemaFinding(version, where, f"{path}: {error.message}"))
    return findings
