"""Loading a library as a plain install of leadpipe has it, whatever else is installed beside.

Some libraries load an optional package merely because it is installed: pandera loads
hypothesis (data synthesis), requests loads chardet (a guess at the encoding of a text response
that names none). leadpipe asks neither of them for that, and neither package is one of its
dependencies: here they come with the development and benchmark tools (hypothesis for the
tests, frictionless brings chardet). :func:`not_installed` keeps such a package out while the
library loads, so every command pays what it pays in a plain install (docs/architecture.md,
"The rest of a small or mid-sized file's time").
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def not_installed(*names: str) -> Iterator[None]:
    """Inside, importing one of ``names`` fails as if it were not installed (those not loaded
    yet); afterwards they import as usual, for whoever asks for them."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # Python's "not installed" mark
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
