"""Collects every outputs/<name>/<version>/image/image.json of this run into the build's artifacts:
imageDetail.json (CodePipeline's format: the image URI, here one entry per model) and image-digests.txt."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(specs_file: str, outputs: str | None = None) -> int:
    outputs = outputs or os.environ.get("TORCHSHIP_OUTPUTS_DIR") or "outputs"
    import yaml

    details, lines = [], []
    for spec_path in Path(specs_file).read_text().split():
        spec = yaml.safe_load(Path(spec_path).read_text())
        record_path = Path(outputs) / spec["name"] / str(spec["version"]) / "image" / "image.json"
        record = json.loads(record_path.read_text())
        if not record.get("pushed"):
            print(f"error: {record_path} records no pushed image", file=sys.stderr)
            return 1
        details.append({"name": spec["name"], "version": str(spec["version"]), "ImageURI": record["pushed"]})
        lines.append(f"{spec['name']} {spec['version']} {record['pushed']}")
    Path("imageDetail.json").write_text(
        json.dumps(details[0] if len(details) == 1 else details, indent=2) + "\n"
    )
    Path("image-digests.txt").write_text("".join(line + "\n" for line in lines))
    print(f"{len(details)} image(s): " + ", ".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
