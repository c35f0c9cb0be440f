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
