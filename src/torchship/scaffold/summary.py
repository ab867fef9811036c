"""What `torchship init` prints: each file and what happened to it, then the commands to run next."""

from __future__ import annotations

import os
from pathlib import Path

from torchship.scaffold.files import PIPELINE, SETTINGS
from torchship.scaffold.record import RECORD_PATH
from torchship.scaffold.repository import InitOutcome

_MARKS = {
    "create": "created  ",
    "update": "updated  ",
    "append": "appended ",
    "overwrite": "replaced ",
    "unchanged": "unchanged",
    "keep": "kept     ",
}


def file_lines(outcome: InitOutcome) -> list[str]:
    lines = [
        f"  {_MARKS[f.action]} {f.path}" + ("" if f.action == "create" else f"  ({f.why})")
        for f in outcome.files
    ]
    if outcome.wrote_anything:
        lines.append(f"  recorded  {RECORD_PATH}  (commit it: the next init reads what it wrote from there)")
    else:
        lines.append("nothing to do: every file already is as torchship init writes it, or yours")
    return lines


def next_steps(outcome: InitOutcome, cwd: Path) -> list[str]:
    """The commands after init, as the user types them from the repository root, each after its why."""
    spec = outcome.spec_path
    examples = Path(spec).with_name("examples.jsonl").as_posix()
    steps: list[str] = []
    repo = os.path.relpath(outcome.repo.resolve(), cwd.resolve())
    if repo != ".":
        steps.append(f"cd {repo}")
    if not outcome.checkpoint_in_repo:
        steps.append(
            "# the checkpoint is outside this repository, where CodeBuild will not find it: commit it "
            f"(git lfs) or upload it and set `source: s3://…` in {spec}"
        )
    steps += [
        f"# 1. replace the placeholder texts in {examples} with real inputs; gate, package and serve it locally",
        f"torchship run {spec}",
        "# 2. the pipeline: model bucket, ECR repositories, CodeBuild, CodePipeline (staging, approval, production)",
        f"aws cloudformation deploy --template-file {PIPELINE} --stack-name torchship "
        "--capabilities CAPABILITY_IAM --parameter-overrides RepositoryId=OWNER/REPO BranchName=main",
        f"# 3. replace every CHANGE-ME in {SETTINGS} with these outputs, then check the staging manifests",
        "aws cloudformation describe-stacks --stack-name torchship --query 'Stacks[0].Outputs'",
        f"torchship render {spec} --env staging --check",
        "# 4. a push to main ships the model to staging; production waits for your approval in CodePipeline",
        "git add -A && git commit -m 'Ship models with torchship' && git push",
    ]
    return steps
