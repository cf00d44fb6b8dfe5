"""Builders of job events, gate heartbeats and views for the scheduler tests."""

from __future__ import annotations

import itertools
from typing import Any

from scheduler.view import View
from schemas.commands import Placement
from schemas.events import (
    AnyJobEvent,
    JobDependencyResolved,
    JobScheduled,
    JobSubmitted,
    JobUsageRecorded,
)
from schemas.gate import GateCapacity
from schemas.ids import GateName, JobId, MessageId, PlanId, UserName
from schemas.jobs import Allocation, Dependency, JobSpec, JobState, NodeAllocation, NodeShape

NOW = 10_000.0
_ids = itertools.count(1)


def event_id() -> MessageId:
    return MessageId(f"ev-{next(_ids)}")


def node(
    name: str, cpus: int = 8, memory_mb: int = 16_000, gpus: int = 0, price: float = 0.0
) -> NodeShape:
    return NodeShape(
        name=name,
        cpus=cpus,
        memory_mb=memory_mb,
        gpus=gpus,
        host=f"host-{name}",
        price_per_hour=price,
    )


def capacity(
    gate: str, *nodes: NodeShape, at: float = NOW, interval_s: float = 10.0
) -> GateCapacity:
    return GateCapacity(
        event_id=event_id(), at=at, gate=GateName(gate), nodes=nodes, interval_s=interval_s
    )


def spec(**fields: Any) -> JobSpec:
    return JobSpec(script="#!/bin/sh\ntrue\n", **fields)


def submitted(job_id: str, owner: str = "alice", at: float = NOW, **fields: Any) -> JobSubmitted:
    return JobSubmitted(
        event_id=event_id(),
        job_id=JobId(job_id),
        at=at,
        owner=UserName(owner),
        spec=spec(**fields),
    )


def resolved(job_id: str, dependency: Dependency, ended_as: JobState) -> JobDependencyResolved:
    """What core records on ``job_id`` when ``dependency``'s job ends as ``ended_as``."""
    return JobDependencyResolved(
        event_id=event_id(),
        job_id=JobId(job_id),
        at=NOW,
        dependency=dependency.job_id,
        ended_as=ended_as,
        satisfied=dependency.satisfied_by(ended_as),
        detail=f"job {dependency.job_id} is {ended_as}",
    )


def used(
    job_id: str,
    cost: float,
    owner: str = "alice",
    account: str | None = None,
    node_hours: float = 1.0,
    at: float = NOW,
    attempt: int = 1,
) -> JobUsageRecorded:
    """The usage record of one attempt (``account`` None: the owner's personal one)."""
    return JobUsageRecorded(
        event_id=event_id(),
        job_id=JobId(job_id),
        at=at,
        attempt=attempt,
        owner=UserName(owner),
        account=account or owner,
        gate=GateName("local"),
        started_at=at - node_hours * 3600,
        ended_at=at,
        nodes=1,
        node_hours=node_hours,
        cost=cost,
    )


def scheduled(placement: Placement, at: float = NOW, price_per_hour: float = 0.0) -> JobScheduled:
    return JobScheduled(
        event_id=event_id(),
        job_id=placement.job_id,
        at=at,
        attempt=placement.attempt,
        allocation=placement.allocation,
        plan_id=PlanId("plan"),
        price_per_hour=price_per_hour,
    )


def allocation_on(gate: str, *shares: tuple[NodeShape, int, int, tuple[int, ...]]) -> Allocation:
    return Allocation(
        gate=GateName(gate),
        nodes=tuple(
            NodeAllocation(node=n.name, host=n.host, cpus=c, memory_mb=m, gpus=g)
            for n, c, m, g in shares
        ),
    )


def view_of(*gates: GateCapacity, events: tuple[AnyJobEvent, ...] = ()) -> View:
    view = View()
    for gate in gates:
        view.apply_gate_event(gate)
    for event in events:
        view.apply_job_event(event)
    return view
