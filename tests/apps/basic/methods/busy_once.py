"""Answers 1013 (busy: the call did not run) to the first ``times`` calls naming ``token``,
then the number of calls it received: what a client that retries 1013 sees."""

from toto.exceptions import ERROR_SERVICE_UNAVAILABLE, TotoException

_calls: dict[str, int] = {}


def invoke(handler, parameters):
    token = str(parameters["token"])
    calls = _calls[token] = _calls.get(token, 0) + 1
    if calls <= int(parameters.get("times", 1)):
        raise TotoException(ERROR_SERVICE_UNAVAILABLE, "busy; retry")
    return calls
