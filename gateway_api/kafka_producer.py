"""An asyncio face on one confluent-kafka producer: ``await send(...)`` resolves on broker ack."""
from __future__ import annotations

import asyncio
import threading
from typing import Optional

from confluent_kafka import KafkaException

from gateway_api.problems import KafkaUnavailable

# librdkafka gives up on a message after this long (its default is 5 minutes): with the broker down a
# request is answered 503 within seconds, and a message it gave up on is never delivered later.
DELIVERY_TIMEOUT_S = 8.0


class AsyncProducer:
    def __init__(self, producer, timeout_s: float = DELIVERY_TIMEOUT_S):
        self._timeout_s = timeout_s
        self._producer = producer
        self._stop = threading.Event()
        # librdkafka only fires delivery callbacks from poll(); a small thread keeps polling.
        self._thread = threading.Thread(target=self._poll_loop, name="kafka-producer-poll", daemon=True)
        self._thread.start()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def send(self, topic: str, key: bytes, value: bytes, headers: Optional[list] = None) -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()

        def delivered(err, msg) -> None:
            if err is not None:
                loop.call_soon_threadsafe(lambda: fut.done() or fut.set_exception(KafkaException(err)))
            else:
                loop.call_soon_threadsafe(
                    lambda: fut.done() or fut.set_result((msg.partition(), msg.offset())))

        self._producer.produce(topic, key=key, value=value, headers=headers or [], on_delivery=delivered)
        try:
            # librdkafka times the message out itself; this bound only guards against a lost callback
            return await asyncio.wait_for(fut, self._timeout_s + 2.0)
        except asyncio.TimeoutError:
            raise KafkaUnavailable(f"no acknowledgement from Kafka for {topic} within "
                                   f"{self._timeout_s + 2.0:.0f}s") from None

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
        self._stop.set()
        self._thread.join(timeout)
