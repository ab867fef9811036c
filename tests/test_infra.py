"""infra/pipeline.yaml: cfn-lint and checkov clean, and deployed to moto's CloudFormation (a real HTTP
server) for the resource types moto implements; the rest is listed and skipped with the reason. Every test
runs on torchship's own infra/pipeline.yaml and on the one `torchship init` writes into a user repository
(the same template: they must be equal)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from init_helpers import scaffold_user_repo
from moto_server import moto_server

REPO = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("Staging", "Production")
# checkov pins libraries that conflict with the project's; it lives in a venv of its own (see the README).
CHECKOV = Path("/var/tmp/torchship-tools/checkov/bin/checkov")
# Resource types moto's CloudFormation does not implement (moto warns "not supported" and drops them).
NOT_IN_MOTO = {
    "AWS::CodeBuild::Project",
    "AWS::CodeStarConnections::Connection",
    "AWS::CodePipeline::Pipeline",
}


@pytest.fixture(scope="module")
def user_repo(tmp_path_factory) -> Path:
    return scaffold_user_repo(tmp_path_factory.mktemp("init"))


@pytest.fixture(params=["checkout", "user-repo"])
def template_path(request, user_repo) -> Path:
    return (REPO if request.param == "checkout" else user_repo) / "infra" / "pipeline.yaml"


def load_template(path: Path) -> dict:
    from cfnlint.decode import decode

    template, errors = decode(str(path))
    assert not errors, errors
    return json.loads(json.dumps(template))  # plain dicts for boto3


def test_a_user_repository_gets_the_same_pipeline_as_torchship_s_own(user_repo):
    assert (user_repo / "infra" / "pipeline.yaml").read_text() == (
        REPO / "infra" / "pipeline.yaml"
    ).read_text()


def test_cfn_lint_finds_nothing(template_path):
    cfn_lint = shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) or shutil.which("cfn-lint")
    if cfn_lint is None:
        pytest.skip("cfn-lint is not installed (requirements/dev.in lists it)")
    done = subprocess.run([cfn_lint, str(template_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_checkov_passes_every_cloudformation_check(template_path):
    if not CHECKOV.is_file():
        pytest.skip(f"checkov is not installed at {CHECKOV} (scripts/install-lint-tools.sh makes that venv)")
    done = subprocess.run(
        [str(CHECKOV), "-f", str(template_path), "--framework", "cloudformation", "--skip-download", "-o", "json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = json.loads(done.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report.get("results", {}).get("failed_checks", [])]
    assert failed == [] and report["summary"]["passed"] >= 40, failed
    skipped = {c["check_id"] for c in report["results"]["skipped_checks"]}
    assert skipped == {"CKV_AWS_18"}  # only the access-log bucket's own logging, with its reason


def test_least_privilege_every_statement_names_its_resources(template_path):
    resources = load_template(template_path)["Resources"]
    for name in ("StagingBuildRole", "ProductionBuildRole", "PipelineRole"):
        for policy in resources[name]["Properties"]["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = (
                    statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                )
                assert not any(a.endswith(":*") or a == "*" for a in actions), (name, statement)
                if statement["Resource"] == "*":
                    # The one action AWS offers no resource-level permission for.
                    assert actions == ["ecr:GetAuthorizationToken"], (name, statement)


def test_pipeline_ships_to_staging_on_push_then_production_after_a_manual_approval(template_path):
    resources = load_template(template_path)["Resources"]
    pipeline = resources["Pipeline"]["Properties"]
    assert pipeline["PipelineType"] == "V2"
    trigger = pipeline["Triggers"][0]
    assert trigger["ProviderType"] == "CodeStarSourceConnection"
    assert trigger["GitConfiguration"]["Push"][0]["Branches"]["Includes"] == [{"Ref": "BranchName"}]
    stages = pipeline["Stages"]
    assert [stage["Name"] for stage in stages] == ["Source", "Staging", "ApproveProduction", "Production"]
    source = stages[0]["Actions"][0]
    assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert source["Configuration"]["OutputArtifactFormat"] == "CODEBUILD_CLONE_REF"
    assert stages[2]["Actions"][0]["ActionTypeId"] == {
        "Category": "Approval", "Owner": "AWS", "Provider": "Manual", "Version": "1",
    }  # fmt: skip
    for stage in (stages[1], stages[3]):
        (action,) = stage["Actions"]
        assert action["Configuration"]["ProjectName"] == {"Ref": f"{stage['Name']}BuildProject"}
        assert action["InputArtifacts"] == [{"Name": "Source"}]  # the same commit in both environments
        variables = {
            v["name"]: v["value"] for v in json.loads(action["Configuration"]["EnvironmentVariables"])
        }
        assert variables["TORCHSHIP_ENV"] == stage["Name"].lower()
    for env in ENVIRONMENTS:
        build = resources[f"{env}BuildProject"]["Properties"]
        assert (
            build["Environment"]["PrivilegedMode"] is True and build["Source"]["BuildSpec"] == "buildspec.yml"
        )
        assert build["LogsConfig"]["CloudWatchLogs"]["Status"] == "ENABLED"
        variables = {v["Name"]: v["Value"] for v in build["Environment"]["EnvironmentVariables"]}
        # Each environment builds into its own repository and publishes under its own prefix.
        assert variables["ECR_REPOSITORY_URI"] == {"Fn::GetAtt": [f"{env}ImageRepository", "RepositoryUri"]}
        assert variables["TORCHSHIP_PUBLISH_URI"] == {"Fn::Sub": f"s3://${{ModelBucket}}/{env.lower()}"}
        assert variables["TORCHSHIP_ENV"] == env.lower()


def test_each_environment_s_build_may_write_only_its_own_repository_and_prefix(template_path):
    resources = load_template(template_path)["Resources"]
    for env in ENVIRONMENTS:
        other = next(e for e in ENVIRONMENTS if e != env)
        statements = {
            s["Sid"]: s
            for s in resources[f"{env}BuildRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        }
        assert statements["PushImages"]["Resource"] == {"Fn::GetAtt": [f"{env}ImageRepository", "Arn"]}
        assert statements["PublishModels"]["Resource"] == {"Fn::Sub": f"${{ModelBucket.Arn}}/{env.lower()}/*"}
        assert other not in json.dumps(statements)


def test_an_existing_connection_is_used_instead_of_creating_one(template_path):
    template = load_template(template_path)
    assert template["Conditions"]["CreateConnection"] == {"Fn::Equals": [{"Ref": "ConnectionArn"}, ""]}
    assert template["Resources"]["Connection"]["Condition"] == "CreateConnection"
    chosen = {"Fn::If": ["CreateConnection", {"Ref": "Connection"}, {"Ref": "ConnectionArn"}]}
    source = template["Resources"]["Pipeline"]["Properties"]["Stages"][0]["Actions"][0]
    assert source["Configuration"]["ConnectionArn"] == chosen


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


def test_the_template_deploys_to_moto_where_moto_has_the_resource_types(moto, template_path):
    part, dropped = moto_supported_part(load_template(template_path))
    assert dropped == [
        "Connection", "Pipeline", "PipelineRole", "ProductionBuildProject", "ProductionBuildRole",
        "StagingBuildProject", "StagingBuildRole",
    ]  # fmt: skip
    # One moto server for both templates: each stack gets its own project name (resource names).
    project = "torchship" if template_path.is_relative_to(REPO) else "acme-models"
    kw = {
        "endpoint_url": moto,
        "region_name": "us-east-1",
        "aws_access_key_id": "t",
        "aws_secret_access_key": "t",
    }
    cfn = boto3.client("cloudformation", **kw)
    cfn.create_stack(
        StackName=project, TemplateBody=json.dumps(part), Capabilities=["CAPABILITY_IAM"],
        Parameters=[{"ParameterKey": "RepositoryId", "ParameterValue": "acme/models"},
                    {"ParameterKey": "ProjectName", "ParameterValue": project}],
    )  # fmt: skip
    for _ in range(60):
        stack = cfn.describe_stacks(StackName=project)["Stacks"][0]
        if not stack["StackStatus"].endswith("IN_PROGRESS"):
            break
        time.sleep(0.5)
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn.describe_stack_resources(StackName=project)["StackResources"]
    }

    s3 = boto3.client("s3", **kw)
    bucket = physical["ModelBucket"]
    # The values torchship.toml's environments take (its CHANGE-ME placeholders say so).
    assert outputs["StagingPublishUri"] == f"s3://{bucket}/staging"
    assert outputs["ProductionPublishUri"] == f"s3://{bucket}/production"
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    # moto's CloudFormation applies only BucketEncryption and Tags of an S3 bucket (versioning, the public
    # access block and logging are checked by checkov above and by test_buckets_are_private_and_versioned).

    ecr = boto3.client("ecr", **kw)
    for env in ENVIRONMENTS:
        repo = ecr.describe_repositories(repositoryNames=[f"{project}/{env.lower()}"])["repositories"][0]
        assert outputs[f"{env}ImageRepositoryUri"] == repo["repositoryUri"]
        assert repo["imageTagMutability"] == "IMMUTABLE"
    # moto's CloudFormation drops ImageScanningConfiguration and LifecyclePolicy: checked on the template.
    logs = boto3.client("logs", **kw)
    group = logs.describe_log_groups(logGroupNamePrefix=f"/codebuild/{project}")["logGroups"][0]
    assert group["retentionInDays"] == 90


def test_buckets_are_private_versioned_and_the_repositories_expire_old_images(template_path):
    resources = load_template(template_path)["Resources"]
    for name in ("ModelBucket", "ArtifactBucket", "AccessLogBucket"):
        props = resources[name]["Properties"]
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, name
        assert (
            all(props["PublicAccessBlockConfiguration"].values())
            and len(props["PublicAccessBlockConfiguration"]) == 4
        )
    for env in ENVIRONMENTS:
        repository = resources[f"{env}ImageRepository"]["Properties"]
        lifecycle = json.loads(
            repository["LifecyclePolicy"]["LifecyclePolicyText"]["Fn::Sub"].replace("${ImagesToKeep}", "30")
        )
        assert [r["selection"]["tagStatus"] for r in lifecycle["rules"]] == ["untagged", "any"]
        assert repository["ImageScanningConfiguration"] == {"ScanOnPush": True}
        assert repository["ImageTagMutability"] == "IMMUTABLE"
