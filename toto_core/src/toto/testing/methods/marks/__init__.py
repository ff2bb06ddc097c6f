"""Marks a request leaves in the server process: proof that a method ran (the transport
contract sends bodies that must never run, and checks that their mark is missing)."""

#: Tokens of the ``marks.add`` calls that ran in this process.
MARKS: set[str] = set()
