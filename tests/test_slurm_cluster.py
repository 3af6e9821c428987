"""The Slurm cluster the cluster tests run on: real daemons, nodes in network namespaces.

The cluster (``tests/slurm_cluster.py``: munged, slurmctld, two slurmd nodes, each in a network
namespace) is shared by the session. These tests prove it is what it claims before the smoke-run
tests (``tests/test_cluster_smoke.py``) put Grain's own ``grain up`` on it.
"""

from __future__ import annotations

import os
from pathlib import Path

from conftest import require_slurm_cluster
from slurm_cluster import SlurmCluster

require_slurm_cluster()

#: Bounded wait for the test jobs to leave squeue, with margin for a loaded machine.
LEAVE_TIMEOUT = 30.0


def test_the_cluster_is_up_with_every_node_idle(slurm_cluster: SlurmCluster) -> None:
    assert slurm_cluster.up_seconds < 30
    assert slurm_cluster.node_states() == {node.name: "idle" for node in slurm_cluster.nodes}
    assert os.environ["SLURM_CONF"] == str(slurm_cluster.conf)


def test_a_job_runs_on_each_node_in_its_namespace(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    jobs = {}
    for node in slurm_cluster.nodes:
        output = tmp_path / f"{node.name}.out"
        submitted = slurm_cluster.command(
            "sbatch", "--parsable", f"--nodelist={node.name}", f"--output={output}", "--wrap", "hostname -I"
        )
        jobs[submitted.stdout.strip()] = (node, output)
    slurm_cluster.wait_for_no_jobs(LEAVE_TIMEOUT, jobs)
    for node, output in jobs.values():
        assert output.read_text().split() == [node.address], f"job on {node.name}"
