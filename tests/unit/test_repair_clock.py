"""The clock that says when a periodic pass also repairs."""

from __future__ import annotations

from services.repair import RepairClock


def test_the_first_pass_repairs_then_once_per_interval() -> None:
    clock = RepairClock(3600.0)
    assert clock.due()  # a process's first pass: what a restart after a crash needs
    assert not clock.due()
    assert not clock.due()


def test_an_interval_of_zero_repairs_at_every_pass() -> None:
    clock = RepairClock(0.0)
    assert all(clock.due() for _ in range(5))
