"""The production samples of docs/deployment.md, checked for real: the systemd unit passes
``systemd-analyze verify`` and its ExecStart line starts the servers; Debian's nginx with the
documented configuration (TLS, WebSockets, ``/_health``) in front of two of them carries calls
and a socket, and goes on when one server stops behind it."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from toto.client import AsyncTotoClient, TotoClient
from toto.testing import unique_user

from tests.conftest import BASIC_APP
from tests.redis.servers import free_ports

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "deployment.md"
BLOCK = re.compile(r"<!-- test: file (\S+) -->\n```\w*\n(.*?)```", re.S)
TOTO = Path(sys.executable).with_name("toto")


def sample(name: str) -> str:
    """The documented file ``name`` (a ``<!-- test: file name -->`` block of docs/deployment.md)."""
    found = dict(BLOCK.findall(DOC.read_text(encoding="utf-8")))
    assert name in found, f"docs/deployment.md has no block '<!-- test: file {name} -->'"
    return found[name]


def wait_until(check: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    pytest.fail(f"{what} within {seconds:g} s")


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def unit_for(tmp_path: Path) -> Path:
    """The documented unit as an instance file, its paths pointing at this checkout's venv."""
    unit = sample("toto@.service").replace("/srv/toto/venv/bin/toto", str(TOTO))
    path = tmp_path / "toto@8001.service"
    path.write_text(unit)
    return path


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is not installed: apt-get install systemd")
    unit = unit_for(tmp_path)
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    broken = tmp_path / "toto@8002.service"
    broken.write_text(unit.read_text().replace(str(TOTO), str(tmp_path / "missing" / "toto")))
    done = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "not executable" in done.stderr, "the check sees a wrong ExecStart"


def exec_start(port: int, conf: Path, *overrides: str) -> list[str]:
    """The unit's ExecStart for instance ``port`` (``%i``), with this test's paths and overrides."""
    line = next(x for x in sample("toto@.service").splitlines() if x.startswith("ExecStart="))
    argv = shlex.split(line.removeprefix("ExecStart=").replace("%i", str(port)))
    assert argv[0] == "/srv/toto/venv/bin/toto" and argv[2] == "/srv/toto/app/toto.conf", argv
    return [str(TOTO), argv[1], str(conf), *argv[3:], *overrides]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[list[int], list[subprocess.Popen[bytes]]]]:
    """Two servers as the unit starts them, on the documented toto.conf; SQLite and the machine
    bus stand in for the documented PostgreSQL (same options otherwise)."""
    conf = tmp_path / "toto.conf"
    conf.write_text(sample("toto.conf"))
    ports = free_ports(2)
    overrides = [
        "--method_module=methods",
        "--database=sqlite",
        f"--database_url=sqlite:///{tmp_path / 'toto.db'}",
        "--event_bus=machine",
        f"--event_url={tmp_path / 'bus'}",
        "--password_cost=10",
    ]
    procs = []
    try:
        for port in ports:
            log = open(tmp_path / f"toto-{port}.log", "wb")
            procs.append(
                subprocess.Popen(
                    exec_start(port, conf, *overrides), cwd=BASIC_APP, stdout=log, stderr=subprocess.STDOUT
                )
            )
            log.close()
        for port, proc in zip(ports, procs):
            wait_until(lambda p=port, q=proc: listening(p) or q.poll() is not None, 60, f"a server on {port}")
            assert proc.poll() is None, (tmp_path / f"toto-{port}.log").read_text()
        yield ports, procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def nginx(tmp_path: Path, servers: tuple[list[int], list[subprocess.Popen[bytes]]]) -> Iterator[int]:
    """Debian's nginx with the documented site, on free ports, a self-signed certificate for 127.0.0.1."""
    if shutil.which("nginx") is None:
        pytest.fail("nginx is not installed: apt-get install nginx")
    ports, _ = servers
    https, http = free_ports(2)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    site = (
        sample("nginx-toto.conf")
        .replace("127.0.0.1:8001", f"127.0.0.1:{ports[0]}")
        .replace("127.0.0.1:8002", f"127.0.0.1:{ports[1]}")
        .replace("listen 443 ssl", f"listen 127.0.0.1:{https} ssl")
        .replace("listen 80", f"listen 127.0.0.1:{http}")
        .replace("/etc/ssl/toto/fullchain.pem", str(tmp_path / "cert.pem"))
        .replace("/etc/ssl/toto/privkey.pem", str(tmp_path / "key.pem"))
    )
    (tmp_path / "site.conf").write_text(site)
    for directory in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / directory).mkdir()
    main = f"""user root;
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/nginx-error.log;
events {{ worker_connections 256; }}
http {{
    access_log {tmp_path}/nginx-access.log;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {tmp_path}/site.conf;
}}
"""
    (tmp_path / "nginx.conf").write_text(main)
    checked = subprocess.run(["nginx", "-t", "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    proc = subprocess.Popen(
        ["nginx", "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: listening(https) or proc.poll() is not None, 30, "nginx listening")
        assert proc.poll() is None, (tmp_path / "nginx-error.log").read_text()
        yield https
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_nginx_in_front_of_two_servers(
    nginx: int,
    servers: tuple[list[int], list[subprocess.Popen[bytes]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cert.pem"))  # trust the test's certificate
    url = f"https://127.0.0.1:{nginx}"
    with urllib.request.urlopen(url + "/_health", timeout=10) as health:  # noqa: S310 - https://127.0.0.1
        assert health.status == 200, "nginx passes /_health to a server"

    client = TotoClient(url, hmac_mode="session_key", retries=0)
    client.create(unique_user(), "a long secret")
    names = ["X-Forwarded-Proto", "X-Real-Ip"]
    for _ in range(2):  # both servers
        headers = client.call("request_headers", {"names": names})["get"]
        assert headers == {"X-Forwarded-Proto": "https", "X-Real-Ip": "127.0.0.1"}, "the documented headers arrive"
    assert [client.call("counter.increment") for _ in range(6)] == [1, 2, 3, 4, 5, 6], "one session on both servers"

    async def over_a_socket() -> None:
        socket_client = AsyncTotoClient(url, hmac_mode="session_key", retries=0)
        socket_client.session = dict(client.session or {})
        async with await socket_client.connect() as sock:
            assert await sock.call("whoami") == {"user_id": client.session["user_id"]}  # type: ignore[index]
            await sock.subscribe("news.deploy")
            sender = AsyncTotoClient(url, retries=0)
            for _ in range(2):  # one through each server: both reach the socket's
                await sender.call("events.send", {"name": "news.deploy", "args": {"n": 1}})
            assert await sock.next_event(timeout=10) == ("news.deploy", {"n": 1})

    asyncio.run(over_a_socket())

    # One server stops (SIGTERM: it drains, then its port closes): nginx sends every call to the other.
    ports, procs = servers
    procs[1].send_signal(signal.SIGTERM)
    procs[1].wait(30)
    for n in range(7, 17):
        assert client.call("counter.increment") == n, "a call after one server stopped"
    assert "Traceback" not in "".join(p.read_text(errors="replace") for p in tmp_path.glob("toto-*.log"))
    assert os.path.exists(tmp_path / "nginx-access.log")
