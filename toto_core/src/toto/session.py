"""The original's module for the session class: ``from toto.session import TotoSession``."""

from toto.sessions import Session as TotoSession

__all__ = ["TotoSession"]
