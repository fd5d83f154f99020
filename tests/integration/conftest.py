"""Fixtures for the data-plane tests: connections to the real stack and scratch schemas/databases."""
from tests.integration.stack_fixtures import ch, chdb, kafka, pg, pgdb, settings  # noqa: F401
