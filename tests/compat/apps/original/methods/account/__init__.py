import toto.methods.account.create as create  # noqa: F401
import toto.methods.account.login as login  # noqa: F401
