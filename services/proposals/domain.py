"""Proposals (提案) of CPPCC members, suggestions (建议) of NPC deputies, and members' duty records.

Pure domain: aggregates, their events and the rules they enforce. No I/O — the
working-day calendar, today's date and what the service learned from other
services (topics, opinions) are handed in by the application.

Sources: 001 §16, §19, §23 and 分工方案 14(1)–(4); 000 四(五), 五(三); 002 第十一条.
The reply categories A/B/C, the proposer's rating and the handling windows are
national practice, not the seeds' words (the seeds say 办理, 答复, 反馈 only).
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from shared.deadlines import due as due_in, overdue
from shared.domain import Aggregate, Refused, glossed, require_reason, stable_names
from shared.workdays import WorkingCalendar


@glossed
class Kind(StrEnum):
    cppcc_proposal = "cppcc_proposal"  # 政协提案
    npc_suggestion = "npc_suggestion"  # 人大代表建议


@glossed
class Collective(StrEnum):
    """A proposer that is a body, not a person (集体提案)."""

    sector = "sector"  # 界别
    party_group = "party_group"  # 民主党派、人民团体
    special_committee = "special_committee"  # 政协专门委员会


@glossed
class ReviewDecision(StrEnum):
    """What the review meeting (提案审查会议, 001 分工 14(1)) decides against the filing standards."""

    filed = "filed"  # 立案
    not_filed = "not_filed"  # 不予立案 (理由必填)
    to_opinion = "to_opinion"  # 转为意见 (社情民意或意见建议)


@glossed
class ConsultationMode(StrEnum):
    """How the handling unit consults the proposer (000 五(三): 把沟通协商作为办理工作的必经环节)."""

    leader_instruction = "leader_instruction"  # 政府领导批办协商
    on_site = "on_site"  # 现场办理协商
    joint = "joint"  # 联合办理协商
    face_to_face = "face_to_face"  # 面对面办理


@glossed
class Category(StrEnum):
    """Reply categories — national practice, not a seed's words."""

    A = "A"  # 所提问题已经解决或基本解决、建议已采纳
    B = "B"  # 正在解决或列入计划逐步解决
    C = "C"  # 因条件限制或其他原因暂时不能解决、留作参考


@glossed
class Rating(StrEnum):
    """The proposer's view of the reply — national practice (满意 / 基本满意 / 不满意)."""

    satisfied = "satisfied"
    basically_satisfied = "basically_satisfied"
    unsatisfied = "unsatisfied"


@glossed
class Duty(StrEnum):
    """The "五个一" of a CPPCC member (001 §23)."""

    plenary_attendance = "plenary_attendance"  # 参加每年一次的全体会议 (per year)
    social_condition_report = "social_condition_report"  # 社情民意信息 (≥1 per year)
    activity = "activity"  # 政协组织的活动 (≥1 per year)
    plenary_speech = "plenary_speech"  # 大会发言材料 (per term, or a research report)
    research_report = "research_report"  # 调研视察报告 (per term, or a plenary speech)


PER_TERM = frozenset({Duty.plenary_speech, Duty.research_report})

#: Statuses in which a proposal is filed and in handling or beyond.
_FILED = ("filed", "handling", "replied", "closed")
#: Handling rounds: an unsatisfied rating reopens handling once more, not again and again.
_ROUNDS = 2


def _round(number: int) -> dict[str, Any]:
    return {"round": number, "consultations": [], "reply": None, "rating": None}


@stable_names(
    "proposals",
    actors={
        "ProposalSubmitted": "submitted_by",
        "ProposalFiled": "reviewed_by",
        "ProposalNotFiled": "reviewed_by",
        "ProposalTurnedIntoOpinion": "reviewed_by",
        "ProposalAssigned": "assigned_by",
        "CoUnitViewSent": "unit",
        "HandlingConsultationHeld": "unit",
        "ProposalAnswered": "unit",
        "ProposalRated": "rated_by",
        "ProposalReopened": "rated_by",
        "DeadlineMissed": "detected_by",
        "ProposalConverted": "converted_by",
        "ProposalTopicLinked": "linked_by",
        "ProposalConversionRefused": "linked_by",
        "ProposalPublished": "published_by",
    },
)
class Proposal(Aggregate):
    """One proposal (提案) or suggestion (建议), from submission to the proposer's rating.

    submitted → filed (立案) | not filed | turned into an opinion → assigned (交办) →
    handled, with consultation of the proposer → replied (答复) → rated; an
    unsatisfied rating reopens handling once (round 2), and both rounds are kept.
    """

    @event("ProposalSubmitted")
    def __init__(self, title: str, content: str, kind: str, proposers: list[dict[str, Any]],
                 collective: dict[str, Any] | None, submitted_by: str, submitted_on: str,
                 opinion_id: str | None = None, topic_id: str | None = None):
        self.title = title
        self.content = content
        self.kind = kind
        self.proposers = proposers
        self.collective = collective
        self.submitted_by = submitted_by
        self.submitted_on = submitted_on
        #: The opinion this proposal takes up (003 二(五)), and that opinion's topic.
        self.opinion_id = opinion_id
        self.topic_id = topic_id
        self.status = "submitted"
        self.review: dict[str, Any] | None = None
        self.key = False
        self.face_to_face = False
        self.assignment: dict[str, Any] | None = None
        self.co_unit_views: dict[str, dict[str, Any]] = {}
        self.round = 1
        self.rounds: list[dict[str, Any]] = [_round(1)]
        self.deadlines: dict[str, dict[str, Any]] = {}
        self.conversion: dict[str, Any] | None = None
        self.published: dict[str, Any] | None = None

    @classmethod
    def submit(cls, *, title: str, content: str, kind: str, proposers: list[dict[str, Any]],
               collective: dict[str, Any] | None, opinion_id: str | None, opinion: dict[str, Any] | None,
               today: date) -> Proposal:
        """Alone (one proposer), jointly (联名, several) or by a body (集体, a sector, a party or
        group, a special committee); a member may take up an opinion (003 二(五))."""
        kind = Kind(kind)
        if collective is not None and kind is not Kind.cppcc_proposal:
            raise Refused("A collective proposer (界别, 党派团体, 专门委员会) files CPPCC proposals; "
                          "NPC suggestions come from deputies.", rule="collective_cppcc_only")
        if collective is None and not proposers:
            raise Refused("A proposal names its proposer: one member or deputy, several jointly "
                          "(联名), or a collective body.", rule="proposer_required")
        names = [p["name"] for p in proposers]
        if len(set(names)) != len(names):
            raise Refused("A proposer is named twice.", rule="duplicate_proposer")
        topic_id = None
        if opinion_id is not None:
            if opinion is None:
                raise Refused(f"Opinion {opinion_id} is not known to the proposals service (it learns "
                              "opinions from the feedback service's events; one submitted moments ago "
                              "may still be on its way).", rule="unknown_opinion")
            if opinion.get("confidential"):
                raise Refused("A confidential opinion (点对点) is not taken up in a proposal, which is "
                              "published.", rule="opinion_confidential")
            topic_id = opinion.get("topic_id")
        submitted_by = collective["name"] if collective else names[0]
        return cls(title=title, content=content, kind=kind.value, proposers=proposers,
                   collective=collective, submitted_by=submitted_by, submitted_on=today.isoformat(),
                   opinion_id=opinion_id, topic_id=topic_id)

    # -- review (提案审查) -------------------------------------------------------------------
    def review_at_meeting(self, decision: str, reason: str | None, reviewed_by: str, meeting: str | None,
                          key: bool, face_to_face: bool, today: date,
                          opinion_target: dict[str, Any] | None = None) -> None:
        if self.status != "submitted":
            raise Refused(f"This proposal was already reviewed ({self.status}).", rule="already_reviewed")
        decision = ReviewDecision(decision)
        fields = {"reviewed_by": reviewed_by, "meeting": meeting, "reviewed_on": today.isoformat()}
        if decision is not ReviewDecision.filed and (key or face_to_face):
            raise Refused("Only a filed proposal (立案) is designated key (重点提案) or handled face to "
                          "face (面对面办理).", rule="designation_needs_filing")
        if decision is ReviewDecision.filed:
            self._file(**fields, reason=(reason or "").strip() or None, key=key, face_to_face=face_to_face)
        elif decision is ReviewDecision.not_filed:
            self._not_file(**fields, reason=require_reason(reason, "Not filing a proposal (不予立案)"))
        else:
            assert opinion_target is not None
            self._to_opinion(**fields, reason=require_reason(reason, "Turning a proposal into an opinion"),
                             title=self.title, content=self.content,
                             author=self._author(), **opinion_target)

    def _author(self) -> dict[str, Any]:
        """Who the opinion is from: the body, or the first proposer (whom feedback seals)."""
        if self.collective:
            return {"name": self.collective["name"], "organization": self.collective["name"]}
        first = self.proposers[0]
        return {"name": first["name"], "organization": first.get("sector")}

    @event("ProposalFiled")
    def _file(self, reviewed_by: str, meeting: str | None, reviewed_on: str, reason: str | None,
              key: bool, face_to_face: bool) -> None:
        self.status = "filed"
        self.key = key
        self.face_to_face = face_to_face
        self.review = {"decision": "filed", "reviewed_by": reviewed_by, "meeting": meeting,
                       "reviewed_on": reviewed_on, "reason": reason}

    @event("ProposalNotFiled")
    def _not_file(self, reviewed_by: str, meeting: str | None, reviewed_on: str, reason: str) -> None:
        self.status = "not_filed"
        self.review = {"decision": "not_filed", "reviewed_by": reviewed_by, "meeting": meeting,
                       "reviewed_on": reviewed_on, "reason": reason}

    @event("ProposalTurnedIntoOpinion")
    def _to_opinion(self, reviewed_by: str, meeting: str | None, reviewed_on: str, reason: str,
                    title: str, content: str, author: dict[str, Any], topic_id: str,
                    addressed_to: str) -> None:
        """The feedback service takes it in as an opinion on ``topic_id`` (from Kafka)."""
        self.status = "to_opinion"
        self.review = {"decision": "to_opinion", "reviewed_by": reviewed_by, "meeting": meeting,
                       "reviewed_on": reviewed_on, "reason": reason, "topic_id": topic_id,
                       "addressed_to": addressed_to}

    # -- assignment (交办) -------------------------------------------------------------------
    def assign(self, lead_unit: str, co_units: list[str], due_on: date | None, leader: str | None,
               supervisor: str | None, assigned_by: str, today: date, calendar: WorkingCalendar,
               reply_days: int) -> None:
        if self.status != "filed":
            why = "it is not filed (立案)" if self.status not in _FILED else f"it is {self.status}"
            raise Refused(f"Only a filed proposal waiting for assignment is assigned (交办); {why}.",
                          rule="not_assignable")
        if (leader or supervisor) and not self.key:
            raise Refused("A government leader leads (领办) and the CPPCC chair or a vice-chair supervises "
                          "(督办) key proposals (重点提案) only; this one was not designated key at review.",
                          rule="key_proposal_only")
        if lead_unit in co_units or len(set(co_units)) != len(co_units):
            raise Refused("The lead unit (主办) is named once and is not also a co-unit (协办).",
                          rule="units_overlap")
        if due_on is not None:
            if due_on <= today:
                raise Refused(f"The reply's due date {due_on} must lie after today ({today}).",
                              rule="due_in_past")
            deadline = {**due_in(calendar, today, 1), "due": due_on.isoformat(),
                        "provisional": not calendar.has_official_data(due_on.year),
                        "working_days": calendar.working_days_between(today, due_on).value}
        else:
            deadline = due_in(calendar, today, reply_days)
        self._assign(lead_unit=lead_unit, co_units=co_units, leader=leader, supervisor=supervisor,
                     assigned_by=assigned_by, assigned_on=today.isoformat(), reply_due=deadline)

    @event("ProposalAssigned")
    def _assign(self, lead_unit: str, co_units: list[str], leader: str | None, supervisor: str | None,
                assigned_by: str, assigned_on: str, reply_due: dict[str, Any]) -> None:
        self.status = "handling"
        self.assignment = {"lead_unit": lead_unit, "co_units": co_units, "leader": leader,
                           "supervisor": supervisor, "assigned_by": assigned_by, "assigned_on": assigned_on}
        self.deadlines["reply"] = reply_due

    def _require_handling(self, what: str) -> dict[str, Any]:
        if self.status != "handling" or self.assignment is None:
            raise Refused(f"{what} belongs to handling, after assignment (交办) and before the reply; "
                          f"this proposal is {self.status}.", rule="not_in_handling")
        return self.assignment

    # -- handling (办理) ---------------------------------------------------------------------
    def send_co_unit_view(self, unit: str, view: str, today: date) -> None:
        assignment = self._require_handling("A co-unit's view (协办意见)")
        if unit not in assignment["co_units"]:
            raise Refused(f"{unit} is not a co-unit (协办单位) of this proposal; the co-units are "
                          f"{', '.join(assignment['co_units']) or 'none'}.", rule="not_a_co_unit")
        self._co_unit_view(unit=unit, view=view, sent_on=today.isoformat(), round=self.round)

    @event("CoUnitViewSent")
    def _co_unit_view(self, unit: str, view: str, sent_on: str, round: int) -> None:
        self.co_unit_views[unit] = {"unit": unit, "view": view, "sent_on": sent_on, "round": round}

    def consult(self, mode: str, held_on: date, proposer_view: str, unit: str | None, today: date) -> None:
        """Consultation with the proposer (沟通协商), the step no reply may skip (000 五(三));
        held by the lead unit unless ``unit`` names a co-unit."""
        assignment = self._require_handling("A handling consultation")
        unit = unit or assignment["lead_unit"]
        if unit != assignment["lead_unit"] and unit not in assignment["co_units"]:
            raise Refused(f"{unit} does not handle this proposal.", rule="not_a_handling_unit")
        start = date.fromisoformat(self.deadlines["reply"]["from"])
        if not start <= held_on <= today:
            raise Refused(f"The consultation date {held_on} must lie between this round's start "
                          f"({start}) and today ({today}).", rule="consultation_date")
        self._consult(mode=ConsultationMode(mode).value, held_on=held_on.isoformat(),
                      proposer_view=proposer_view, unit=unit, round=self.round)

    @event("HandlingConsultationHeld")
    def _consult(self, mode: str, held_on: str, proposer_view: str, unit: str, round: int) -> None:
        self.current["consultations"].append({"mode": mode, "held_on": held_on,
                                              "proposer_view": proposer_view, "unit": unit})

    @property
    def current(self) -> dict[str, Any]:
        return self.rounds[-1]

    def reply(self, category: str, content: str, unit: str, today: date) -> None:
        assignment = self._require_handling("A reply (答复)")
        if unit != assignment["lead_unit"]:
            raise Refused(f"The lead unit ({assignment['lead_unit']}) replies, having gathered the "
                          f"co-units' views; {unit} cannot.", rule="lead_unit_replies")
        missing = [u for u in assignment["co_units"] if u not in self.co_unit_views]
        if missing:
            raise Refused(f"The co-units' views (协办意见) go to the lead unit before it replies; "
                          f"still missing: {', '.join(missing)}.", rule="co_unit_views_missing")
        consultations = self.current["consultations"]
        if not consultations:
            raise Refused("Consultation with the proposer is a required step of handling "
                          "(把沟通协商作为办理工作的必经环节, 000 五(三)): record a handling consultation "
                          "(批办, 现场, 联合 or 面对面) with the proposer's view before replying.",
                          rule="consultation_required")
        if self.face_to_face and not any(c["mode"] == ConsultationMode.face_to_face for c in consultations):
            raise Refused("This proposal was designated for face-to-face handling (面对面办理) at review: "
                          "record a face-to-face consultation before replying.", rule="face_to_face_required")
        deadline = self.deadlines["reply"]
        self._answer(round=self.round, category=Category(category).value, content=content, unit=unit,
                     answered_on=today.isoformat(), on_time=today.isoformat() <= deadline["due"],
                     due=deadline["due"], key=self.key, kind=self.kind, title=self.title,
                     topic_id=self.linked_topic)

    @property
    def linked_topic(self) -> str | None:
        """The consultation topic this proposal belongs to: the one it became, else its opinion's."""
        if self.conversion and self.conversion.get("topic_id"):
            return self.conversion["topic_id"]
        return self.topic_id

    @event("ProposalAnswered")
    def _answer(self, round: int, category: str, content: str, unit: str, answered_on: str, on_time: bool,
                due: str, key: bool, kind: str, title: str, topic_id: str | None) -> None:
        self.status = "replied"
        self.current["reply"] = {"category": category, "content": content, "unit": unit,
                                 "answered_on": answered_on, "on_time": on_time}
        self.deadlines["reply"]["met_on"] = answered_on

    def rate(self, rating: str, comment: str | None, rated_by: str | None, today: date,
             calendar: WorkingCalendar, rehandling_days: int) -> None:
        """By a proposer; the first proposer (or the collective body) if ``rated_by`` is not given."""
        if self.status != "replied":
            raise Refused(f"The proposer rates the reply once it is given; this proposal is {self.status}.",
                          rule="not_replied")
        rated_by = rated_by or self.submitted_by
        if rated_by != self.submitted_by and rated_by not in {p["name"] for p in self.proposers}:
            raise Refused(f"The proposer rates the reply; {rated_by} is not a proposer of this proposal.",
                          rule="not_a_proposer")
        rating = Rating(rating)
        comment = (comment or "").strip() or None
        if rating is Rating.unsatisfied and comment is None:
            raise Refused("An unsatisfied rating says why (the comment goes back to the handling unit).",
                          rule="comment_required")
        reopen = rating is Rating.unsatisfied and self.round < _ROUNDS
        self._rate(round=self.round, rating=rating.value, comment=comment, rated_by=rated_by,
                   rated_on=today.isoformat(), final=not reopen)
        if reopen:
            self._reopen(round=self.round + 1, comment=comment, rated_by=rated_by, reopened_on=today.isoformat(),
                         reply_due=due_in(calendar, today, rehandling_days, self.round + 1))

    @event("ProposalRated")
    def _rate(self, round: int, rating: str, comment: str | None, rated_by: str, rated_on: str,
              final: bool) -> None:
        self.current["rating"] = {"rating": rating, "comment": comment, "rated_by": rated_by,
                                  "rated_on": rated_on}
        self.status = "closed" if final else "replied"

    @event("ProposalReopened")
    def _reopen(self, round: int, comment: str | None, rated_by: str, reopened_on: str,
                reply_due: dict[str, Any]) -> None:
        """Unsatisfied: handled once more (再次办理), the comment attached, a new reply owed."""
        self.status = "handling"
        self.round = round
        self.rounds.append({**_round(round), "reopened_on": reopened_on, "comment": comment})
        self.deadlines["reply"] = reply_due

    # -- deadlines ---------------------------------------------------------------------------
    def record_missed(self, today: date, calendar: WorkingCalendar, detected_by: str) -> list[str]:
        steps = overdue(self.deadlines, today, calendar)
        for step in steps:
            d = self.deadlines[step]
            self._missed(step=step, round=d["round"], due=d["due"], detected_on=today.isoformat(),
                         detected_by=detected_by, department=(self.assignment or {}).get("lead_unit"))
        return steps

    @event("DeadlineMissed")
    def _missed(self, step: str, round: int, due: str, detected_on: str, detected_by: str,
                department: str | None) -> None:
        self.deadlines[step]["missed_on"] = detected_on

    # -- into consultation (提案转化为协商议题) ---------------------------------------------------
    def convert(self, converted_by: str, content_type: str, title: str | None, today: date) -> int:
        """Ask the catalog for a topic; it answers on its own topic (topic id, or why not)."""
        if self.status not in _FILED:
            raise Refused(f"Only a filed proposal (立案) becomes a consultation topic; this one is "
                          f"{self.status}.", rule="not_filed")
        c = self.conversion
        if c and c["status"] == "topic_created":
            raise Refused(f"This proposal already became topic {c['topic_id']}.", rule="already_converted")
        if c and c["status"] == "requested":
            raise Refused(f"This proposal's conversion (attempt {c['attempt']}) awaits the catalog's "
                          "answer.", rule="conversion_pending")
        attempt = (c["attempt"] + 1) if c else 1
        self._convert(attempt=attempt, converted_by=converted_by, converted_on=today.isoformat(),
                      title=title or self.title, description=self.content, content_type=content_type)
        return attempt

    @event("ProposalConverted")
    def _convert(self, attempt: int, converted_by: str, converted_on: str, title: str, description: str,
                 content_type: str) -> None:
        self.conversion = {"attempt": attempt, "status": "requested", "converted_by": converted_by,
                           "converted_on": converted_on, "topic_id": None, "refusal": None}

    def link_topic(self, topic_id: str, linked_on: date) -> bool:
        """The catalog holds a topic made from this proposal; False when this was known already.

        Usually the answer to a conversion; a topic the catalog took in with this
        proposal's id by other means (attempt 0) links it just the same.
        """
        if self.conversion and self.conversion["status"] == "topic_created":
            return False
        attempt = self.conversion["attempt"] if self.conversion else 0
        self._link(attempt=attempt, topic_id=topic_id, linked_on=linked_on.isoformat(), linked_by="catalog")
        return True

    @event("ProposalTopicLinked")
    def _link(self, attempt: int, topic_id: str, linked_on: str, linked_by: str) -> None:
        if self.conversion is None:
            self.conversion = {"attempt": attempt, "converted_by": None, "converted_on": None, "refusal": None}
        self.conversion.update(status="topic_created", topic_id=topic_id)

    def conversion_refused(self, attempt: int, rule: str, reason: str, refused_on: date) -> bool:
        """The catalog refused the topic; False when this attempt's answer was known already."""
        c = self.conversion
        if not c or c["attempt"] != attempt or c["status"] != "requested":
            return False
        self._refused(attempt=attempt, rule=rule, reason=reason, refused_on=refused_on.isoformat(),
                      linked_by="catalog")
        return True

    @event("ProposalConversionRefused")
    def _refused(self, attempt: int, rule: str, reason: str, refused_on: str, linked_by: str) -> None:
        assert self.conversion is not None
        self.conversion.update(status="refused", refusal={"rule": rule, "reason": reason,
                                                          "refused_on": refused_on})

    # -- publication (提案及办理结果公开, 001 分工 14(4)) ---------------------------------------------
    def publish(self, published_by: str, today: date) -> None:
        if self.status not in ("replied", "closed"):
            raise Refused("A proposal is published with its results, once the reply is given; this one "
                          f"is {self.status}.", rule="not_replied")
        if self.published:
            raise Refused(f"This proposal was published on {self.published['published_on']}.",
                          rule="already_published")
        self._publish(published_by=published_by, published_on=today.isoformat())

    @event("ProposalPublished")
    def _publish(self, published_by: str, published_on: str) -> None:
        self.published = {"published_by": published_by, "published_on": published_on}


@stable_names("proposals", actors={"KeyProposalDigestSubmitted": "compiled_by"})
class Digest(Aggregate):
    """A key-proposal digest (重要提案摘报, 001 §19): the CPPCC office sends it to the Party
    committee and government offices for leaders to read and instruct."""

    @staticmethod
    def check(proposals: list[Proposal]) -> None:
        not_key = [p.title for p in proposals if not p.key]
        if not_key:
            raise Refused(f"A key-proposal digest takes key proposals (重点提案) only; not key: "
                          f"{'; '.join(not_key)}.", rule="not_key_proposal")

    @event("KeyProposalDigestSubmitted")
    def __init__(self, title: str, summary: str, proposals: list[dict[str, Any]], compiled_by: str,
                 submitted_to: list[str], submitted_on: str):
        self.title = title
        self.summary = summary
        self.proposals = proposals
        self.compiled_by = compiled_by
        self.submitted_to = submitted_to
        self.submitted_on = submitted_on


@stable_names("proposals", actors={"MemberRegistered": "registered_by", "DutyRecorded": "recorded_by"})
class Member(Aggregate):
    """A CPPCC member and their duty record (委员履职档案, "五个一", 001 §23)."""

    @staticmethod
    def create_id(name: str) -> UUID:
        """One member per name in a committee: found again by name, without a view."""
        return uuid5(NAMESPACE_URL, f"consultation:proposals:member:{name}")

    @event("MemberRegistered")
    def __init__(self, name: str, sector: str, employer: str | None, term: str, term_from: int,
                 term_to: int, registered_by: str | None = None):
        self.name = name
        self.sector = sector
        self.employer = employer
        self.term = term
        self.term_from = term_from
        self.term_to = term_to
        self.duties: list[dict[str, Any]] = []

    @staticmethod
    def check_term(term_from: int, term_to: int) -> None:
        if term_to < term_from or term_to - term_from > 5:
            raise Refused(f"A term (届) runs from a year to a later one, five years at most; "
                          f"{term_from}–{term_to} is not one.", rule="term_years")

    def record(self, year: int, duty: str, title: str | None, on: date | None, recorded_by: str | None,
               today: date) -> None:
        duty = Duty(duty)
        if not self.term_from <= year <= self.term_to:
            raise Refused(f"{self.name}'s term ({self.term}) runs {self.term_from}–{self.term_to}; "
                          f"{year} is outside it.", rule="outside_term")
        if on is not None and (on.year != year or on > today):
            raise Refused(f"The date {on} lies in {year} and not after today ({today}).", rule="duty_date")
        if duty is Duty.plenary_attendance and any(
                d["duty"] == duty and d["year"] == year for d in self.duties):
            raise Refused(f"{self.name}'s attendance at the {year} plenary is recorded already.",
                          rule="already_recorded")
        if duty is not Duty.plenary_attendance and not title:
            raise Refused(f"A {duty} is recorded with its title.", rule="title_required")
        self._record(year=year, duty=duty.value, title=title, on=on.isoformat() if on else None,
                     recorded_by=recorded_by, recorded_on=today.isoformat())

    @event("DutyRecorded")
    def _record(self, year: int, duty: str, title: str | None, on: str | None, recorded_by: str | None,
                recorded_on: str) -> None:
        self.duties.append({"year": year, "duty": duty, "title": title, "on": on})
