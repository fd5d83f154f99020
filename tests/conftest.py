"""Session fixtures: the real local stack (started once) and one shared running deployment."""
from __future__ import annotations

import pytest

from services.core.settings import load_settings
from tests.harness import new_deployment


_FIGURES: list[tuple[str, str]] = []


@pytest.fixture
def figures():
    """Tests hand measured figures here; they are printed in the run's summary (also without -s)."""
    return lambda title, text: _FIGURES.append((title, text))


def pytest_terminal_summary(terminalreporter):
    for title, text in _FIGURES:
        terminalreporter.write_sep("-", title)
        terminalreporter.write_line(text)


@pytest.fixture(scope="session")
def stack_settings():
    """Settings of the local stack; `aietl up` (idempotent) makes sure it is running."""
    from infra.stack import up

    settings = load_settings()
    rows = up(settings, log=lambda _: None)
    bad = [r for r in rows if not r.healthy]
    assert not bad, f"stack not healthy: {bad}"
    return settings


@pytest.fixture(scope="session")
def system(stack_settings):
    """Every worker and the gateway, on topics of their own, shared by the e2e tests."""
    from services.runtime import WORKERS

    dep = new_deployment(stack_settings, "sys", list(WORKERS)).start()
    yield dep
    dep.stop()
