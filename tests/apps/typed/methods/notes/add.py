"""Adds a note for the signed-in user."""

from dataclasses import dataclass, field
from typing import Literal, TypedDict

from toto.invocation import authenticated


@dataclass
class Note:
    title: str
    tags: list[str] = field(default_factory=list)
    priority: Literal["low", "high"] = "low"


class Saved(TypedDict):
    count: int


@authenticated
def invoke(handler, parameters: Note) -> Saved:
    notes = handler.session.state.get("notes") or []
    notes = [*notes, {"title": parameters.title, "tags": parameters.tags, "priority": parameters.priority}][-50:]
    handler.session["notes"] = notes
    handler.session.save_state()
    return {"count": len(notes)}
