"""Lifecycle tables: exactly the moves of DESIGN.md §3 are legal, terminal states stay put."""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from db.states import (
    CALL_TRANSITIONS,
    HITL_TRANSITIONS,
    TASK_TRANSITIONS,
    TERMINAL_CALL_STATUSES,
    TERMINAL_TASK_STATUSES,
    CallStatus,
    HitlStatus,
    IllegalTransitionError,
    TaskStatus,
    can_transition,
    transition,
    transition_call,
    transition_hitl,
    transition_task,
)

pytestmark = pytest.mark.unit

T, C, H = TaskStatus, CallStatus, HitlStatus

# The moves as DESIGN.md §3 writes them, typed out again so a table edit must be deliberate.
DESIGN_TASK_MOVES: dict[TaskStatus, set[TaskStatus]] = {
    T.PENDING: {T.IN_PROGRESS, T.CANCELLED, T.FAILED},
    T.IN_PROGRESS: {T.ANALYZING, T.RETRY_SCHEDULED, T.CANCELLED},
    T.ANALYZING: {T.COMPLETED, T.RETRY_SCHEDULED, T.PENDING_USER_INFO, T.FAILED, T.CANCELLED},
    T.RETRY_SCHEDULED: {T.IN_PROGRESS, T.CANCELLED, T.FAILED},
    T.PENDING_USER_INFO: {T.RETRY_SCHEDULED, T.CANCELLED, T.FAILED},
    T.COMPLETED: set(),
    T.FAILED: set(),
    T.CANCELLED: set(),
}
DESIGN_CALL_MOVES: dict[CallStatus, set[CallStatus]] = {
    C.CREATED: {C.DIALING, C.FAILED},
    C.DIALING: {C.ANSWERED, C.NOT_ANSWERED, C.FAILED},
    C.ANSWERED: {C.ENDED, C.FAILED},
    C.ENDED: set(),
    C.NOT_ANSWERED: set(),
    C.FAILED: set(),
}
DESIGN_HITL_MOVES: dict[HitlStatus, set[HitlStatus]] = {
    H.PENDING: {H.ANSWERED, H.TIMED_OUT, H.CANCELLED},
    H.TIMED_OUT: {H.ANSWERED_LATE, H.EXPIRED},
    H.ANSWERED: set(),
    H.CANCELLED: set(),
    H.ANSWERED_LATE: set(),
    H.EXPIRED: set(),
}

Checker = Callable[[Any, Any], Any]
LIFECYCLES: list[tuple[str, type[enum.Enum], Mapping[Any, frozenset[Any]], Checker]] = [
    ("task", TaskStatus, TASK_TRANSITIONS, transition_task),
    ("call", CallStatus, CALL_TRANSITIONS, transition_call),
    ("hitl", HitlStatus, HITL_TRANSITIONS, transition_hitl),
]


def _all_pairs() -> list[tuple[str, enum.Enum, enum.Enum, bool]]:
    pairs = []
    for kind, enum_type, table, _ in LIFECYCLES:
        for current, target in itertools.product(list(enum_type), repeat=2):
            pairs.append((kind, current, target, target in table[current]))
    return pairs


def _checker(kind: str) -> Checker:
    for name, _, _, check in LIFECYCLES:
        if name == kind:
            return check
    raise AssertionError(kind)


def test_tables_match_the_design_exactly() -> None:
    assert {k: set(v) for k, v in TASK_TRANSITIONS.items()} == DESIGN_TASK_MOVES
    assert {k: set(v) for k, v in CALL_TRANSITIONS.items()} == DESIGN_CALL_MOVES
    assert {k: set(v) for k, v in HITL_TRANSITIONS.items()} == DESIGN_HITL_MOVES


def test_every_status_has_a_table_row() -> None:
    for _, enum_type, table, _ in LIFECYCLES:
        assert set(table) == set(enum_type)


@pytest.mark.parametrize(
    ("kind", "current", "target", "legal"),
    _all_pairs(),
    ids=lambda v: getattr(v, "value", str(v)),
)
def test_each_move_passes_if_and_only_if_it_is_in_the_table(
    kind: str, current: enum.Enum, target: enum.Enum, legal: bool
) -> None:
    check = _checker(kind)
    if legal:
        assert check(current, target) is target
        assert transition(current, target) is target
    else:
        with pytest.raises(IllegalTransitionError) as info:
            check(current, target)
        assert info.value.kind == kind
        assert (info.value.current, info.value.target) == (current, target)
        assert f"{current.value} -> {target.value}" in str(info.value)
        with pytest.raises(IllegalTransitionError):
            transition(current, target)


def test_terminal_task_states_are_completed_failed_cancelled_and_have_no_exits() -> None:
    assert {T.COMPLETED, T.FAILED, T.CANCELLED} == TERMINAL_TASK_STATUSES
    for status in TERMINAL_TASK_STATUSES:
        assert not TASK_TRANSITIONS[status]
        for target in TaskStatus:
            assert not can_transition(TASK_TRANSITIONS, status, target)


def test_terminal_call_states_have_no_exits() -> None:
    assert {C.ENDED, C.NOT_ANSWERED, C.FAILED} == TERMINAL_CALL_STATUSES
    for status in TERMINAL_CALL_STATUSES:
        for target in CallStatus:
            with pytest.raises(IllegalTransitionError):
                transition_call(status, target)


def test_illegal_transition_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="illegal task transition COMPLETED -> PENDING"):
        transition_task(T.COMPLETED, T.PENDING)


def test_transition_refuses_moves_between_different_lifecycles() -> None:
    with pytest.raises(TypeError):
        transition(T.PENDING, C.DIALING)


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(["task", "call", "hitl"]),
    data=st.data(),
)
def test_random_moves_stay_in_the_enum_and_never_leave_a_terminal_state(
    kind: str, data: st.DataObject
) -> None:
    _, enum_type, table, _ = next(x for x in LIFECYCLES if x[0] == kind)
    check = _checker(kind)
    statuses = list(enum_type)
    state = data.draw(st.sampled_from(statuses), label="start")
    targets = data.draw(st.lists(st.sampled_from(statuses), max_size=40), label="targets")
    for target in targets:
        was_terminal = not table[state]
        try:
            state = check(state, target)
        except IllegalTransitionError:
            assert target not in table[state]
            continue
        assert not was_terminal, f"left terminal state via {target}"
        assert state in statuses
        assert isinstance(state, enum_type)
