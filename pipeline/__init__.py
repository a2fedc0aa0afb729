"""leadpipe: move leads between spreadsheets on a shared drive and a HeroBase dialer."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("leadpipe")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+src"

__all__ = ["__version__"]
