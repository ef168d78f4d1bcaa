"""Catalog on Kafka: publishes every event to ``consultation.catalog.v1`` (via the relay)
and ``PlanPublished`` to ``consultation.outcomes.v1``; turns converted proposals, read
from ``consultation.proposals.v1``, into topics (``ProposalConversions``); takes in
topics proposed over the e-government bus (public solicitation, ``inbound``)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from shared.config import SERVICE_TOPICS
from shared.envelope import CloudEvent
from shared.inbound import InboundCommand, Sender
from shared.reactions import Reaction

from services.catalog.api import TopicIn, topic_fields
from services.catalog.application import CatalogApplication
from services.catalog.domain import Topic

TOPIC = SERVICE_TOPICS["catalog"]


class ProposalConversions(Reaction):
    """A filed proposal converted into a consultation topic (提案转化为协商议题).

    The conversion is checked exactly like ``POST /catalog/topics`` (same model, same
    rules); what the catalog refuses is recorded with the rule and the reason, so the
    proposals service shows it instead of waiting for a topic that never comes.
    """

    name = "proposal_conversions"
    kafka_topics = (SERVICE_TOPICS["proposals"],)
    app: CatalogApplication

    def on_ProposalConverted(self, e: CloudEvent, d: dict[str, Any]) -> bool:
        attempt = int(d["attempt"])
        try:
            topic = TopicIn.model_validate({
                "title": d.get("title"), "description": d.get("description"), "source": "proposal",
                "proposer": d.get("converted_by"), "content_type": d.get("content_type"),
                "proposal_id": e.subject,
            })
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "body"
            return self.app.refuse_topic_from_proposal(
                e.subject, attempt, first["type"],
                f"The catalog cannot take this proposal as a topic: {field} {first['msg']}.")
        return self.app.topic_from_proposal(**{**topic.model_dump(), "proposal_id": e.subject})


def propose(service: Any, body: TopicIn, sender: Sender) -> str:
    return service.app.propose_topic(**topic_fields(body), received_via=sender.source, inbound_id=sender.id)


#: ``ProposeTopic``: a topic put forward on a public-solicitation platform (向社会公开征集),
#: checked exactly like ``POST /catalog/topics``.
INBOUND = {"ProposeTopic": InboundCommand(
    TopicIn, propose, created=lambda s: Topic.create_id(received_via=s.source, inbound_id=s.id),
    summary="POST /catalog/topics: propose a topic (议题征集)")}


KAFKA_PROJECTIONS: tuple = ()
REACTIONS = (ProposalConversions,)
