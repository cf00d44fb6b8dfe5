"""The keeper: the parent of every local job of one gate, so exit statuses outlive the gate.

One keeper serves one runs directory (``<gate dir>/runs``). The local gate starts it on first
use (``python -m gates.local.keeper RUNS_DIR``, in a new session, with PATH as its whole
environment) and talks to it on the Unix socket ``RUNS_DIR/keeper.sock`` (mode 0600; a peer
of another uid is refused). It

- starts a job on request: the argv the gate sends (the script, or bash and the script), in
  the run's work directory, as the leader of a new session and process group, with exactly
  the environment the gate sends, stdin on /dev/null, stdout and stderr appended to the run's
  files; it writes ``job.pid`` (pid and start time) before it answers;
- reaps it (SIGCHLD), kills what is left of its process group, writes ``exit`` (the status as
  a shell reports it: 128 + n for signal n; 126 or 127 when the job could not be started, the
  reason then in ``stderr``) and tells every connected gate;
- tells a restarted gate what it knows of a run;
- exits once no gate is connected and no job of its runs is left.

A launch costs the keeper one posix_spawn (vfork + exec) and two small writes; the bash
shell that used to supervise each job cost two process starts more (about 3 ms of CPU per
job on this class of machine). If the keeper itself is killed its jobs run on (each leads
its own session), but their exit statuses are lost, and the gate reports them as such.

Only the standard library and msgspec: this process must start fast and stay small.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import msgspec

SOCKET = "keeper.sock"
LOCK = "keeper.lock"
PID_FILE = "keeper.pid"
MAX_LINE = 4 * 1024 * 1024  # a launch carries the job's environment (at most 256 KiB)
FIRST_GATE_WAIT_S = 30.0  # a keeper no gate ever reaches goes away
LOCK_WAIT_S = 2.0  # a keeper that is exiting releases the lock well within this
SEND_TIMEOUT_S = 5.0  # a gate that reads nothing for this long is disconnected

RunState = Literal["running", "over", "unknown", "refused"]


class Launch(msgspec.Struct, frozen=True, tag="launch"):
    """Start ``argv`` as the job of the run in directory ``run`` (idempotent per run); if
    the kernel cannot execute ``argv[0]`` as it is (ENOEXEC: a script without ``#!``),
    start ``otherwise`` instead."""

    run: str
    argv: list[str]
    env: dict[str, str]
    otherwise: list[str] = []


class Ask(msgspec.Struct, frozen=True, tag="ask"):
    """What does the keeper know of the run in directory ``run``?"""

    run: str


class Status(msgspec.Struct, frozen=True, tag="status"):
    """The answer to a Launch or an Ask: ``running`` (pid, start ticks, start time),
    ``over`` (its ``code``), ``unknown`` (never started by this keeper) or ``refused``."""

    run: str
    state: RunState
    pid: int = 0
    ticks: int = 0
    at: float = 0.0
    code: int | None = None
    detail: str = ""


class Exited(msgspec.Struct, frozen=True, tag="exited"):
    """Sent unasked when a job is over and its ``exit`` file is written."""

    run: str
    code: int


ToKeeper = Launch | Ask
FromKeeper = Status | Exited


def start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` (clock ticks since boot, /proc/<pid>/stat field 22); None if
    there is no such process or it is a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] == b"Z":
        return None
    return int(fields[19])


def shell_status(wait_status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128 + n for signal n."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


@contextlib.contextmanager
def in_dir(directory: Path) -> Iterator[str]:
    """A short path to ``directory`` (``/proc/self/fd/N``): socket paths are limited to 107
    bytes, and state directories can be deeper than that."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with open(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def read_exit(run: Path) -> int | None:
    try:
        return int((run / "exit").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()


class Keeper:
    """The keeper's state and handlers; ``serve`` is the event loop around them."""

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = runs_dir
        self.running: dict[int, Path] = {}
        self.by_run: dict[Path, Status] = {}
        self.conns: dict[int, _Conn] = {}
        self.ever_connected = False
        self._decoder = msgspec.json.Decoder(ToKeeper)
        self._encoder = msgspec.json.Encoder()

    # -- requests --------------------------------------------------------------------------

    def handle(self, msg: ToKeeper) -> Status:
        run = Path(msg.run)
        if run.parent != self.runs_dir or not run.name or run.name.startswith("."):
            return Status(msg.run, "refused", detail="not a run directory of this keeper")
        known = self.by_run.get(run)
        if known is not None:
            return known
        code = read_exit(run)
        if code is not None:
            return Status(msg.run, "over", code=code)
        if isinstance(msg, Ask):
            return Status(msg.run, "unknown")
        return self.launch(run, msg)

    def launch(self, run: Path, msg: Launch) -> Status:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        try:
            out = os.open(run / "stdout", flags, 0o600)
            err = os.open(run / "stderr", flags, 0o600)
        except OSError as exc:
            return Status(msg.run, "refused", detail=f"cannot open the output files: {exc}")
        # posix_spawn (vfork + exec in glibc) is a fraction of Popen's cost; it has no chdir
        # action, so the keeper (single-threaded) changes its own directory around it.
        try:
            os.chdir(run / "workdir")
            try:
                try:
                    pid = _spawn(msg.argv, msg.env, out, err)
                except OSError as exc:
                    if exc.errno != errno.ENOEXEC or not msg.otherwise:
                        raise
                    pid = _spawn(msg.otherwise, msg.env, out, err)
            finally:
                os.chdir("/")
        except (OSError, ValueError) as exc:
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            os.write(err, f"skyport: cannot start the job: {exc}\n".encode(errors="replace"))
            write_atomic(run / "exit", f"{code}\n".encode())
            return Status(msg.run, "over", code=code, detail=str(exc))
        finally:
            os.close(out)
            os.close(err)
        ticks = start_ticks(pid) or 0
        status = Status(msg.run, "running", pid=pid, ticks=ticks, at=time.time())
        self.running[pid] = run
        self.by_run[run] = status
        try:
            write_atomic(run / "job.pid", f"{pid} {ticks}\n".encode())
        except OSError as exc:  # only a restart after the keeper's own death needs it
            print(f"keeper: cannot record the pid of {run}: {exc}", file=sys.stderr)
        return status

    # -- exits -----------------------------------------------------------------------------

    def reap(self) -> list[Exited]:
        exited: list[Exited] = []
        while self.running:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            run = self.running.pop(pid, None)
            if run is None:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # what the job left behind in its group
            code = shell_status(wait_status)
            try:
                write_atomic(run / "exit", f"{code}\n".encode())
            except OSError as exc:  # the gate still hears the status below
                print(f"keeper: cannot record the exit of {run}: {exc}", file=sys.stderr)
            self.by_run.pop(run, None)
            exited.append(Exited(str(run), code))
        return exited

    # -- the wire --------------------------------------------------------------------------

    def on_data(self, conn: _Conn, data: bytes) -> bool:
        """Handle what a gate sent; False when the connection must be dropped."""
        conn.buffer += data
        while (end := conn.buffer.find(b"\n")) >= 0:
            line = bytes(conn.buffer[:end])
            del conn.buffer[: end + 1]
            try:
                msg = self._decoder.decode(line)
            except msgspec.ValidationError as exc:
                print(f"keeper: bad request dropped: {exc}", file=sys.stderr)
                return False
            try:
                answer = self.handle(msg)
            except Exception as exc:  # request boundary: the keeper must outlive a bad one
                answer = Status(msg.run, "refused", detail=f"keeper error: {exc!r}")
            if not self.send(conn, answer):
                return False
        return len(conn.buffer) <= MAX_LINE

    def send(self, conn: _Conn, msg: FromKeeper) -> bool:
        try:
            conn.sock.sendall(self._encoder.encode(msg) + b"\n")
        except OSError:
            return False
        return True

    def done(self) -> bool:
        return self.ever_connected and not self.conns and not self.running


def _spawn(argv: list[str], env: dict[str, str], out: int, err: int) -> int:
    """Start ``argv`` in the current directory as the leader of a new session."""
    return os.posix_spawn(
        argv[0],
        argv,
        env,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, out, 1),
            (os.POSIX_SPAWN_DUP2, err, 2),
        ],
        setsid=True,
    )


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    uid: int = struct.unpack("3i", creds)[1]
    return uid


def _lock(runs_dir: Path) -> int | None:
    """Take the keeper lock of ``runs_dir`` (waiting for a keeper that is exiting); None if
    another keeper holds it."""
    fd = os.open(runs_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.02)


def serve(runs_dir: Path) -> int:
    lock = _lock(runs_dir)
    if lock is None:
        return 0  # another keeper serves this directory
    keeper = Keeper(runs_dir)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    with in_dir(runs_dir) as here:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{here}/{SOCKET}")
        old_umask = os.umask(0o177)
        try:
            listener.bind(f"{here}/{SOCKET}")
        finally:
            os.umask(old_umask)
    listener.listen(64)
    listener.setblocking(False)
    write_atomic(runs_dir / PID_FILE, f"{os.getpid()}\n".encode())

    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(wake_r, selectors.EVENT_READ, "reap")
    first_gate_by = time.monotonic() + FIRST_GATE_WAIT_S
    try:
        while not keeper.done():
            if not keeper.ever_connected and time.monotonic() > first_gate_by:
                break
            for key, _ in sel.select(timeout=1.0):
                if key.data == "accept":
                    _accept(keeper, listener, sel)
                elif key.data == "reap":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)
                    for note in keeper.reap():
                        for conn in list(keeper.conns.values()):
                            if not keeper.send(conn, note):
                                _drop(keeper, conn, sel)
                elif (peer := keeper.conns.get(key.fd)) is not None:
                    _receive(keeper, peer, sel)
            for note in keeper.reap():  # a SIGCHLD that raced the wake-up pipe
                for conn in list(keeper.conns.values()):
                    if not keeper.send(conn, note):
                        _drop(keeper, conn, sel)
    finally:
        with in_dir(runs_dir) as here, contextlib.suppress(FileNotFoundError):
            os.unlink(f"{here}/{SOCKET}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(runs_dir / PID_FILE)
        listener.close()
        os.close(lock)
    return 0


def _accept(keeper: Keeper, listener: socket.socket, sel: selectors.BaseSelector) -> None:
    while True:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                return
            raise
        if _peer_uid(sock) != os.getuid():
            sock.close()
            continue
        sock.settimeout(SEND_TIMEOUT_S)
        conn = _Conn(sock)
        keeper.conns[sock.fileno()] = conn
        keeper.ever_connected = True
        sel.register(sock, selectors.EVENT_READ, "conn")


def _receive(keeper: Keeper, conn: _Conn, sel: selectors.BaseSelector) -> None:
    try:
        data = conn.sock.recv(65536)
    except OSError:
        data = b""
    if not data or not keeper.on_data(conn, data):
        _drop(keeper, conn, sel)


def _drop(keeper: Keeper, conn: _Conn, sel: selectors.BaseSelector) -> None:
    if keeper.conns.pop(conn.sock.fileno(), None) is not None:
        sel.unregister(conn.sock)
        conn.sock.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m gates.local.keeper RUNS_DIR", file=sys.stderr)
        return 2
    return serve(Path(args[0]))


if __name__ == "__main__":
    raise SystemExit(main())
