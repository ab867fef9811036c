"""Errors of rendering, checking, deploying and rehearsing: one line naming the problem, plus a hint."""

from __future__ import annotations

from torchship.errors import TorchshipError


class DeployError(TorchshipError):
    """Base of every render / deploy / rehearse failure."""


class ManifestCheckFailed(DeployError):
    """Rendered manifests break a schema or a policy rule."""

    exit_code = 4


class KubectlMissing(DeployError):
    """kubectl is not installed."""


class ClusterUnreachable(DeployError):
    """kubectl cannot reach the cluster its kubeconfig/context names."""


class RolloutFailed(DeployError):
    """The new pods did not become ready (or the smoke request failed); the rollout was undone."""

    exit_code = 5


class RehearsalFailed(DeployError):
    """The rehearsal could not run, or its pod did not get ready (a parity failure is ServedParityError)."""
