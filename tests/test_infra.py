"""infra/pipeline.yaml: cfn-lint and checkov clean, and deployed to moto's CloudFormation (a real HTTP
server) for the resource types moto implements; the rest is listed and skipped with the reason."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from moto_server import moto_server

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "infra" / "pipeline.yaml"
# checkov pins libraries that conflict with the project's; it lives in a venv of its own (see the README).
CHECKOV = Path("/var/tmp/torchship-tools/checkov/bin/checkov")
# Resource types moto's CloudFormation does not implement (moto warns "not supported" and drops them).
NOT_IN_MOTO = {
    "AWS::CodeBuild::Project",
    "AWS::CodeStarConnections::Connection",
    "AWS::CodePipeline::Pipeline",
}


def load_template() -> dict:
    from cfnlint.decode import decode

    template, errors = decode(str(TEMPLATE))
    assert not errors, errors
    return json.loads(json.dumps(template))  # plain dicts for boto3


def test_cfn_lint_finds_nothing():
    cfn_lint = shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) or shutil.which("cfn-lint")
    if cfn_lint is None:
        pytest.skip("cfn-lint is not installed (requirements/dev.in lists it)")
    done = subprocess.run([cfn_lint, str(TEMPLATE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_checkov_passes_every_cloudformation_check():
    if not CHECKOV.is_file():
        pytest.skip(f"checkov is not installed at {CHECKOV} (scripts/install-lint-tools.sh makes that venv)")
    done = subprocess.run(
        [str(CHECKOV), "-f", str(TEMPLATE), "--framework", "cloudformation", "--skip-download", "-o", "json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = json.loads(done.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report.get("results", {}).get("failed_checks", [])]
    assert failed == [] and report["summary"]["passed"] >= 40, failed
    skipped = {c["check_id"] for c in report["results"]["skipped_checks"]}
    assert skipped == {"CKV_AWS_18"}  # only the access-log bucket's own logging, with its reason


def test_least_privilege_every_statement_names_its_resources():
    resources = load_template()["Resources"]
    for name in ("BuildRole", "PipelineRole"):
        for policy in resources[name]["Properties"]["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = (
                    statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                )
                assert not any(a.endswith(":*") or a == "*" for a in actions), (name, statement)
                if statement["Resource"] == "*":
                    # The one action AWS offers no resource-level permission for.
                    assert actions == ["ecr:GetAuthorizationToken"], (name, statement)


def test_pipeline_is_v2_triggered_on_push_to_the_branch_through_a_connection():
    resources = load_template()["Resources"]
    pipeline = resources["Pipeline"]["Properties"]
    assert pipeline["PipelineType"] == "V2"
    trigger = pipeline["Triggers"][0]
    assert trigger["ProviderType"] == "CodeStarSourceConnection"
    assert trigger["GitConfiguration"]["Push"][0]["Branches"]["Includes"] == [{"Ref": "BranchName"}]
    source = pipeline["Stages"][0]["Actions"][0]
    assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert source["Configuration"]["OutputArtifactFormat"] == "CODEBUILD_CLONE_REF"
    build = resources["BuildProject"]["Properties"]
    assert build["Environment"]["PrivilegedMode"] is True and build["Source"]["BuildSpec"] == "buildspec.yml"
    assert build["LogsConfig"]["CloudWatchLogs"]["Status"] == "ENABLED"


def _references(value) -> set[str]:
    """Logical ids a value refers to (Ref, GetAtt, ${...} in Sub)."""
    import re

    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
            elif key == "Fn::Sub":
                text = inner if isinstance(inner, str) else inner[0]
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text)}
            found |= _references(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= _references(inner)
    return found


def moto_supported_part(template: dict) -> tuple[dict, list[str]]:
    """The template without moto's unsupported types and whatever refers to them (transitively)."""
    resources = template["Resources"]
    dropped = {name for name, r in resources.items() if r["Type"] in NOT_IN_MOTO}
    while True:
        more = {name for name, r in resources.items() if name not in dropped and _references(r) & dropped}
        if not more:
            break
        dropped |= more
    part = {
        **template,
        "Resources": {k: v for k, v in resources.items() if k not in dropped},
        "Outputs": {k: v for k, v in template["Outputs"].items() if not _references(v) & dropped},
    }
    return part, sorted(dropped)


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


def test_the_template_deploys_to_moto_where_moto_has_the_resource_types(moto):
    part, dropped = moto_supported_part(load_template())
    assert dropped == ["BuildProject", "BuildRole", "Connection", "Pipeline", "PipelineRole"]
    kw = {
        "endpoint_url": moto,
        "region_name": "us-east-1",
        "aws_access_key_id": "t",
        "aws_secret_access_key": "t",
    }
    cfn = boto3.client("cloudformation", **kw)
    cfn.create_stack(
        StackName="torchship", TemplateBody=json.dumps(part), Capabilities=["CAPABILITY_IAM"],
        Parameters=[{"ParameterKey": "RepositoryId", "ParameterValue": "acme/models"}],
    )  # fmt: skip
    for _ in range(60):
        stack = cfn.describe_stacks(StackName="torchship")["Stacks"][0]
        if not stack["StackStatus"].endswith("IN_PROGRESS"):
            break
        time.sleep(0.5)
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn.describe_stack_resources(StackName="torchship")["StackResources"]
    }

    s3 = boto3.client("s3", **kw)
    bucket = physical["ModelBucket"]
    assert outputs["ModelBucketUri"] == f"s3://{bucket}/models"
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    # moto's CloudFormation applies only BucketEncryption and Tags of an S3 bucket (versioning, the public
    # access block and logging are checked by checkov above and by test_buckets_are_private_and_versioned).

    ecr = boto3.client("ecr", **kw)
    repo = ecr.describe_repositories(repositoryNames=["torchship/models"])["repositories"][0]
    assert outputs["ImageRepositoryUri"] == repo["repositoryUri"]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    # moto's CloudFormation drops ImageScanningConfiguration and LifecyclePolicy: checked on the template.
    logs = boto3.client("logs", **kw)
    group = logs.describe_log_groups(logGroupNamePrefix="/codebuild/torchship")["logGroups"][0]
    assert group["retentionInDays"] == 90


def test_buckets_are_private_versioned_and_the_repository_expires_old_images():
    resources = load_template()["Resources"]
    for name in ("ModelBucket", "ArtifactBucket", "AccessLogBucket"):
        props = resources[name]["Properties"]
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, name
        assert (
            all(props["PublicAccessBlockConfiguration"].values())
            and len(props["PublicAccessBlockConfiguration"]) == 4
        )
    lifecycle = json.loads(
        resources["ImageRepository"]["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"][
            "Fn::Sub"
        ].replace("${ImagesToKeep}", "30")
    )
    assert [r["selection"]["tagStatus"] for r in lifecycle["rules"]] == ["untagged", "any"]
    repository = resources["ImageRepository"]["Properties"]
    assert repository["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert repository["ImageTagMutability"] == "IMMUTABLE"
