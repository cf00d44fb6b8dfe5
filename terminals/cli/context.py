"""What every command needs: the state directory, the user, and a way to reach core.

Light on purpose: request/reply goes through ``bus.quick`` (no ``nats`` import); commands
that stream or move files open the async client themselves.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TypeVar

from bus.deployment import DeploymentError, DeploymentInfo, StateDir
from schemas.commands import (
    Accepted,
    AnyCommand,
    AnyQuery,
    JobDetail,
    JobPage,
    OfferList,
    PlanJob,
    PlanReport,
    UsageReport,
)
from schemas.subjects import SchedulerQueryName, command_subject, query_subject, scheduler_query
from terminals.client import requests
from terminals.client.errors import ClientError, NotRunningError
from terminals.client.locate import Credentials, running

R = TypeVar("R", Accepted, JobPage, JobDetail, OfferList, UsageReport, PlanReport)


class Context:
    """The resolved global options of one ``skyport`` invocation. (A plain class: importing
    ``dataclasses`` would cost every command ~20 ms.)"""

    def __init__(
        self,
        state: StateDir,
        user: str,
        autostart: bool = True,
        credentials_path: Path | None = None,
    ) -> None:
        self.state = state
        self.user = user
        self.autostart = autostart
        self.credentials_path = credentials_path  # a credentials file chosen explicitly
        self._info: DeploymentInfo | None = None

    def credentials(self) -> Credentials:
        if self.credentials_path is not None:
            return Credentials(self.user, self.credentials_path)
        return Credentials(self.user, self.state.seed_path(self.user))

    def deployment(self) -> DeploymentInfo:
        """The running deployment; started (detached) first when none is running."""
        if self._info is not None:
            return self._info
        info = running(self.state)
        if info is None:
            if not self.autostart:
                raise NotRunningError(f"Sky Port is not running for {self.state.root}")
            from terminals.cli.deployment import start_detached

            print(f"skyport: starting Sky Port in {self.state.root}", file=sys.stderr)
            info = start_detached(self.state, self.user, [])
        self._info = info
        return info

    def ask(self, msg: AnyCommand | AnyQuery | PlanJob, kind: type[R], timeout: float = 10.0) -> R:
        """Send a command or query to core (a dry run to the scheduler) over the quick path;
        the reply as ``kind``."""
        from bus.quick import QuickConnectError, QuickError, QuickTimeoutError, request
        from bus.tls import client_context

        info = self.deployment()
        if isinstance(msg, PlanJob):
            subject = scheduler_query(SchedulerQueryName.PLAN)
        elif isinstance(msg, AnyQuery):
            subject = query_subject(msg)
        else:
            subject = command_subject(msg)
        try:
            signer, roster = self.credentials().signer(), self.state.load_roster()
            tls = client_context(self.state)
        except DeploymentError as exc:
            raise ClientError(str(exc)) from exc
        try:
            reply = request(info.nats_url, signer, roster, subject, msg, timeout, tls=tls)
        except (QuickConnectError, QuickTimeoutError) as exc:
            raise NotRunningError(str(exc)) from exc
        except QuickError as exc:
            raise ClientError(str(exc)) from exc
        return requests.expect(reply, kind)
