"""A strict JSON schema of prometheus-adapter's discovery rules (the `rules:` of its config file), the subset
torchship writes, from the adapter's config types (kubernetes-sigs/prometheus-adapter pkg/config/config.go:
DiscoveryRule with seriesQuery, resources.overrides, name.matches/as, metricsQuery). The adapter ignores keys it
does not know, so a misspelt one would silently serve nothing: unknown keys are errors here."""

from __future__ import annotations

from typing import Any

_METRIC_NAME = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
_RESOURCE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["resource"],
    "properties": {"group": {"type": "string"}, "resource": {"type": "string", "minLength": 1}},
}

ADAPTER_RULES: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["rules"],
    "properties": {
        "rules": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["seriesQuery", "resources", "name", "metricsQuery"],
                "properties": {
                    "seriesQuery": {"type": "string", "minLength": 1},
                    "seriesFilters": {"type": "array"},
                    "resources": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "overrides": {"type": "object", "additionalProperties": _RESOURCE},
                            "template": {"type": "string"},
                        },
                    },
                    "name": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["matches", "as"],
                        "properties": {
                            "matches": {"type": "string", "minLength": 1},
                            "as": {"type": "string", "pattern": _METRIC_NAME},
                        },
                    },
                    # The adapter fills <<.Series>>, <<.LabelMatchers>> and <<.GroupBy>> in.
                    "metricsQuery": {"type": "string", "pattern": "<<\\.Series>>"},
                },
            },
        }
    },
}
