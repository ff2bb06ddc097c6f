"""The event_init_module: registers a handler that hears every chat message."""

LOG = []


def log_message(message):
    LOG.append(message)


def invoke(event_manager):
    event_manager.register_handler("message", log_message, persist=True)
