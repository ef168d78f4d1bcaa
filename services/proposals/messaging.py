"""Proposals on Kafka: publishes every event to ``consultation.proposals.v1`` (via the relay),
without contact details; ``ProposalAnswered`` and ``KeyProposalDigestSubmitted`` to
``consultation.outcomes.v1`` without any person. Learns accepted topics and opinions
(``ProposalBook``), and records the catalog's answer to each conversion (``CatalogAnswers``).
"""

from __future__ import annotations

from typing import Any

from shared.config import SERVICE_TOPICS
from shared.envelope import CloudEvent
from shared.reactions import Reaction

from services.proposals.application import ProposalsApplication
from services.proposals.projections import ProposalBook

TOPIC = SERVICE_TOPICS["proposals"]


class CatalogAnswers(Reaction):
    """The catalog proposed the topic a proposal became, or refused to, and said why."""

    name = "catalog_answers"
    kafka_topics = (SERVICE_TOPICS["catalog"],)
    app: ProposalsApplication

    def on_TopicProposed(self, e: CloudEvent, d: dict[str, Any]) -> bool:
        if d.get("source") != "proposal" or not d.get("proposal_id"):
            return False
        return self.app.topic_created(str(d["proposal_id"]), e.subject)

    def on_TopicFromProposalRefused(self, e: CloudEvent, d: dict[str, Any]) -> bool:
        return self.app.conversion_refused(str(d["proposal_id"]), int(d["attempt"]), d["rule"], d["reason"])


KAFKA_PROJECTIONS = (ProposalBook,)
REACTIONS = (CatalogAnswers,)
