"""Test-only view of how the memory storage keeps a password (must be a scrypt hash)."""


async def invoke(handler, parameters):
    account = await handler.connection.storage.get_account(parameters["user_id"])
    return {"password_hash": account.password_hash if account else None}
