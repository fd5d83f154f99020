"""Faust application factory shared by every stream processor."""
from __future__ import annotations

from typing import Any

from services.core.settings import Settings


def make_app(settings: Settings, processor: str, **overrides: Any):
    import faust

    from services.core.kafka_auth import faust_credentials

    datadir = settings.state_dir / "faust" / f"{settings.topic_prefix}{processor}"
    datadir.parent.mkdir(parents=True, exist_ok=True)
    conf: dict[str, Any] = dict(
        broker=f"kafka://{settings.kafka_bootstrap}",
        # Each processor is its own principal on the bus (its ACLs come from topology/).
        broker_credentials=faust_credentials(settings, processor),
        value_serializer="raw",
        key_serializer="raw",
        # Topics come from topology/ only; Faust must never declare or auto-create any.
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
        datadir=str(datadir),
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # A SIGKILLed member holds its partitions until its session expires; keep that short.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        # Our handlers await Kafka and Redis round trips; the default 10 s is too tight on a busy laptop.
        stream_processing_timeout=120.0,
    )
    conf.update(overrides)
    # The app id is the consumer group: one group per processor and topic prefix.
    return faust.App(f"{settings.topic_prefix}{processor}", **conf)


def topic(app, settings: Settings, logical_name: str):
    return app.topic(settings.topic(logical_name), key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw", internal=False)


def run_worker(app, loglevel: str = "info") -> None:
    import faust

    if not isinstance(app, faust.App):  # a plain mode service (pipeline-aggregate's consumer loop)
        import mode

        mode.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
        return
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
