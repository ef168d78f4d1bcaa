"""The published contract, generated from the code: AsyncAPI 3 for Kafka, OpenAPI for HTTP.

Every event a service stores is published on its topic; its ``data`` schema is made
from the event class's fields, as the service lets them out (``withheld`` fields never
leave the store, ``nullable`` ones may go out empty). The outcome topic carries the
public forms (``outcome_withheld`` dropped) and, for a transition window, both
versions of an outcome that changed (``outcome_versions``). The inbound topic takes
each command's HTTP body model; replies, digests and dead letters have theirs.

``consult docs`` writes ``docs/asyncapi.yaml`` and ``docs/openapi/<service>.json``;
``consult docs --check`` (and the test suite) fails when the code and the committed
documents disagree.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel, ConfigDict, Field, create_model

from shared.application import ServiceApplication
from shared.config import (
    AUDIT_TOPIC, DEADLETTER_TOPIC, INBOUND_REPLIES_TOPIC, INBOUND_TOPIC, OUTCOMES_TOPIC, SERVICE_TOPICS,
)
from shared.domain import EVENTS
from shared.envelope import CONTENT_TYPE, CloudEvent
from shared.inbound import COMMANDS, InboundEnvelope, InboundReply, command_type
from shared.runtime import SERVICE_NAMES, openapi_of, spec

DOCS = Path(__file__).resolve().parent.parent / "docs"
_ENVELOPE_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic"}


class AuditDigest(BaseModel):
    """A sealed ledger digest on ``consultation.audit.v1`` (``consult audit verify``)."""

    service: str
    position: int = Field(description="the last store position the chain covers")
    head: str = Field(description="SHA-256 hash chain head over every stored event up to position")
    time: str
    signature: str = Field(description="Ed25519 over service, position, head and time (base64)")


class DeadLetter(BaseModel):
    """Anything a consumer could not use, as it was received; Kafka headers say why:
    ``deadletter-reason``, ``deadletter-consumer``, ``deadletter-topic``, ``deadletter-partition``,
    ``deadletter-offset`` (or ``deadletter-position`` for an event the relay could not publish)."""

    model_config = ConfigDict(extra="allow")


def _camel(name: str) -> str:
    return name[:1].upper() + name[1:]


def data_model(service: str, event: type, version: int = 1, *, withheld: frozenset[str] = frozenset(),
               nullable: frozenset[str] = frozenset(), label: str = "") -> type[BaseModel]:
    """The ``data`` of one event type as published: its fields, less what is withheld."""
    hints = typing.get_type_hints(event)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(event):
        if field.name in _ENVELOPE_FIELDS or field.name in withheld:
            continue
        annotation = hints[field.name]
        if field.name in nullable:
            annotation = annotation | None
        # Every published event carries every field (old ones are upcast): all are required.
        fields[field.name] = (annotation, ...)
    title = f"{_camel(service)}{event.__name__}{label}V{version}Data"
    doc = (event.__doc__ or "").strip()
    if not doc or doc.startswith(f"{event.__name__}("):  # the dataclass's generated signature
        doc = f"The data of {service}'s {event.__name__} event{' (public form)' if label else ''}."
    return create_model(title, __doc__=doc, **fields)


def envelope_model(service: str, name: str, data: type[BaseModel], version: int = 1,
                   label: str = "") -> type[BaseModel]:
    """The CloudEvent of one event type: the contract's envelope with this ``type`` and ``data``."""
    event_type = f"consultation.{service}.{name}.v{version}"
    return create_model(f"{_camel(service)}{name}{label}V{version}", __base__=CloudEvent,
                        type=(Literal[event_type], ...), data=(data, ...))  # type: ignore[valid-type]


def _one_of(models: list[type[BaseModel]]) -> Any:
    if len(models) == 1:
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator="type")]  # noqa: UP007


def applications() -> dict[str, type[ServiceApplication]]:
    return {name: spec(name).application for name in SERVICE_NAMES}


def service_events(service: str, app: type[ServiceApplication]) -> list[type[BaseModel]]:
    return [
        envelope_model(service, name, data_model(service, cls, getattr(cls, "class_version", 1),
                                                 withheld=app.withheld, nullable=app.nullable))
        for name, cls in sorted(EVENTS[service].items())
    ]


def outcome_events(service: str, app: type[ServiceApplication]) -> list[type[BaseModel]]:
    models = []
    for name in sorted(app.outcomes):
        cls = EVENTS[service][name]
        data = data_model(service, cls, getattr(cls, "class_version", 1), label="Outcome",
                          withheld=app.withheld | app.outcome_withheld.get(name, frozenset()),
                          nullable=app.nullable)
        models.append(envelope_model(service, name, data, label="Outcome"))
        for version, form in sorted(app.outcome_versions.get(name, {}).items()):
            models.append(envelope_model(service, name, form.model, version, label="Outcome"))
    return models


def inbound_commands() -> list[type[BaseModel]]:
    models = []
    for name, service in COMMANDS.items():
        command = spec(service).inbound[name]
        models.append(create_model(
            f"Inbound{name}V1", __base__=InboundEnvelope, __doc__=command.summary,
            type=(Literal[command_type(name)], ...), data=(command.model, ...)))  # type: ignore[valid-type]
    return models


def contract_broker() -> KafkaBroker:
    """A broker that only describes: every topic of the contract with its messages."""
    broker = KafkaBroker("kafka:9092", description="The Kafka cluster (embedded: 127.0.0.1:9092)")
    apps = applications()
    for service, topic in SERVICE_TOPICS.items():
        broker.publisher(topic, title=topic, schema=_one_of(service_events(service, apps[service])),
                         description=f"Every event of the {service} service, in the CloudEvents envelope; "
                                     "the Kafka key is the subject (aggregate id).")
    outcomes = [m for service, app in apps.items() for m in outcome_events(service, app)]
    broker.publisher(OUTCOMES_TOPIC, title=OUTCOMES_TOPIC, schema=_one_of(outcomes),
                     description="Public outcomes for other departments: no person, no confidential "
                                 "text; extension topicid names the consultation topic. A type with a "
                                 "newer version is published in both during its transition window "
                                 "(docs/schema-evolution.md).")
    broker.publisher(AUDIT_TOPIC, title=AUDIT_TOPIC, schema=AuditDigest,
                     description="Signed ledger digests of each service's store.")
    broker.publisher(INBOUND_REPLIES_TOPIC, title=INBOUND_REPLIES_TOPIC, schema=InboundReply,
                     description="One reply per inbound command delivered, keyed and correlated "
                                 "(subject, inboundid) by the inbound event's id.")
    broker.publisher(DEADLETTER_TOPIC, title=DEADLETTER_TOPIC, schema=DeadLetter,
                     description="What a consumer could not use, with the reason in the headers.")
    async def inbound_command(command: Any) -> None:
        """Documentation only: the services take these in through ``shared.inbound``."""

    # The payload schema comes from the parameter's type, resolved at runtime.
    inbound_command.__annotations__ = {"command": _one_of(inbound_commands()), "return": None}
    broker.subscriber(INBOUND_TOPIC, title=INBOUND_TOPIC,
                      description="Commands from the e-government bus (CloudEvents, structured mode); "
                                  "a repeated (source, id) is applied once.")(inbound_command)
    return broker


def asyncapi_yaml() -> str:
    spec = AsyncAPI(contract_broker(), title="Public consultation (协商): events on Kafka", version="1",
                    schema_version="3.0.0",
                    description="Generated from the code by `consult docs`; see docs/schema-evolution.md.")
    # FastStream lists channels in no fixed order: sorted keys make the document reproducible.
    document = yaml.safe_load(spec.to_specification().to_yaml())
    for key, message in document["components"]["messages"].items():
        if not key.startswith((AUDIT_TOPIC, DEADLETTER_TOPIC)):
            message["contentType"] = CONTENT_TYPE
    return yaml.safe_dump(document, sort_keys=True, allow_unicode=True, width=110)


def openapi_json(service: str) -> str:
    return json.dumps(openapi_of(service), ensure_ascii=False, indent=1, sort_keys=True) + "\n"


README = DOCS.parent / "README.md"
TABLE_START, TABLE_END = "<!-- access table: written by `consult docs` -->", "<!-- end of access table -->"


def access_table() -> str:
    """The role-by-route table of all four services (``shared.access.table``)."""
    import asyncio
    import tempfile

    from shared.access import table
    from shared.config import Settings
    from shared.runtime import create_app

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=tmp, store="sqlite"))
        try:
            return table(app)
        finally:
            for service in app.state.services.values():
                asyncio.run(service.stop())


def readme_with_table() -> str:
    text = README.read_text(encoding="utf-8")
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    return f"{text[:start]}\n{access_table()}\n{text[end:]}"


def documents() -> dict[Path, str]:
    docs = {DOCS / "asyncapi.yaml": asyncapi_yaml()}
    for service in SERVICE_NAMES:
        docs[DOCS / "openapi" / f"{service}.json"] = openapi_json(service)
    docs[README] = readme_with_table()
    return docs


def write(check: bool = False) -> list[Path]:
    """Write the documents (or, with ``check``, list those that differ from the code)."""
    stale = []
    for path, text in documents().items():
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return stale
