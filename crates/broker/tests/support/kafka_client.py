"""A Kafka client in its own OS process for the broker's group tests (confluent-kafka,
which bundles its own librdkafka): a consumer group member the tests can SIGKILL, or
one admin query. Every event is one JSON line on stdout, flushed at once.

    kafka_client.py member BOOTSTRAP GROUP TOPIC SESSION_MS [INSTANCE_ID]
    kafka_client.py groups BOOTSTRAP GROUP...
"""

import json
import signal
import sys

from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient


def emit(**event):
    print(json.dumps(event), flush=True)


def member(bootstrap, group, topic, session_ms, instance_id=None):
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": instance_id or "dynamic-member",
        "session.timeout.ms": session_ms,
        "heartbeat.interval.ms": 500,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "log_level": 3,
    }
    if instance_id:
        config["group.instance.id"] = instance_id
    consumer = Consumer(config)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))

    def assigned(_, partitions):
        emit(event="assigned", partitions=sorted(p.partition for p in partitions))

    def revoked(_, partitions):
        emit(event="revoked", partitions=sorted(p.partition for p in partitions))

    consumer.subscribe([topic], on_assign=assigned, on_revoke=revoked)
    while not stopping:
        message = consumer.poll(0.2)
        if message is None:
            continue
        if message.error():
            emit(event="error", error=str(message.error()))
            continue
        emit(
            event="record",
            partition=message.partition(),
            offset=message.offset(),
            key=(message.key() or b"").decode(),
        )
        try:
            # Commit each record before taking the next: what this member emitted as
            # committed is what a member taking its partitions over must start after.
            consumer.commit(message=message, asynchronous=False)
            emit(event="committed", partition=message.partition(), offset=message.offset())
        except KafkaException as error:
            emit(event="commit_failed", error=str(error))
    consumer.close()
    emit(event="closed")


def groups(bootstrap, *group_ids):
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    listed = admin.list_consumer_groups().result(timeout=30)
    emit(
        event="listed",
        groups=[
            {"id": g.group_id, "state": g.state.name if g.state else None}
            for g in listed.valid
        ],
        errors=[str(e) for e in listed.errors],
    )
    for group_id, future in admin.describe_consumer_groups(list(group_ids)).items():
        described = future.result(timeout=30)
        emit(
            event="described",
            id=group_id,
            state=described.state.name,
            protocol_type="consumer" if described.is_simple_consumer_group is False else "",
            members=[
                {
                    "member_id": m.member_id,
                    "client_id": m.client_id,
                    "host": m.host,
                    "instance_id": m.group_instance_id,
                    "partitions": sorted(
                        tp.partition for tp in (m.assignment.topic_partitions if m.assignment else [])
                    ),
                }
                for m in described.members
            ],
        )


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "member":
        member(args[0], args[1], args[2], int(args[3]), args[4] if len(args) > 4 else None)
    elif mode == "groups":
        groups(args[0], *args[1:])
    else:
        sys.exit(f"unknown mode {mode}")
