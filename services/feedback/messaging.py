"""Feedback on Kafka: publishes every event to ``consultation.feedback.v1`` (via the relay),
without personal data or confidential text; answers, feedback, topic results and
post-evaluations of public matters to ``consultation.outcomes.v1``; learns topics and
sessions from the catalog's and sessions' topics (``TopicBook``); follows every
service's topic into the trace; takes in proposals turned into opinions
(``ProposalOpinions``); and takes in opinions and escalations of grassroots items
(开单) from the e-government bus (``inbound``), answering as well the bus's commands
that no service claims (``shared.inbound``)."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from shared.config import SERVICE_TOPICS
from shared.inbound import InboundCommand, Sender
from shared.envelope import CloudEvent
from shared.projection import UnprocessableEvent
from shared.domain import Refused
from shared.reactions import Reaction

from services.feedback.api import EscalationIn, OpinionIn, submit_opinion
from services.feedback.application import FeedbackApplication
from services.feedback.domain import Opinion
from services.feedback.projections import TopicBook, Trace, known_topic

TOPIC = SERVICE_TOPICS["feedback"]

#: How long a proposal's opinion waits for its topic to reach this service's book: the
#: proposals service saw the topic accepted on the same catalog topic, so it is on its way.
TOPIC_WAIT_SECONDS = 30.0


class ProposalOpinions(Reaction):
    """A proposal the review meeting turned into an opinion (转为意见, 001 分工 14(1))."""

    name = "proposal_opinions"
    kafka_topics = (SERVICE_TOPICS["proposals"],)
    app: FeedbackApplication

    def on_ProposalTurnedIntoOpinion(self, e: CloudEvent, d: dict[str, Any]) -> bool:
        topic_id = str(d["topic_id"])
        deadline = time.monotonic() + TOPIC_WAIT_SECONDS
        while (topic := known_topic(self.views, topic_id)) is None or topic["status"] != "accepted":
            if time.monotonic() > deadline:
                # Not an error to retry without end: the message comes again (NACK) later.
                raise RuntimeError(f"topic {topic_id} is not known as accepted yet")
            time.sleep(0.2)
        try:
            return self.app.opinion_of_proposal(
                e.subject, topic, topic_id, d["addressed_to"], dict(d["author"]), d["title"], d["content"])
        except Refused as refused:
            raise UnprocessableEvent(f"the proposal's opinion was refused: {refused.message}") from refused


class InboundEscalation(EscalationIn):
    """``EscalateItem``: the platform escalates an item it opened (开单) one tier up."""

    opinion_id: UUID


def submit(service: Any, body: OpinionIn, sender: Sender) -> str:
    return submit_opinion(service.app, service.views, body, received_via=sender.source, inbound_id=sender.id)[0]


def escalate(service: Any, body: InboundEscalation, sender: Sender) -> str:
    service.app.escalate(str(body.opinion_id), body.to, body.tier, body.escalated_by, body.reason,
                         received_via=sender.source, inbound_id=sender.id)
    return str(body.opinion_id)


#: The bus's commands feedback takes in: the same models and rules as the HTTP routes.
INBOUND = {
    "SubmitOpinion": InboundCommand(
        OpinionIn, submit, created=lambda s: Opinion.create_id(received_via=s.source, inbound_id=s.id),
        summary="POST /feedback/opinions: an opinion, or a grassroots item (开单)"),
    "EscalateItem": InboundCommand(
        InboundEscalation, escalate, summary="POST /feedback/opinions/{opinion_id}/escalation (吹哨报到)"),
}


KAFKA_PROJECTIONS = (TopicBook, Trace)
REACTIONS = (ProposalOpinions,)
