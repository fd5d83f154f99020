"""How the executor judges and reports a failed attempt (pure parts; the worker is tested on the stack)."""
import psycopg
from clickhouse_driver.errors import NetworkError, ServerException

from services.executor.app import is_retryable, scrub_secrets
from services.executor.plan import PlanError
from services.executor.transform import TransformError
from services.executor.writers import WriterError


def test_transport_problems_are_worth_another_attempt():
    assert is_retryable(ConnectionRefusedError("refused"))
    assert is_retryable(TimeoutError("slow"))
    assert is_retryable(psycopg.OperationalError("connection to server at 127.0.0.1 failed: Connection refused"))
    assert is_retryable(NetworkError("Code: 210. Connection refused (127.0.0.1:1)"))


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
