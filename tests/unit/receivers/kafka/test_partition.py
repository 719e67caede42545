"""PartitionState: the commit point never passes a record whose consume() has not returned."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from agent.receivers.kafka.partition import PartitionState

TP = TopicPartition("t", 3)


def test_the_commit_point_waits_for_the_oldest_record() -> None:
    state = PartitionState(TP)
    assert state.commit_point() is None and state.pending_commit() is None
    for offset in (10, 11, 12):
        state.start(offset)
    assert state.committed == 10 and state.pending_commit() is None
    state.finish(12)
    state.finish(11)
    assert state.commit_point() == 10 and state.in_flight == 1
    state.finish(10)
    assert state.commit_point() == 13 and state.pending_commit() == 13 and state.in_flight == 0


def test_gaps_in_offsets_are_passed_only_through_started_records() -> None:
    state = PartitionState(TP, committed=0)
    state.start(5)
    state.start(9)
    state.finish(9)
    assert state.commit_point() == 5
    state.finish(5)
    assert state.commit_point() == 10


def test_committed_points_are_not_committed_again() -> None:
    state = PartitionState(TP)
    state.start(0)
    state.finish(0)
    state.committed = 1
    assert state.pending_commit() is None


def test_offsets_must_increase() -> None:
    state = PartitionState(TP)
    state.start(4)
    with pytest.raises(ValueError, match="offset 3 started after 4"):
        state.start(3)
