from toto.clientsessioncache import AESCipher, ClientCache

KEY = "0123456789abcdef0123456789abcdef"


def keep_sessions_on_the_client(db_connection, **kwargs):
    db_connection.set_session_cache(ClientCache(AESCipher(KEY), "an hmac key of this test"))


def custom_signatures(**kwargs):
    """The original's class-level overrides of the key scheme's two checks."""
    from toto.exceptions import TotoException
    from toto.handler import TotoHandler

    def verify(handler, session, request, headers):
        if headers.get("x-toto-hmac") != "key:" + session.key[:8]:
            raise TotoException(1008, "Invalid HMAC (custom)")

    def sign(handler, session, body):
        return "signed:" + session.user_id

    TotoHandler.set_hmac_handler(verify)
    TotoHandler.set_response_hmac_handler(sign)
