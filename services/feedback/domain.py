"""Opinions (意见建议), their answers and feedback (反馈), decisions and public evaluation (评议).

Pure domain: aggregates, their events and the rules they enforce. No I/O — the
working-day calendar, today's date, what the service learned about topics and
sessions, and the sealed (encrypted) personal data are handed in by the application.

Sources: domain steps 6, 8–10; 000 四(六), 五(七); 001 §19; 002 第七条(五), 第八条,
第十三条; 003 二(五); 004 三(二) and 干群面对面恳谈宣讲机制 1–3.
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from shared.deadlines import due as _due, overdue as _overdue
from shared.domain import Aggregate, Refused, evolve, glossed, new_id, require_reason, stable_names
from shared.workdays import WorkingCalendar

#: "起草部门应当自政策性文件印发之日起20个工作日内进行政策解读" (004 干群面对面恳谈宣讲机制 2).
INTERPRETATION_WORKING_DAYS = 20


@glossed
class Channel(StrEnum):
    """How an opinion reached the service (征求意见的渠道)."""

    in_session = "in_session"  # 会上
    written = "written"  # 书面
    online = "online"  # 网络问政 / 线上说事处
    hearing = "hearing"  # 听证
    survey = "survey"  # 问卷
    symposium = "symposium"  # 座谈
    publicity = "publicity"  # 公示期
    expert_review = "expert_review"  # 专家论证
    visit = "visit"  # 走访
    dialogue = "dialogue"  # 民意恳谈会
    deputy_member_contact = "deputy_member_contact"  # 两代表一委员联系
    social_condition_report = "social_condition_report"  # 社情民意
    grassroots = "grassroots"  # 说事平台 (开单)
    hotline = "hotline"  # 热线
    proposal = "proposal"  # 提案转为意见 (a proposal's review turned it into an opinion)


@glossed
class PlatformLevel(StrEnum):
    """The grassroots platform's level (说事平台, 004 三(一))."""

    county_centre = "county_centre"  # 县说事中心
    township_office = "township_office"  # 乡镇说事处
    village_station = "village_station"  # 村(社区)说事站
    grid_point = "grid_point"  # 网格说事点


@glossed
class Category(StrEnum):
    """How a grassroots item is classed (004 三(二)3)."""

    personal = "personal"  # 个人事项
    public_interest = "public_interest"  # 公益事项
    administrative = "administrative"  # 行政管理


@glossed
class Disposition(StrEnum):
    adopted = "adopted"  # 采纳
    partially_adopted = "partially_adopted"  # 部分采纳
    not_adopted = "not_adopted"  # 不采纳 (理由必填)


class Rating(StrEnum):
    satisfied = "satisfied"
    basically_satisfied = "basically_satisfied"
    unsatisfied = "unsatisfied"


@glossed
class Tier(StrEnum):
    """The two escalation tiers (吹哨报到, 004 三(二)3)."""

    township = "township"  # 村社吹哨 队伍报道
    county = "county"  # 乡镇吹哨 部门报道


@glossed
class DecisionKind(StrEnum):
    major_administrative_decision = "major_administrative_decision"  # 重大行政决策
    major_public_policy = "major_public_policy"  # 重大公共政策
    normative_document = "normative_document"  # 行政规范性文件


class PolicyArea(StrEnum):
    """The areas of public concern 004 干群面对面恳谈宣讲机制 1 names (and others: "等")."""

    social_security = "social_security"  # 社会保障
    housing = "housing"  # 住房保障
    health = "health"  # 医疗卫生
    employment = "employment"  # 劳动就业
    education = "education"  # 教育
    elderly_care = "elderly_care"  # 养老
    urban_construction = "urban_construction"  # 城市建设
    rural_revitalization = "rural_revitalization"  # 乡村振兴
    business_environment = "business_environment"  # 营商环境
    other = "other"


@glossed
class ExemptionGround(StrEnum):
    not_public_by_law = "not_public_by_law"  # 依法不予公开
    emergency = "emergency"  # 情况紧急


class Effect(StrEnum):
    """实施效果, as the evaluation form asks it."""

    achieved = "achieved"
    partially_achieved = "partially_achieved"
    not_achieved = "not_achieved"


class Judgement(StrEnum):
    """可操作性 / 合理性 on the evaluation form."""

    good = "good"
    fair = "fair"
    poor = "poor"


class Conclusion(StrEnum):
    """What a post-evaluation report decides (继续 / 调整 / 终止)."""

    continue_ = "continue"
    adjust = "adjust"
    terminate = "terminate"


#: Where a decision stands once its post-evaluation concludes.
STATUS_AFTER = {"continue": "in_effect", "adjust": "to_adjust", "terminate": "terminated"}

#: Who answers at each level once an item is escalated there.
_ESCALATION = {
    Tier.township: ({PlatformLevel.village_station, PlatformLevel.grid_point}, PlatformLevel.township_office,
                    "a village or grid item goes to the township's teams (村社吹哨 队伍报道)"),
    Tier.county: ({PlatformLevel.township_office}, PlatformLevel.county_centre,
                  "a township item goes to a county department (乡镇吹哨 部门报道)"),
}


# -- personal data inside free text ----------------------------------------------------

_PHONE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?!\d)")
_LANDLINE = re.compile(r"(?<!\d)0\d{2,3}-?\d{7,8}(?!\d)")
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
#: What every one of the three needs somewhere: seven digits, a space or a dash allowed
#: after the third. Most texts have none (a year has four), and one search is a third of
#: three substitutions: every event of a rebuild passes its text through here.
_MAYBE_NUMBER = re.compile(r"\d{3}[- ]?\d{4}")


def mask_identifiers(text: str, person: dict[str, Any] | None = None) -> str:
    """``text`` without phone numbers, ID numbers or the given person's own details.

    Citizens write "我是张三, 电话 138..." into the opinion itself. Opinions are read
    by departments and published once answered, so such details are masked where
    they stand; the department reaches the author through the sealed contact data.
    """
    if person:
        for value, mask in (person.get("id_number"), "[身份证号]"), (person.get("phone"), "[电话]"), \
                           (person.get("address"), "[地址]"), (person.get("name"), "[姓名]"):
            if value and len(value.strip()) >= 2:
                text = text.replace(value.strip(), mask)
    if not _MAYBE_NUMBER.search(text):
        return text
    text = _ID_NUMBER.sub("[身份证号]", text)
    text = _PHONE.sub("[电话]", text)
    return _LANDLINE.sub("[电话]", text)


# -- what the service learned from the others ----------------------------------------------

_ON_THE_WAY = ("(The feedback service learns topics and sessions from the other services' published "
               "events; one created moments ago may still be on its way: try again in a few seconds.)")


def require_accepted_topic(topic_id: str, topic: dict[str, Any] | None) -> None:
    """Opinions, decisions and evaluations belong to a topic the catalog accepted."""
    if topic is None:
        raise Refused(f"Topic {topic_id} is not known to the feedback service. {_ON_THE_WAY}",
                      rule="unknown_topic")
    if topic["status"] != "accepted":
        raise Refused(f"Topic {topic_id} is {topic['status']}, not accepted at screening (会商); "
                      "it takes no opinions, decisions or evaluations.", rule="topic_not_accepted")


@stable_names(
    "feedback",
    actors={
        "OpinionSubmitted": "author_ref",
        "OpinionEscalated": "escalated_by",
        "OpinionAnswered": "answered_by",
        "FeedbackDelivered": "delivered_by",
        "SatisfactionRated": "author_ref",
        "OpinionReopened": "author_ref",
        "DeadlineMissed": "detected_by",
    },
)
class Opinion(Aggregate):
    """One opinion or suggestion (意见建议), or a grassroots item (开单), and its answer.

    open → answered → fed back → rated. An unsatisfied rating reopens it for a
    second round: a second answer and a second feedback, both kept.
    """

    @staticmethod
    def answering_department(topic: dict[str, Any] | None, session: dict[str, Any] | None,
                             topic_id: str | None, session_id: str | None, platform: str | None,
                             addressed_to: str | None) -> str:
        """Who must answer, once the topic and session are checked (nothing is recorded
        before these checks pass: not even the author's key)."""
        if topic_id:
            require_accepted_topic(topic_id, topic)
        if session_id:
            if session is None:
                raise Refused(f"Session {session_id} is not known to the feedback service. {_ON_THE_WAY}",
                              rule="unknown_session")
            if session["topic_id"] != topic_id:
                raise Refused(f"Session {session_id} belongs to topic {session['topic_id']}, "
                              f"not to topic {topic_id}.", rule="session_of_other_topic")
            if session["status"] == "cancelled":
                raise Refused(f"Session {session_id} was cancelled; it takes no opinions.",
                              rule="session_cancelled")
        responsible = (addressed_to or (session or {}).get("lead_department")
                       or (topic or {}).get("lead_department") or platform)
        if not responsible:
            raise Refused(
                "No department is known to answer this opinion: the topic is not in a plan with a "
                "lead department yet. Name the answering department in addressed_to.",
                rule="no_answering_department",
            )
        return responsible

    @classmethod
    def submit(
        cls,
        *,
        topic: dict[str, Any] | None,
        session: dict[str, Any] | None,
        topic_id: str | None,
        session_id: str | None,
        channel: str,
        platform_level: str | None,
        platform: str | None,
        category: str | None,
        author_ref: str,
        author_sealed: str,
        person: dict[str, Any],
        organization: str | None,
        content: str,
        confidential: bool,
        addressed_to: str | None,
        today: date,
        calendar: WorkingCalendar,
        answer_days: int,
        proposal_id: str | None = None,
        received_via: str | None = None,
        inbound_id: str | None = None,
    ) -> Opinion:
        """Record an opinion on a topic the catalog accepted (``topic``: what the service
        learned of it), optionally in one of its sessions; or a grassroots item."""
        responsible = cls.answering_department(topic, session, topic_id, session_id, platform, addressed_to)
        return cls(
            topic_id=topic_id, session_id=session_id, channel=Channel(channel).value,
            platform_level=platform_level, platform=platform, category=category,
            author_ref=author_ref, author_sealed=author_sealed, organization=organization,
            content=mask_identifiers(content, person), confidential=confidential,
            responsible=responsible, submitted_on=today.isoformat(),
            answer_due=_due(calendar, today, answer_days), proposal_id=proposal_id,
            received_via=received_via, inbound_id=inbound_id,
        )

    @staticmethod
    def create_id(proposal_id: str | None = None, received_via: str | None = None,
                  inbound_id: str | None = None) -> UUID:
        """A proposal turned into an opinion (转为意见) is one opinion, however often the
        proposals service's event is delivered: its id derives from the proposal's. One
        sent over the e-government bus derives from the sender and its message id."""
        if proposal_id:
            return uuid5(NAMESPACE_URL, f"consultation:feedback:opinion-of-proposal:{proposal_id}")
        if received_via and inbound_id:
            return uuid5(NAMESPACE_URL, f"consultation:feedback:opinion-of-inbound:{received_via}\n{inbound_id}")
        return new_id()

    @event("OpinionSubmitted")
    def __init__(self, topic_id: str | None, session_id: str | None, channel: str,
                 platform_level: str | None, platform: str | None, category: str | None,
                 author_ref: str, author_sealed: str, organization: str | None, content: str,
                 confidential: bool, responsible: str, submitted_on: str, answer_due: dict[str, Any],
                 proposal_id: str | None = None, received_via: str | None = None,
                 inbound_id: str | None = None):
        self.topic_id = topic_id
        self.session_id = session_id
        self.channel = channel
        self.platform_level = platform_level
        self.platform = platform
        self.category = category
        self.author_ref = author_ref
        self.author_sealed = author_sealed
        self.organization = organization
        self.content = content
        self.confidential = confidential
        self.responsible = responsible
        self.submitted_on = submitted_on
        #: The proposal whose review turned it into this opinion (转为意见), if any.
        self.proposal_id = proposal_id
        #: The sender on the e-government bus (CloudEvent source) and its message id, if it came so.
        self.received_via = received_via
        self.inbound_id = inbound_id
        self.status = "open"
        self.round = 1
        self.rounds: list[dict[str, Any]] = [{"round": 1, "answer": None, "feedback": None,
                                              "satisfaction": None}]
        self.escalations: list[dict[str, Any]] = []
        self.deadlines: dict[str, dict[str, Any]] = {"answer": answer_due}

    @property
    def current(self) -> dict[str, Any]:
        return self.rounds[-1]

    # -- escalation (吹哨报到) ---------------------------------------------------------
    def escalate(self, to: str, tier: str, escalated_by: str, reason: str | None, today: date,
                 calendar: WorkingCalendar, answer_days: int, received_via: str | None = None,
                 inbound_id: str | None = None) -> None:
        if inbound_id and any(e.get("received_via") == received_via and e.get("inbound_id") == inbound_id
                              for e in self.escalations):
            return  # the bus sent this escalation before: it is recorded already
        if self.channel != Channel.grassroots:
            raise Refused("Only grassroots items (说事平台) are escalated (吹哨报到, 004 三(二)3); "
                          f"this opinion came by {self.channel}.", rule="not_grassroots")
        if self.status != "open":
            raise Refused(f"This item was already answered (it is {self.status}); escalation is for "
                          "items that cannot be resolved where they were raised.", rule="already_answered")
        tier = Tier(tier)
        from_levels, to_level, words = _ESCALATION[tier]
        if self.platform_level not in from_levels:
            raise Refused(f"Escalation goes one tier at a time: {words}; this item is at the "
                          f"{self.platform_level} level.", rule="escalation_tier")
        self._escalate(to=to, tier=tier.value, escalated_by=escalated_by,
                       reason=require_reason(reason, "Escalating an item"),
                       from_level=self.platform_level, to_level=to_level.value,
                       escalated_on=today.isoformat(),
                       answer_due=_due(calendar, today, answer_days, self.round),
                       received_via=received_via, inbound_id=inbound_id)

    @event("OpinionEscalated")
    def _escalate(self, to: str, tier: str, escalated_by: str, reason: str, from_level: str,
                  to_level: str, escalated_on: str, answer_due: dict[str, Any],
                  received_via: str | None = None, inbound_id: str | None = None) -> None:
        """The escalated-to body must answer (队伍报道 / 部门报道), on a fresh window."""
        self.escalations.append({"to": to, "tier": tier, "escalated_by": escalated_by, "reason": reason,
                                 "from_level": from_level, "to_level": to_level,
                                 "escalated_on": escalated_on, "received_via": received_via,
                                 "inbound_id": inbound_id})
        self.platform_level = to_level
        self.responsible = to
        previous = self.deadlines["answer"]
        self.deadlines["answer"] = {**answer_due, "missed_on": None,
                                    "previous_missed_on": previous["missed_on"]}

    # -- answer, feedback, satisfaction ----------------------------------------------------
    def answer(self, disposition: str, reason: str | None, answered_by: str, today: date,
               calendar: WorkingCalendar, feedback_days: int) -> None:
        if self.status != "open":
            raise Refused(f"This opinion was already answered in round {self.round} "
                          f"({self.current['answer']['disposition']}); a second answer comes only "
                          "after an unsatisfied rating reopens it.", rule="already_answered")
        if self.escalations and answered_by != self.responsible:
            raise Refused(f"This item was escalated to {self.responsible}, which must answer it "
                          f"(吹哨报到); {answered_by} cannot.", rule="escalated_body_answers")
        disposition = Disposition(disposition)
        reason = (reason or "").strip() or None
        if disposition is not Disposition.adopted and reason is None:
            raise Refused("An opinion not adopted in full needs its reason (说明理由).",
                          rule="reason_required")
        self._answer(round=self.round, disposition=disposition.value, reason=reason,
                     answered_by=answered_by, answered_on=today.isoformat(),
                     feedback_due=_due(calendar, today, feedback_days, self.round))

    @event("OpinionAnswered")
    def _answer(self, round: int, disposition: str, reason: str | None, answered_by: str,
                answered_on: str, feedback_due: dict[str, Any]) -> None:
        self.status = "answered"
        self.current["answer"] = {"disposition": disposition, "reason": reason,
                                  "answered_by": answered_by, "answered_on": answered_on}
        self.deadlines["answer"]["met_on"] = answered_on
        self.deadlines["feedback"] = feedback_due

    def deliver_feedback(self, channel: str, message: str, delivered_by: str, today: date) -> None:
        if self.status == "open":
            raise Refused("Feedback goes to the contributor after the opinion is answered; "
                          "this one is not answered yet.", rule="not_answered")
        if self.status != "answered":
            raise Refused(f"Feedback for round {self.round} was already delivered.",
                          rule="feedback_already_delivered")
        self._feedback(round=self.round, channel=channel, message=message, delivered_by=delivered_by,
                       delivered_on=today.isoformat())

    @event("FeedbackDelivered")
    def _feedback(self, round: int, channel: str, message: str, delivered_by: str,
                  delivered_on: str) -> None:
        self.status = "fed_back"
        self.current["feedback"] = {"channel": channel, "message": message,
                                    "delivered_by": delivered_by, "delivered_on": delivered_on}
        self.deadlines["feedback"]["met_on"] = delivered_on

    def rate(self, rating: str, comment: str | None, today: date, calendar: WorkingCalendar,
             answer_days: int) -> None:
        if self.status in ("open", "answered"):
            raise Refused("Satisfaction is rated after the feedback is delivered; "
                          f"this opinion is {self.status}.", rule="no_feedback_yet")
        if self.status == "rated":
            raise Refused(f"Round {self.round} was already rated.", rule="already_rated")
        rating = Rating(rating)
        self._rate(round=self.round, rating=rating.value, comment=comment, author_ref=self.author_ref,
                   rated_on=today.isoformat())
        if rating is Rating.unsatisfied:
            self._reopen(round=self.round + 1, author_ref=self.author_ref, reopened_on=today.isoformat(),
                         answer_due=_due(calendar, today, answer_days, self.round + 1))

    @event("SatisfactionRated")
    def _rate(self, round: int, rating: str, comment: str | None, author_ref: str, rated_on: str) -> None:
        self.status = "rated"
        self.current["satisfaction"] = {"rating": rating, "comment": comment, "rated_on": rated_on}

    @event("OpinionReopened")
    def _reopen(self, round: int, author_ref: str, reopened_on: str, answer_due: dict[str, Any]) -> None:
        """Unsatisfied: a second answer and a second feedback are owed."""
        self.status = "open"
        self.round = round
        self.rounds.append({"round": round, "answer": None, "feedback": None, "satisfaction": None})
        self.deadlines = {"answer": answer_due}

    # -- deadlines --------------------------------------------------------------------------
    def record_missed(self, today: date, calendar: WorkingCalendar, detected_by: str) -> list[str]:
        steps = _overdue(self.deadlines, today, calendar)
        for step in steps:
            self._missed(step=step, round=self.deadlines[step]["round"], due=self.deadlines[step]["due"],
                         detected_on=today.isoformat(), detected_by=detected_by,
                         department=self.responsible)
        return steps

    @event("DeadlineMissed")
    def _missed(self, step: str, round: int, due: str, detected_on: str, detected_by: str,
                department: str) -> None:
        self.deadlines[step]["missed_on"] = detected_on


# Version 2 of both (2026-12): what came over the e-government bus names its sender and
# message id. Stored version-1 events are read with neither (docs/schema-evolution.md).
evolve(Opinion.OpinionSubmitted, {"received_via": None, "inbound_id": None})
evolve(Opinion.OpinionEscalated, {"received_via": None, "inbound_id": None})


@stable_names("feedback", actors={"AuthorErased": "requested_by"})
class Erasure(Aggregate):
    """A person's erasure (个人信息删除): their key is destroyed, their history stays."""

    @event("AuthorErased")
    def __init__(self, author_ref: str, requested_by: str, reason: str, erased_on: str):
        self.author_ref = author_ref
        self.requested_by = requested_by
        self.reason = reason
        self.erased_on = erased_on


@stable_names("feedback", actors={"TopicResultsPublished": "published_by",
                                  "TopicResultsRevised": "published_by"})
class TopicResults(Aggregate):
    """A topic's public results (结果反馈, 002 第八条, 003 二(五)): what was adopted, and why
    the rest was not. The adoption record is the service's own, never typed in."""

    @staticmethod
    def create_id(topic_id: str) -> UUID:
        """One results aggregate per topic, found again without a view."""
        return uuid5(NAMESPACE_URL, f"consultation:feedback:results:{topic_id}")

    @staticmethod
    def check(topic_id: str, record: list[dict[str, Any]], unanswered: int) -> None:
        if not record and not unanswered:
            raise Refused(f"Topic {topic_id} has no opinions yet, so it has no results to publish.",
                          rule="no_opinions")
        if unanswered:
            raise Refused(f"{unanswered} opinion(s) on topic {topic_id} are not answered yet; the "
                          "results say how every opinion was answered.", rule="opinions_unanswered")

    @event("TopicResultsPublished")
    def __init__(self, topic_id: str, summary: str, published_by: str, published_on: str,
                 record: list[dict[str, Any]], totals: dict[str, int]):
        self.topic_id = topic_id
        self.publications = [{"summary": summary, "published_by": published_by,
                              "published_on": published_on, "record": record, "totals": totals}]

    def revise(self, summary: str, published_by: str, today: date, record: list[dict[str, Any]],
               unanswered: int, totals: dict[str, int]) -> None:
        self.check(self.topic_id, record, unanswered)
        self._revise(summary=summary, published_by=published_by, published_on=today.isoformat(),
                     record=record, totals=totals)

    @event("TopicResultsRevised")
    def _revise(self, summary: str, published_by: str, published_on: str, record: list[dict[str, Any]],
                totals: dict[str, int]) -> None:
        """Published again after a reopened opinion's second answer, say."""
        self.publications.append({"summary": summary, "published_by": published_by,
                                  "published_on": published_on, "record": record, "totals": totals})


@stable_names(
    "feedback",
    actors={
        "DecisionDrafted": "drafted_by",
        "DecisionSubmittedForDeliberation": "submitted_by",
        "DecisionIssued": "issued_by",
        "PolicyInterpreted": "by",
        "InterpretationDeadlineMissed": "detected_by",
        "PostEvaluationTriggered": "opened_by",
        "PostEvaluationConcluded": "formed_by",
    },
)
class Decision(Aggregate):
    """A major decision, public policy or normative document drafted on a topic (004 三(三)).

    drafted → deliberated (集体审议) → issued (印发) → interpreted (解读, 20 working days)
    → evaluated by the public (群众评议) → post-evaluation (实施后评估) when warranted.
    """

    @classmethod
    def draft(cls, topic: dict[str, Any] | None, topic_id: str, title: str, kind: str, area: str,
              drafted_by: str, today: date) -> Decision:
        require_accepted_topic(topic_id, topic)
        return cls(topic_id=topic_id, title=title, kind=DecisionKind(kind).value,
                   area=PolicyArea(area).value, drafted_by=drafted_by, drafted_on=today.isoformat())

    @event("DecisionDrafted")
    def __init__(self, topic_id: str, title: str, kind: str, area: str, drafted_by: str, drafted_on: str):
        self.topic_id = topic_id
        self.title = title
        self.kind = kind
        self.area = area
        self.drafted_by = drafted_by
        self.drafted_on = drafted_on
        self.status = "drafted"
        self.deliberation: dict[str, Any] | None = None
        self.issued: dict[str, Any] | None = None
        self.interpretation: dict[str, Any] | None = None
        self.deadlines: dict[str, dict[str, Any]] = {}
        self.evaluations = {"forms": 0, "aim_missed": 0, "objections": 0}
        self.post_evaluation: dict[str, Any] | None = None

    # -- the deliberation gate --------------------------------------------------------------
    def submit_for_deliberation(self, submitted_by: str, consultation: dict[str, Any],
                                exemption: dict[str, Any] | None, today: date) -> None:
        """Collective deliberation (集体审议) only after a public consultation whose adoption
        record goes with the materials, or under a recorded exemption (004 干群面对面 1)."""
        if self.deliberation is not None:
            raise Refused(f"This decision went to collective deliberation on "
                          f"{self.deliberation['submitted_on']}.", rule="already_deliberated")
        if exemption is not None:
            exemption = {"ground": ExemptionGround(exemption["ground"]).value,
                         "reason": require_reason(exemption.get("reason"), "An exemption")}
            record: list[dict[str, Any]] = []
        else:
            record = consultation["record"]
            why = None
            if not record and not consultation["unanswered"]:
                why = "no opinions were solicited on its topic"
            elif consultation["unanswered"]:
                why = f"{consultation['unanswered']} opinion(s) on its topic are not answered yet"
            if why:
                raise Refused(
                    f"A decision goes to collective deliberation only after the public was consulted "
                    f"and every opinion answered, with the adoption record among the materials "
                    f"(004: 没有广泛征求群众意见的，不得提交集体审议); {why}. An exemption "
                    "(依法不予公开 / 情况紧急) must be recorded with its reason instead.",
                    rule="no_public_consultation",
                )
        self._deliberate(submitted_by=submitted_by, submitted_on=today.isoformat(),
                         adoption_record=record, totals=consultation["totals"] if not exemption else {},
                         exemption=exemption)

    @event("DecisionSubmittedForDeliberation")
    def _deliberate(self, submitted_by: str, submitted_on: str, adoption_record: list[dict[str, Any]],
                    totals: dict[str, int], exemption: dict[str, Any] | None) -> None:
        self.status = "deliberated"
        self.deliberation = {"submitted_by": submitted_by, "submitted_on": submitted_on,
                             "adoption_record": adoption_record, "totals": totals, "exemption": exemption}

    # -- issuance and interpretation (谁起草谁解读) --------------------------------------------
    def issue(self, issued_on: date, issued_by: str, today: date, calendar: WorkingCalendar) -> None:
        if self.deliberation is None:
            raise Refused("A decision is issued after collective deliberation (集体审议).",
                          rule="not_deliberated")
        if self.issued is not None:
            raise Refused(f"This decision was issued on {self.issued['issued_on']}.", rule="already_issued")
        if issued_on > today:
            raise Refused(f"{issued_on} is after today ({today}); record the issuance once it happened.",
                          rule="issued_in_future")
        self._issue(issued_on=issued_on.isoformat(), issued_by=issued_by,
                    interpretation_due=_due(calendar, issued_on, INTERPRETATION_WORKING_DAYS))

    @event("DecisionIssued")
    def _issue(self, issued_on: str, issued_by: str, interpretation_due: dict[str, Any]) -> None:
        self.status = "issued"
        self.issued = {"issued_on": issued_on, "issued_by": issued_by}
        self.deadlines["interpretation"] = interpretation_due

    def interpret(self, held_on: date, by: str, today: date) -> None:
        if self.issued is None:
            raise Refused("A policy is interpreted after it is issued.", rule="not_issued")
        if self.interpretation is not None:
            raise Refused(f"The interpretation was held on {self.interpretation['held_on']}.",
                          rule="already_interpreted")
        if held_on > today or held_on < date.fromisoformat(self.issued["issued_on"]):
            raise Refused(f"The interpretation date {held_on} must lie between the issuance "
                          f"({self.issued['issued_on']}) and today ({today}).", rule="interpretation_date")
        due = self.deadlines["interpretation"]["due"]
        self._interpret(held_on=held_on.isoformat(), by=by, on_time=held_on.isoformat() <= due)

    @event("PolicyInterpreted")
    def _interpret(self, held_on: str, by: str, on_time: bool) -> None:
        self.interpretation = {"held_on": held_on, "by": by, "on_time": on_time}
        self.deadlines["interpretation"]["met_on"] = held_on

    def record_missed(self, today: date, calendar: WorkingCalendar, detected_by: str) -> list[str]:
        steps = _overdue(self.deadlines, today, calendar)
        for step in steps:
            self._missed(step=step, due=self.deadlines[step]["due"], detected_on=today.isoformat(),
                         detected_by=detected_by, department=self.drafted_by)
        return steps

    @event("InterpretationDeadlineMissed")
    def _missed(self, step: str, due: str, detected_on: str, detected_by: str, department: str) -> None:
        self.deadlines[step]["missed_on"] = detected_on

    # -- evaluation and post-evaluation (实施后评估) -------------------------------------------
    def require_issued(self) -> None:
        if self.issued is None:
            raise Refused("The public evaluates a decision after it is issued and in effect; "
                          "this one is not issued yet.", rule="not_issued")

    def count_evaluation(self, evaluation_id: str, aim_missed: bool, objection: bool,
                         policy: dict[str, Any], today: date) -> None:
        """Count one evaluation form; when the forms show the aim missed or many objections,
        the post-evaluation starts — once (004 干群面对面 3)."""
        self.require_issued()
        self._count(evaluation_id=evaluation_id, aim_missed=aim_missed, objection=objection)
        e = self.evaluations
        reasons = []
        if e["forms"] >= policy["min_forms"] and e["aim_missed"] >= policy["missed_share"] * e["forms"]:
            reasons.append(f"{e['aim_missed']} of {e['forms']} evaluation forms say the aim was not achieved")
        if e["objections"] >= policy["objections"]:
            reasons.append(f"{e['objections']} evaluation forms object (satisfaction 2 or less)")
        if reasons and self.post_evaluation is None:
            self._trigger(trigger="evaluation_forms", reason="; ".join(reasons), opened_by="evaluation forms",
                          opened_on=today.isoformat(), evaluations=dict(e), topic_id=self.topic_id)

    @event("EvaluationCounted")
    def _count(self, evaluation_id: str, aim_missed: bool, objection: bool) -> None:
        self.evaluations["forms"] += 1
        self.evaluations["aim_missed"] += int(aim_missed)
        self.evaluations["objections"] += int(objection)

    def open_post_evaluation(self, reason: str | None, opened_by: str, today: date) -> None:
        self.require_issued()
        if self.post_evaluation is not None:
            raise Refused(f"The post-evaluation was already opened on {self.post_evaluation['opened_on']} "
                          f"({self.post_evaluation['reason']}).", rule="post_evaluation_open")
        self._trigger(trigger="by_hand", reason=require_reason(reason, "Opening a post-evaluation"),
                      opened_by=opened_by, opened_on=today.isoformat(), evaluations=dict(self.evaluations),
                      topic_id=self.topic_id)

    @event("PostEvaluationTriggered")
    def _trigger(self, trigger: str, reason: str, opened_by: str, opened_on: str,
                 evaluations: dict[str, int], topic_id: str) -> None:
        self.status = "under_post_evaluation"
        self.post_evaluation = {"trigger": trigger, "reason": reason, "opened_by": opened_by,
                                "opened_on": opened_on, "evaluations": evaluations, "report": None}

    def conclude(self, conclusion: str, summary: str, formed_by: str, participants: list[str],
                 today: date) -> None:
        if self.post_evaluation is None:
            raise Refused("No post-evaluation is open for this decision.", rule="no_post_evaluation")
        if self.post_evaluation["report"] is not None:
            raise Refused("The post-evaluation report was already formed.", rule="already_concluded")
        self._conclude(conclusion=Conclusion(conclusion).value, summary=summary, formed_by=formed_by,
                       participants=participants, concluded_on=today.isoformat(), topic_id=self.topic_id)

    @event("PostEvaluationConcluded")
    def _conclude(self, conclusion: str, summary: str, formed_by: str, participants: list[str],
                  concluded_on: str, topic_id: str) -> None:
        """Formed collectively (集体讨论后形成); decides continue, adjust or terminate."""
        assert self.post_evaluation is not None
        self.status = STATUS_AFTER[conclusion]
        self.post_evaluation["report"] = {"conclusion": conclusion, "summary": summary, "formed_by": formed_by,
                                          "participants": participants, "concluded_on": concluded_on}


@stable_names("feedback", actors={"EvaluationSubmitted": "evaluator_ref"})
class Evaluation(Aggregate):
    """One public evaluation form (群众评议表); the evaluator is a person, by reference only."""

    @event("EvaluationSubmitted")
    def __init__(self, topic_id: str, decision_id: str | None, effect: str, satisfaction: int,
                 operability: str, reasonableness: str, shortcomings: str | None, risks: str | None,
                 suggestions: str | None, evaluator_ref: str, evaluator_sealed: str, submitted_on: str):
        self.topic_id = topic_id
        self.decision_id = decision_id
        self.effect = effect
        self.satisfaction = satisfaction
        self.operability = operability
        self.reasonableness = reasonableness
        self.shortcomings = shortcomings
        self.risks = risks
        self.suggestions = suggestions
        self.evaluator_ref = evaluator_ref
        self.evaluator_sealed = evaluator_sealed
        self.submitted_on = submitted_on

    @property
    def aim_missed(self) -> bool:
        return self.effect == Effect.not_achieved

    @property
    def objection(self) -> bool:
        return self.satisfaction <= 2
