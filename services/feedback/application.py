"""Feedback commands: each method loads aggregates, applies one decision, saves.

Personal data is sealed here, under a key of its person (``shared.vault``), before
the domain ever sees it: events hold the sealed form and a pseudonymous reference,
and ``redact`` keeps even the sealed form, and every confidential text, off Kafka.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import RecordConflictError
from pydantic import BaseModel, Field

from shared.application import OutcomeForm, ServiceApplication
from shared.clock import Clock
from shared.config import Settings
from shared.domain import NotFound, Refused, require_reason
from shared.envelope import CloudEvent
from shared.logs import get_logger
from shared.pseudonyms import Pseudonyms
from shared.vault import KEYED_RECORDERS, KeyRaced, Vault
from shared.workdays import WorkingCalendar

from services.feedback.domain import (
    Decision, Disposition, Erasure, Evaluation, Opinion, TopicResults, mask_identifiers, require_accepted_topic,
)

log = get_logger("feedback")

#: Who the scheduler says noticed a missed deadline (the trace's actor).
SCHEDULER = "feedback-deadline-scheduler"

#: Free text an event may carry; confidential opinions never let any of it out.
_TEXT_FIELDS = ("content", "reason", "message", "comment", "shortcomings", "risks", "suggestions")
#: Sealed personal data: stays in the store, never in an envelope.
_SEALED_FIELDS = ("author_sealed", "evaluator_sealed")
#: Outcome events about one opinion: a confidential opinion has none.
_OPINION_OUTCOMES = {"OpinionAnswered", "FeedbackDelivered"}


class OpinionAnsweredV2(BaseModel):
    """``OpinionAnswered.v2`` on the outcome topic (from 2026-12; docs/schema-evolution.md).

    Against version 1: ``answered_by`` is now ``department``; ``adopted`` says at a glance
    whether the opinion was taken up; the opinion and its topic are named in ``data``;
    the internal feedback deadline (``feedback_due``) is gone.
    """

    opinion_id: str
    topic_id: str | None
    round: int = Field(description="1, or 2 after an unsatisfied rating reopened the opinion")
    disposition: Disposition
    adopted: bool = Field(description="adopted or partially adopted (采纳、部分采纳)")
    reason: str | None = Field(description="why not, or not wholly, adopted (不采纳的说明理由)")
    department: str = Field(description="the department that answered (version 1: answered_by)")
    answered_on: date


def answered_v2(event: CloudEvent) -> OpinionAnsweredV2:
    d = event.data
    return OpinionAnsweredV2(
        opinion_id=event.subject, topic_id=event.topicid, round=d["round"], disposition=d["disposition"],
        adopted=d["disposition"] != Disposition.not_adopted, reason=d.get("reason"),
        department=d["answered_by"], answered_on=d["answered_on"])


class FeedbackApplication(ServiceApplication):
    """Opinions (意见建议), answers, feedback (反馈), decisions and evaluation (评议)."""

    service = "feedback"
    #: Contributors' keys live beside the events, written with the first event that uses them.
    recorders = KEYED_RECORDERS
    outcomes = frozenset({"OpinionAnswered", "FeedbackDelivered", "TopicResultsPublished",
                          "TopicResultsRevised", "PostEvaluationTriggered", "PostEvaluationConcluded"})
    withheld = frozenset(_SEALED_FIELDS)
    nullable = frozenset(_TEXT_FIELDS)
    #: The words of the feedback are addressed to a person: not for other departments.
    outcome_withheld = {"FeedbackDelivered": frozenset({"message"})}
    outcome_versions = {"OpinionAnswered": {2: OutcomeForm(OpinionAnsweredV2, answered_v2)}}
    created_fields = ("topic_id", "confidential")

    def __init__(self, settings: Settings, clock: Clock | None = None):
        super().__init__(settings, clock)
        self.calendar = WorkingCalendar.load(settings.calendar_dir)
        self.pseudonyms = Pseudonyms.for_settings(settings)
        self.vault = Vault(settings, self.service, self.recorder)

    def close(self) -> None:
        self.vault.close()
        super().close()

    # -- people ------------------------------------------------------------------
    def person_ref(self, person: dict[str, Any]) -> str:
        return self.pseudonyms.person(person)

    def seal_person(self, person: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        """The person's reference, their data sealed, and what the save of the event
        carrying it takes (a new person's key, written in the same transaction)."""
        ref = self.person_ref(person)
        sealed, with_key = self.vault.seal(ref, {k: v for k, v in person.items() if v})
        return ref, sealed, with_key

    def save_sealed(self, person: dict[str, Any], make: Callable[[str, str], list[Any]]) -> list[Any]:
        """Seal ``person``, make the aggregates that carry the sealed data (``make(ref,
        sealed)``) and save them with the person's key in one transaction. When the key
        raced (the same person in another request at the same moment, or erased since), seal
        again under the key that is theirs now and make them anew."""
        while True:
            ref, sealed, with_key = self.seal_person(person)
            aggregates = make(ref, sealed)
            try:
                self.save(*aggregates, **with_key)
            except KeyRaced:
                self.vault.raced(ref)
                continue
            return aggregates

    def open_person(self, ref: str | None, sealed: str | None) -> dict[str, Any] | None:
        return self.vault.open(ref, sealed) if ref else None

    # -- what leaves the store -----------------------------------------------------
    def redact(self, name: str, data: dict[str, Any], created: dict[str, Any]) -> dict[str, Any]:
        """No sealed data in any envelope; no text of a confidential opinion; phone and ID
        numbers masked in whatever free text remains."""
        if any(f in data for f in _SEALED_FIELDS):
            data = {k: v for k, v in data.items() if k not in _SEALED_FIELDS}
        else:
            data = dict(data)
        confidential = bool(created.get("confidential"))
        for field in _TEXT_FIELDS:
            text = data.get(field)
            if type(text) is str:
                data[field] = None if confidential else mask_identifiers(text)
        return data

    def outcome(self, event: CloudEvent) -> CloudEvent | None:
        """Other departments see answers and feedback of public opinions only, without the
        words addressed to a person; results and post-evaluations as they are."""
        if event.name in _OPINION_OUTCOMES and self.created_facts(event.subject).get("confidential"):
            return None
        return super().outcome(event)

    # -- opinions ----------------------------------------------------------------------
    def submit_opinion(self, author: dict[str, Any], **fields: Any) -> tuple[str, str]:
        person = {k: author.get(k) for k in ("name", "phone", "id_number", "address")}
        # Refused before a key is made for the person: a refusal changes nothing.
        Opinion.answering_department(fields["topic"], fields["session"], fields["topic_id"],
                                     fields["session_id"], fields["platform"], fields["addressed_to"])
        [opinion] = self.save_sealed(person, lambda ref, sealed: [Opinion.submit(
            **fields, author_ref=ref, author_sealed=sealed, person=person,
            organization=author.get("organization"), today=self.clock.today(),
            calendar=self.calendar, answer_days=self.settings.answer_working_days)])
        return str(opinion.id), opinion.author_ref

    def opinion_of_proposal(self, proposal_id: str, topic: dict[str, Any] | None, topic_id: str,
                            addressed_to: str, author: dict[str, Any], title: str, content: str) -> bool:
        """A proposal the review meeting turned into an opinion (转为意见), from the proposals
        service's event; False when it was taken in already (a redelivery)."""
        if Opinion.create_id(proposal_id=proposal_id) in self.repository:
            return False
        try:
            self.submit_opinion(
                author, topic=topic, session=None, topic_id=topic_id, session_id=None,
                channel="proposal", platform_level=None, platform=None, category=None,
                content=f"{title}\n\n{content}", confidential=False, addressed_to=addressed_to,
                proposal_id=proposal_id)
        except RecordConflictError:
            return False
        return True

    def escalate(self, opinion_id: str, to: str, tier: str, escalated_by: str, reason: str,
                 received_via: str | None = None, inbound_id: str | None = None) -> None:
        opinion = self.get(Opinion, opinion_id)
        opinion.escalate(to, tier, escalated_by, reason, self.clock.today(), self.calendar,
                         self.settings.answer_working_days, received_via, inbound_id)
        self.save(opinion)

    def answer(self, opinion_id: str, disposition: str, reason: str | None, answered_by: str) -> None:
        opinion = self.get(Opinion, opinion_id)
        opinion.answer(disposition, reason, answered_by, self.clock.today(), self.calendar,
                       self.settings.feedback_working_days)
        self.save(opinion)

    def deliver_feedback(self, opinion_id: str, channel: str, message: str, delivered_by: str) -> None:
        opinion = self.get(Opinion, opinion_id)
        opinion.deliver_feedback(channel, message, delivered_by, self.clock.today())
        self.save(opinion)

    def rate(self, opinion_id: str, rating: str, comment: str | None) -> None:
        opinion = self.get(Opinion, opinion_id)
        opinion.rate(rating, comment, self.clock.today(), self.calendar, self.settings.answer_working_days)
        self.save(opinion)

    def opinion_record(self, opinion_id: str) -> dict[str, Any]:
        """The official record of one opinion, with its author's details while they exist."""
        o = self.get(Opinion, opinion_id)
        person = self.open_person(o.author_ref, o.author_sealed)
        return {
            "id": str(o.id), "topic_id": o.topic_id, "session_id": o.session_id, "channel": o.channel,
            "platform_level": o.platform_level, "platform": o.platform, "category": o.category,
            "author": {"ref": o.author_ref if person else None,
                       "organization": o.organization if person else None,
                       "erased": person is None, **(person or {})},
            "content": o.content, "confidential": o.confidential, "responsible": o.responsible,
            "submitted_on": o.submitted_on, "status": o.status, "round": o.round, "rounds": o.rounds,
            "escalations": o.escalations, "deadlines": o.deadlines, "version": o.version,
        }

    def confidential_texts(self, opinion_ids: list[str]) -> dict[str, str]:
        """The content of confidential opinions, for the two readers allowed to see it."""
        return {i: self.get(Opinion, i).content for i in opinion_ids}

    # -- erasure (crypto-shredding) ------------------------------------------------------
    def erase_author(self, ref: str, requested_by: str, reason: str | None) -> str:
        """Destroy the person's key; their events stay as stored, unreadable for good.

        The event is saved first: should the key's removal then fail, the request
        fails too and is repeated, and the views already show the person erased.
        """
        reason = require_reason(reason, "Erasing a person's data")
        if not self.vault.holds(ref):
            if done := self.created_before():
                return done  # the same request sent again: erased the first time
            if self.vault.destroyed(ref):
                raise Refused("This person's data was already erased.", rule="already_erased")
            raise NotFound(f"No person with reference {ref}")
        today = self.clock.today().isoformat()
        erasure = Erasure(author_ref=ref, requested_by=requested_by, reason=reason, erased_on=today)
        self.save(erasure)
        self.vault.destroy(ref, today)
        log.info("person erased", ref=ref, erasure=str(erasure.id))
        return str(erasure.id)

    # -- topic results -----------------------------------------------------------------
    def publish_results(self, topic_id: str, summary: str, published_by: str,
                        consultation: dict[str, Any]) -> str:
        record, unanswered, totals = consultation["record"], consultation["unanswered"], consultation["totals"]
        today = self.clock.today()
        try:
            results = self.repository.get(TopicResults.create_id(topic_id))
        except AggregateNotFoundError:
            TopicResults.check(topic_id, record, unanswered)
            results = TopicResults(topic_id=topic_id, summary=summary, published_by=published_by,
                                   published_on=today.isoformat(), record=record, totals=totals)
        else:
            results.revise(summary, published_by, today, record, unanswered, totals)
        self.save(results)
        return str(results.id)

    # -- decisions ---------------------------------------------------------------------
    def draft_decision(self, topic: dict[str, Any] | None, **fields: Any) -> str:
        decision = Decision.draft(topic, **fields, today=self.clock.today())
        self.save(decision)
        return str(decision.id)

    def decision(self, decision_id: str) -> Decision:
        return self.get(Decision, decision_id)

    def deliberate(self, decision_id: str, submitted_by: str, consultation: dict[str, Any],
                   exemption: dict[str, Any] | None) -> None:
        decision = self.get(Decision, decision_id)
        decision.submit_for_deliberation(submitted_by, consultation, exemption, self.clock.today())
        self.save(decision)

    def issue(self, decision_id: str, issued_on: date, issued_by: str) -> None:
        decision = self.get(Decision, decision_id)
        decision.issue(issued_on, issued_by, self.clock.today(), self.calendar)
        self.save(decision)

    def interpret(self, decision_id: str, held_on: date, by: str) -> None:
        decision = self.get(Decision, decision_id)
        decision.interpret(held_on, by, self.clock.today())
        self.save(decision)

    def open_post_evaluation(self, decision_id: str, reason: str | None, opened_by: str) -> None:
        decision = self.get(Decision, decision_id)
        decision.open_post_evaluation(reason, opened_by, self.clock.today())
        self.save(decision)

    def conclude_post_evaluation(self, decision_id: str, conclusion: str, summary: str, formed_by: str,
                                 participants: list[str]) -> None:
        decision = self.get(Decision, decision_id)
        decision.conclude(conclusion, summary, formed_by, participants, self.clock.today())
        self.save(decision)

    # -- evaluation ---------------------------------------------------------------------
    @property
    def evaluation_policy(self) -> dict[str, Any]:
        s = self.settings
        return {"min_forms": s.post_evaluation_min_forms, "missed_share": s.post_evaluation_missed_share,
                "objections": s.post_evaluation_objections}

    def submit_evaluation(self, topic: dict[str, Any] | None, evaluator: str, decision_id: str | None,
                          topic_id: str, **form: Any) -> str:
        """One form; counted on its decision in the same transaction, so the trigger fires
        once however many forms arrive at the same moment (a lost race is retried)."""
        require_accepted_topic(topic_id, topic)
        if decision_id is not None:
            self.evaluated_decision(decision_id, topic_id)  # refused before the evaluator's key is made

        def made(ref: str, sealed: str) -> list[Any]:
            """The form, and its decision (read afresh) with the form counted."""
            evaluation = Evaluation(topic_id=topic_id, decision_id=decision_id, evaluator_ref=ref,
                                    evaluator_sealed=sealed, submitted_on=self.clock.today().isoformat(), **form)
            if decision_id is None:
                return [evaluation]
            decision = self.evaluated_decision(decision_id, topic_id)
            decision.count_evaluation(str(evaluation.id), evaluation.aim_missed, evaluation.objection,
                                      self.evaluation_policy, self.clock.today())
            return [evaluation, decision]

        for attempt in range(20):
            try:
                return str(self.save_sealed({"name": evaluator}, made)[0].id)
            except RecordConflictError:
                log.info("evaluation raced another on one decision; counting again",
                         decision=decision_id, attempt=attempt)
        raise Refused("Too many evaluations arrived at once for this decision; send it again.",
                      rule="busy")

    def evaluated_decision(self, decision_id: str, topic_id: str) -> Decision:
        decision = self.get(Decision, decision_id)
        if decision.topic_id != topic_id:
            raise Refused(f"Decision {decision_id} was drafted on topic {decision.topic_id}, "
                          f"not on topic {topic_id}.", rule="decision_of_other_topic")
        decision.require_issued()
        return decision

    # -- deadlines -----------------------------------------------------------------------
    def record_missed_deadlines(self, ids: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Opinions' answers and feedback, decisions' interpretations: each miss once."""
        kinds = {"opinion": Opinion, "decision": Decision}
        return self.record_missed_deadlines_of(((kinds[k], i) for k, i in ids), SCHEDULER)
