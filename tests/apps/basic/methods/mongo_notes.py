"""Adds a note to the application's own MongoDB collection and answers every note, oldest first.

Only for servers on toto-mongo, whose ``handler.connection.db`` is a pymongo ``AsyncDatabase``.
"""

from toto.invocation import requires


@requires("text")
async def invoke(handler, parameters):
    notes = handler.connection.db["notes"]
    await notes.insert_one({"text": parameters["text"]})
    return [note["text"] async for note in notes.find({}, {"_id": 0}).sort("_id", 1)]
