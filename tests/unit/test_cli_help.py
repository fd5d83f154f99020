"""The CLI's help names every worker the runtime can run."""
import inspect

from services import cli
from services.runtime import WORKERS


def test_worker_help_names_every_worker():
    help_text = inspect.signature(cli.worker).parameters["name"].default.help
    assert all(name in help_text for name in WORKERS), help_text


def test_keys_commands_have_help():
    from typer.testing import CliRunner

    for command in ("create", "list", "revoke"):
        result = CliRunner().invoke(cli.app, ["keys", command, "--help"])
        assert result.exit_code == 0 and len(result.output) > 100, result.output
    create = CliRunner().invoke(cli.app, ["keys", "create", "--help"]).output
    assert "--tenant" in create and "--role" in create and "--expires-in" in create
