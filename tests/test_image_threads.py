"""TORCHSHIP_THREADS / TORCHSHIP_WORKERS (set by the deployment from the pod's CPU limit) win over the
.mar's thread settings: a container sees the host's cores, not its own share."""

from __future__ import annotations

import os
import zipfile

import pytest
import torch
import yaml

from test_handler import FakeContext
from torchship.handlers.service import TextHandler


@pytest.fixture
def extracted(tiny_package, tmp_path):
    _, _, mar = tiny_package
    with zipfile.ZipFile(mar) as archive:
        archive.extractall(tmp_path)
    return tmp_path, yaml.safe_load((tmp_path / "model-config.yaml").read_text())


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_torchship_threads_overrides_the_archives_threads(extracted, monkeypatch):
    model_dir, config = extracted
    assert config["handler"]["threads"] == 1  # the tiny spec pins one thread
    monkeypatch.setenv("TORCHSHIP_THREADS", "3")
    TextHandler().initialize(FakeContext(model_dir, config, 0))
    assert torch.get_num_threads() == 3


def test_without_the_variable_the_archives_threads_hold(extracted, monkeypatch):
    model_dir, config = extracted
    monkeypatch.delenv("TORCHSHIP_THREADS", raising=False)
    TextHandler().initialize(FakeContext(model_dir, config, 0))
    assert torch.get_num_threads() == 1


def test_torchship_workers_divides_the_cores_when_threads_are_unset(extracted, monkeypatch):
    model_dir, config = extracted
    config = {**config, "handler": {**config["handler"], "threads": None, "workers": 1}}
    monkeypatch.delenv("TORCHSHIP_THREADS", raising=False)
    # More workers than cores: one thread each (the .mar's one worker would take every core).
    monkeypatch.setenv("TORCHSHIP_WORKERS", str(2 * (os.cpu_count() or 1)))
    TextHandler().initialize(FakeContext(model_dir, config, 0))
    assert torch.get_num_threads() == 1
