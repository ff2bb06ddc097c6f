"""Says something to the room (event "room"), as the signed-in user."""

from toto.events import EventManager
from toto.invocation import authenticated


@authenticated
async def invoke(handler, parameters):
    await EventManager.instance().send("room", {"from": handler.session.user_id, "text": parameters["text"]})
    return {"said": parameters["text"]}
