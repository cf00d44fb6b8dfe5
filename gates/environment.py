"""The environment and hostfile of a job script (design brief section 6). Pure.

The same on every gate: the script runs on the first node of the allocation with

- ``SKYPORT_JOB_ID``, ``SKYPORT_JOB_NAME``, ``SKYPORT_ATTEMPT``, ``SKYPORT_RESTART_COUNT``,
  ``SKYPORT_GATE``, ``SKYPORT_WORKDIR``;
- ``SKYPORT_NUM_NODES``, ``SKYPORT_NODE_RANK`` (0: the script runs on the first node),
  ``SKYPORT_NODELIST`` (node names, comma separated, rank order), ``SKYPORT_HOSTFILE`` (an MPI
  hostfile: one ``<host> slots=<tasks per node>`` line per node, rank order);
- ``SKYPORT_TASKS_PER_NODE``, ``SKYPORT_NTASKS``, ``SKYPORT_CPUS_PER_TASK``,
  ``OMP_NUM_THREADS`` (= cpus per task);
- ``CUDA_VISIBLE_DEVICES``: the GPU indices allocated on the first node (empty: none);
- ``SKYPORT_CHECKPOINT_DIR``: a directory in the work directory that is staged back.

The user's ``spec.env`` comes on top of a small pass-through of the gate's own environment
(``PATH``, ``HOME``, locale, ...); Sky Port's variables win (``SKYPORT_*`` names are refused
in specs already).
"""

from __future__ import annotations

from collections.abc import Mapping

from schemas.gate import StartRun

PASS_THROUGH = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "TZ", "TMPDIR")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def hostfile_text(run: StartRun) -> str:
    """One ``<host> slots=<tasks_per_node>`` line per allocated node, in rank order."""
    slots = run.spec.tasks_per_node
    return "".join(f"{node.host} slots={slots}\n" for node in run.allocation.nodes)


def job_environment(
    run: StartRun,
    *,
    workdir: str,
    hostfile: str,
    checkpoint_dir: str,
    host_env: Mapping[str, str],
) -> dict[str, str]:
    """The complete environment of the job script."""
    spec = run.spec
    nodes = run.allocation.nodes
    gpus = nodes[0].gpus if nodes else ()
    env = {k: host_env[k] for k in PASS_THROUGH if k in host_env}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(spec.env)
    env.update(
        {
            "SKYPORT_JOB_ID": run.job_id,
            "SKYPORT_JOB_NAME": spec.name,
            "SKYPORT_ATTEMPT": str(run.attempt),
            "SKYPORT_RESTART_COUNT": str(run.restart_count),
            "SKYPORT_GATE": run.allocation.gate,
            "SKYPORT_WORKDIR": workdir,
            "SKYPORT_NUM_NODES": str(len(nodes)),
            "SKYPORT_NODE_RANK": "0",
            "SKYPORT_NODELIST": ",".join(n.node for n in nodes),
            "SKYPORT_HOSTFILE": hostfile,
            "SKYPORT_TASKS_PER_NODE": str(spec.tasks_per_node),
            "SKYPORT_NTASKS": str(spec.tasks_per_node * len(nodes)),
            "SKYPORT_CPUS_PER_TASK": str(spec.cpus_per_task),
            "OMP_NUM_THREADS": str(spec.cpus_per_task),
            "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus),
            "SKYPORT_CHECKPOINT_DIR": checkpoint_dir,
        }
    )
    return env
