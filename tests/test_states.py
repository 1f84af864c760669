"""The flow-state rule."""

from jfr_lib.states import JobState as J
from jfr_lib.states import flow_state


def test_flow_states():
    assert flow_state([J.COMPLETED, J.COMPLETED]) == "COMPLETED"
    assert flow_state([J.COMPLETED, J.FAILED, J.RUNNING]) == "FAILED"
    assert flow_state([J.COMPLETED, J.REMOTE_ERROR]) == "FAILED"
    assert flow_state([J.READY, J.WAITING]) == "READY"
    assert flow_state([J.COMPLETED, J.READY]) == "RUNNING"
    assert flow_state([J.SUBMITTED, J.WAITING]) == "RUNNING"
    assert flow_state([J.PAUSED, J.WAITING]) == "PAUSED"
    assert flow_state([J.COMPLETED, J.STOPPED]) == "STOPPED"
    assert flow_state([J.WAITING]) == "WAITING"
    assert flow_state(["COMPLETED", "USER_STOPPED"]) == "STOPPED"
