"""The neptune client's model registry (neptune 1.x) as a registry backend; `neptune` is an optional extra."""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from typing import Any

from torchship.publish.errors import (
    RegistryError,
    VersionExistsError,
    VersionInUseError,
    VersionNotFoundError,
)
from torchship.publish.manifest import differing_files
from torchship.publish.registries.base import (
    STAGE_ALIASES,
    Registry,
    check_manifest_to_register,
    check_stage,
    version_sort_key,
)


def _model_key(name: str) -> str:
    """A Neptune model key from a model name: its letters and digits, upper-cased (Neptune's rule)."""
    key = re.sub(r"[^A-Z0-9]", "", name.upper())
    if not key:
        raise RegistryError(
            f"model name '{name}' has no letters or digits to form a Neptune model key",
            hint="Pass model_key= to NeptuneRegistry.",
        )
    return key


class NeptuneRegistry(Registry):
    """The neptune client's (neptune 1.x) model registry: one Neptune *model* per torchship model name
    (key: the name's letters and digits, upper-cased, unless `model_key` is given) and one *model version*
    per published version, with fields `torchship/name`, `torchship/version`, `torchship/location`,
    `torchship/gate_verdict`, `torchship/manifest_sha256` and `torchship/manifest` (the manifest as JSON).
    Stage aliases map to Neptune stages (`staging`, `production`).

    Modes. The hosted neptune.ai service closed in 2026; a self-hosted Neptune server still works with
    `mode="async"` or `"sync"` (NEPTUNE_API_TOKEN from the environment; never passed here).

    * `mode="debug"` (no server, nothing stored anywhere; what the tests use): register_version creates the
      model and its version and sets the fields; set_alias / clear_alias change the version's stage
      (`change_stage`). list_versions, get_manifest, aliases and remove_version answer only for versions
      registered through this same object, in this process.
    * `mode="offline"`: the neptune client refuses to create models or model versions offline
      ("Model can't be initialized in OFFLINE mode"), so this backend raises RegistryError for it.
    * With a server (async/sync): lookups use `fetch_models_table` / `fetch_model_versions_table`, reopening
      versions by id; remove_version moves the version to the project trash (`management.trash_objects`).
      These paths were not exercised by the tests (no server available).

    Differences from S3Registry: a Neptune version holds one stage, so promoting v2 to `production` moves the
    version that was in production to stage `none`, and promoting the `staging` version to `production`
    leaves no staging version. Promotion is not atomic across versions (Neptune has no conditional write).
    """

    kind = "neptune"
    _MODES = ("async", "sync", "debug")

    def __init__(self, project: str, mode: str = "async", *, model_key: str | None = None):
        if mode == "offline":
            raise RegistryError(
                "the neptune client cannot use the model registry in offline mode",
                hint="Use mode='debug' for a dry run without a server, or 'async'/'sync' with a Neptune server.",
            )
        if mode not in self._MODES:
            raise RegistryError(
                f"unknown neptune mode '{mode}'", hint=f"Use one of: {', '.join(self._MODES)}."
            )
        try:
            import neptune
        except ImportError:
            raise RegistryError(
                "the neptune registry needs the `neptune` package, which is not installed",
                hint="Install it with `pip install 'torchship[neptune]'` (or `pip install neptune`).",
            ) from None
        self._neptune = neptune
        self.project = project
        self.mode = mode
        self._fixed_key = model_key
        self._models: dict[str, Any] = {}
        # (name, version) -> open ModelVersion handle: all that debug mode can know.
        self._versions: dict[tuple[str, str], Any] = {}

    # -- neptune plumbing --

    def _key(self, name: str) -> str:
        return self._fixed_key or _model_key(name)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                # Every model-registry call warns that neptune deprecated it; choosing this backend is the answer.
                warnings.filterwarnings("ignore", message=".*model registry has been deprecated")
                return fn(*args, **kwargs)
        except (RegistryError, VersionNotFoundError, VersionInUseError):
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RegistryError(
                f"neptune {what} failed: {type(exc).__name__}: {first}",
                hint="Check the Neptune project name, the server (NEPTUNE_API_TOKEN in the environment) and the mode.",
            ) from None

    def _model(self, name: str) -> Any:
        if name in self._models:
            return self._models[name]
        key = self._key(name)
        existing_id = None
        if self.mode != "debug":
            project = self._call(
                "init_project", self._neptune.init_project, project=self.project, mode="read-only"
            )
            table = self._call("fetch_models_table", project.fetch_models_table, columns=["sys/id"])
            for row in table:
                model_id = row.get_attribute_value("sys/id")
                if model_id.endswith(f"-{key}"):
                    existing_id = model_id
                    break
            project.stop()
        if existing_id:
            model = self._call(
                "init_model",
                self._neptune.init_model,
                with_id=existing_id,
                project=self.project,
                mode=self.mode,
            )
        else:
            model = self._call(
                "init_model",
                self._neptune.init_model,
                key=key,
                name=name,
                project=self.project,
                mode=self.mode,
            )
        self._models[name] = model
        return model

    def _version_handle(self, name: str, version: str) -> Any | None:
        if (name, version) in self._versions:
            return self._versions[(name, version)]
        if self.mode == "debug":
            return None
        model = self._model(name)
        table = self._call(
            "fetch_model_versions_table",
            model.fetch_model_versions_table,
            columns=["sys/id", "torchship/version"],
        )
        for row in table:
            if row.get_attribute_value("torchship/version") == version:
                handle = self._call(
                    "init_model_version",
                    self._neptune.init_model_version,
                    with_id=row.get_attribute_value("sys/id"),
                    project=self.project,
                    mode=self.mode,
                )
                self._versions[(name, version)] = handle
                return handle
        return None

    def _all_versions(self, name: str) -> dict[str, tuple[str, str]]:
        """{version: (neptune id, stage)}."""
        if self.mode == "debug":
            return {
                v: (h["sys/id"].fetch(), h["sys/stage"].fetch())
                for (n, v), h in self._versions.items()
                if n == name
            }
        model = self._model(name)
        table = self._call(
            "fetch_model_versions_table",
            model.fetch_model_versions_table,
            columns=["sys/id", "sys/stage", "torchship/version"],
        )
        found: dict[str, tuple[str, str]] = {}
        for row in table:
            version = row.get_attribute_value("torchship/version")
            if version:
                found[version] = (row.get_attribute_value("sys/id"), row.get_attribute_value("sys/stage"))
        return found

    def _require(self, name: str, version: str) -> Any:
        handle = self._version_handle(name, version)
        if handle is None:
            raise VersionNotFoundError(
                f"{name} {version} is not registered in Neptune project {self.project}"
                + (
                    " (debug mode knows only versions registered by this process)"
                    if self.mode == "debug"
                    else ""
                ),
                hint="Publish (and register) it first.",
            )
        return handle

    # -- the interface --

    def register_version(self, manifest: dict[str, Any], *, location: str | None = None) -> None:
        name, version = check_manifest_to_register(manifest)
        handle = self._version_handle(name, version)
        if handle is not None:
            stored = json.loads(self._call("fetch", handle["torchship/manifest"].fetch))
            differing = differing_files(stored.get("files", {}), manifest["files"])
            if differing:
                raise VersionExistsError(
                    f"{name} {version} is already registered in Neptune with other files ({', '.join(differing)})",
                    hint="Unpublish the old version first, or publish under a new version.",
                )
            return
        model = self._model(name)
        model_id = self._call("fetch", model["sys/id"].fetch)
        handle = self._call(
            "init_model_version",
            self._neptune.init_model_version,
            model=model_id,
            name=version,
            project=self.project,
            mode=self.mode,
        )
        text = json.dumps(manifest, sort_keys=True)
        fields = {
            "name": name,
            "version": version,
            "location": location or "",
            "gate_verdict": str(manifest.get("gate", {}).get("verdict", "")),
            "manifest_sha256": hashlib.sha256(text.encode()).hexdigest(),
            "manifest": text,
        }
        for field_name, value in fields.items():
            self._call("assign", handle.__setitem__, f"torchship/{field_name}", value)
        if self.mode != "debug":
            self._call("wait", handle.wait)
        self._versions[(name, version)] = handle

    def list_versions(self, name: str) -> list[str]:
        return sorted(self._all_versions(name), key=version_sort_key)

    def get_manifest(self, name: str, version: str) -> dict[str, Any]:
        handle = self._require(name, version)
        return json.loads(self._call("fetch", handle["torchship/manifest"].fetch))

    def set_alias(self, name: str, stage: str, version: str) -> str | None:
        check_stage(stage)
        handle = self._require(name, version)
        previous = self.aliases(name).get(stage)
        if previous == version:
            return previous
        if previous is not None:
            self._call("change_stage", self._require(name, previous).change_stage, "none")
        self._call("change_stage", handle.change_stage, stage)
        return previous

    def clear_alias(self, name: str, stage: str) -> str | None:
        check_stage(stage)
        current = self.aliases(name).get(stage)
        if current is not None:
            self._call("change_stage", self._require(name, current).change_stage, "none")
        return current

    def aliases(self, name: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for version, (_, stage) in sorted(
            self._all_versions(name).items(), key=lambda i: version_sort_key(i[0])
        ):
            if stage in STAGE_ALIASES:
                found[stage] = version  # the newest wins if several versions share a stage
        return found

    def remove_version(self, name: str, version: str) -> bool:
        self._refuse_if_aliased(name, version)
        handle = self._version_handle(name, version)
        if handle is None:
            return False
        version_id = self._call("fetch", handle["sys/id"].fetch)
        if self.mode != "debug":
            from neptune import management

            self._call("trash_objects", management.trash_objects, project=self.project, ids=[version_id])
        self._call("stop", handle.stop)
        del self._versions[(name, version)]
        return True

    def close(self) -> None:
        """Stop every open Neptune object (flushes pending writes in async mode)."""
        for handle in [*self._versions.values(), *self._models.values()]:
            self._call("stop", handle.stop)
        self._versions.clear()
        self._models.clear()
