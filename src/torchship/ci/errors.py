"""What can go wrong in a CI helper; each error says what to do."""

from __future__ import annotations

from torchship.errors import TorchshipError


class CIError(TorchshipError):
    """A CI helper cannot give its answer (git failed, a record is missing or incomplete)."""
