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
    _remove_leftovers(terminalreporter)


def _remove_leftovers(terminalreporter):
    """The broker after a test session holds only what was there before: remove what tests left."""
    from tests.support.cleanup import PREFIXES, leftovers, remove_prefix_leftovers

    if not PREFIXES:
        return
    settings = load_settings()
    try:
        removed = remove_prefix_leftovers(settings, PREFIXES)
        left = leftovers(settings, PREFIXES)
    except Exception as exc:  # the stack may be gone; say so rather than hide it
        terminalreporter.write_line(f"test leftovers not removed: {type(exc).__name__}: {exc}")
        return
    terminalreporter.write_sep("-", "test leftovers")
    terminalreporter.write_line(f"removed {removed.topics} topics, {removed.groups} consumer groups, "
                                f"{removed.keys} Redis keys, {removed.connections} connections, "
                                f"{removed.api_keys} API keys of {len(PREFIXES)} test prefixes; "
                                f"still there: {left or 'none'}")


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
    dep.remove()
