"""How results look: tables and text for people, JSON for programs. Pure: values in, str out."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from schemas.commands import GateOffer, JobDetail, PlanReport, UsageReport
from schemas.jobs import JobSummary

_encoder = msgspec.json.Encoder()


def to_json(value: Any) -> str:
    """One JSON document (msgspec structs, lists, dicts), no trailing newline."""
    return _encoder.encode(value).decode()


def when(at: float | None) -> str:
    if not at:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def duration(seconds: float) -> str:
    """Slurm style: [D-]HH:MM:SS."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{text}" if days else text


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; no trailing blanks."""
    body = [list(header), *[list(r) for r in rows]]
    widths = [max(len(row[i]) for row in body) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in body
    ]
    return "\n".join(lines)


def state_text(job: JobSummary) -> str:
    return f"{job.state.value}({job.reason})" if job.reason else job.state.value


JOB_HEADER = ("JOBID", "NAME", "USER", "STATE", "NODES", "GATE", "RESTARTS", "EXIT", "SUBMITTED")


def job_row(job: JobSummary) -> list[str]:
    return [
        job.job_id,
        job.name,
        job.owner,
        state_text(job),
        str(job.nodes),
        job.gate or "-",
        str(job.restart_count),
        "-" if job.exit_code is None else str(job.exit_code),
        when(job.submitted_at),
    ]


def jobs_table(jobs: Sequence[JobSummary]) -> str:
    if not jobs:
        return "no jobs"
    return table(JOB_HEADER, (job_row(j) for j in jobs))


def job_detail(detail: JobDetail) -> str:
    """``skyport show``: the summary, the request, where it ran, outputs and the history."""
    s, spec = detail.summary, detail.spec
    lines = [
        f"Job {s.job_id}  {s.name}",
        f"  owner:      {s.owner}",
        f"  state:      {state_text(s)}" + (f"  {s.detail}" if s.detail else ""),
        f"  submitted:  {when(s.submitted_at)}",
        f"  started:    {when(s.started_at)}",
        f"  ended:      {when(s.ended_at)}",
        f"  exit code:  {'-' if s.exit_code is None else s.exit_code}",
        f"  restarts:   {s.restart_count}",
        f"  priority:   {s.priority}",
        f"  request:    {spec.nodes} node(s) x {spec.tasks_per_node} task(s) x "
        f"{spec.cpus_per_task} cpu(s), {spec.memory_mb_per_node} MB, "
        f"{spec.gpus_per_node} gpu(s) per node, time limit {duration(spec.time_limit_s)}",
        f"  gate:       {s.gate or spec.gate or '-'}",
    ]
    if detail.allocation is not None:
        nodes = ", ".join(
            f"{n.node}@{n.host}({n.cpus} cpu, {n.memory_mb} MB"
            + (f", gpus {','.join(map(str, n.gpus))}" if n.gpus else "")
            + ")"
            for n in detail.allocation.nodes
        )
        lines.append(f"  allocation: {detail.allocation.gate}: {nodes}")
    if spec.inputs:
        lines.append("  inputs:     " + ", ".join(i.name for i in spec.inputs))
    if spec.outputs:
        lines.append("  outputs:    " + ", ".join(spec.outputs))
    if detail.outputs:
        lines.append("  staged out: " + ", ".join(f"{o.name} ({o.size} B)" for o in detail.outputs))
    lines.append("")
    lines.append("History:")
    rows = (
        [str(t.seq), when(t.at), t.event, t.state.value, t.reason or "-", t.detail]
        for t in detail.history
    )
    lines.append(table(("SEQ", "AT", "EVENT", "STATE", "REASON", "DETAIL"), rows))
    return "\n".join(lines)


def offers_table(gates: Sequence[GateOffer]) -> str:
    """One row per node: free/total cpus, memory and GPUs, price per node-hour, gate state."""
    if not gates:
        return "no gates have reported"
    rows = []
    for gate in gates:
        state = "up" if gate.live else f"down since {when(gate.last_seen)}"
        for offer in gate.nodes:
            n = offer.node
            rows.append(
                [
                    gate.gate,
                    n.name,
                    f"{n.cpus - offer.used_cpus}/{n.cpus}",
                    f"{n.memory_mb - offer.used_memory_mb}/{n.memory_mb}",
                    f"{n.gpus - offer.used_gpus}/{n.gpus}",
                    f"{n.price_per_hour:g}",
                    state,
                ]
            )
    header = ["GATE", "NODE", "CPUS", "MEMORY_MB", "GPUS", "PRICE/H", "STATE"]
    return table(header, rows)


def usage_table(report: UsageReport) -> str:
    """Spend per user and account, with a total; the period on the first line."""
    period = f"usage from {when(report.since) if report.since else 'the start'}"
    period += f" to {when(report.until) if report.until else 'now'}"
    if not report.totals:
        return f"{period}: nothing used" + _budgets_text(report)
    rows = [
        [t.owner, t.account, str(t.jobs), f"{t.node_hours:.4f}", f"{t.cost:.2f}"]
        for t in report.totals
    ]
    hours = sum(t.node_hours for t in report.totals)
    cost = sum(t.cost for t in report.totals)
    rows.append(
        ["total", "", str(sum(t.jobs for t in report.totals)), f"{hours:.4f}", f"{cost:.2f}"]
    )
    header = ["USER", "ACCOUNT", "JOBS", "NODE_HOURS", "COST"]
    return period + "\n" + table(header, rows) + _budgets_text(report)


def _budgets_text(report: UsageReport) -> str:
    """The caps that apply, and what their current periods have used of them."""
    if not report.budgets:
        return ""
    rows = [
        [
            b.scope,
            b.name,
            f"{b.limit:g}/{b.period}",
            "the start" if b.period == "total" else when(b.since),
            f"{b.spent:.2f}",
            f"{max(0.0, b.limit - b.spent):.2f}",
        ]
        for b in report.budgets
    ]
    header = ["BUDGET", "NAME", "LIMIT", "SINCE", "SPENT", "LEFT"]
    return "\n\n" + table(header, rows)


def plan_text(report: PlanReport, now: float) -> str:
    """A dry run: the verdict on the first line, then one row per gate."""
    if report.reason is None and report.gate is not None:
        head = f"would start now on gate {report.gate}"
    elif report.start_at is not None and report.gate is not None:
        bound = "not before" if report.start_is_bound else "at"
        wait = duration(max(0.0, report.start_at - now))
        head = f"would wait ({report.reason}), start on gate {report.gate} {bound} "
        head += f"{when(report.start_at)} (in {wait})"
    else:
        head = f"would wait ({report.reason})"
    lines = [head]
    if report.detail and report.reason is not None:
        lines.append(f"  {report.detail}")
    if report.gate is not None:
        lines.append(
            f"  {report.price_per_hour:.2f} an hour, {report.estimated_cost:.2f} at its time limit"
        )
    lines.append(f"  {report.ahead} job(s) ahead of it in the queue")
    rows = [
        [
            o.gate,
            o.verdict.value,
            "-" if o.price_per_hour is None else f"{o.price_per_hour:.2f}",
            "-" if o.estimated_cost is None else f"{o.estimated_cost:.2f}",
            o.detail,
        ]
        for o in report.options
    ]
    if rows:
        lines.append(table(["GATE", "VERDICT", "PRICE/H", "EST_COST", "WHY"], rows))
    return "\n".join(lines)
