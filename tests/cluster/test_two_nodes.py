"""OpenDeep on a Ray cluster of two nodes (``ray.cluster_utils.Cluster``, in its own process).

Joining a cluster with ``RAY_ADDRESS`` reports its nodes and call slots and warns when no node
can carry a call; a CallActor's options place it on the node that declares call slots, not on
the head that does not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]


def test_calls_run_on_the_node_with_call_slots_and_a_cluster_without_any_is_a_warning() -> None:
    temp = tempfile.mkdtemp(prefix="odc", dir="/tmp")  # short: Ray's socket paths are limited
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "OPENDEEP_"))}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tests.cluster.two_nodes", temp],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    bare = seen["joined_without_slots"]
    assert "(1 node, 0 call slots)" in bare
    assert "WARNING: no node of the cluster declares call slots" in bare
    assert "(2 nodes, 2 call slots)" in seen["joined_with_slots"]
    assert "WARNING" not in seen["joined_with_slots"]
    assert seen["call_placed_on"] == seen["call_slot_node"] != seen["head_node"]
