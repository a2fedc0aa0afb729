"""leadpipe: move leads between spreadsheets on a shared drive and a HeroBase dialer."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    __version__: str

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """``__version__``, read from the installed package's metadata when first asked for.

    Lazily: ``importlib.metadata`` and its scan of the installed packages would otherwise cost
    every command, ``leadpipe --help`` included, tens of milliseconds.
    """
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("leadpipe")
    except PackageNotFoundError:  # running from a source tree without installation
        found = "0.0.0+src"
    globals()["__version__"] = found
    return found
