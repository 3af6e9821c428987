"""A real Slurm cluster on this machine, for the cluster tests: munged, slurmctld and two slurmd nodes.
(``python tests/slurm_cluster.py`` holds one up for trying things by hand.)

Each node is a network namespace made here, joined to this machine's namespace through a bridge (the
controller's side: slurmctld, and a Grain head, listen on the bridge's address), so a job sees only its
node's address (``hostname -I``) and reaches the head the way a compute node reaches a login node.
Debian's ``slurm-wlm`` and ``munge`` packages, run as root (``scripts/test.sh`` installs them when it
can). ``cluster()`` starts everything, waits (bounded) until every node is idle, and on exit,
even on failure, cancels every job, stops each daemon it started by pid (SIGTERM, a bounded wait,
SIGKILL), deletes the namespaces and links and removes its directory. A munged that already answers
is used and left alone; otherwise one of its own runs on a socket of its own, with a key of its own.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import netns
import psutil

#: The Debian commands the cluster needs (packages slurm-wlm and munge).
COMMANDS = ("slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel", "munged", "munge", "unmunge")
UP_TIMEOUT = 30.0
STOP_GRACE = 5.0
NODE_MEMORY_MB = 2048  # what each node offers; a job asking more (grain's memory, in GB) is refused


@dataclass(frozen=True)
class Node:
    name: str
    namespace: str
    address: str


@dataclass
class SlurmCluster:
    conf: Path
    directory: Path
    controller: str  #: the controller's address on the nodes' network; a head listens there too
    nodes: list[Node]
    partition: str
    env: dict[str, str] = field(default_factory=dict)  #: what every client command needs: SLURM_CONF
    up_seconds: float = 0.0  #: from start to every node idle

    def command(self, *args: str, timeout: float = 15, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A Slurm client command against this cluster; it must succeed unless ``check`` is false."""
        result = subprocess.run(
            args, check=False, capture_output=True, text=True, timeout=timeout, env={**os.environ, **self.env}
        )
        if check:
            assert result.returncode == 0, f"{' '.join(args)} exited with {result.returncode}: {result.stderr.strip()}"
        return result

    def table(self, *args: str) -> dict[str, str]:
        """A client command's two columns (``--noheader``, ``--format=%X %Y``): first -> second."""
        return dict(line.split() for line in self.command(*args).stdout.split("\n") if line.strip())

    def node_states(self) -> dict[str, str]:
        return self.table("sinfo", "--noheader", "--Node", "--format=%N %T")

    def jobs(self) -> dict[str, str]:
        """Every job the controller still knows to be pending, running or completing: id -> state."""
        return self.table("squeue", "--noheader", "--format=%i %T")

    def job_nodes(self) -> dict[str, str]:
        """Every job in squeue: id -> the node(s) it runs on."""
        return self.table("squeue", "--noheader", "--format=%i %N")

    def wait_for_no_jobs(self, timeout: float, jobs: Iterable[str] | None = None) -> None:
        """Until none of ``jobs`` (None: no job at all) is in squeue, at most ``timeout`` seconds."""
        wanted = None if jobs is None else set(jobs)
        deadline = time.monotonic() + timeout
        while left := {job: state for job, state in self.jobs().items() if wanted is None or job in wanted}:
            assert time.monotonic() < deadline, f"jobs still in squeue after {timeout:g} s: {left}"
            time.sleep(0.2)

    def processes_on(self, node: Node) -> dict[int, str]:
        """The live processes inside ``node``'s namespace (slurmd's included): pid -> name."""
        found = {}
        for pid in netns.ip("netns", "pids", node.namespace).stdout.split():
            try:
                process = psutil.Process(int(pid))
                if process.status() != psutil.STATUS_ZOMBIE:
                    found[process.pid] = process.name()
            except psutil.NoSuchProcess:
                pass
        return found

    def logs(self) -> str:
        """The tails of the daemons' logs, for a failure message."""
        return netns.log_tails(self.directory, 2000)


def why_unavailable() -> str | None:
    """Why no cluster can run here (one line), or None."""
    return missing_commands() or netns.why_unavailable()


def missing_commands() -> str | None:
    """Which Slurm and munge commands are not installed here, and how to get them; None: none."""
    missing = [command for command in COMMANDS if shutil.which(command) is None]
    if not missing:
        return None
    how = "as root, `bash scripts/test.sh` installs them" if os.geteuid() == 0 else "run as root"
    return f"{', '.join(missing)} not installed (Debian: apt-get install slurm-wlm munge; {how})"


@contextmanager
def cluster(node_count: int = 2, up_timeout: float = UP_TIMEOUT) -> Iterator[SlurmCluster]:
    """The cluster, up with every node idle; everything it started is gone on exit. Where none can
    run, ``netns.Unavailable`` says why: the commands are checked here, namespaces by ``netns.Network``."""
    reason = missing_commands()
    if reason is not None:
        raise netns.Unavailable(reason)
    started = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="gst-slurm-"))
    directory.chmod(0o755)  # munged wants its socket's directory searchable by all
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, directory, ignore_errors=True)
        net = stack.enter_context(netns.Network())
        subnet = free_subnet()
        controller = f"{subnet}.1"
        bridge = net.name("br")
        net.bridge(bridge, f"{controller}/24")
        nodes = []
        for number in range(1, node_count + 1):
            name = f"n{number}"
            node = Node(name, net.namespace(name), f"{subnet}.{10 + number}")
            net.veth(
                netns.End(None, net.name(f"{name}h"), bridge=bridge),
                netns.End(node.namespace, net.name(name), f"{node.address}/24"),
            )
            nodes.append(node)

        auth_info = ""
        if not munge_answers(None):
            auth_info = f"AuthInfo=socket={start_munged(stack, directory)}\n"
        conf = directory / "slurm.conf"
        # slurmctld listens on every address of this machine's namespace: a port free on all of them.
        conf.write_text(slurm_conf(directory, controller, netns.free_port("0.0.0.0"), nodes, auth_info))
        made = SlurmCluster(conf, directory, controller, nodes, "test", {"SLURM_CONF": str(conf)})
        env = {**os.environ, **made.env}
        deadline = started + up_timeout
        limit = f"; a Slurm cluster has {up_timeout:g} s in all to come up"

        command = ["slurmctld", "-D", "-f", str(conf)]
        log = directory / "slurmctld.out"
        slurmctld = stack.enter_context(netns.started(None, command, log, env, signal.SIGTERM, STOP_GRACE))
        daemons = {"slurmctld": slurmctld}
        what = f"slurmctld to answer `scontrol ping`{limit}"
        netns.wait_until(lambda: controller_up(made), deadline - time.monotonic(), what, daemons, made.logs, 0.1)
        for node in nodes:
            command = ["slurmd", "-D", "-N", node.name, "-f", str(conf)]
            log = directory / f"slurmd-{node.name}.out"
            daemons[f"slurmd {node.name}"] = stack.enter_context(
                netns.started(node.namespace, command, log, env, signal.SIGTERM, STOP_GRACE)
            )
        # Cancel every job before the daemons stop (the ExitStack runs this first).
        stack.callback(cancel_all, made)
        names = ", ".join(node.name for node in nodes)
        netns.wait_until(
            lambda: all_idle(made),
            deadline - time.monotonic(),
            lambda: f"{names} to be idle in sinfo (now: {made.node_states()}){limit}",
            daemons,
            made.logs,
            0.1,
        )
        made.up_seconds = time.monotonic() - started
        yield made


def controller_up(cluster: SlurmCluster) -> bool:
    return "is UP" in cluster.command("scontrol", "ping", timeout=10, check=False).stdout


def all_idle(cluster: SlurmCluster) -> bool:
    states = cluster.node_states()
    return sorted(states) == sorted(node.name for node in cluster.nodes) and set(states.values()) == {"idle"}


def cancel_all(cluster: SlurmCluster) -> None:
    """Cancel every job and wait (bounded) for them to leave; the daemons stop next in any case."""
    try:
        jobs = cluster.jobs()
        if jobs:
            cluster.command("scancel", *jobs)
            cluster.wait_for_no_jobs(STOP_GRACE * 2)
    except (AssertionError, OSError, subprocess.TimeoutExpired):
        pass  # the controller is gone or stuck: stopping the daemons and deleting the nodes ends the jobs


def munge_answers(socket_path: Path | None) -> bool:
    """Whether a munged answers on ``socket_path`` (None: the default socket)."""
    where = ["--socket", str(socket_path)] if socket_path else []
    try:
        encoded = subprocess.run(["munge", "-n", *where], check=False, capture_output=True, timeout=5)
        if encoded.returncode != 0:
            return False
        decoded = subprocess.run(["unmunge", *where], input=encoded.stdout, check=False, capture_output=True, timeout=5)
    except subprocess.TimeoutExpired:
        return False
    return decoded.returncode == 0


def start_munged(stack: ExitStack, directory: Path) -> Path:
    """A munged of our own, with a key of its own, on a socket in ``directory``; stopped on exit."""
    key = directory / "munge.key"
    key.touch(mode=0o600)
    key.write_bytes(secrets.token_bytes(1024))
    socket_path = directory / "munge.socket"
    command = [
        "munged",
        "--foreground",
        f"--key-file={key}",
        f"--socket={socket_path}",
        f"--pid-file={directory / 'munged.pid'}",
        f"--log-file={directory / 'munged.log'}",
        f"--seed-file={directory / 'munged.seed'}",
    ]
    munged = stack.enter_context(
        netns.started(None, command, directory / "munged.out", os.environ, signal.SIGTERM, STOP_GRACE)
    )
    what = f"munged to answer on {socket_path}"
    out = directory / "munged.out"
    netns.wait_until(
        lambda: munge_answers(socket_path), 10, what, {"munged": munged}, lambda: out.read_text(errors="replace")
    )
    return socket_path


def slurm_conf(directory: Path, controller: str, port: int, nodes: list[Node], auth_info: str) -> str:
    node_lines = "".join(
        f"NodeName={node.name} NodeAddr={node.address} NodeHostname={node.name} CPUs=2 "
        f"RealMemory={NODE_MEMORY_MB} State=UNKNOWN\n"
        for node in nodes
    )
    names = ",".join(node.name for node in nodes)
    # slurmctld runs only on a host of the name SlurmctldHost gives: this machine's, at the bridge's address.
    return f"""# A test cluster: everything runs as root on this machine, each slurmd in its own network namespace.
ClusterName=gst
SlurmctldHost={socket.gethostname().split(".")[0]}({controller})
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
{auth_info}ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SlurmctldPort={port}
SlurmdPort=6818
StateSaveLocation={directory}/state
SlurmctldPidFile={directory}/slurmctld.pid
SlurmctldLogFile={directory}/slurmctld.log
SlurmdSpoolDir={directory}/spool-%n
SlurmdPidFile={directory}/slurmd-%n.pid
SlurmdLogFile={directory}/slurmd-%n.log
# Quick turnarounds for tests: SIGKILL 5 s after a cancelled job's SIGTERM, finished jobs forgotten soon.
KillWait=5
MinJobAge=5
InactiveLimit=0
SlurmdTimeout=60
MessageTimeout=5
{node_lines}PartitionName=test Nodes={names} Default=YES MaxTime=INFINITE State=UP
"""


def free_subnet() -> str:
    """A 10.232.N /24 that no interface or route of this machine uses (a concurrent run has its own)."""
    used = netns.ip("-o", "addr").stdout + netns.ip("route").stdout
    candidates = [n for n in range(256) if not re.search(rf"\b10\.232\.{n}\.", used)]
    assert candidates, "no free 10.232.N.0/24 subnet for the test cluster"
    return f"10.232.{secrets.choice(candidates)}"


def main() -> None:
    """``python tests/slurm_cluster.py``: a cluster to try things on by hand, until Ctrl-C or SIGTERM."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM too tears it all down
    with cluster() as made:
        print(f"export SLURM_CONF={made.conf}  # up in {made.up_seconds:.1f} s")
        print(f"controller (a head listens here): {made.controller}; partition: {made.partition}")
        for node in made.nodes:
            print(f"node {node.name}: {node.address}; run in it: nsenter --net=/run/netns/{node.namespace} ...")
        print("Ctrl-C (or SIGTERM to this pid) cancels every job and stops it all.", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
