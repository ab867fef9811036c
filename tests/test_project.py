"""torchship.toml: finding and reading it, the environments, and the effective spec every command sees."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tiny_models import write_spec
from torchship.cli import app
from torchship.pipeline import Runner, SilentReporter
from torchship.project import (
    ProjectError,
    effective_spec,
    find_project_file,
    load_effective_spec,
    load_project,
)
from torchship.settings import Settings
from torchship.spec import load_spec
from torchship.stages import STAGES

runner = CliRunner()

STAGING_REPO = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme/staging"
PRODUCTION_REPO = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme/production"
SHARED_REPO = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme/models"

SETTINGS = f"""\
publish_uri = "s3://acme-models/models"
registry = "neptune"
image_repository = "{SHARED_REPO}"

[environments.staging]
publish_uri = "s3://acme-models/staging"
image_repository = "{STAGING_REPO}"
namespace = "ml-staging"
replicas = 2
max_replicas = 3

[environments.production]
publish_uri = "s3://acme-models/production"
registry = "s3"
image_repository = "{PRODUCTION_REPO}"
namespace = "ml-production"
replicas = 4
max_replicas = 12
"""


def repo(
    tmp_path: Path, settings: str = SETTINGS, spec_extra: str = "", file: str = "torchship.toml"
) -> Path:
    """A repository with the settings file at its root and one model spec two levels below; returns the spec."""
    root = tmp_path / "repo"
    root.mkdir(parents=True, exist_ok=True)
    (root / file).write_text(settings)
    return write_spec(root / "models" / "tiny", "./model", extra=spec_extra)


def error_of(tmp_path: Path, settings: str) -> str:
    spec_path = repo(tmp_path, settings)
    with pytest.raises(ProjectError) as info:
        load_effective_spec(spec_path)
    assert info.value.exit_code == 2
    return info.value.message


# --- finding and reading the file -------------------------------------------------------------------


def test_the_nearest_settings_file_above_the_spec_is_found(tmp_path):
    spec_path = repo(tmp_path)
    assert find_project_file(spec_path) == tmp_path / "repo" / "torchship.toml"
    nearer = spec_path.parent.parent / "torchship.toml"
    nearer.write_text('registry = "none"\n')
    assert find_project_file(spec_path) == nearer
    assert load_project(spec_path.parent).registry == "none"


def test_no_settings_file_leaves_the_spec_as_written(tmp_path):
    spec_path = write_spec(tmp_path / "models" / "tiny", "./model")
    assert find_project_file(spec_path) is None
    assert load_effective_spec(spec_path) == load_spec(spec_path)


def test_pyproject_table_is_read_and_torchship_toml_wins_beside_it(tmp_path):
    table = SETTINGS.replace("[environments.", "[tool.torchship.environments.")
    spec_path = repo(
        tmp_path, '[project]\nname = "acme"\n\n[tool.torchship]\n' + table, file="pyproject.toml"
    )
    assert find_project_file(spec_path) == tmp_path / "repo" / "pyproject.toml"
    assert load_effective_spec(spec_path, "production").deploy.namespace == "ml-production"
    (tmp_path / "repo" / "torchship.toml").write_text('publish_uri = "s3://from-toml/models"\n')
    assert load_effective_spec(spec_path).publish.uri == "s3://from-toml/models"


def test_a_pyproject_without_the_table_is_passed_over(tmp_path):
    spec_path = repo(tmp_path, SETTINGS)
    (spec_path.parent.parent / "pyproject.toml").write_text('[project]\nname = "models"\n')
    assert find_project_file(spec_path) == tmp_path / "repo" / "torchship.toml"


def test_errors_in_the_pyproject_table_say_which_file_and_table(tmp_path):
    spec_path = repo(tmp_path, '[tool.torchship]\nregistri = "s3"\n', file="pyproject.toml")
    with pytest.raises(ProjectError, match=r"pyproject\.toml \[tool\.torchship\]: unknown key 'registri'"):
        load_effective_spec(spec_path)


def test_unknown_top_level_key_names_file_key_and_allowed_keys(tmp_path):
    message = error_of(tmp_path, 'image_repo = "x"\n' + SETTINGS)
    assert message.startswith(str(tmp_path / "repo" / "torchship.toml"))
    assert (
        "unknown key 'image_repo'; allowed keys here: environments, image_repository, publish_uri, registry"
        in message
    )


def test_unknown_key_inside_an_environment_names_the_dotted_key(tmp_path):
    message = error_of(tmp_path, SETTINGS.replace("replicas = 2\n", "replica = 2\n"))
    assert "unknown key 'environments.staging.replica'" in message
    assert (
        "allowed keys here: image_repository, max_replicas, namespace, publish_uri, registry, replicas"
        in message
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('publish_uri = "https://bucket/models"', "key 'publish_uri': must be s3://BUCKET[/PREFIX]"),
        ('registry = "mlflow"', "key 'registry': Input should be 's3', 'neptune' or 'none'"),
        (
            'image_repository = "acme/models:1.0"',
            "key 'image_repository': must be a repository without a tag",
        ),
        ('image_repository = ""', "key 'image_repository': String should have at least 1 character"),
    ],
)
def test_bad_top_level_values_name_the_key(tmp_path, line, expected):
    assert expected in error_of(tmp_path, line + "\n")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('namespace = "ML_Staging"', "key 'environments.staging.namespace': must be a Kubernetes namespace"),
        ("replicas = 0", "key 'environments.staging.replicas': Input should be greater than or equal to 1"),
        ("replicas = 101", "key 'environments.staging.replicas': Input should be less than or equal to 100"),
        ("max_replicas = 1", "max_replicas 1 is below replicas 2"),
        ('image_repository = "reg.io/a@sha256:00"', "without a tag or digest"),
    ],
)
def test_bad_environment_values_name_the_key(tmp_path, line, expected):
    key = line.split(" = ")[0]
    settings = "[environments.staging]\nreplicas = 2\n" if key != "replicas" else "[environments.staging]\n"
    assert expected in error_of(tmp_path, settings + line + "\n")


def test_an_environment_name_that_cannot_name_a_directory_is_refused(tmp_path):
    assert "environment name 'Prod/EU' must be lowercase" in error_of(
        tmp_path, '[environments."Prod/EU"]\nreplicas = 2\n'
    )


def test_invalid_toml_says_line_and_column(tmp_path):
    message = error_of(tmp_path, 'publish_uri = "s3://a/b"\nregistry = s3\n')
    assert "invalid TOML" in message and "line 2, column 12" in message


# --- precedence -------------------------------------------------------------------------------------


def test_each_key_lands_in_its_spec_key_from_the_chosen_environment(tmp_path):
    spec = load_effective_spec(repo(tmp_path), "production")
    assert spec.publish.uri == "s3://acme-models/production"
    assert spec.publish.registry == "s3"
    assert spec.deploy.image == PRODUCTION_REPO
    assert spec.deploy.namespace == "ml-production"
    assert (spec.deploy.replicas, spec.deploy.max_replicas) == (4, 12)


def test_top_level_values_fill_what_the_spec_leaves_out(tmp_path):
    spec = load_effective_spec(repo(tmp_path))
    assert spec.publish.uri == "s3://acme-models/models"
    assert spec.publish.registry == "neptune"
    assert spec.deploy.image == SHARED_REPO
    assert spec.deploy.namespace is None and spec.deploy.replicas == 2  # the spec's defaults


def test_the_spec_beats_the_top_level_and_the_environment_beats_the_spec(tmp_path):
    own = (
        "publish: {uri: s3://own/models, registry: none}\n"
        "deploy: {image: reg.io/own/model, namespace: own-ns, replicas: 3, max_replicas: 5}\n"
    )
    spec_path = repo(tmp_path, spec_extra=own)
    plain = load_effective_spec(spec_path)
    assert (plain.publish.uri, plain.publish.registry, plain.deploy.image) == (
        "s3://own/models", "none", "reg.io/own/model",
    )  # fmt: skip
    staging = load_effective_spec(spec_path, "staging")
    assert staging.publish.uri == "s3://acme-models/staging"
    assert staging.publish.registry == "none"  # staging says nothing about the registry: the spec's stays
    assert (staging.deploy.image, staging.deploy.namespace) == (STAGING_REPO, "ml-staging")
    assert (staging.deploy.replicas, staging.deploy.max_replicas) == (2, 3)


def test_a_combination_that_breaks_the_replica_bounds_names_where_each_value_came_from(tmp_path):
    settings = "[environments.production]\nreplicas = 6\n"
    spec_path = repo(tmp_path, settings, spec_extra="deploy: {replicas: 2, max_replicas: 4}\n")
    with pytest.raises(ProjectError) as info:
        load_effective_spec(spec_path, "production")
    message = info.value.message
    assert "deploy.max_replicas 4 is below deploy.replicas 6" in message
    assert (
        "deploy.replicas from " + str(tmp_path / "repo" / "torchship.toml") + " environments.production"
        in message
    )
    assert f"deploy.max_replicas from {spec_path} deploy.max_replicas" in message


def test_torchship_publish_uri_beats_every_layer(tmp_path, monkeypatch):
    from torchship.cli.publishing import publish_uri

    spec = load_effective_spec(repo(tmp_path), "staging")
    assert publish_uri(Settings(), spec.publish.uri) == "s3://acme-models/staging"
    monkeypatch.setenv("TORCHSHIP_PUBLISH_URI", "s3://from-env/models")
    assert publish_uri(Settings(), spec.publish.uri) == "s3://from-env/models"


def test_an_unknown_environment_lists_the_defined_ones(tmp_path):
    spec_path = repo(tmp_path)
    with pytest.raises(
        ProjectError, match="no environment 'prod'; defined environments: production, staging"
    ):
        load_effective_spec(spec_path, "prod")


def test_an_environment_without_a_settings_file_says_where_it_looked(tmp_path):
    spec_path = write_spec(tmp_path / "models" / "tiny", "./model")
    with pytest.raises(ProjectError, match=r"no torchship\.toml") as info:
        load_effective_spec(spec_path, "staging")
    assert f"none in {spec_path.parent} or any directory above it" in info.value.message


# --- through the CLI --------------------------------------------------------------------------------


def test_cli_unknown_env_exits_2_listing_the_environments_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", str(tmp_path / "outputs"))
    spec_path = repo(tmp_path)
    for command in (["render", "--spec-only"], ["publish"], ["promote", "--stage", "staging"], ["rehearse"]):
        result = runner.invoke(app, [command[0], str(spec_path), *command[1:], "--env", "qa"])
        assert result.exit_code == 2, (command, result.output)
        assert "no environment 'qa'; defined environments: production, staging" in result.output
    assert not (tmp_path / "outputs").exists()


def test_cli_torchship_env_chooses_the_environment_and_env_option_beats_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", str(tmp_path / "outputs"))
    spec_path = repo(tmp_path)
    monkeypatch.setenv("TORCHSHIP_ENV", "nightly")
    result = runner.invoke(app, ["render", str(spec_path), "--spec-only"])
    assert result.exit_code == 2 and "no environment 'nightly'" in result.output
    monkeypatch.setenv("TORCHSHIP_ENV", "staging")
    assert runner.invoke(app, ["render", str(spec_path), "--spec-only"]).exit_code == 0
    assert runner.invoke(app, ["render", str(spec_path), "--spec-only", "--env", "production"]).exit_code == 0
    root = tmp_path / "outputs" / "tiny-embeddings" / "0.1.0"
    assert sorted(p.name for p in root.iterdir()) == ["k8s-production", "k8s-staging"]


def _docs(directory: Path) -> dict[str, dict]:
    docs = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def test_render_per_environment_gives_each_its_namespace_replicas_and_image(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", str(tmp_path / "outputs"))
    spec_path = repo(tmp_path)
    rendered = {}
    for env in ("staging", "production"):
        result = runner.invoke(app, ["render", str(spec_path), "--env", env, "--check", "--spec-only"])
        assert result.exit_code == 0, result.output
        assert "0 policy finding(s)" in result.output
        rendered[env] = _docs(tmp_path / "outputs" / "tiny-embeddings" / "0.1.0" / f"k8s-{env}")
    for env, namespace, repository, bounds in (
        ("staging", "ml-staging", STAGING_REPO, (2, 3)),
        ("production", "ml-production", PRODUCTION_REPO, (4, 12)),
    ):
        docs = rendered[env]
        namespaced = [d for kind, d in docs.items() if kind != "Kustomization"]
        assert len(namespaced) == 7
        assert {d["metadata"]["namespace"] for d in namespaced} == {namespace}
        assert docs["Kustomization"]["namespace"] == namespace
        container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == f"{repository}:0.1.0"
        hpa = docs["HorizontalPodAutoscaler"]["spec"]
        assert (hpa["minReplicas"], hpa["maxReplicas"]) == bounds
        # The monitoring namespace that may scrape metrics is the spec's, whatever namespace the model is in.
        metrics = docs["NetworkPolicy"]["spec"]["ingress"][1]["from"][0]["namespaceSelector"]
        assert metrics == {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}


def test_without_a_namespace_anywhere_objects_go_to_the_models_own(tmp_path):
    from deploy_helpers import rendered_for

    rendered = rendered_for(load_effective_spec(write_spec(tmp_path / "m", "./model")))
    assert {m.doc["metadata"]["namespace"] for m in rendered.manifests} == {"tiny-embeddings"}


def test_deploy_dry_run_targets_the_environments_namespace(tmp_path, monkeypatch):
    from torchship.deploy import rollout

    seen = {}

    def fake_deploy(spec, settings, kubectl, **kwargs):
        seen["namespace"], seen["replicas"] = kubectl.namespace, spec.deploy.replicas
        return rollout.DeployResult(dry_run_output="(dry run)")

    monkeypatch.setattr(rollout, "deploy", fake_deploy)
    spec_path = repo(tmp_path)
    result = runner.invoke(app, ["deploy", str(spec_path), "--env", "production", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert seen == {"namespace": "ml-production", "replicas": 4}
    runner.invoke(app, ["deploy", str(spec_path), "--env", "production", "--dry-run", "--namespace", "other"])
    assert seen["namespace"] == "other"


# --- the build stages do not depend on the environment ----------------------------------------------


def test_choosing_an_environment_changes_no_build_stage_input(tmp_path):
    spec_path = repo(tmp_path)
    specs = [load_effective_spec(spec_path, env) for env in (None, "staging", "production")]
    assert len({s.deploy.namespace for s in specs}) == 3  # the environments really differ
    for stage in STAGES:
        dumps = [s.model_dump(mode="json", by_alias=True) for s in specs]
        assert len({repr([d.get(k) for k in stage.spec_keys]) for d in dumps}) == 1, stage.name


def test_no_stage_re_runs_when_only_the_environment_changes(tmp_path, tiny_model_dir):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "torchship.toml").write_text(SETTINGS)
    spec_path = write_spec(root / "models" / "tiny", str(tiny_model_dir))
    settings = Settings(outputs_dir=tmp_path / "outputs")
    names = ["fetch", "compile", "validate", "package"]
    staging = load_effective_spec(spec_path, "staging")
    first = Runner(staging, settings, STAGES, SilentReporter()).run(names)
    assert [o.status for o in first] == ["ran"] * 4, [o.error for o in first]
    production = load_effective_spec(spec_path, "production")
    again = Runner(production, settings, STAGES, SilentReporter()).run(names)
    assert [o.status for o in again] == ["skipped"] * 4
    Runner(production, settings, STAGES, SilentReporter()).require_current("package")


def test_effective_spec_of_empty_settings_is_the_spec_itself(tmp_path):
    from torchship.project import ProjectSettings

    spec = load_spec(write_spec(tmp_path / "m", "./model"))
    assert effective_spec(spec, ProjectSettings(), None) is spec


def test_a_settings_file_without_environments_says_so(tmp_path):
    spec_path = repo(tmp_path, 'registry = "none"\n')
    with pytest.raises(ProjectError, match="no environment 'staging'; defined environments: none"):
        load_effective_spec(spec_path, "staging")
