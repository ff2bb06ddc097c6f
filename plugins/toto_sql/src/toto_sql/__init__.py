"""SQL storage for Toto: ``--database=sqlite`` (the embedded default), ``postgres`` and ``mysql``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from toto_sql.storage import SqlStorage

__version__ = "0.1.0"

__all__ = ["SqlStorage", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use: Toto loads this package in every server (see plugin.py).
    if name == "SqlStorage":
        from toto_sql.storage import SqlStorage

        return SqlStorage
    raise AttributeError(f"module 'toto_sql' has no attribute {name!r}")
