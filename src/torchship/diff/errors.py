"""The diff's errors that callers catch by type (kept light: the CLI imports them at start)."""

from __future__ import annotations

from torchship.diff.record import DiffRecord
from torchship.errors import TorchshipError


class PromotionRefused(TorchshipError):
    """A diff against the stage's version broke a promotion limit; `record` is that diff."""

    def __init__(self, message: str, *, hint: str, record: DiffRecord):
        super().__init__(message, hint=hint)
        self.record = record
