"""A strict JSON schema for the Gateway API v1 HTTPRoute that a canary renders.

kubernetes-validate bundles the built-in Kubernetes kinds only; HTTPRoute is a CRD
(gateway.networking.k8s.io, standard channel), so `render --check` checks it against this schema instead,
written from the CRD's OpenAPI schema (config/crd/standard/gateway.networking.k8s.io_httproutes.yaml in
kubernetes-sigs/gateway-api): the field names, types, lengths, patterns and limits of `parentRefs` and of a
rule's `backendRefs` (what torchship writes), strict there (an unknown key is an error, as the API server's
structural pruning would drop it); the rest of a rule (matches, filters, timeouts) is only typed. The CRD's
CEL rules (e.g. distinct parentRefs) are not re-implemented.
"""

from __future__ import annotations

from typing import Any

GROUP = "gateway.networking.k8s.io"
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_KIND = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"
_GROUP = r"^$|" + _DNS_SUBDOMAIN
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

PARENT_REF: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "group": {"type": "string", "maxLength": 253, "pattern": _GROUP},
        "kind": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": _KIND},
        "namespace": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": _DNS_LABEL},
        "name": {"type": "string", "minLength": 1, "maxLength": 253},
        "sectionName": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": _DNS_SUBDOMAIN},
        "port": _PORT,
    },
}

BACKEND_REF: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "group": {"type": "string", "maxLength": 253, "pattern": _GROUP},
        "kind": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": _KIND},
        "name": {"type": "string", "minLength": 1, "maxLength": 253},
        "namespace": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": _DNS_LABEL},
        "port": _PORT,
        # 0 takes the backend out of the rotation; the split is weight / sum of weights.
        "weight": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
        "filters": {"type": "array", "maxItems": 16, "items": {"type": "object"}},
    },
}

RULE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": _DNS_SUBDOMAIN},
        "matches": {"type": "array", "maxItems": 64, "items": {"type": "object"}},
        "filters": {"type": "array", "maxItems": 16, "items": {"type": "object"}},
        "backendRefs": {"type": "array", "maxItems": 16, "items": BACKEND_REF},
        "timeouts": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"request": {"type": "string"}, "backendRequest": {"type": "string"}},
        },
        "retry": {"type": "object"},
        "sessionPersistence": {"type": "object"},
    },
}

HTTP_ROUTE: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": f"{GROUP}/v1"},
        "kind": {"const": "HTTPRoute"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": _DNS_SUBDOMAIN},
                "namespace": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": _DNS_LABEL},
                "labels": _STRING_MAP,
                "annotations": _STRING_MAP,
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "parentRefs": {"type": "array", "maxItems": 32, "items": PARENT_REF},
                "hostnames": {
                    "type": "array",
                    "maxItems": 16,
                    "items": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 253,
                        "pattern": r"^(\*\.)?" + _DNS_SUBDOMAIN[1:],
                    },
                },
                "rules": {"type": "array", "maxItems": 16, "items": RULE},
            },
        },
        "status": {"type": "object"},
    },
}

# (kind, apiVersion) -> schema, for kinds kubernetes-validate does not bundle.
OWN_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {("HTTPRoute", f"{GROUP}/v1"): HTTP_ROUTE}
