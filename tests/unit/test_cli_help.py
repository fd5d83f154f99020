"""The CLI's help names every worker the runtime can run."""
import inspect

from services import cli
from services.runtime import WORKERS


def test_worker_help_names_every_worker():
    help_text = inspect.signature(cli.worker).parameters["name"].default.help
    assert all(name in help_text for name in WORKERS), help_text
