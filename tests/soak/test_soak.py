"""A small count of ``nox -s soak`` (bench/soak.py) in the test suite: mixed signed calls from
many clients on PostgreSQL and Redis, one process and --processes=2, lose nothing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


def load_soak():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("toto_bench_soak", SOAK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("database", ["postgres", "redis"])
def test_a_small_soak_loses_nothing(database: str, processes: int) -> None:
    result = load_soak().soak(database, processes, calls=800, clients=10)
    print(result.line())
    assert result.unexpected == [], result.unexpected[:5]
    assert result.lost_updates == 0
    assert result.calls >= 800 and result.acknowledged_increments > 500
