"""Why `torchship init` refuses: every check runs before anything is written, so a refusal changes nothing."""

from __future__ import annotations

from torchship.errors import TorchshipError


class InitError(TorchshipError):
    """Bad arguments, a model folder that is not a saved checkpoint, or files init will not overwrite."""

    exit_code = 2


class TaskMismatchError(TorchshipError):
    """The checkpoint cannot serve the asked task: the gate would refuse it the same way (exit 3)."""

    exit_code = 3
