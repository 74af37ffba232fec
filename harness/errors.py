"""The one exception type the CLI turns into a single readable line."""

from __future__ import annotations


class HarnessError(Exception):
    """A problem the user can fix: bad spec, unknown plugin, unreachable server.

    The message says what is wrong, where, and what to do about it.
    """
