"""The CloudEvents 1.0 envelope every event travels in (structured JSON mode)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

CONTENT_TYPE = "application/cloudevents+json"
_ID_NAMESPACE = uuid.UUID("6f1c7a52-95d4-4b8e-9a57-3c1de0f1a0c1")
_NAMESPACE_BYTES = _ID_NAMESPACE.bytes


def event_id(service: str, originator_id: str, version: int, form: int = 1) -> str:
    """Stable across re-publication: derived from what the store already identifies.

    ``form`` > 1 names a newer version of an outcome published beside version 1: a
    message of its own, with an id of its own (docs/schema-evolution.md).
    """
    suffix = f"/v{form}" if form > 1 else ""
    # uuid.uuid5, without its two UUID objects: every envelope and every consumed event pays this.
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{service}/{originator_id}/{version}{suffix}".encode(),
                                    usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class CloudEvent(BaseModel):
    """An event as published on Kafka: contract section "Events on Kafka"."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1)
    source: str = Field(pattern=r"^/consultation/[a-z]+$")
    type: str = Field(pattern=r"^consultation\.[a-z]+\.[A-Za-z]+\.v[0-9]+$")
    subject: str = Field(min_length=1)
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]
    #: The consultation topic (议题) this event belongs to, when known.
    topicid: str | None = None
    #: Position in the publishing service's store.
    sequence: int = Field(ge=1)
    #: Who did it (extension): the official, body or pseudonymous reference.
    actor: str | None = None
    #: Aggregate version (extension): orders events of one subject.
    version: int | None = None

    @classmethod
    def of_own(cls, *, id: str, source: str, type: str, subject: str, time: datetime,  # noqa: A002
               data: dict[str, Any], topicid: str | None, sequence: int, actor: str | None,
               version: int) -> CloudEvent:
        """An envelope a service makes of its own stored event, without validation.

        Every value is made by ``ServiceApplication.envelope`` in the shape the model asks
        for (tests/test_envelope.py validates every kind it makes), and validating it again
        was a twentieth of relaying an event; pydantic's own ``model_construct`` costs more
        than validation. What arrives from Kafka is always validated. The attributes are
        set as pydantic's ``__init__`` sets them, in the fields' order (``to_bytes`` writes
        them in that order).
        """
        event = cls.__new__(cls)
        _set(event, "__dict__", {
            "specversion": "1.0", "id": id, "source": source, "type": type, "subject": subject, "time": time,
            "datacontenttype": "application/json", "data": data, "topicid": topicid, "sequence": sequence,
            "actor": actor, "version": version})
        _set(event, "__pydantic_fields_set__", set(_OWN_FIELDS))
        _set(event, "__pydantic_extra__", {})
        _set(event, "__pydantic_private__", None)
        return event

    @property
    def service(self) -> str:
        return self.source.rsplit("/", 1)[-1]

    @property
    def name(self) -> str:
        """Event name without service and version, e.g. ``TopicProposed``."""
        return self.type.split(".")[2]

    def to_bytes(self) -> bytes:
        """The JSON Kafka carries (structured mode), without absent attributes.

        orjson writes what pydantic's ``model_dump_json(exclude_none=True)`` writes, in a
        third of the time (a UTC time ends in ``Z``); a value it has no JSON for (a
        Decimal, a 65-bit integer) is left to pydantic.
        """
        fields = {k: v for k, v in self.__dict__.items() if v is not None}
        if self.__pydantic_extra__:
            fields.update((k, v) for k, v in self.__pydantic_extra__.items() if v is not None)
        try:
            return orjson.dumps(fields, option=orjson.OPT_UTC_Z)
        except TypeError:  # orjson.JSONEncodeError
            return self.model_dump_json(exclude_none=True).encode()


_set = object.__setattr__
_OWN_FIELDS = ("id", "source", "type", "subject", "time", "data", "topicid", "sequence", "actor", "version")


def origin_problem(event: CloudEvent, services: frozenset[str], topic_service: str | None) -> str | None:
    """Why ``event`` cannot be the event its envelope claims to be, or None.

    An event is recognised by its id, and the id is derived by the publishing
    service from (service, aggregate, version): a message whose id does not match
    what it claims, from a source that is no service of ours, or on a topic its
    source does not publish to, is not ours. Anyone who can write to a topic can
    still derive a valid id; in production Kafka ACLs let only each service write
    its own topic (README: "What protects the topics").
    """
    if event.service not in services:
        return f"source {event.source} is not a service of this system"
    if topic_service is not None and event.service != topic_service:
        return f"source {event.source} does not publish to this topic"
    if event.version is None:
        return "version is missing, so the event cannot be identified"
    if event.id != event_id(event.service, event.subject, event.version):
        return "id is not the one its source derives from (service, subject, version)"
    return None
