"""How the executor judges and reports a failed attempt (pure parts; the worker is tested on the stack)."""
import psycopg
from clickhouse_driver.errors import NetworkError, ServerException

from services.executor.app import is_retryable, scrub_secrets, transient_tick_error
from services.executor.plan import PlanError
from services.executor.transform import TransformError
from services.executor.writers import WriterError


def test_transport_problems_are_worth_another_attempt():
    assert is_retryable(ConnectionRefusedError("refused"))
    assert is_retryable(TimeoutError("slow"))
    assert is_retryable(psycopg.OperationalError("connection to server at 127.0.0.1 failed: Connection refused"))
    assert is_retryable(NetworkError("Code: 210. Connection refused (127.0.0.1:1)"))


def test_the_registry_database_away_is_worth_another_attempt():
    # Seen restarting PostgreSQL during a load (tests/reliability/test_server_restarts.py): attempt 2 met the
    # registry unreachable, was judged final, and the run failed with 75,000 of 100,000 rows never loaded.
    from services.connectors.registry import RegistryUnavailable

    assert is_retryable(RegistryUnavailable("cannot reach the registry database: Connection refused"))


def test_a_server_away_for_a_moment_skips_a_reconcile_tick_instead_of_crashing_the_executor():
    # Seen restarting the Kafka broker during a run: the tick's log fold raised this, Faust crashed the app.
    import redis
    from confluent_kafka import KafkaError, KafkaException

    assert transient_tick_error(KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata")))
    assert transient_tick_error(redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379"))
    assert not transient_tick_error(KeyError("a bug"))
    assert not transient_tick_error(ValueError("a bug"))


def test_wrong_code_or_data_fail_at_once():
    assert not is_retryable(TransformError("transform SQL failed"))
    assert not is_retryable(PlanError("run parameter 'file' is missing"))
    assert not is_retryable(WriterError("another writer appended meanwhile"))
    assert not is_retryable(ServerException("Code: 62. Syntax error"))
    assert not is_retryable(psycopg.OperationalError('database "nope" does not exist'))


def test_secrets_never_ride_along_in_error_texts():
    text = "could not connect: postgresql://etl:s3cr3t-pw@db:5432/shop (token abcd1234)"
    assert scrub_secrets(text, ["s3cr3t-pw", "abcd1234", None, "ab"]) == \
        "could not connect: postgresql://etl:***@db:5432/shop (token ***)"


def test_a_log_read_meeting_the_broker_away_is_tried_again_at_the_next_tick():
    # Seen restarting the Kafka broker: the scheduler's and kafka-trigger's ticks raised these (just back,
    # the broker had no partition metadata yet) and Faust crashed both apps, their processes left idle.
    from confluent_kafka import KafkaError, KafkaException

    from services.core.eventlog import broker_away

    for code in (KafkaError._UNKNOWN_PARTITION, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
                 KafkaError.LEADER_NOT_AVAILABLE):
        assert broker_away(KafkaException(KafkaError(code, "Failed to get watermark offsets"))), code
    assert broker_away(TimeoutError("no progress reading t partitions [0]"))
    assert not broker_away(KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied")))
    assert not broker_away(KafkaException(KafkaError(KafkaError._TRANSPORT, "fatal", fatal=True)))
    assert not broker_away(ValueError("a bug"))
