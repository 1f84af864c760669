"""The flow-state rule."""

from jfr_lib.states import JobState as J
from jfr_lib.states import flow_state


def test_flow_states():
    assert flow_state([J.COMPLETED, J.COMPLETED]) == "COMPLETED"
    assert flow_state([J.COMPLETED, J.FAILED, J.RUNNING]) == "FAILED"
    # REMOTE_ERROR is transient (``jfr job retry``): the flow still runs
    assert flow_state([J.COMPLETED, J.REMOTE_ERROR]) == "RUNNING"
    assert flow_state([J.REMOTE_ERROR, J.WAITING]) == "RUNNING"
    assert flow_state([J.REMOTE_ERROR, J.FAILED]) == "FAILED"
    assert flow_state([J.READY, J.WAITING]) == "READY"
    assert flow_state([J.COMPLETED, J.READY]) == "RUNNING"
    assert flow_state([J.SUBMITTED, J.WAITING]) == "RUNNING"
    assert flow_state([J.PAUSED, J.WAITING]) == "PAUSED"
    assert flow_state([J.COMPLETED, J.STOPPED]) == "STOPPED"
    assert flow_state([J.WAITING]) == "WAITING"
    assert flow_state(["COMPLETED", "USER_STOPPED"]) == "STOPPED"


def test_stopped_parents_count_as_done_for_on_missing_children():
    from jfr_lib.states import DONE_STATES

    assert {J.STOPPED, J.USER_STOPPED, J.FAILED, J.COMPLETED} <= DONE_STATES
    assert J.REMOTE_ERROR not in DONE_STATES and J.WAITING not in DONE_STATES
