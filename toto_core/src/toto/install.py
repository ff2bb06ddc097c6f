"""What to install for a name Toto does not have yet: the distribution that serves a backend
or a format, and the pip command that installs it.

The plugin loader (``toto.plugins``), the options of the original (``toto.original.options``)
and every error that names a missing plugin use these; they import nothing of Toto, so
any layer may.
"""

from __future__ import annotations

#: The name ``toto plugins`` shows for the built-ins (the core's distribution).
CORE = "toto-core"

#: Which distribution offers the well-known backend names, for install hints.
KNOWN_PROVIDERS = {
    "sqlite": "toto-sql[sqlite]",
    "postgres": "toto-sql[postgres]",
    "postgresql": "toto-sql[postgres]",
    "mysql": "toto-sql[mysql]",
    "mariadb": "toto-sql[mysql]",
    "redis": "toto-redis",
    "mongodb": "toto-mongo",
    "mongo": "toto-mongo",
    "msgpack": "toto-msgpack",
    "bson": "toto-mongo",
    "application/msgpack": "toto-msgpack",
    "application/x-msgpack": "toto-msgpack",
    "application/bson": "toto-mongo",
}


def install_command(spec: str) -> str:
    """How to install the Toto distribution ``spec`` (``toto-sql[postgres]``) until it is on PyPI:
    from a checkout of Toto, or from a folder of its built wheels."""
    project = spec.split("[", 1)[0]
    extras = spec[len(project) :]
    folder = "toto_core" if project == CORE else "plugins/" + project.replace("-", "_")
    return (
        f"pip install './{folder}{extras}' from a Toto checkout, or "
        f"pip install --find-links DIR '{spec}' from a folder of built wheels (nox -s build)"
    )


def install_hint(name: str) -> str:
    """What to install for the backend or format ``name`` (``redis``, ``application/msgpack``)."""
    dist = KNOWN_PROVIDERS.get(name)
    if dist:
        return f"{name!r} comes with {dist.split('[', 1)[0]}: {install_command(dist)}"
    return f"install the plugin that provides {name!r}"
