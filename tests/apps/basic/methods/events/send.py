"""Sends event parameters["name"] with parameters["args"] to every server."""

from toto.events import EventManager


async def invoke(handler, parameters):
    await EventManager.instance().send(parameters["name"], parameters.get("args"), parameters.get("broadcast", True))
    return {"sent": parameters["name"]}
