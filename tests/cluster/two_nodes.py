"""A two-node Ray cluster on this machine, run in its own process by ``test_two_nodes.py``.

Ray allows one cluster per driver process, and the test session already runs its own local
Ray, so this script is started as a separate process (DESIGN.md §9). It starts a head node
without call slots, joins it as ``opendeep up`` does with ``RAY_ADDRESS`` (which must warn that
no call can start), adds a node that declares call slots, joins again, and places an actor
with the CallActor's options. It prints what it saw as one JSON object. The nodes listen on
the machine's own address, not loopback: a driver joining a head it reaches by a loopback
address is sent to the machine's address by Ray, which a loopback-only head does not answer.

Usage: ``python -m tests.cluster.two_nodes TEMP_DIR``
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import uuid
from typing import Any

import ray
from ray.cluster_utils import Cluster

from actors.options import CALL_SLOT, call_actor_options
from opendeep.settings import Settings
from serve_app.up import _start_ray


@ray.remote
class WhereAmI:
    """Stands in for a CallActor: placed with its options, it tells which node it runs on."""

    def node(self) -> str:
        return str(ray.get_runtime_context().get_node_id())


def _join(settings: Settings) -> str:
    """Join the cluster as ``opendeep up`` does; what it printed."""
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        _start_ray(settings)
    return said.getvalue()


def main(temp_dir: str) -> dict[str, Any]:
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            "temp_dir": temp_dir,
        },
    )
    seen: dict[str, Any] = {}
    try:
        settings = Settings(ray_address=cluster.address, ray_namespace="opendeep-cluster")
        seen["joined_without_slots"] = _join(settings)
        ray.shutdown()
        calls_node = cluster.add_node(num_cpus=1, resources={CALL_SLOT: 2})
        cluster.wait_for_nodes()
        seen["joined_with_slots"] = _join(settings)
        seen["call_slot_node"] = calls_node.node_id
        seen["head_node"] = cluster.head_node.node_id  # type: ignore[attr-defined]
        options = call_actor_options(uuid.uuid4(), settings.ray_namespace)
        where = WhereAmI.options(**options).remote()  # type: ignore[attr-defined]
        seen["call_placed_on"] = ray.get(where.node.remote(), timeout=120)
        ray.kill(where)
    finally:
        ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call]  # Ray ships it unannotated
    return seen


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])), flush=True)
