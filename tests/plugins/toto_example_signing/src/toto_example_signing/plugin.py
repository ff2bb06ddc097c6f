"""A third-party signing scheme: an HMAC of method, target and body, keyed with the session id."""

import base64
import hmac

from toto import hookimpl
from toto.auth import Authenticator
from toto.exceptions import ERROR_INVALID_HMAC, ERROR_INVALID_RESPONSE_HMAC, TotoException

HEADER = "x-example-signature"


class ExampleSigning(Authenticator):
    expose_headers = (HEADER,)

    def __init__(self, digest="sha256"):
        self.digest = digest

    def add_options(self, options):
        options.define(
            "example_digest", self.digest, str, "hash of the example signatures",
            choices=("sha256", "sha512"), group="toto-example-signing",
        )  # fmt: skip

    def configure(self, options):
        self.digest = options.example_digest

    def signature(self, session_id, *parts):
        message = b"\n".join(part if isinstance(part, bytes) else part.encode() for part in parts)
        return base64.b64encode(hmac.new(session_id.encode(), message, self.digest).digest())

    def check(self, expected, given, code):
        if not hmac.compare_digest(expected, (given or "").encode("latin-1", "replace")):
            raise TotoException(code, "Invalid signature")

    # The server half: verify requests, sign answers.
    def verify_request(self, handler, session, body):
        request = handler.request
        expected = self.signature(session.session_id, request.method, request.uri, body)
        self.check(expected, request.headers.get(HEADER), ERROR_INVALID_HMAC)

    def sign_response(self, handler, session, body):
        handler.set_header(HEADER, self.signature(session.session_id, body).decode())

    # The client half (toto.client): sign requests, verify answers.
    def sign_request(self, session, method, target, body):
        return {HEADER: self.signature(session["session_id"], method, target, body).decode()}

    def verify_response(self, session, headers, body):
        self.check(self.signature(session["session_id"], body), headers.get(HEADER), ERROR_INVALID_RESPONSE_HMAC)

    # The message half (socket calls): the frame without its "hmac" member is signed.
    def verify_message(self, call, session, message, signed, signature):
        self.check(self.signature(session.session_id, signed), signature, ERROR_INVALID_HMAC)

    def sign_message(self, session, message, signed):
        return self.signature(session["session_id"], signed).decode()


@hookimpl
def toto_register_authenticators():
    return {"example": ExampleSigning()}
