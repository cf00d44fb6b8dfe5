"""The job environment and hostfile (design brief section 6). Pure."""

from __future__ import annotations

from gates.environment import hostfile_text, job_environment
from schemas.jobs import JobSpec
from tests.gates.conftest import start_run

PATHS = {
    "workdir": "/r/workdir",
    "hostfile": "/r/hostfile",
    "checkpoint_dir": "/r/workdir/checkpoint",
}


def test_hostfile_has_one_line_per_node_with_the_tasks_per_node_as_slots() -> None:
    run = start_run(JobSpec(script="true", nodes=3, tasks_per_node=4))
    assert hostfile_text(run) == "localhost slots=4\n" * 3


def test_environment_describes_the_allocation_to_the_script() -> None:
    spec = JobSpec(script="true", nodes=2, tasks_per_node=2, cpus_per_task=8, env={"A": "1"})
    run = start_run(spec, gpus=(2, 3))
    env = job_environment(run, **PATHS, host_env={"PATH": "/bin", "SECRET": "x"})
    assert env["SKYPORT_JOB_ID"] == run.job_id
    assert env["SKYPORT_NUM_NODES"] == "2"
    assert env["SKYPORT_NODE_RANK"] == "0"
    assert env["SKYPORT_NODELIST"] == "local-0,local-1"
    assert env["SKYPORT_HOSTFILE"] == "/r/hostfile"
    assert env["SKYPORT_NTASKS"] == "4"
    assert env["OMP_NUM_THREADS"] == "8"
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3"
    assert env["SKYPORT_CHECKPOINT_DIR"] == "/r/workdir/checkpoint"
    assert env["SKYPORT_RESTART_COUNT"] == "0"
    assert env["A"] == "1"
    assert env["PATH"] == "/bin"
    assert "SECRET" not in env  # only a small, named part of the gate's environment passes


def test_no_gpus_allocated_hides_every_gpu() -> None:
    env = job_environment(start_run(JobSpec(script="true")), **PATHS, host_env={})
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["PATH"]  # a default PATH when the gate has none


def test_user_variables_cannot_override_skyport_or_omp_variables() -> None:
    spec = JobSpec(script="true", cpus_per_task=2, env={"OMP_NUM_THREADS": "64"})
    env = job_environment(start_run(spec), **PATHS, host_env={})
    assert env["OMP_NUM_THREADS"] == "2"
