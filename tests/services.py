"""Check the database services and tools the tests use; start or install what is missing.

Run before pytest by ``nox -s tests``. A service that cannot be reached after a
start attempt, or a Debian package that cannot be installed, fails the run with a
message naming it: tests never skip silently.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import time

SERVICES = [
    (
        "PostgreSQL",
        5432,
        "pg_ctlcluster --skip-systemctl-redirect {version} main start",
    ),
    ("MariaDB", 3306, "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"),
    (
        "NATS",
        4222,
        "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- "
        "-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log",
    ),
    (
        "Redis",
        6379,
        'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
        "--dir /var/lib/redis --logfile /var/log/redis/ci.log",
    ),
]


# Debian packages the tests run, by the program each one must provide.
PACKAGES = [
    ("chromium", "/usr/bin/chromium"),  # tests/browser drive a headless browser against the server
    ("nodejs", "/usr/bin/node"),  # tests/explorer/test_js_client.py runs clients/js under node --test
    ("npm", "/usr/bin/npm"),  # the README's toto-client example installs clients/js with npm
    ("haproxy", "/usr/sbin/haproxy"),  # tests/cluster: the load balancer in front of three hosts
    ("nginx", "/usr/sbin/nginx"),  # tests/cluster/test_production.py: the documented nginx site
    ("systemd", "/usr/bin/systemd-analyze"),  # tests/cluster/test_production.py: the documented unit
    ("iptables", "/usr/sbin/iptables"),  # tests/cluster: packet loss on a link
    ("iproute2", "/usr/sbin/ip"),  # tests/cluster: network namespaces
    ("nats-server", "/usr/sbin/nats-server"),  # tests/cluster: a private NATS it may restart
]


def install_packages() -> list[str]:
    """apt-get install each package whose program is missing; answer the ones still missing."""
    missing = [(package, program) for package, program in PACKAGES if not os.path.exists(program)]
    if not missing:
        return []
    names = [package for package, _ in missing]
    if shutil.which("apt-get") is None:
        print("apt-get is not available to install " + " ".join(names), file=sys.stderr)
        return names
    print("installing Debian packages: " + " ".join(names), flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *names]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        # The package lists may be stale or absent (fresh container): refresh once and retry.
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
        subprocess.run(install, env=env, check=False)
    return [package for package, program in missing if not os.path.exists(program)]


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def start(name: str, command: str) -> None:
    if "{version}" in command:
        versions = sorted(os.path.basename(p) for p in glob.glob("/etc/postgresql/*"))
        if not versions:
            raise SystemExit(f"{name} is down and not installed (no /etc/postgresql)")
        command = command.format(version=versions[-1])
    print(f"{name} is down; starting it: {command}", flush=True)
    subprocess.run(command, shell=True, check=False)


def main() -> int:
    failed = [f"Debian package {name} (apt-get install {name})" for name in install_packages()]
    for name, port, command in SERVICES:
        if reachable(port):
            print(f"{name} is up on 127.0.0.1:{port}")
            continue
        start(name, command)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not reachable(port):
            time.sleep(0.5)
        if reachable(port):
            print(f"{name} started on 127.0.0.1:{port}")
        else:
            failed.append(f"{name} (127.0.0.1:{port})")
    if failed:
        print("these services or packages could not be set up: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
