"""Not a method: it has no invoke."""

LIMIT = 50
