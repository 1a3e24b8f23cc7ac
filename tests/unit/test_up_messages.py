"""What `opendeep up` says about Ray: where it runs, and a clear warning when no call can start."""

from __future__ import annotations

from serve_app.up import describe_ray


def test_a_local_ray_names_its_call_slots_and_warns_of_nothing() -> None:
    assert describe_ray(None, nodes=1, call_slots=20) == [
        "  Ray: started locally with 20 call slots."
    ]


def test_a_joined_cluster_names_its_nodes_and_call_slots() -> None:
    (line,) = describe_ray("ray://head:10001", nodes=3, call_slots=60)
    assert line == "  Ray: joined the cluster at ray://head:10001 (3 nodes, 60 call slots)."


def test_a_cluster_without_call_slots_is_a_warning_that_says_what_to_do() -> None:
    said, warning = describe_ray("auto", nodes=1, call_slots=0)
    assert "(1 node, 0 call slots)" in said
    assert warning.startswith("  WARNING: no node of the cluster declares call slots")
    assert "no call can start" in warning and """--resources='{"call_slot": 20}'""" in warning


def test_no_local_call_slots_points_at_the_setting() -> None:
    _, warning = describe_ray(None, nodes=1, call_slots=0)
    assert "OPENDEEP_CALL_SLOTS is 0" in warning and "set OPENDEEP_CALL_SLOTS" in warning
