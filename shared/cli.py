"""``consult``: the operator's command.

``consult up`` runs the whole system on one machine with nothing to configure:
an embedded Kafka-protocol broker on 127.0.0.1, SQLite stores under ``--data-dir``,
and the four services on one port. With ``KAFKA_BOOTSTRAP_SERVERS`` set, it uses
that cluster instead of starting a broker.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from shared.access import Role
from shared.config import Settings
from shared.embedded import EmbeddedBroker, PortInUse, port_bindable
from shared.logs import configure, get_logger
from shared.runtime import SERVICE_NAMES, serve


def _settings(data_dir: str | None) -> Settings:
    overrides = {"data_dir": Path(data_dir)} if data_dir else {}
    return Settings(**overrides)


def _terminate_gracefully(signum: int, _frame: object) -> None:
    """SIGTERM stops ``consult up`` like Ctrl-C: services first, then the broker.

    uvicorn shuts down on SIGTERM and then raises the signal again; with Python's
    default handler that would end the process before any ``finally`` ran and
    leave the embedded broker behind.
    """
    raise SystemExit(0)


def up(args: argparse.Namespace) -> int:
    settings = _settings(args.data_dir)
    configure(settings.log_format)
    log = get_logger("consult")
    if not port_bindable(args.port, args.host):
        print(f"consult up: HTTP port {args.port} on {args.host} is in use by another program; "
              "stop it or choose --port", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _terminate_gracefully)
    broker = None
    try:
        if "KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            broker = EmbeddedBroker(args.broker_port, log_file=settings.data_dir / "broker.log",
                                    pid_file=settings.data_dir / "broker.pid")
            try:
                broker.start()
            except (PortInUse, RuntimeError) as error:
                print(f"consult up: {error}", file=sys.stderr)
                return 1
            broker.supervise(give_up=_give_up)
            settings = settings.model_copy(
                update={"kafka_bootstrap_servers": broker.bootstrap_servers, "kafka_idempotence": False,
                        # on loopback, in this process's hands: no SASL or TLS to speak of
                        "kafka_security_protocol": "PLAINTEXT",
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
        if settings.auth_embedded:
            data = f" --data-dir {args.data_dir}" if args.data_dir else ""
            prog = sys.argv[0] if os.path.basename(sys.argv[0]) == "consult" else "consult"
            print(f"Every route but health and /<service>/public/... needs a bearer token. For one:\n"
                  f"  TOKEN=$({prog} token --role government_office --name 王芳{data})\n"
                  f"  curl -H \"Authorization: Bearer $TOKEN\" http://{args.host}:{args.port}/catalog/views/plan-desk\n"
                  f"Roles: {', '.join(r.value for r in Role)} (department needs --department).",
                  file=sys.stderr, flush=True)
        serve(settings, SERVICE_NAMES, args.host, args.port)
    finally:
        if broker:
            broker.stop()
        log.info("stopped")
    return 1 if _gave_up else 0


_gave_up: list[str] = []


def _give_up(reason: str) -> None:
    """The broker keeps dying: stop everything (exit 1) rather than run without one."""
    _gave_up.append(reason)
    get_logger("consult").critical("stopping: " + reason)
    os.kill(os.getpid(), signal.SIGTERM)


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


def relay(args: argparse.Namespace) -> int:
    """``consult relay``: parked events, for the operator (the running relays pick changes up)."""
    import json

    from shared.relay import RelayState

    settings = _settings(args.data_dir)
    configure(settings.log_format)
    names = [args.service] if args.service else list(SERVICE_NAMES)
    if args.action == "list":
        for name in names:
            state = RelayState.open(settings, name)
            try:
                for doc in state.parked():
                    print(json.dumps({"service": name, **doc}, ensure_ascii=False))
            finally:
                state.close()
        return 0
    if not args.service or args.position is None:
        print(f"consult relay {args.action}: name --service and --position", file=sys.stderr)
        return 2
    state = RelayState.open(settings, args.service)
    try:
        if args.action == "retry":
            doc = state.set_status(args.position, "retry", retry_requested_by=args.by)
        else:
            if not (args.note or "").strip():
                print("consult relay resolve: say how it was handled with --note", file=sys.stderr)
                return 2
            doc = state.set_status(args.position, "resolved", resolved_by=args.by, note=args.note)
    except KeyError as error:
        print(f"consult relay {args.action}: {error.args[0]}", file=sys.stderr)
        return 1
    finally:
        state.close()
    print(json.dumps({"service": args.service, **doc}, ensure_ascii=False))
    return 0


def audit(args: argparse.Namespace) -> int:
    """``consult audit``: see ``shared.audit``."""
    from shared import audit as auditing

    settings = _settings(args.data_dir)
    configure(settings.log_format)
    return auditing.command(args, settings)


def token(args: argparse.Namespace) -> int:
    """``consult token``: a bearer token signed with the embedded key, for local use."""
    from shared.access import mint

    from pydantic import ValidationError

    settings = _settings(args.data_dir)
    if not 0 < args.hours <= 24 * 366:
        print("consult token: --hours must be more than 0 and at most a year", file=sys.stderr)
        return 2
    try:
        print(mint(settings, args.role, args.name, args.department, args.hours, args.phone, args.id_number))
    except ValidationError as error:
        for e in error.errors():
            where = "".join(f"--{p}: ".replace("_", "-") for p in e["loc"])
            print(f"consult token: {where}{e['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"consult token: {error}", file=sys.stderr)
        return 2
    return 0


def docs(args: argparse.Namespace) -> int:
    """``consult docs``: write the published contract from the code (``shared.contract``)."""
    from shared.contract import write

    stale = write(check=args.check)
    for path in stale:
        print(f"{'differs from the code' if args.check else 'written'}: {path}")
    if args.check and stale:
        print("Regenerate with `consult docs` (or `.venv/bin/consult docs`) and commit the result.")
        return 1
    if not stale:
        print("docs/ matches the code")
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
    p_relay = commands.add_parser(
        "relay", help="events a relay parked because the broker cannot take them",
        description="list: every parked event. retry: publish it again (after raising the broker's "
                    "message size limit, say). resolve: mark it handled another way, with a note.")
    p_relay.add_argument("action", choices=["list", "retry", "resolve"])
    p_relay.add_argument("--service", choices=SERVICE_NAMES)
    p_relay.add_argument("--position", type=int, help="the parked event's position in the store")
    p_relay.add_argument("--by", default=os.environ.get("USER", "operator"), help="who decides")
    p_relay.add_argument("--note", help="with resolve: how the event was handled")
    p_relay.add_argument("--data-dir", default=None)
    p_relay.set_defaults(func=relay)
    p_token = commands.add_parser(
        "token", help="mint a bearer token for local use (embedded default only)",
        description="A JWT signed with the key the embedded default keeps in the data directory. "
                    "Production takes tokens from the e-government identity provider instead.")
    p_token.add_argument("--role", required=True, choices=[r.value for r in Role])
    p_token.add_argument("--name", required=True, help="who acts: an official's or a person's name")
    p_token.add_argument("--department", help="with --role department: the department it acts for")
    p_token.add_argument("--hours", type=float, default=8.0, help="valid for (default 8)")
    p_token.add_argument("--phone", help="a citizen's verified phone: their opinions are theirs by it")
    p_token.add_argument("--id-number", help="a citizen's verified resident ID number")
    p_token.add_argument("--data-dir", default=None)
    p_token.set_defaults(func=token)
    p_docs = commands.add_parser(
        "docs", help="write docs/asyncapi.yaml and docs/openapi/*.json from the code",
        description="The AsyncAPI 3 document of every Kafka topic and the OpenAPI document of every "
                    "service, generated from the code. --check only compares, and exits 1 on a difference.")
    p_docs.add_argument("--check", action="store_true")
    p_docs.set_defaults(func=docs)
    from shared.audit import add_parser as add_audit
    from shared.demo import add_parser as add_demo

    add_demo(commands)

    add_audit(commands, {"func": audit})
    args = parser.parse_args(argv)
    from shared.runtime import tune_gc

    tune_gc()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
