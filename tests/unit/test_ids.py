"""Event ids are RFC 9562 UUIDv7: time-ordered and unique at tens of thousands a second."""

import uuid

from storeedge.ids import idempotency_key, new_event_id


def test_ids_are_uuid7_with_the_current_millisecond():
    ms = 1_795_000_000_123
    u = uuid.UUID(new_event_id(now_ns=ms * 1_000_000 + 999))
    assert u.version == 7 and u.variant == uuid.RFC_4122
    assert u.int >> 80 >= ms


def test_ids_sort_in_creation_order_and_never_repeat():
    ids = [new_event_id() for _ in range(50_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_idempotency_keys_are_stable_and_readable():
    assert idempotency_key("bj-1", "sale", "T-9") == "bj-1:sale:T-9"


def test_an_event_gets_its_id_on_first_read_and_keeps_it():
    import dataclasses
    import pickle

    from storeedge.events import ShelfWeight

    reading = ShelfWeight(store_id="s", source="d", received_ts=1.0, lane="A1", grams=1.0)
    first = reading.event_id
    assert uuid.UUID(first).version == 7
    assert reading.event_id == first == reading.to_dict()["event_id"]
    assert dataclasses.replace(reading, grams=2.0).event_id == first
    assert pickle.loads(pickle.dumps(reading)).event_id == first
    given = ShelfWeight(store_id="s", source="d", received_ts=1.0, lane="A1", grams=1.0,
                        event_id="01a2195a-157f-7394-a38f-0cc6a2f56952")
    assert given.event_id == "01a2195a-157f-7394-a38f-0cc6a2f56952"
    later = ShelfWeight(store_id="s", source="d", received_ts=1.0, lane="A1", grams=1.0)
    assert later.event_id > first  # ids sort in the order they are first read
