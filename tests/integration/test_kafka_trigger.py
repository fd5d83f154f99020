"""Kafka-message triggers on the real stack: a run per matching message of a user's topic, none again after
a restart, none for messages sent while paused, and the subscription follows delete (with a second
pipeline on the same topic still triggered)."""
import json
import os
import signal
import time
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from services.core.kafka import admin_client
from services.processes import running
from services.scheduler.commands import kafka_ids
from tests.harness import wait_for
from tests.pipelines import draft_and_deploy, drafting_deployment, events, send_command
from services.core.kafka_auth import client_conf

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dep(stack_settings):
    with drafting_deployment(stack_settings, "ktrig", ("kafka-trigger",)) as d:
        yield d


@pytest.fixture(scope="module")
def user_topic(dep):
    """A topic of the user's, named as they would (no aietl prefix)."""
    name = f"kt-{uuid.uuid4().hex[:8]}.orders"
    admin = admin_client(dep.settings)
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])[name].result(30)
    yield name
    admin.delete_topics([name])[name].result(30)


@pytest.fixture(scope="module")
def paid_orders(dep, user_topic):
    """The pipeline under test: runs on each message of the topic with status 'paid'."""
    u = uuid.uuid4().hex[:8]
    pid, spec = draft_and_deploy(dep, f"Whenever a message arrives on topic {user_topic} with status = 'paid', "
                                      "load orders from the PostgreSQL table shop.orders into the ClickHouse "
                                      f"table analytics.kt_{u}")
    assert spec["trigger"] == {"kind": "kafka", "topic": user_topic, "filter": "status = 'paid'"}
    return pid


def produce(dep, topic: str, *orders: dict) -> None:
    p = Producer(client_conf(dep.settings))
    for order in orders:
        p.produce(topic, key=f"customer-{order.get('customer', order['order_id'])}".encode(),
                  value=json.dumps(order).encode())
    assert p.flush(30) == 0


def kafka_runs(dep, pid) -> list[dict]:
    return [e["payload"] for e in events(dep, pid)
            if e["type"] == "RunRequested" and e["payload"]["trigger_kind"] == "kafka"]


def run_orders(dep, pid) -> list:
    return sorted(json.loads(r["params_json"]).get("order_id") for r in kafka_runs(dep, pid))


def wait_orders(dep, pid, expected: list, timeout: float = 60) -> None:
    wait_for(lambda: run_orders(dep, pid) == expected, timeout=timeout, interval=0.5,
             what=f"runs for orders {expected} of {pid}")
    time.sleep(3)  # and nothing more comes
    assert run_orders(dep, pid) == expected


def outcome(dep, pid, command_id) -> dict:
    return wait_for(lambda: next((e for e in events(dep, pid) if e["envelope"].get("causation_id") == command_id),
                                 None), timeout=30, what=f"the outcome of {command_id}")


def test_each_matching_message_triggers_one_run_also_after_a_restart(dep, user_topic, paid_orders):
    pid = paid_orders
    produce(dep, user_topic, {"order_id": 1, "status": "paid", "amount": 120.5},
            {"order_id": 2, "status": "pending", "amount": 80},
            {"order_id": 3, "status": "paid", "amount": 15, "customer": 1})
    wait_orders(dep, pid, [1, 3])
    for run in kafka_runs(dep, pid):
        params = json.loads(run["params_json"])
        assert params["status"] == "paid" and params["_kafka"]["topic"] == user_topic
        k = params["_kafka"]
        assert run["run_id"] == kafka_ids(pid, user_topic, k["partition"], k["offset"])[0]
        assert k["key"] == f"customer-{params.get('customer', params['order_id'])}"
    assert next(e for e in events(dep, pid) if e["type"] == "RunRequested")["envelope"]["actor"] == "trigger:kafka"

    os.killpg(running(dep.settings)["kafka-trigger"], signal.SIGKILL)
    wait_for(lambda: running(dep.settings).get("kafka-trigger") is None, timeout=30, what="kafka-trigger gone")
    dep.start_worker("kafka-trigger")
    wait_for(lambda: dep.log("kafka-trigger").count("kafka-trigger caught up") == 2, timeout=60,
             what="the restarted kafka-trigger to fold the log")
    time.sleep(5)
    assert run_orders(dep, pid) == [1, 3]  # nothing again after the restart
    produce(dep, user_topic, {"order_id": 4, "status": "paid", "amount": 1})
    wait_orders(dep, pid, [1, 3, 4])  # and it goes on


def test_messages_sent_while_paused_never_trigger(dep, user_topic, paid_orders):
    pid = paid_orders
    assert outcome(dep, pid, send_command(dep, "PausePipeline", pid, {}))["type"] == "PipelinePaused"
    produce(dep, user_topic, {"order_id": 5, "status": "paid", "customer": 9})
    time.sleep(2)
    assert outcome(dep, pid, send_command(dep, "ResumePipeline", pid, {}))["type"] == "PipelineResumed"
    # Same key, same partition: the run for 6 proves 5 was read, and skipped, before it.
    produce(dep, user_topic, {"order_id": 6, "status": "paid", "customer": 9})
    wait_orders(dep, pid, [1, 3, 4, 6])


def test_delete_stops_a_pipeline_and_another_on_the_same_topic_goes_on(dep, user_topic, paid_orders):
    u = uuid.uuid4().hex[:8]
    every, spec = draft_and_deploy(dep, f"Whenever a message arrives on topic {user_topic}, load orders from the "
                                        f"PostgreSQL table shop.orders into the ClickHouse table analytics.kt2_{u}")
    assert spec["trigger"] == {"kind": "kafka", "topic": user_topic, "filter": None}
    assert outcome(dep, paid_orders, send_command(dep, "DeletePipeline", paid_orders, {}))["type"] == "PipelineDeleted"
    produce(dep, user_topic, {"order_id": 7, "status": "paid"}, {"order_id": 8, "status": "refunded"})
    wait_orders(dep, every, [7, 8])  # no filter; and nothing from before its deploy
    assert run_orders(dep, paid_orders) == [1, 3, 4, 6]
    rejected = [e for e in events(dep, paid_orders) if e["type"] == "CommandRejected"
                and "TriggerRun" in e["payload"]["command_type"]]
    assert not rejected, rejected  # it was not even asked
