"""SQL storage for Toto: ``--database=sqlite`` (the embedded default), ``postgres`` and ``mysql``."""

from toto_sql.storage import SqlStorage

__version__ = "0.1.0"

__all__ = ["SqlStorage", "__version__"]
