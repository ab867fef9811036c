"""What `verify` vouched for: the sha256 and size of each file publish uploads, from the stage records.

verify served the package stage's .mar in a real TorchServe and checked its answers; its record holds the
hash of the package and validate records it ran against. publish compares the files on disk with those
records, so a .mar (or report) replaced after verify never reaches the bucket.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchship.hashing import sha256_json
from torchship.pipeline import read_record
from torchship.publish.errors import IntegrityError
from torchship.publish.layout import ANSWERS_JSON, MODEL_CONFIG, PACKAGE_MANIFEST, REPORT_HTML, REPORT_JSON

_HINT = "Run `torchship run SPEC` again so that verify checks the files you publish, then publish."


def _record(stage_dir: Path) -> dict[str, Any]:
    record = read_record(stage_dir)
    if record is None or record.get("status") != "ok" or not isinstance(record.get("outputs"), dict):
        raise IntegrityError(f"{stage_dir} has no complete stage record", hint=_HINT)
    return record


def verified_files(stage_root: Path, name: str) -> dict[str, dict[str, Any]]:
    """{stored name: {"sha256", "bytes"}} of every file publish uploads, as the records verify ran against
    say; IntegrityError when the package or validate record changed after verify."""
    stage_root = Path(stage_root)
    verify = _record(stage_root / "verify")
    records = {stage: _record(stage_root / stage) for stage in ("package", "validate")}
    for stage, record in records.items():
        if verify.get("inputs", {}).get(stage) != sha256_json(record["outputs"]):
            raise IntegrityError(
                f"the {stage} stage's outputs in {stage_root} are not the ones verify checked",
                hint=_HINT,
            )
    package, validate = records["package"]["outputs"], records["validate"]["outputs"]
    wanted = {
        f"{name}.mar": package.get(f"{name}.mar"),
        MODEL_CONFIG: package.get(MODEL_CONFIG),
        PACKAGE_MANIFEST: package.get(PACKAGE_MANIFEST),
        REPORT_JSON: validate.get(REPORT_JSON),
        REPORT_HTML: validate.get(REPORT_HTML),
    }
    if ANSWERS_JSON in verify["outputs"]:  # verify's own file: its record vouches for it directly
        wanted[ANSWERS_JSON] = verify["outputs"][ANSWERS_JSON]
    missing = [rel for rel, entry in wanted.items() if not isinstance(entry, dict)]
    if missing:
        raise IntegrityError(f"the stage records in {stage_root} list no {', '.join(missing)}", hint=_HINT)
    return {rel: {"sha256": entry["sha256"], "bytes": entry["bytes"]} for rel, entry in wanted.items()}
