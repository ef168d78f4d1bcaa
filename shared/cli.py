"""``consult``: the operator's command.

``consult up`` runs the whole system on one machine with nothing to configure:
an embedded Kafka-protocol broker on 127.0.0.1, SQLite stores under ``--data-dir``,
and the four services on one port. With ``KAFKA_BOOTSTRAP_SERVERS`` set, it uses
that cluster instead of starting a broker.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from shared.config import Settings
from shared.logs import configure, get_logger
from shared.runtime import SERVICE_NAMES, serve


def _settings(data_dir: str | None) -> Settings:
    overrides = {"data_dir": Path(data_dir)} if data_dir else {}
    return Settings(**overrides)


def up(args: argparse.Namespace) -> int:
    settings = _settings(args.data_dir)
    configure(settings.log_format)
    log = get_logger("consult")
    broker = None
    if "KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
        from shared.embedded import EmbeddedBroker

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        broker = EmbeddedBroker(args.broker_port, log_file=settings.data_dir / "broker.log").start()
        settings = settings.model_copy(
            update={"kafka_bootstrap_servers": broker.bootstrap_servers, "kafka_idempotence": False,
                    # one machine, one broker: rejoin fast after a restart
                    "kafka_session_timeout_ms": 3_000}
        )
        log.info("embedded broker listening", bootstrap=broker.bootstrap_servers)
    log.info(
        "consultation system starting",
        url=f"http://{args.host}:{args.port}",
        store=settings.store,
        data_dir=str(settings.data_dir.resolve()),
    )
    try:
        serve(settings, SERVICE_NAMES, args.host, args.port)
    finally:
        if broker:
            broker.stop()
        log.info("stopped")
    return 0


def run_service(name: str, argv: Sequence[str] | None = None) -> int:
    """``python -m services.<name>``: one service alone, against configured infrastructure."""
    parser = argparse.ArgumentParser(prog=f"python -m services.{name}")
    parser.add_argument("--host", default=os.environ.get("CONSULT_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("CONSULT_PORT", "8000")))
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    settings = _settings(args.data_dir)
    configure(settings.log_format)
    get_logger("consult").info("service starting", service=name, port=args.port)
    serve(settings, [name], args.host, args.port)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="consult", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p_up = commands.add_parser("up", help="run the whole system on one machine")
    p_up.add_argument("--port", type=int, default=8000)
    p_up.add_argument("--broker-port", type=int, default=9092)
    p_up.add_argument("--data-dir", default=None, help="default ./var (CONSULT_DATA_DIR)")
    p_up.add_argument("--host", default="127.0.0.1")
    p_up.set_defaults(func=up)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
