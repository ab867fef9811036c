"""Which torchship made a record, and whether this one reads it: the one rule every reader applies.

Every record torchship writes names the torchship that wrote it (`torchship_version`): stage.json, state.json,
report.json, the .mar's torchship.json, the publish manifest, registry entries, image.json and the image's
`io.torchship.version` label, tune.json, and the rendered Kubernetes objects (`torchship.io/version`).

- Stage outputs are derived files: another torchship would make them differently (the code fingerprint in their
  inputs changes with it), so outputs made by another version are stale; the message names both versions and the
  command that rebuilds them (`stale_reason`).
- Records that are read back as they are (the publish manifest, image.json, state.json) carry a format number. A
  format this torchship knows, its own or an older one, is read whichever version wrote it; a newer or unknown
  one is refused, naming the format, the version that wrote it and what to do: upgrade (`check_format`).
"""

from __future__ import annotations

from typing import Any

import torchship
from torchship.errors import TorchshipError


class UnknownFormatError(TorchshipError):
    """A record written in a format this torchship does not know (a newer torchship wrote it)."""


def this_version() -> str:
    return torchship.__version__


def made_by_another(recorded: Any) -> str | None:
    """'made by torchship 0.0.9, this is 0.1.0' when `recorded` names another version than this one; None when
    it names this one, or nothing (a record from before versions were kept says nothing either way)."""
    if not isinstance(recorded, str) or not recorded or recorded == this_version():
        return None
    return f"made by torchship {recorded}, this is {this_version()}"


def stale_reason(recorded: Any, command: str) -> tuple[str, str] | None:
    """(why, hint) for derived outputs another torchship made; None when this one made them."""
    other = made_by_another(recorded)
    if other is None:
        return None
    return other, f"Run `{command}` to rebuild them with this version."


def check_format(
    found: Any, *, known: int, field: str, what: str, written_by: Any, otherwise: str = ""
) -> int:
    """The format number of a record this torchship can read.

    `found` is the record's `field` (None: the record predates format numbers, which is format 1); `known` the
    newest format this torchship writes and reads. A larger or non-integer format is refused: `what` names the
    record (its path or URI), `written_by` the version that wrote it, `otherwise` a way round upgrading.
    """
    if found is None:
        return 1
    if isinstance(found, int) and not isinstance(found, bool) and 1 <= found <= known:
        return found
    writer = f"torchship {written_by}" if isinstance(written_by, str) and written_by else "another torchship"
    upgrade = (
        f"Upgrade torchship to {written_by} or later (pip install 'torchship>={written_by}')"
        if isinstance(written_by, str) and written_by
        else "Upgrade torchship to the version that wrote it"
    )
    raise UnknownFormatError(
        f"{what} has {field} {found!r}, written by {writer}; this torchship ({this_version()}) reads "
        f"{field} {known}" + (" and older" if known > 1 else "") + " only",
        hint=f"{upgrade} to read it" + (f", or {otherwise}" if otherwise else "") + ".",
    )
