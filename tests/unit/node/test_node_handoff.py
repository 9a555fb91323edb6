"""The agent's side of the hand-off: which pod and container an Allocate serves."""

from __future__ import annotations

import pytest
from node_support import NODE, UUIDS, pod

from kantaloupe.api import keys
from kantaloupe.api.handoff import HandoffPhase
from kantaloupe.api.ids import make_slot_id
from kantaloupe.node import handoff


def slots(*pairs: tuple[int, int]) -> list[str]:
    return [make_slot_id(UUIDS[g], r) for g, r in pairs]


def test_candidates_keep_binding_pods_of_this_node_oldest_first() -> None:
    pods = [
        pod("new", [[(0, 1000, 10)]], since=200),
        pod("old", [[(1, 1000, 10)]], since=100),
        pod("done", [[(2, 1000, 10)]], phase=HandoffPhase.DONE),
        pod("elsewhere", [[(3, 1000, 10)]], node="other"),
    ]
    assert [c.name for c in handoff.candidates(pods, NODE)] == ["old", "new"]


def test_malformed_hand_off_is_skipped() -> None:
    broken = pod("broken", [[(0, 1000, 10)]])
    annotations = dict(broken.metadata.annotations or {})
    annotations[keys.HANDOFF] = "{not json"
    import msgspec

    broken = msgspec.structs.replace(
        broken, metadata=msgspec.structs.replace(broken.metadata, annotations=annotations)
    )
    assert handoff.candidates([broken], NODE) == []


def test_find_matches_exact_gpu_set_of_next_unserved_container() -> None:
    pool = handoff.candidates(
        [
            pod("a", [[(0, 1000, 10)], [], [(1, 1000, 10), (2, 1000, 10)]], served=(0,)),
        ],
        NODE,
    )
    assert handoff.find(pool, [UUIDS[0]]) is None
    found = handoff.find(pool, [UUIDS[2], UUIDS[1]])
    assert found is not None and found[1] == 2


def test_serving_the_last_gpu_container_finishes_the_hand_off() -> None:
    (c,) = handoff.candidates([pod("a", [[(0, 1, 1)], [], [(1, 1, 1)]])], NODE)
    first = handoff.serve(c, 0)
    assert first.handoff.phase == HandoffPhase.BINDING and first.handoff.served == (0,)
    second = handoff.serve(first, 2)
    assert second.handoff.phase == HandoffPhase.DONE and second.handoff.served == (0, 2)


def test_fail_records_the_message() -> None:
    (c,) = handoff.candidates([pod("a", [[(0, 1, 1)]])], NODE)
    failed = handoff.fail(c, "disk full")
    assert failed.handoff.phase == HandoffPhase.FAILED and failed.handoff.message == "disk full"


def test_priority_comes_from_the_container_limits() -> None:
    (c,) = handoff.candidates([pod("a", [[(0, 1, 1)], [(1, 1, 1)]], priorities={1: "1"})], NODE)
    assert c.priorities == (None, 1)


@pytest.mark.parametrize(
    ("available", "must", "size", "expected"),
    [
        pytest.param(
            slots((0, 0), (0, 1), (1, 0), (1, 1), (2, 0)),
            [],
            2,
            slots((1, 0), (2, 0)),
            id="scheduler-choice",
        ),
        pytest.param(
            slots((0, 0), (1, 1), (1, 0), (2, 3)),
            slots((2, 3)),
            2,
            slots((2, 3), (1, 0)),
            id="must-include-kept",
        ),
    ],
)
def test_prefer_picks_slots_on_the_chosen_gpus(
    available: list[str], must: list[str], size: int, expected: list[str]
) -> None:
    pool = handoff.candidates([pod("a", [[(1, 1, 1), (2, 1, 1)]])], NODE)
    assert handoff.prefer(pool, available, must, size) == expected


def test_prefer_without_a_hand_off_spreads_over_distinct_gpus() -> None:
    available = slots((0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0))
    chosen = handoff.prefer([], available, [], 2)
    assert chosen == slots((0, 0), (1, 0))
    assert len(handoff.prefer([], available, [], 5)) == 5


def test_requested_uuids_rejects_malformed_ids() -> None:
    with pytest.raises(ValueError, match="not <uuid>::<replica>"):
        handoff.requested_uuids(["nonsense"])
