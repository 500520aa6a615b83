"""Fixtures: one private mosquitto per test session, and per-test ones for fault tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.support.broker import Broker
from tests.support.daemon import Edged
from tests.support.probe import Probe
from tests.support.tools import CANNOT_HAVE, require_tool, under_ci

# CI machines are small and shared: how fast hypothesis generates examples, or how long one
# example takes, says nothing about the code. The properties themselves are all checked.
settings.register_profile(
    "edged", deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("edged")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The developer's own EDGED_ variables must not leak into any test."""
    for name in list(os.environ):
        if name.upper().startswith("EDGED_"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("mosquitto"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker of this test's own, not yet started, so the test can stop and start it."""
    b = Broker(tmp_path)
    yield b
    b.stop()


@pytest.fixture
def probe(broker: Broker) -> Iterator[Probe]:
    p = Probe(broker.port)
    yield p
    p.close()


@pytest.fixture
def daemons() -> Iterator[list[Edged]]:
    """Edged processes a test started; any still running are stopped at the end."""
    started: list[Edged] = []
    yield started
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()


@pytest.fixture(scope="session")
def debs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The .deb, and a rebuilt one of a higher version whose shipped config differs
    (tests/support/packages.py), built once for every test that installs them."""
    from tests.support.packages import build_both

    require_tool("dpkg-deb", "dpkg")
    return build_both(tmp_path_factory.mktemp("debs"))


@pytest.fixture(scope="session")
def delegate_libs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The C test delegates (tests/delegates/*.c), built once per session with ``cc``."""
    from tests.support.delegates import build

    return build(tmp_path_factory.mktemp("delegates"), require_tool("cc", "gcc"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Under CI a skip is a failure unless it says the machine cannot have what the test
    needs (tests/support/tools.py): a green run must not hide a test that never ran."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not (under_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    if not reason.startswith(CANNOT_HAVE):
        report.outcome = "failed"
        report.longrepr = f"CI=true and the test skipped: {reason}"
