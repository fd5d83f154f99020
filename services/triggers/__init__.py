"""Things that start runs from outside: signed webhooks (the scheduler and Kafka triggers live elsewhere)."""
