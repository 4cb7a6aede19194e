"""Ids are the order of the delivery log: newest first must mean last made first."""

from webhook_operator import ids


def test_ids_made_in_one_millisecond_sort_in_the_order_they_were_made() -> None:
    made = [ids.event_id(1_700_000_000.0) for _ in range(1000)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_ids_order_by_their_time_first() -> None:
    later = ids.delivery_id(1_700_000_001.0)
    earlier = ids.delivery_id(1_700_000_000.0)
    assert earlier < later
    assert earlier.startswith("dlv_")
    assert len(earlier) == len("dlv_") + 26


def test_the_time_part_is_the_millisecond_given() -> None:
    # Cursors are built from an id's time part alone (store.base), so it must not drift.
    assert ids.event_id(1_700_000_000.0)[:14] == ids.event_id(1_700_000_000.0)[:14]
    assert ids.event_id(1_700_000_000.0)[:14] != ids.event_id(1_700_000_000.001)[:14]
