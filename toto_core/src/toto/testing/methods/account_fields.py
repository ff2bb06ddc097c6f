"""Answers the caller's account fields as the storage keeps them (signed-in callers only)."""

from __future__ import annotations

from typing import Any

from toto.invocation import authenticated


@authenticated
async def invoke(handler: Any, parameters: Any) -> dict[str, Any]:
    account = await handler.server.storage.get_account(handler.session.user_id)
    return dict(account.fields) if account is not None else {}
