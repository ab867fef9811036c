"""Errors a user can act on. The CLI prints `str(error)` as one line (plus the hint) and exits non-zero."""

from __future__ import annotations


class TorchshipError(Exception):
    """Base of every expected failure: a message naming the problem, and a hint saying what to do."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, details: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        # Extra lines shown under the message (e.g. the relevant TorchServe log lines).
        self.details = details


class SpecError(TorchshipError):
    """The model spec cannot be read or is invalid."""

    exit_code = 2


class SourceError(TorchshipError):
    """The model source cannot be found or is not a Hugging Face model directory."""


class CompileError(TorchshipError):
    """The model cannot be compiled (traced) by the chosen backend."""


class ValidationFailed(TorchshipError):
    """The compiled model differs from its source beyond the spec's tolerance."""

    exit_code = 3


class PackageError(TorchshipError):
    """torch-model-archiver failed or the inputs for the archive are missing."""


class ServingError(TorchshipError):
    """TorchServe could not start, load the model, or answer."""


class ServedParityError(TorchshipError):
    """TorchServe answered, but its outputs differ from the in-process source model."""

    exit_code = 3
