"""What every benchmark shares: fresh stores, a broker, a clock, the results table."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from shared.config import Settings
from shared.embedded import EmbeddedBroker, free_port
from shared.stores import drop_schemas


@dataclass
class Result:
    """One measurement: the product's figure against its baseline's, in the same run."""

    name: str
    store: str
    events: int
    product: float  # events per second
    baseline: float
    target: float | None = None  # the least ratio product/baseline the issue holds it to
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.product / self.baseline if self.baseline else 0.0

    def row(self) -> str:
        verdict = "" if self.target is None else ("meets" if self.ratio >= self.target else "BELOW")
        target = "" if self.target is None else f"≥ {self.target:.0%}"
        extra = "  ".join(f"{k}={v}" for k, v in self.notes.items())
        return (f"{self.name:<28} {self.store:<9} {self.events:>9,} {self.product:>12,.0f} {self.baseline:>12,.0f}"
                f" {self.ratio:>7.1%} {target:>6} {verdict:<6} {extra}")


HEADER = (f"{'benchmark':<28} {'store':<9} {'events':>9} {'product/s':>12} {'baseline/s':>12}"
          f" {'ratio':>7} {'target':>6} {'':<6} notes")


def machine() -> str:
    return (f"{date.today().isoformat()}  {platform.node()}  {os.cpu_count()} cores  "
            f"Python {platform.python_version()}  {platform.platform()}")


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - start, value


@contextlib.contextmanager
def fresh_settings(store: str, **overrides: Any) -> Iterator[Settings]:
    """Settings for an empty system: a temporary data directory, or fresh PostgreSQL schemas
    (``CONSULT_BENCH_POSTGRES_*`` or the usual ``POSTGRES_*`` variables), dropped afterwards."""
    data = Path(tempfile.mkdtemp(prefix="consult-bench-"))
    prefix = f"bench{uuid.uuid4().hex[:6]}_"
    values: dict[str, Any] = {"data_dir": data, "store": store, "schema_prefix": prefix,
                              "relay_enabled": False, "log_format": "json", "postgres_pool_size": 4}
    values.update(overrides)
    settings = Settings(**values)
    try:
        yield settings
    finally:
        shutil.rmtree(data, ignore_errors=True)
        if store == "postgres":
            drop_schemas(settings, prefix)


@contextlib.contextmanager
def broker() -> Iterator[str]:
    """The embedded Kafka-protocol broker (tansu), on a free port: bootstrap servers."""
    log = Path(tempfile.mkdtemp(prefix="consult-bench-broker-"))
    running = EmbeddedBroker(free_port(), log_file=log / "broker.log", pid_file=log / "broker.pid").start()
    try:
        yield running.bootstrap_servers
    finally:
        running.stop()
        shutil.rmtree(log, ignore_errors=True)
