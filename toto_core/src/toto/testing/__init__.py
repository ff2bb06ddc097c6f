"""The contract kit: the tests every storage, event bus and serializer must pass, and the
tools they use, for Toto's own plugins and third-party ones alike.

- ``StorageContract`` (one instance at a time; it includes ``GuardContract`` of
  ``toto.testing.guards``: ``increment``, ``first_seen``, versioned ``save_state``) and
  ``EventBusContract`` (``toto.testing.contract``): subclass with one fixture that
  builds an instance::

      import pytest
      from toto.testing import StorageContract

      class TestMyStorage(StorageContract):
          @pytest.fixture
          def storage_factory(self):
              return lambda: MyStorage(url="...", prefix=unique_namespace())

- ``BackendContract`` (``toto.testing.backend``: namespaces that keep apps apart,
  outages through a TCP proxy) and ``DeploymentContract`` (``toto.testing.deployment``:
  real servers over HTTP sharing sessions, racing creates, losing no update, answering
  an outage with 1013/503 in time): subclass with a ``backend`` fixture returning a
  ``Backend`` that says how to reach the backend.
- ``SerializerContract`` (``toto.testing.serializers``): subclass with a ``serializer``
  fixture.
- ``TransportContract`` (``toto.testing.transport``): every HTTP face (``--http``) against
  slow clients, endless heads and bodies, bodies that did not arrive whole,
  ``max_connections`` and refusals in the protocol's shape; subclass naming ``http`` and
  what the transport's HTTP library answers itself.
- ``SocketContract`` (``toto.testing.sockets``: origins and cookies, message sizes and
  deadlines, unfinished messages per process, slow readers, tried with ``RawSocket``, a
  client that sends frames exactly as built): subclass with a ``socket_face`` fixture that
  starts a server with given options and returns its address.
- ``TestClient`` and ``AsyncTestClient`` (``toto.testing.client``): an application's own
  tests call its methods in process (no port, no subprocess) through the real request path,
  with ``TotoClient``'s interface.
- Tools: ``ServerProcess`` (``toto.testing.server``) runs a real server,
  ``TcpProxy`` (``toto.testing.proxy``) cuts, black-holes, freezes or slows a database's
  connections, ``run_storages(body, *stores)`` and ``session_record(...)`` write a
  backend's own storage tests, ``assert_unavailable_in_time`` and
  ``assert_storage_unavailable_in_time`` check an outage against ``OUTAGE_BOUND``, and
  ``health_turns``, ``check_health_follows_an_outage`` (``toto.testing.health``) the
  health check through one.

Each test runs in its own event loop (no pytest plugin needed) and opens and closes
what it makes.
"""

from toto.testing.backend import Backend, BackendContract, unique_namespace
from toto.testing.client import AsyncTestClient, TestClient
from toto.testing.contract import EventBusContract, StorageContract, run_storages, session_record
from toto.testing.deployment import DeploymentContract, check_servers_share_accounts_and_sessions, unique_user
from toto.testing.guards import GuardContract
from toto.testing.health import check_health_follows_an_outage, get_json, health_turns
from toto.testing.outage import OUTAGE_BOUND, assert_storage_unavailable_in_time, assert_unavailable_in_time
from toto.testing.proxy import TcpProxy
from toto.testing.serializers import SerializerContract
from toto.testing.server import ServerProcess, free_port
from toto.testing.sockets import RawSocket, SocketContract
from toto.testing.transport import TransportContract

__all__ = [
    "OUTAGE_BOUND",
    "AsyncTestClient",
    "Backend",
    "BackendContract",
    "DeploymentContract",
    "EventBusContract",
    "GuardContract",
    "RawSocket",
    "SerializerContract",
    "ServerProcess",
    "SocketContract",
    "StorageContract",
    "TcpProxy",
    "TestClient",
    "TransportContract",
    "assert_storage_unavailable_in_time",
    "assert_unavailable_in_time",
    "check_health_follows_an_outage",
    "check_servers_share_accounts_and_sessions",
    "free_port",
    "get_json",
    "health_turns",
    "run_storages",
    "session_record",
    "unique_namespace",
    "unique_user",
]
