"""A helper module without invoke: not callable as a method."""

VALUE = 1
