"""Runs triggered by messages on the users' Kafka topics (docs/triggers.md)."""
