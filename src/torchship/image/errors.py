"""What can go wrong building, running and pushing an image; each says what to do."""

from __future__ import annotations

from torchship.errors import TorchshipError


class ImageError(TorchshipError):
    """Base of the image command's errors."""


class BuilderNotFound(ImageError):
    """None of docker, podman, buildah is installed (or the one asked for is not)."""


class ImageBuildError(ImageError):
    """The builder failed; its log names the failing step."""


class ImageServeError(ImageError):
    """The built image did not start, did not get ready, or answered with an error."""


class ImagePushError(ImageError):
    """The registry refused the push (login, repository, network)."""
