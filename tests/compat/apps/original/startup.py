from toto.clientsessioncache import AESCipher, ClientCache

KEY = "0123456789abcdef0123456789abcdef"


def keep_sessions_on_the_client(db_connection, **kwargs):
    db_connection.set_session_cache(ClientCache(AESCipher(KEY), "an hmac key of this test"))
