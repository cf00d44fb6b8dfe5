"""One run from StartRun to RunEnded: stage in, launch, watch, stop, stage out (I/O).

A supervisor resumes from the run's record, so the same code serves a fresh run and a run
adopted after a gate restart (or after its supervisor failed, see ``gates.runner``); each
phase reports its event again when resumed (the ids are deterministic, see
``gates.reporter``). The record is saved before each step that cannot be undone (launch,
signal), so a restarted gate knows what happened. Cancelling a supervisor (the gate stops)
leaves the job's processes running. The bus being down delays reports and output, never the
time limit or a stop: output that could not be published is read again at the next poll.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

import msgspec

from bus.connection import Bus
from gates import records, staging
from gates.base import ExitStatus, Gate, LaunchError, RunPaths, StagingError
from gates.environment import hostfile_text, job_environment
from gates.logs import OutputTail
from gates.outcome import StopCause, Verdict, verdict
from gates.records import Phase, RunRecord, StopInfo
from gates.reporter import RETRY_S, Note, RunReporter
from gates.settings import RunnerSettings
from schemas.gate import StopRun
from schemas.jobs import FailReason, RunOutcome, StagedOutput
from schemas.subjects import LogStream

log = logging.getLogger("skyport.gates.supervisor")


class RunSupervisor:
    """Drives one run; ``request_stop`` may be called at any time from the command loop."""

    def __init__(
        self,
        bus: Bus,
        gate: Gate,
        paths: RunPaths,
        record: RunRecord,
        settings: RunnerSettings,
        fresh: bool = False,
    ) -> None:
        """``fresh``: the run was recorded by this gate process just now (nothing of it can
        exist yet on disk or in the gate beyond its record); else it is resumed from disk."""
        self.bus = bus
        self.fresh = fresh
        self.gate = gate
        self.paths = paths
        self.record = record
        self.settings = settings
        self.start = record.start
        self.report = RunReporter(bus, gate.name, record.start)
        self._stop_wanted = asyncio.Event()
        self._stop_cmd: StopRun | None = None
        self._output_failing = False

    def request_stop(self, cmd: StopRun) -> None:
        """Ask for SIGTERM → grace → SIGKILL; the first request wins."""
        if self._stop_cmd is None:
            self._stop_cmd = cmd
            self._stop_wanted.set()

    @property
    def stop_requested(self) -> StopRun | None:
        return self._stop_cmd

    # -- the phases ------------------------------------------------------------------------

    async def run(self) -> None:
        """Run from the recorded phase to the end."""
        try:
            if self.record.phase is Phase.STAGING_IN:
                started = not self.fresh and await self._recover_launch()
                if not started:
                    await self._stage_in_and_launch()
            if self.record.phase is Phase.RUNNING:
                await self._watch()
            if self.record.phase is Phase.STAGING_OUT:
                await self._stage_out()
        except BaseException:  # cancelled, or failed: whoever resumes the run reports again
            self.report.abandon()
            raise

    async def _stage_in_and_launch(self) -> None:
        if self._stop_cmd is not None:
            await self._end(self._cancelled_before_start(self._stop_cmd))
            return
        inputs = self.start.spec.inputs
        if inputs:  # a run with nothing to stage in goes straight to running
            self.report.staging_in(f"{len(inputs)} input file(s)")
            names = ", ".join(i.name for i in inputs[:10])
            self.report.note(Note.STAGING_IN, f"staging in {len(inputs)} file(s): {names}")
        try:
            staging.prepare_workdir(self.paths)
            await staging.stage_in(self.bus, self.start.owner, inputs, self.paths.workdir)
        except StagingError as err:
            await self._end(Verdict(RunOutcome.FAILED, FailReason.STAGING, None, err.detail))
            return
        if self._stop_cmd is not None:
            await self._end(self._cancelled_before_start(self._stop_cmd))
            return
        await self._launch()

    @staticmethod
    def _cancelled_before_start(cmd: StopRun) -> Verdict:
        return Verdict(RunOutcome.CANCELLED, None, None, f"stopped ({cmd.reason}) before it ran")

    async def _launch(self) -> None:
        env = job_environment(
            self.start,
            workdir=str(self.paths.workdir),
            hostfile=str(self.paths.hostfile),
            checkpoint_dir=str(self.paths.checkpoint),
            host_env=os.environ,
        )
        # The few small writes of a launch stay on the event loop: a worker-thread hand-off
        # waits for the GIL (up to 5 ms under load) and cost a quarter of the throughput.
        self._write_launch_files()
        try:
            handle = await self.gate.launch(self.paths, env)
        except LaunchError as err:
            await self._end(Verdict(RunOutcome.FAILED, FailReason.LAUNCH, None, err.detail))
            return
        # Not saved: the record stays STAGING_IN on disk and a restarted gate finds the run
        # with ``Gate.recover`` (one write less per run).
        self.record = msgspec.structs.replace(
            self.record, phase=Phase.RUNNING, handle=handle, started_at=handle.started_at
        )

    def _write_launch_files(self) -> None:
        self.paths.script.write_text(self.start.spec.script)
        self.paths.hostfile.write_text(hostfile_text(self.start))

    async def _recover_launch(self) -> bool:
        """A run resumed before its record says it runs: the previous gate may have started
        it (a launch is not recorded, to save a write per run), so ask the gate plugin;
        whether it was started."""
        handle = await self.gate.recover(self.paths)
        if handle is None:
            log.info("run %s was never started; starting it now", self.paths.root.name)
            return False
        # in memory only, as after a launch
        self.record = msgspec.structs.replace(
            self.record, phase=Phase.RUNNING, handle=handle, started_at=handle.started_at
        )
        return True

    async def _watch(self) -> None:
        """Wait for the exit, enforcing the time limit and stops, streaming the output."""
        nodes = ",".join(n.node for n in self.start.allocation.nodes)
        self.report.started(f"on {nodes}")
        handle = self.record.handle
        if handle is None:  # a record in this phase always has one; be safe on damage
            self._save(phase=Phase.STAGING_OUT, exit=ExitStatus(code=None))
            return
        if not self.fresh:  # a fresh run got its stop mark from the runner, and has no output
            mark = records.stop_mark(self.paths)
            if mark is not None:
                self.request_stop(mark)
        offsets = {} if self.fresh else records.log_offsets(self.paths)
        tails = {
            stream: OutputTail(path, offsets.get(stream.value, 0))
            for stream, path in (
                (LogStream.STDOUT, self.paths.stdout),
                (LogStream.STDERR, self.paths.stderr),
            )
        }
        exited = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._tail(tails, exited))
            waiter = tg.create_task(self.gate.wait(handle, self.paths))
            try:
                await self._enforce(waiter)
            finally:
                exited.set()
        # Not saved: a restarted gate finds the exit status in the run directory anyway.
        self.record = msgspec.structs.replace(
            self.record, phase=Phase.STAGING_OUT, exit=waiter.result()
        )

    async def _enforce(self, waiter: asyncio.Task[ExitStatus]) -> None:
        stop = self.record.stop
        if stop is None:
            started = self.record.started_at or time.time()
            deadline = started + self.start.spec.time_limit_s
            stop_task = asyncio.ensure_future(self._stop_wanted.wait())
            try:
                await asyncio.wait(
                    {waiter, stop_task},
                    timeout=max(0.0, deadline - time.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                stop_task.cancel()
            if waiter.done():
                return
            stop = self._begin_stop()
            await self._signal(signal.SIGTERM)
            self.report.note(Note.TERM, f"{stop.why}: SIGTERM, SIGKILL in {stop.grace_s:g} s")
        remaining = stop.term_at + stop.grace_s - time.time()
        await asyncio.wait({waiter}, timeout=max(0.0, remaining))
        if not waiter.done():
            await self._signal(signal.SIGKILL)
            self.report.note(Note.KILL, f"still running {stop.grace_s:g} s after SIGTERM: SIGKILL")
            await waiter

    def _begin_stop(self) -> StopInfo:
        cmd = self._stop_cmd
        now = time.time()
        if cmd is not None:
            stop = StopInfo(
                cause=StopCause.CANCEL, why=cmd.reason, grace_s=cmd.grace_s, term_at=now
            )
        else:
            grace = self.settings.timeout_grace_s
            stop = StopInfo(cause=StopCause.TIMEOUT, why="time limit", grace_s=grace, term_at=now)
        self._save(stop=stop)
        return stop

    async def _signal(self, sig: signal.Signals) -> None:
        handle = self.record.handle
        if handle is not None:
            await self.gate.signal(handle, self.paths, sig)

    async def _stage_out(self) -> None:
        exit_code = self.record.exit.code if self.record.exit else None
        if self.start.spec.outputs or staging.has_checkpoint(self.paths):
            self.report.staging_out(exit_code)  # only when there is something to stage
        staged, problems, truncated = await staging.stage_out(
            self.bus, self.start.owner, self.start.job_id, self.start.spec.outputs, self.paths
        )
        stop = self.record.stop
        result = verdict(
            exit_code,
            stop.cause if stop else None,
            stop.why if stop else "",
            self.start.spec.time_limit_s,
        )
        if problems:
            result = result._replace(
                detail=f"{result.detail}; outputs missing: {'; '.join(problems)}"
            )
        if truncated:
            result = result._replace(
                detail=f"{result.detail}; outputs truncated: {'; '.join(truncated)}"
            )
        await self._end(result, staged)

    async def _end(self, result: Verdict, staged: list[StagedOutput] | None = None) -> None:
        self.report.ended(result, tuple(staged or ()))
        self.report.note(Note.ENDED, f"{result.outcome.value}: {result.detail}")
        await self.report.drain()
        self.record = msgspec.structs.replace(self.record, phase=Phase.ENDED)
        records.save_ended(self.paths, self.record)
        log.info("run %s ended: %s (%s)", self.paths.root.name, result.outcome, result.detail)

    # -- output streaming ------------------------------------------------------------------

    async def _tail(self, tails: dict[LogStream, OutputTail], exited: asyncio.Event) -> None:
        """Publish new output every poll interval, and everything left once the run exits."""
        while not exited.is_set():
            await self._publish_output(tails, final=False)
            try:
                await asyncio.wait_for(exited.wait(), self.settings.log_poll_s)
            except TimeoutError:
                pass
        await self._flush_output(tails)

    async def _flush_output(self, tails: dict[LogStream, OutputTail]) -> None:
        """All the output the run left, one bounded read at a time, however long it takes
        the bus to take it."""
        ends = {stream: tail.size() for stream, tail in tails.items()}
        failures = 0
        while any(tail.offset < ends[stream] for stream, tail in tails.items()):
            moved, ok = await self._publish_output(tails, final=True)
            if ok and not moved:
                return  # the file shrank under us: there is nothing more to read
            if not ok:
                await asyncio.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
                failures += 1

    async def _publish_output(
        self, tails: dict[LogStream, OutputTail], final: bool
    ) -> tuple[bool, bool]:
        """Publish one bounded read of each stream; return (anything went out, no failure).
        An offset moves only past what was acknowledged, so a failure loses nothing."""
        moved = False
        try:
            for stream, tail in tails.items():
                for chunk in tail.pending(final):
                    await self.report.output(stream, chunk.offset, chunk.nbytes, chunk.text)
                    tail.advance(chunk)
                    moved = True
        except Exception as exc:  # bus edge: the run goes on, the next poll tries again
            if not self._output_failing:
                log.warning("run %s: output not published yet: %r", self.paths.root.name, exc)
            self._output_failing = True
            return moved, False
        finally:
            if moved:
                records.save_log_offsets(self.paths, {s.value: t.offset for s, t in tails.items()})
        if self._output_failing:
            log.info("run %s: output published again", self.paths.root.name)
            self._output_failing = False
        return moved, True

    def _save(self, **changes: object) -> None:
        self.record = msgspec.structs.replace(self.record, **changes)
        records.save(self.paths, self.record)
