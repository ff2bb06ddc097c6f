"""Calls through a real Toto server while a Redis primary fails over, counted by answer.

What a client sees is the measure: each call's answer (a result, or an error code), when it
came, and the counter that acknowledged calls advanced. ``FailoverRun`` drives a signed-in client
in a bounded loop and keeps those figures; the tests of Sentinel and Cluster assert on them
(no 1000, no lost session, no acknowledged write lost where the knob promises it).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from toto.client import TotoClient, TotoClientError


@dataclass
class FailoverRun:
    """Counts of one run: answers by code (0 = a result), acknowledged increments, the error window."""

    answers: Counter[int] = field(default_factory=Counter)
    acknowledged: int = 0
    last_value: int = 0
    first_error: float | None = None
    last_error: float | None = None
    started: float = field(default_factory=time.monotonic)

    def call(self, client: TotoClient) -> bool:
        """One ``counter.increment``; True when it answered a result."""
        try:
            value = int(client.call("counter.increment"))
        except TotoClientError as error:
            now = time.monotonic()
            self.answers[int(error.code)] += 1
            self.first_error = self.first_error if self.first_error is not None else now
            self.last_error = now
            return False
        self.answers[0] += 1
        self.acknowledged += 1
        self.last_value = value
        return True

    def until(self, client: TotoClient, done: Callable[[], bool], seconds: float, calm: int = 20) -> None:
        """Call until ``done()`` holds and then ``calm`` calls in a row answered; fail after
        ``seconds``. ``done()`` is asked after every call (it may act, e.g. restart a node)."""
        deadline = time.monotonic() + seconds
        in_a_row = 0
        while time.monotonic() < deadline:
            answered = self.call(client)
            in_a_row = in_a_row + 1 if done() and answered else 0
            if in_a_row >= calm:
                return
            if in_a_row == 0:
                time.sleep(0.02)  # pace a failing client: 1013 comes back at once while Redis is down
        raise AssertionError(f"calls did not settle within {seconds:g} s: {self.summary()}")

    @property
    def window(self) -> float:
        """Seconds from the first error to the last (0 when none)."""
        if self.first_error is None or self.last_error is None:
            return 0.0
        return self.last_error - self.first_error

    def summary(self) -> str:
        codes = ", ".join(f"{code or 'ok'}: {count}" for code, count in sorted(self.answers.items()))
        return f"answers {{{codes}}}, acknowledged {self.acknowledged}, error window {self.window:.2f} s"
