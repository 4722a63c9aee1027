"""The ``sfc`` command line (Click). Commands live in one module per room and are imported lazily."""

from .app import main

__all__ = ["main"]
