"""Proposals commands: each method loads aggregates, applies one decision, saves.

Proposer names may travel on ``consultation.proposals.v1`` (the contract allows it:
members and deputies act in office); their contact details never leave this store,
and the outcome topic carries no person at all.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import RecordConflictError

from shared.application import ServiceApplication
from shared.clock import Clock
from shared.config import Settings
from shared.domain import NotFound, Refused
from shared.envelope import CloudEvent
from shared.workdays import WorkingCalendar

from services.proposals.domain import Digest, Member, Proposal

#: Who the scheduler says noticed a missed reply (the trace's actor).
SCHEDULER = "proposals-deadline-scheduler"


class ProposalsApplication(ServiceApplication):
    """Proposals (提案), suggestions (建议), digests (重要提案摘报) and members' duty records."""

    service = "proposals"
    outcomes = frozenset({"ProposalAnswered", "KeyProposalDigestSubmitted"})

    def __init__(self, settings: Settings, clock: Clock | None = None):
        super().__init__(settings, clock)
        self.calendar = WorkingCalendar.load(settings.calendar_dir)

    # -- what leaves the store -----------------------------------------------------------
    def redact(self, name: str, data: dict[str, Any], created: dict[str, Any]) -> dict[str, Any]:
        """Names may go out; contact details (phone) never do."""
        if "proposers" in data:
            data = {**data, "proposers": [{k: v for k, v in p.items() if k != "phone"}
                                          for p in data["proposers"]]}
        return data

    def outcome(self, event: CloudEvent) -> CloudEvent | None:
        """Other departments see what was answered and by whom, not who proposed it."""
        if event.name == "KeyProposalDigestSubmitted":
            public = [{k: v for k, v in p.items() if k != "proposers"} for p in event.data["proposals"]]
            return event.model_copy(update={"data": {**event.data, "proposals": public}})
        return event

    # -- proposals -----------------------------------------------------------------------
    def submit(self, opinion: dict[str, Any] | None, **fields: Any) -> str:
        proposal = Proposal.submit(**fields, opinion=opinion, today=self.clock.today())
        self.save(proposal)
        return str(proposal.id)

    def proposal(self, proposal_id: str) -> Proposal:
        return self.get(Proposal, proposal_id)

    def _act(self, proposal_id: str, action: str, *args: Any, **kwargs: Any) -> Any:
        proposal = self.get(Proposal, proposal_id)
        result = getattr(proposal, action)(*args, **kwargs)
        self.save(proposal)
        return result

    def review(self, proposal_id: str, decision: str, reason: str | None, reviewed_by: str,
               meeting: str | None, key: bool, face_to_face: bool,
               opinion_target: dict[str, Any] | None) -> None:
        self._act(proposal_id, "review_at_meeting", decision, reason, reviewed_by, meeting, key, face_to_face,
                  self.clock.today(), opinion_target)

    def assign(self, proposal_id: str, lead_unit: str, co_units: list[str], due_on: date | None,
               leader: str | None, supervisor: str | None, assigned_by: str) -> None:
        self._act(proposal_id, "assign", lead_unit, co_units, due_on, leader, supervisor, assigned_by,
                  self.clock.today(), self.calendar, self.settings.proposal_reply_working_days)

    def co_unit_view(self, proposal_id: str, unit: str, view: str) -> None:
        self._act(proposal_id, "send_co_unit_view", unit, view, self.clock.today())

    def consult(self, proposal_id: str, mode: str, held_on: date, proposer_view: str, unit: str | None) -> None:
        self._act(proposal_id, "consult", mode, held_on, proposer_view, unit, self.clock.today())

    def reply(self, proposal_id: str, category: str, content: str, unit: str) -> None:
        self._act(proposal_id, "reply", category, content, unit, self.clock.today())

    def rate(self, proposal_id: str, rating: str, comment: str | None, rated_by: str | None) -> None:
        self._act(proposal_id, "rate", rating, comment, rated_by, self.clock.today(), self.calendar,
                  self.settings.proposal_rehandling_working_days)

    def convert(self, proposal_id: str, converted_by: str, content_type: str, title: str | None) -> int:
        return self._act(proposal_id, "convert", converted_by, content_type, title, self.clock.today())

    def publish(self, proposal_id: str, published_by: str) -> None:
        self._act(proposal_id, "publish", published_by, self.clock.today())

    # -- the catalog's answer to a conversion (from Kafka; see messaging) ---------------------
    def _answer_conversion(self, proposal_id: str, action: str, *args: Any) -> bool:
        """Record the catalog's answer once, however often it is delivered."""
        for _ in range(20):
            try:
                proposal = self.get(Proposal, proposal_id)
            except NotFound:
                return False
            if not getattr(proposal, action)(*args, self.clock.today()):
                return False
            try:
                self.save(proposal)
                return True
            except RecordConflictError:
                continue  # another command on the proposal came first: decide again
        raise RuntimeError(f"proposal {proposal_id} kept changing; the answer will be delivered again")

    def topic_created(self, proposal_id: str, topic_id: str) -> bool:
        return self._answer_conversion(proposal_id, "link_topic", topic_id)

    def conversion_refused(self, proposal_id: str, attempt: int, rule: str, reason: str) -> bool:
        return self._answer_conversion(proposal_id, "conversion_refused", attempt, rule, reason)

    # -- digests (重要提案摘报) ----------------------------------------------------------------
    def submit_digest(self, title: str, summary: str, proposal_ids: list[str], compiled_by: str,
                      submitted_to: list[str]) -> str:
        proposals = []
        for pid in proposal_ids:
            try:
                proposals.append(self.get(Proposal, pid))
            except NotFound:
                raise Refused(f"No proposal with id {pid}.", rule="unknown_proposal") from None
        Digest.check(proposals)
        digest = Digest(
            title=title, summary=summary, compiled_by=compiled_by, submitted_to=submitted_to,
            submitted_on=self.clock.today().isoformat(),
            proposals=[{"proposal_id": str(p.id), "title": p.title, "status": p.status,
                        "lead_unit": (p.assignment or {}).get("lead_unit"),
                        "proposers": [x["name"] for x in p.proposers] or [p.submitted_by]}
                       for p in proposals])
        self.save(digest)
        return str(digest.id)

    # -- members' duty records (履职档案) -------------------------------------------------------
    def register_member(self, name: str, sector: str, employer: str | None, term: str, term_from: int,
                        term_to: int, registered_by: str | None) -> str:
        Member.check_term(term_from, term_to)
        member = Member(name=name, sector=sector, employer=employer, term=term, term_from=term_from,
                        term_to=term_to, registered_by=registered_by)
        try:
            self.save(member)
        except RecordConflictError:
            raise Refused(f"{name} is registered already.", rule="already_registered") from None
        return str(member.id)

    def member(self, member: str) -> Member:
        """By id, or by name."""
        try:
            return self.get(Member, UUID(member))
        except (ValueError, NotFound):
            pass
        try:
            found = self.repository.get(Member.create_id(member))
        except AggregateNotFoundError:
            raise NotFound(f"No member named {member} is registered") from None
        assert isinstance(found, Member)
        return found

    def record_duty(self, member: str, year: int, duty: str, title: str | None, on: date | None,
                    recorded_by: str | None) -> None:
        m = self.member(member)
        m.record(year, duty, title, on, recorded_by, self.clock.today())
        self.save(m)

    # -- deadlines ---------------------------------------------------------------------------
    def record_missed_deadlines(self, ids: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return self.record_missed_deadlines_of(((Proposal, i) for _, i in ids), SCHEDULER)
