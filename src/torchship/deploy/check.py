"""`render --check`: the schemas of every requested Kubernetes version and every policy rule, together."""

from __future__ import annotations

from dataclasses import dataclass, field

from torchship.deploy.errors import ManifestCheckFailed
from torchship.deploy.monitoring_check import MonitoringFinding, check_monitoring
from torchship.deploy.policy import RULES, Finding, PolicyInputs, check_policy
from torchship.deploy.render import RenderedBase
from torchship.deploy.schemas import SchemaFinding, own_schema_kinds, validate_schemas, versions_to_check
from torchship.spec import ModelSpec


@dataclass(frozen=True)
class CheckReport:
    versions: list[str]
    schema_findings: list[SchemaFinding]
    policy_findings: list[Finding]
    rules_checked: int
    own_schema_kinds: list[str] = field(default_factory=list)  # CRDs checked against torchship's own schema
    monitoring_findings: list[MonitoringFinding] = field(default_factory=list)
    monitoring_checked: bool = False
    promtool: str | None = None  # promtool's version when it checked the alert rules

    @property
    def ok(self) -> bool:
        return not self.schema_findings and not self.policy_findings and not self.monitoring_findings

    def lines(self) -> list[str]:
        lines = [f"schema  {f.version}  {f.resource}: {f.message}" for f in self.schema_findings]
        lines += [f"policy  {f.rule}  {f.resource}: {f.message}" for f in self.policy_findings]
        lines += [f"monitoring  {f.file}: {f.message}" for f in self.monitoring_findings]
        return lines

    def summary(self) -> str:
        own = (
            f" ({', '.join(self.own_schema_kinds)} against torchship's own CRD schemas: "
            "kubernetes-validate has none)"
            if self.own_schema_kinds
            else ""
        )
        monitoring = ""
        if self.monitoring_checked:
            rules = (
                f"rules checked by {self.promtool}"
                if self.promtool
                else "promtool not installed: rules not parsed"
            )
            monitoring = (
                f"; {len(self.monitoring_findings)} monitoring finding(s) (dashboard schema, metrics of the model, "
                "prometheus-adapter rules and the HPAs' pod metrics; "
                f"{rules})"
            )
        return (
            f"{len(self.schema_findings)} schema error(s) against Kubernetes {', '.join(self.versions)}{own}; "
            f"{len(self.policy_findings)} policy finding(s) from {self.rules_checked} rules{monitoring}"
        )

    def raise_if_failed(self) -> None:
        if self.ok:
            return
        failed = sorted({f.rule for f in self.policy_findings}) + (["schema"] if self.schema_findings else [])
        failed += ["monitoring"] if self.monitoring_findings else []
        raise ManifestCheckFailed(
            f"rendered manifests fail: {', '.join(failed)} ({self.summary()})",
            details="\n".join(self.lines()),
            hint="Fix the spec's deploy section (or the overlay that changed it); nothing was written.",
        )


def check_base(rendered: RenderedBase, spec: ModelSpec) -> CheckReport:
    versions = versions_to_check(list(spec.deploy.kubernetes_versions))
    monitoring = check_monitoring(rendered.files, rendered.monitoring) if rendered.monitoring else None
    return CheckReport(
        versions=versions,
        schema_findings=validate_schemas(rendered.manifests, versions),
        policy_findings=check_policy(PolicyInputs(rendered.manifests, spec.serve.response_timeout_s)),
        rules_checked=len(RULES),
        own_schema_kinds=own_schema_kinds(rendered.manifests),
        monitoring_findings=monitoring.findings if monitoring else [],
        monitoring_checked=monitoring is not None,
        promtool=monitoring.promtool if monitoring else None,
    )
