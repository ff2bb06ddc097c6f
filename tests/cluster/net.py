"""A private network of "hosts" on this machine: Linux network namespaces joined by a bridge.

``Lan`` makes a namespace holding a bridge and, for each host, a namespace whose ``eth0`` (a
veth pair) is plugged into the bridge, plus one veth from the machine's own namespace into the
bridge so that the test process reaches every host. Addresses are 10.226.0.0/24 and no route
leads anywhere else: the traffic never leaves the machine. Faults act on this network: a host's
link down (its bridge end), packet loss (``iptables -m statistic --mode random`` inside the
host's namespace; this kernel has no ``tc netem``).

Everything is made under one lock file (one Lan on the machine at a time) and removed on exit,
whatever happened, leftovers of a run that was killed included: the processes in the
namespaces first, then the namespaces and the machine-side veth.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

PREFIX = "t26"
SUBNET = "10.226.0"
#: The machine's own end of the network (the test process, HAProxy, the TCP proxy).
GATEWAY = f"{SUBNET}.1"
LOCK = Path("/run/toto-cluster-suite.lock")


class NetworkUnavailable(RuntimeError):
    """The suite cannot make its network here (not root, no ``ip``, no namespaces)."""


def run(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return done


def check_can_make_networks() -> None:
    """Raise ``NetworkUnavailable`` saying what is missing (the suite fails on it, never skips)."""
    if os.geteuid() != 0:
        raise NetworkUnavailable("the cluster suite makes network namespaces: run it as root")
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            raise NetworkUnavailable(f"the cluster suite needs {tool}: apt-get install iproute2 iptables")
    probe = f"{PREFIX}-probe{os.getpid()}"
    done = run("ip", "netns", "add", probe, check=False)
    if done.returncode != 0:
        raise NetworkUnavailable(f"cannot make a network namespace here: {done.stderr.strip()}")
    run("ip", "netns", "del", probe, check=False)


def namespaces() -> list[str]:
    listed = run("ip", "-o", "netns", "list", check=False).stdout.split("\n")
    return [line.split()[0] for line in listed if line.strip()]


def kill_namespace_processes(ns: str) -> None:
    """SIGKILL what runs in ``ns`` (bounded: a few rounds, each waiting for the processes to go)."""
    for _ in range(10):
        pids = [int(p) for p in run("ip", "netns", "pids", ns, check=False).stdout.split()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def remove_everything() -> None:
    """Remove every namespace and veth of this suite (of this run or of one that was killed)."""
    for ns in namespaces():
        if ns.startswith(PREFIX + "-"):
            kill_namespace_processes(ns)
            run("ip", "netns", "del", ns, check=False)
    run("ip", "link", "del", f"{PREFIX}-root", check=False)


class Lan:
    """The network: ``hosts`` maps a host name to its address; ``ns(name)`` its namespace."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.hosts = {name: f"{SUBNET}.{10 + n}" for n, name in enumerate(names, start=1)}
        self.lan = f"{PREFIX}-lan"
        self._lock: IO[str] | None = None

    def ns(self, name: str) -> str:
        return f"{PREFIX}-{name}"

    def __enter__(self) -> Lan:
        check_can_make_networks()
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(LOCK, "w")
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise NetworkUnavailable(f"another cluster run held {LOCK} for 10 minutes") from None
                time.sleep(0.5)
        try:
            remove_everything()
            self._build()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _build(self) -> None:
        run("ip", "netns", "add", self.lan)
        self.exec_in(self.lan, "ip", "link", "set", "lo", "up")
        self.exec_in(self.lan, "ip", "link", "add", "br0", "type", "bridge")
        self.exec_in(self.lan, "ip", "link", "set", "br0", "up")
        # The machine's end: the test process and HAProxy reach the hosts through it.
        run("ip", "link", "add", f"{PREFIX}-root", "type", "veth", "peer", "name", f"{PREFIX}-rootp")
        run("ip", "link", "set", f"{PREFIX}-rootp", "netns", self.lan)
        run("ip", "addr", "add", f"{GATEWAY}/24", "dev", f"{PREFIX}-root")
        run("ip", "link", "set", f"{PREFIX}-root", "up")
        self.exec_in(self.lan, "ip", "link", "set", f"{PREFIX}-rootp", "master", "br0", "up")
        for name, address in self.hosts.items():
            ns = self.ns(name)
            run("ip", "netns", "add", ns)
            self.exec_in(ns, "ip", "link", "set", "lo", "up")
            inner, outer = f"{PREFIX}-{name}-i"[:15], self.port_of(name)
            run("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
            run("ip", "link", "set", inner, "netns", ns)
            run("ip", "link", "set", outer, "netns", self.lan)
            self.exec_in(ns, "ip", "link", "set", inner, "name", "eth0")
            self.exec_in(ns, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
            self.exec_in(ns, "ip", "link", "set", "eth0", "up")
            self.exec_in(self.lan, "ip", "link", "set", outer, "master", "br0", "up")

    def port_of(self, name: str) -> str:
        """The bridge's end of ``name``'s link (a switch port, in the lan namespace)."""
        return f"{PREFIX}-{name}-o"[:15]

    def exec_in(self, ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", ns, *argv, check=check)

    def link(self, name: str, up: bool) -> None:
        """Pull (or plug back) ``name``'s cable: its switch port goes down."""
        self.exec_in(self.lan, "ip", "link", "set", self.port_of(name), "up" if up else "down")

    def loss(self, name: str, probability: float) -> None:
        """Drop ``probability`` of the packets ``name`` receives and sends (0: none, the rules go)."""
        ns = self.ns(name)
        for chain in ("INPUT", "OUTPUT"):
            self.exec_in(ns, "iptables", "-F", chain)
            if probability > 0:
                self.exec_in(
                    ns, "iptables", "-A", chain, "-o" if chain == "OUTPUT" else "-i", "eth0",
                    "-m", "statistic", "--mode", "random", "--probability", f"{probability:.3f}", "-j", "DROP",
                )  # fmt: skip

    def __exit__(self, *exc: object) -> None:
        try:
            remove_everything()
        finally:
            if self._lock is not None:
                fcntl.flock(self._lock, fcntl.LOCK_UN)
                self._lock.close()
                self._lock = None


@contextlib.contextmanager
def lan(names: list[str]) -> Iterator[Lan]:
    with Lan(names) as network:
        yield network
