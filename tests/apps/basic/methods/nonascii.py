"""Answers non-ASCII text (JSON answers must escape it)."""


def invoke(handler, parameters):
    return {"text": "héllo ✓ 漢字 🎉"}
