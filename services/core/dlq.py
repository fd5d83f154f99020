"""Dead-letter handling: a message that cannot be processed goes to ``<topic>.dlq`` with the reason."""
from __future__ import annotations

import traceback


def dlq_headers(exc: BaseException, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    return [
        ("error_class", type(exc).__name__.encode()),
        ("error_message", str(exc)[:2000].encode()),
        ("error_trace", "".join(traceback.format_exception(exc))[-4000:].encode()),
        ("source_topic", topic.encode()),
        ("source_partition", str(partition).encode()),
        ("source_offset", str(offset).encode()),
    ]
