"""A typed test application. It imports json: `json.dumps` must never be a method."""

import json  # noqa: F401
