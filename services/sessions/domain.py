"""Consultation sessions (协商活动), from scheduling to leaders' instructions.

Pure domain: aggregates, their events and the rules they enforce. No I/O — the
working-day calendar and today's date are handed in by the application.

Sources: domain steps 4–8; 000 四–五; 001 §10–§19; 002 第六条–第七条, 第十三条–第十四条;
003 二(四)–(五).
"""

from __future__ import annotations

from datetime import date, timedelta
from enum import StrEnum
from typing import Any

from eventsourcing.domain import event

from shared.domain import Aggregate, Refused, glossed, new_id, require_reason, stable_names
from shared.forms import FORMS_BY_PLAN_KIND, Form, check_form, current_plan_kind
from shared.workdays import WorkingCalendar

#: Notice and materials reach participants at least this many working days before (002 第七条(二)).
NOTICE_WORKING_DAYS = 15
#: The lead department forms the consultation opinion within this many working days of the
#: session; the office's report is due the same number of working days later (002 第七条(四)).
OPINION_WORKING_DAYS = 5
REPORT_WORKING_DAYS = 5
#: A notice recorded more than this many working days after its stated date is flagged "recorded late".
RECORDED_LATE_AFTER = 2
#: Who compiles the report and answers for it when it is late (政府办公室, 002 第七条(四)).
REPORT_OFFICE = "government_office"

#: "会前…开展专题调研" (001 分工 10(1), 11(1)): a CPPCC thematic consultation and quarterly
#: symposium are not held without research; every consultation of a 有事好商量 room is not
#: either ("不调研不协商", 003 二(五)). The seeds ask it of no other form or body.
CPPCC_RESEARCH_FORMS = frozenset({Form.thematic_consultation, Form.quarterly_symposium})

#: The body whose rules a session runs by, when its topic is in plans of several kinds.
BODY_ORDER = ("government", "cppcc", "cppcc_room", "village")
#: Whose an unplanned consultation is when the request does not say: the CPPCC's first, whose
#: rule it is (001 §9: 由政协采取适当形式适时进行协商), else the first body whose forms suit it.
UNPLANNED_ORDER = ("cppcc", "government", "cppcc_room", "village")
#: Whose follow-up the implementation of leaders' instructions is copied to: the CPPCC office
#: for CPPCC outcomes (001 §19), the government office (督办, 002 第十三条) otherwise.
COPIED_TO = {"cppcc": "cppcc_office", "cppcc_room": "cppcc_office", "government": "government_office",
             "village": "government_office"}


def _deviation(actual: str, planned: set[str], reason: str | None, rule: str, words: str) -> str | None:
    """A session keeps to its plan item (month, lead department) or says why it does not."""
    if not planned or actual in planned:
        return None
    reason = (reason or "").strip() or None
    if reason is None:
        raise Refused(words.format(planned=", ".join(sorted(planned))), rule=rule)
    return reason


def body_of(plan_kinds: list[str], form: str) -> str:
    """The body a session runs by: the first kind, government first, whose forms include it."""
    kinds = [current_plan_kind(k) for k in plan_kinds]
    for kind in BODY_ORDER:
        if kind in kinds and Form(form) in FORMS_BY_PLAN_KIND[kind]:
            return kind
    check_form(next(k for k in BODY_ORDER if k in kinds), form)  # refuses, naming the forms
    raise AssertionError("unreachable")


@glossed
class Role(StrEnum):
    """Who takes part (协商对象)."""

    npc_deputy = "npc_deputy"  # 人大代表
    cppcc_member = "cppcc_member"  # 政协委员
    democratic_party = "democratic_party"  # 民主党派
    non_party = "non_party"  # 无党派人士
    federation_of_industry = "federation_of_industry"  # 工商联
    people_organization = "people_organization"  # 人民团体
    social_organization = "social_organization"  # 社会组织
    expert = "expert"  # 专家学者
    stakeholder = "stakeholder"  # 利益相关方
    public_representative = "public_representative"  # 群众代表
    department = "department"  # 政府部门
    party_congress_deputy = "party_congress_deputy"  # 党代表
    retired_cadre = "retired_cadre"  # 离退休老干部 (000 四(一) 形势通报会)
    press = "press"  # 新闻媒体
    united_front_department = "united_front_department"  # 统战部门
    mediator = "mediator"  # 解事员 (004)
    grid_cadre = "grid_cadre"  # 网格员、村(社区)干部 (004)


class Step(StrEnum):
    """The steps after a session that run on a working-day deadline."""

    opinion = "opinion"  # 协商意见 (lead department)
    report = "report"  # 协商报告 (office, to the Party committee and government)


@glossed
class ExemptionCategory(StrEnum):
    """Grounds for deciding without consultation (政府协商简化机制, 002 第十四条)."""

    national_security = "national_security"  # 国家安全
    public_safety = "public_safety"  # 公众安全
    economic_social_security = "economic_social_security"  # 经济社会安全
    superior_requirement = "superior_requirement"  # 上级要求需立即做出决策决定
    not_public_by_law = "not_public_by_law"  # 依法不予公开


_STEP_WORDS = {Step.opinion: "consultation opinion (协商意见)", Step.report: "consultation report (协商报告)"}


def due_dates(held_on: date, calendar: WorkingCalendar) -> dict[str, dict[str, Any]]:
    """The opinion and report due dates that a session held on ``held_on`` is held to."""
    opinion = calendar.add_working_days(held_on, OPINION_WORKING_DAYS)
    report = calendar.add_working_days(opinion.due, REPORT_WORKING_DAYS)
    report_gaps = sorted(set(opinion.years_without_data) | set(report.years_without_data))
    return {
        Step.opinion.value: {"due": opinion.due.isoformat(), "provisional": opinion.provisional,
                             "years_without_data": list(opinion.years_without_data)},
        Step.report.value: {"due": report.due.isoformat(), "provisional": bool(report_gaps),
                            "years_without_data": report_gaps},
    }


@stable_names(
    "sessions",
    actors={
        "SessionScheduled": "host",
        "SessionRescheduled": "decided_by",
        "SessionCancelled": "decided_by",
        "ParticipantsInvited": "invited_by",
        "ResearchFiled": "filed_by",
        "NoticeServed": "served_by",
        "SessionHeld": "recorded_by",
        "ConsultationOpinionFormed": "formed_by",
        "ReportCompiled": "compiled_by",
        "ReportSubmitted": "submitted_by",
        "InstructionIssued": "leader",
        "ImplementationReported": "reported_by",
        "DeadlineMissed": "detected_by",
        "DeadlineConfirmed": "confirmed_by",
    },
)
class Session(Aggregate):
    """One consultation activity (协商活动) and the follow-up it owes.

    scheduled → held → opinion formed → report compiled → report submitted →
    instructed. Invitations, research, notice, rescheduling (改期) and
    cancellation come before it is held.
    """

    @classmethod
    def schedule(
        cls,
        planned: list[dict[str, Any]],
        topic_id: str,
        form: str,
        title: str,
        scheduled_for: date,
        lead_department: str,
        host: str,
        calendar: WorkingCalendar,
        form_change_reason: str | None = None,
        unplanned: dict[str, Any] | None = None,
        date_change_reason: str | None = None,
        lead_department_change_reason: str | None = None,
    ) -> Session:
        """Schedule a session for a topic the plans in force hold (``planned``: their items), or,
        with ``unplanned`` (reason, deciding body, kind), one not in the year's plan (001 §9)."""
        form = Form(form)
        if unplanned is not None:
            if planned:
                raise Refused(f"Topic {topic_id} is in a plan in force; schedule it as planned.",
                              rule="topic_is_planned")
            kind = unplanned.get("kind") or next(
                (k for k in UNPLANNED_ORDER if form in FORMS_BY_PLAN_KIND[k]), "cppcc")
            unplanned = {"reason": require_reason(unplanned.get("reason"), "Consulting on a topic outside "
                                                  "the plan (由政协采取适当形式适时进行协商, 001 §9)"),
                         "decided_by": unplanned["decided_by"], "kind": kind}
            kinds = [unplanned["kind"]]
            check_form(unplanned["kind"], form)
            planned_forms: list[str] = []
            reason = None
        else:
            if not planned:
                raise Refused(
                    f"Topic {topic_id} is not in a plan in force (directly or by amendment), so no "
                    "session can be scheduled for it. The plan must be decided by its body first, or "
                    "amended with a reason; or take the unplanned path with its reason and the deciding "
                    "body (001 §9). (Sessions learns plans from the catalog's published events; a "
                    "decision made moments ago may need a few seconds.)",
                    rule="topic_not_planned",
                )
            kinds = sorted({p["plan_kind"] for p in planned})
            planned_forms = sorted({p["form"] for p in planned})
            reason = (form_change_reason or "").strip() or None
            if form not in planned_forms:
                if reason is None:
                    raise Refused(
                        f"The plan sets the form of this topic as {', '.join(planned_forms)}, not "
                        f"'{form}'. Hold it in the planned form, or give form_change_reason to change it.",
                        rule="form_not_planned",
                    )
            else:
                reason = None  # the planned form needs no justification
        date_reason = _deviation(
            scheduled_for.strftime("%Y-%m"), {p.get("scheduled_month") for p in planned} - {None},
            date_change_reason, "date_outside_month",
            f"The plan schedules this topic for {{planned}}, not {scheduled_for:%Y-%m}. Hold it in the "
            "planned month, or give date_change_reason.")
        lead_reason = _deviation(
            lead_department, {p.get("lead_department") for p in planned} - {None},
            lead_department_change_reason, "lead_department_not_planned",
            f"The plan names {{planned}} to lead this topic, not {lead_department}. Keep the plan's lead "
            "department, or give lead_department_change_reason.")
        body = body_of(kinds, form)
        notice_by = calendar.latest_notice_day(scheduled_for, NOTICE_WORKING_DAYS)
        return cls(
            topic_id=topic_id,
            form=form.value,
            title=title,
            scheduled_for=scheduled_for.isoformat(),
            lead_department=lead_department,
            host=host,
            plan_ids=sorted({p["plan_id"] for p in planned}),
            plan_kinds=kinds,
            planned_forms=planned_forms,
            form_change_reason=reason,
            grassroots_room=body == "cppcc_room",
            research_required=body == "cppcc_room" or (body == "cppcc" and form in CPPCC_RESEARCH_FORMS),
            notice_by=notice_by.due.isoformat(),
            notice_by_provisional=notice_by.provisional,
            body=body,
            unplanned=unplanned,
            date_change_reason=date_reason,
            lead_department_change_reason=lead_reason,
        )

    @event("SessionScheduled")
    def __init__(
        self,
        topic_id: str,
        form: str,
        title: str,
        scheduled_for: str,
        lead_department: str,
        host: str,
        plan_ids: list[str],
        plan_kinds: list[str],
        planned_forms: list[str],
        form_change_reason: str | None,
        grassroots_room: bool,
        research_required: bool,
        notice_by: str,
        notice_by_provisional: bool,
        body: str | None = None,
        unplanned: dict[str, Any] | None = None,
        date_change_reason: str | None = None,
        lead_department_change_reason: str | None = None,
    ):
        self.topic_id = topic_id
        self.date_change_reason = date_change_reason
        self.lead_department_change_reason = lead_department_change_reason
        self.form = form
        self.title = title
        self.scheduled_for = scheduled_for
        self.lead_department = lead_department
        self.host = host
        self.plan_ids = plan_ids
        self.plan_kinds = plan_kinds
        self.planned_forms = planned_forms
        self.form_change_reason = form_change_reason
        self.grassroots_room = grassroots_room
        self.research_required = research_required
        self.notice_by = {"date": notice_by, "provisional": notice_by_provisional}
        #: Whose rules it runs by; sessions stored before bodies were told apart ran by the
        #: government's (the 15-day notice and the 5 + 5 days for every session).
        self.body = body or "government"
        self.unplanned = unplanned
        self.status = "scheduled"
        self.participants: list[dict[str, Any]] = []
        self.research: dict[str, Any] | None = None
        self.notice: dict[str, Any] | None = None
        #: Notices served for dates the session was moved from (改期).
        self.notices: list[dict[str, Any]] = []
        self.held: dict[str, Any] | None = None
        self.deadlines: dict[str, dict[str, Any]] = {}
        self.opinion: dict[str, Any] | None = None
        self.report: dict[str, Any] | None = None
        self.instructions: list[dict[str, Any]] = []
        self.cancellation: dict[str, Any] | None = None

    @property
    def government(self) -> bool:
        """Government consultation (政府协商): the 15-day notice and the 5 + 5 days apply (002 第七条)."""
        return self.body == "government"

    # -- before the session ------------------------------------------------------
    def _refuse_if_cancelled(self) -> None:
        if self.status == "cancelled":
            raise Refused(f"This session was cancelled: {self.cancellation['reason']}.",
                          rule="session_cancelled")

    def _before_held(self, what: str) -> None:
        self._refuse_if_cancelled()
        if self.status != "scheduled":
            raise Refused(
                f"This session was already held; {what} belongs before the session.",
                rule="session_already_held",
            )

    def reschedule(self, scheduled_for: date, reason: str | None, decided_by: str,
                   calendar: WorkingCalendar) -> None:
        """Move the session (改期). The notice is then counted against the new date."""
        self._before_held("rescheduling")
        reason = require_reason(reason, "Rescheduling a session")
        notice_by = calendar.latest_notice_day(scheduled_for, NOTICE_WORKING_DAYS)
        self._reschedule(scheduled_for=scheduled_for.isoformat(), previous=self.scheduled_for,
                         reason=reason, decided_by=decided_by, notice_by=notice_by.due.isoformat(),
                         notice_by_provisional=notice_by.provisional, notice_withdrawn=self.notice is not None)

    @event("SessionRescheduled")
    def _reschedule(self, scheduled_for: str, previous: str, reason: str, decided_by: str,
                    notice_by: str, notice_by_provisional: bool, notice_withdrawn: bool = False) -> None:
        self.scheduled_for = scheduled_for
        self.notice_by = {"date": notice_by, "provisional": notice_by_provisional}
        if notice_withdrawn:
            # A new notice is served, and counted, for the new date.
            self.notices.append(self.notice)
            self.notice = None

    def cancel(self, reason: str | None, decided_by: str) -> None:
        self._before_held("cancelling")
        self._cancel(reason=require_reason(reason, "Cancelling a session"), decided_by=decided_by)

    @event("SessionCancelled")
    def _cancel(self, reason: str, decided_by: str) -> None:
        self.status = "cancelled"
        self.cancellation = {"reason": reason, "decided_by": decided_by}

    def invite(self, participants: list[dict[str, Any]], invited_by: str | None, today: date) -> None:
        self._before_held("inviting participants")
        if self.grassroots_room:
            unvetted = [p["name"] for p in participants if not p.get("vetted")]
            if unvetted:
                raise Refused(
                    "Participants at a grassroots consultation room are vetted before they are "
                    f"invited (003 二(二)); not vetted: {', '.join(unvetted)}.",
                    rule="participant_not_vetted",
                )
        self._invite(
            participants=[
                {"name": p["name"], "role": Role(p["role"]).value, "organization": p["organization"],
                 "vetted": bool(p.get("vetted")), "vetted_by": p.get("vetted_by")}
                for p in participants
            ],
            invited_by=invited_by,
            invited_on=today.isoformat(),
        )

    @event("ParticipantsInvited")
    def _invite(self, participants: list[dict[str, Any]], invited_by: str | None,
                invited_on: str | None = None) -> None:
        """Invited after the notice, a participant is notified on the day invited: the notice
        period is counted per participant (participants stored before had no date: the notice's)."""
        self.participants.extend({**p, "invited_on": invited_on} for p in participants)

    def file_research(self, summary: str, filed_by: str, today: date) -> None:
        self._before_held("research (调研)")
        self._file_research(summary=summary, filed_by=filed_by, filed_on=today.isoformat())

    @event("ResearchFiled")
    def _file_research(self, summary: str, filed_by: str, filed_on: str) -> None:
        self.research = {"summary": summary, "filed_by": filed_by, "filed_on": filed_on}

    def serve_notice(
        self, served_on: date, materials: list[str], served_by: str | None, calendar: WorkingCalendar,
        today: date,
    ) -> None:
        self._before_held("serving the notice")
        if self.notice is not None:
            raise Refused(
                f"The notice was already served on {self.notice['served_on']}; it is served once "
                "(a new one after the session is moved).",
                rule="notice_already_served",
            )
        scheduled = date.fromisoformat(self.scheduled_for)
        if served_on > today:
            raise Refused(f"A notice is recorded once served; {served_on} is after today ({today}).",
                          rule="notice_in_future")
        if served_on >= scheduled:
            raise Refused(
                f"A notice served on {served_on} comes too late: it is served before the session, "
                f"which is scheduled for {scheduled}.",
                rule="notice_after_session",
            )
        # Records are often entered after the fact: accepted, but the supervising office sees it.
        recorded_late = calendar.working_days_between(served_on, today + timedelta(days=1)).value > RECORDED_LATE_AFTER
        count = calendar.working_days_between(served_on, scheduled)
        self._serve_notice(
            served_on=served_on.isoformat(),
            materials=materials,
            served_by=served_by,
            working_days_before=count.value,
            notice_sufficient=count.value >= NOTICE_WORKING_DAYS,
            provisional=count.provisional,
            years_without_data=list(count.years_without_data),
            recorded_on=today.isoformat(),
            recorded_late=recorded_late,
        )

    @event("NoticeServed")
    def _serve_notice(
        self,
        served_on: str,
        materials: list[str],
        served_by: str | None,
        working_days_before: int,
        notice_sufficient: bool,
        provisional: bool,
        years_without_data: list[int],
        recorded_on: str | None = None,
        recorded_late: bool = False,
    ) -> None:
        self.notice = {
            "served_on": served_on, "materials": materials, "served_by": served_by,
            "working_days_before": working_days_before, "notice_sufficient": notice_sufficient,
            "provisional": provisional, "years_without_data": years_without_data,
            "recorded_on": recorded_on, "recorded_late": recorded_late,
        }

    # -- the session -------------------------------------------------------------
    def hold(
        self,
        held_on: date,
        attendees: list[str],
        minutes: str,
        minutes_internal: bool,
        notice_waiver_reason: str | None,
        recorded_by: str | None,
        today: date,
        calendar: WorkingCalendar,
        public_summary: str | None = None,
    ) -> None:
        self._before_held("recording it as held")
        if held_on > today:
            raise Refused(
                f"A session cannot be recorded as held on {held_on}, which is after today ({today}).",
                rule="held_in_future",
            )
        if self.notice is not None and held_on < date.fromisoformat(self.notice["served_on"]):
            raise Refused(f"The session cannot be held on {held_on}, before its notice "
                          f"({self.notice['served_on']}).", rule="held_before_notice")
        if held_on.isoformat() != self.scheduled_for:
            raise Refused(f"This session is scheduled for {self.scheduled_for}; to record it held on "
                          f"{held_on}, reschedule it first (改期, with a reason).", rule="held_on_other_date")
        if self.research_required and self.research is None:
            raise Refused(
                f"A {self.form} session is not held without research first (不调研不协商, "
                "003 二(五)): file the research report (调研报告) before the session.",
                rule="research_required",
            )
        waiver = (notice_waiver_reason or "").strip() or None
        if self.notice is None:
            count, provisional = 0, False
            why = "no notice with materials was served"
        else:
            # Per participant: one invited after the notice was notified on the day invited.
            served = date.fromisoformat(self.notice["served_on"])
            notified = [max(served, date.fromisoformat(p["invited_on"])) if p.get("invited_on") else served
                        for p in self.participants] or [served]
            latest = max(notified)
            counted = calendar.working_days_between(latest, held_on)
            count, provisional = counted.value, counted.provisional
            short = sum(calendar.working_days_between(n, held_on).value < NOTICE_WORKING_DAYS for n in notified)
            why = (f"the notice of {served} came only {count} working days before {held_on}" if latest == served
                   else f"{short} participant(s) invited after the notice, the last on {latest}, had only "
                        f"{count} working days")
        sufficient = count >= NOTICE_WORKING_DAYS
        if sufficient or not self.government:
            # CPPCC sessions provide materials ahead (001 §18), rooms notify ahead (003 二(五)):
            # the count is recorded, the 15-working-day gate is the government's (002 第七条(二)).
            waiver = None
        elif waiver is None:
            raise Refused(
                f"Notice and materials must reach participants at least {NOTICE_WORKING_DAYS} "
                f"working days before the session (002 第七条(二)), but {why}. Give "
                "notice_waiver_reason to hold it anyway; the waiver is recorded for the "
                "supervising office.",
                rule="notice_insufficient",
            )
        self._hold(
            held_on=held_on.isoformat(),
            attendees=attendees,
            minutes=minutes,
            minutes_internal=minutes_internal,
            recorded_by=recorded_by or self.host,
            working_days_before=count,
            notice_sufficient=sufficient,
            notice_waiver_reason=waiver,
            deadlines=due_dates(held_on, calendar) if self.government else {},
            count_provisional=provisional,
            public_summary=public_summary,
        )

    @event("SessionHeld")
    def _hold(
        self,
        held_on: str,
        attendees: list[str],
        minutes: str,
        minutes_internal: bool,
        recorded_by: str,
        working_days_before: int,
        notice_sufficient: bool,
        notice_waiver_reason: str | None,
        deadlines: dict[str, dict[str, Any]],
        count_provisional: bool,
        public_summary: str | None = None,
    ) -> None:
        """Minutes (纪要) name speakers and stay in this store; ``public_summary`` is what the
        public reads (sessions held before it existed have none)."""
        self.status = "held"
        self.held = {
            "held_on": held_on, "attendees": attendees, "minutes": minutes,
            "minutes_internal": minutes_internal, "recorded_by": recorded_by,
            "working_days_before": working_days_before, "notice_sufficient": notice_sufficient,
            "notice_waiver_reason": notice_waiver_reason, "count_provisional": count_provisional,
            "public_summary": public_summary,
        }
        self.deadlines = {
            step: {**d, "met_on": None, "missed_on": None} for step, d in deadlines.items()
        }

    # -- after the session -------------------------------------------------------
    def _require(self, status: str, what: str, needed: str) -> None:
        self._refuse_if_cancelled()
        order = ["scheduled", "held", "opinion_formed", "report_compiled", "report_submitted", "instructed"]
        if order.index(self.status) < order.index(status):
            raise Refused(f"{what} comes after {needed}; this session is {self.status}.",
                          rule=f"not_{status}")

    def form_opinion(self, summary: str, formed_by: str, today: date, calendar: WorkingCalendar) -> None:
        self._require("held", "The consultation opinion (协商意见)", "the session is held")
        if self.opinion is not None:
            raise Refused("The consultation opinion was already formed.", rule="opinion_already_formed")
        report_due = None
        if Step.report in self.deadlines:
            # The office's report is due 5 working days after the opinion was actually formed.
            d = calendar.add_working_days(today, REPORT_WORKING_DAYS)
            report_due = {"due": d.due.isoformat(), "provisional": d.provisional,
                          "years_without_data": list(d.years_without_data)}
        self._form_opinion(summary=summary, formed_by=formed_by, formed_on=today.isoformat(),
                           report_due=report_due)

    @event("ConsultationOpinionFormed")
    def _form_opinion(self, summary: str, formed_by: str, formed_on: str,
                      report_due: dict[str, Any] | None = None) -> None:
        self.status = "opinion_formed"
        self.opinion = {"summary": summary, "formed_by": formed_by, "formed_on": formed_on}
        if Step.opinion in self.deadlines:
            self.deadlines[Step.opinion]["met_on"] = formed_on
        if report_due is not None:
            self.deadlines[Step.report] = {**report_due, "met_on": None, "missed_on": None}

    def compile_report(self, summary: str, compiled_by: str, opinion_ids: list[str],
                       published: dict[str, str | None], today: date) -> None:
        """``published``: the topic of each of ``opinion_ids`` the feedback service published."""
        self._require(
            "opinion_formed", "The consultation report (协商报告)",
            "the lead department's consultation opinion (依据协商意见形成报告, 002 第七条(四))",
        )
        if self.report is not None:
            raise Refused("The consultation report was already compiled.", rule="report_already_compiled")
        unknown = [i for i in opinion_ids if i not in published]
        if unknown:
            raise Refused(
                f"The report may consolidate only opinions the feedback service has published; "
                f"not known: {', '.join(unknown)}. (Sessions learns opinions from the feedback "
                "service's published events; one submitted moments ago may still be on its way.)",
                rule="unknown_opinions",
            )
        foreign = [i for i in opinion_ids if published[i] != self.topic_id]
        if foreign:
            raise Refused(f"These opinions were given on another topic than this session's "
                          f"({self.topic_id}): {', '.join(foreign)}.", rule="opinions_of_other_topic")
        self._compile(summary=summary, compiled_by=compiled_by, opinion_ids=opinion_ids,
                      compiled_on=today.isoformat())

    @event("ReportCompiled")
    def _compile(self, summary: str, compiled_by: str, opinion_ids: list[str], compiled_on: str) -> None:
        self.status = "report_compiled"
        self.report = {"summary": summary, "compiled_by": compiled_by, "opinion_ids": opinion_ids,
                       "compiled_on": compiled_on, "submitted_to": [], "submitted_on": None}

    def submit_report(self, submitted_to: list[str], submitted_by: str | None, today: date) -> None:
        self._require("report_compiled", "Submitting the report", "compiling it")
        assert self.report is not None
        if self.report["submitted_on"] is not None:
            raise Refused(f"The report was already submitted on {self.report['submitted_on']}.",
                          rule="report_already_submitted")
        self._submit(submitted_to=submitted_to, submitted_by=submitted_by, submitted_on=today.isoformat())

    @event("ReportSubmitted")
    def _submit(self, submitted_to: list[str], submitted_by: str | None, submitted_on: str) -> None:
        self.status = "report_submitted"
        assert self.report is not None
        self.report.update(submitted_to=submitted_to, submitted_on=submitted_on, submitted_by=submitted_by)
        if Step.report in self.deadlines:
            self.deadlines[Step.report]["met_on"] = submitted_on

    def issue_instruction(self, leader: str, text: str, departments: list[str], today: date) -> str:
        instruction_id = str(new_id())
        if any(i["id"] == instruction_id for i in self.instructions):
            return instruction_id  # the same request sent again (Idempotency-Key): issued already
        self._require("report_submitted", "A leader's instruction (批示)", "the report is submitted")
        self._instruct(instruction_id=instruction_id, leader=leader, text=text,
                       departments=departments, issued_on=today.isoformat())
        return instruction_id

    @event("InstructionIssued")
    def _instruct(self, instruction_id: str, leader: str, text: str, departments: list[str],
                  issued_on: str) -> None:
        self.status = "instructed"
        self.instructions.append({
            "id": instruction_id, "leader": leader, "text": text, "departments": departments,
            "issued_on": issued_on, "implementation": [],
        })

    def report_implementation(
        self, instruction_id: str, department: str, note: str, reported_by: str | None, today: date
    ) -> None:
        instruction = next((i for i in self.instructions if i["id"] == instruction_id), None)
        if instruction is None:
            raise Refused(f"This session has no instruction {instruction_id}.", rule="unknown_instruction")
        if department not in instruction["departments"]:
            raise Refused(
                f"{department} was not tasked by this instruction; it tasked "
                f"{', '.join(instruction['departments'])}.",
                rule="department_not_tasked",
            )
        self._implement(instruction_id=instruction_id, department=department, note=note,
                        reported_by=reported_by, reported_on=today.isoformat(), copied_to=COPIED_TO[self.body])

    @event("ImplementationReported")
    def _implement(self, instruction_id: str, department: str, note: str, reported_by: str | None,
                   reported_on: str, copied_to: str) -> None:
        """Implementation copied to the CPPCC office for CPPCC outcomes (落实情况抄送政协办公室,
        001 §19), to the government office otherwise (督办)."""
        for instruction in self.instructions:
            if instruction["id"] == instruction_id:
                instruction["implementation"].append(
                    {"department": department, "note": note, "reported_on": reported_on,
                     "copied_to": copied_to}
                )

    # -- deadlines ---------------------------------------------------------------
    def overdue_steps(self, today: date, calendar: WorkingCalendar) -> list[Step]:
        """Steps not done by their due date, once the first working day after it has come."""
        return [
            Step(step)
            for step, d in self.deadlines.items()
            if d["met_on"] is None and d["missed_on"] is None
            and calendar.next_working_day(date.fromisoformat(d["due"])).due <= today
        ]

    def confirm_deadlines(self, calendar: WorkingCalendar, confirmed_by: str) -> list[Step]:
        """Count provisional due dates again once official data covers every day of them.

        A due date counted through a year the State Council had not yet published
        may move when it is (a holiday on a weekday): the new date is recorded as
        an event, so the session, the views and the trace all show the change.
        """
        if self.held is None:
            return []
        fresh = due_dates(date.fromisoformat(self.held["held_on"]), calendar)
        if self.opinion is not None and Step.report in fresh:
            d = calendar.add_working_days(date.fromisoformat(self.opinion["formed_on"]), REPORT_WORKING_DAYS)
            fresh[Step.report] = {"due": d.due.isoformat(), "provisional": d.provisional,
                                  "years_without_data": list(d.years_without_data)}
        confirmed = []
        for step, d in self.deadlines.items():
            if d["provisional"] and not fresh[step]["provisional"] and d["met_on"] is None \
                    and d["missed_on"] is None:
                self._confirm(step=step, due=fresh[step]["due"], previous_due=d["due"],
                              confirmed_by=confirmed_by)
                confirmed.append(Step(step))
        return confirmed

    @event("DeadlineConfirmed")
    def _confirm(self, step: str, due: str, previous_due: str, confirmed_by: str) -> None:
        self.deadlines[step].update(due=due, provisional=False, years_without_data=[])

    def review_deadlines(self, today: date, calendar: WorkingCalendar, reviewer: str) -> list[Step]:
        """What the scheduler does each round: confirm provisional dates, then report misses."""
        self.confirm_deadlines(calendar, reviewer)
        return self.record_missed(today, calendar, reviewer)

    def record_missed(self, today: date, calendar: WorkingCalendar, detected_by: str) -> list[Step]:
        """Emit DeadlineMissed once for each step that has gone overdue; returns those steps."""
        steps = self.overdue_steps(today, calendar)
        for step in steps:
            d = self.deadlines[step]
            # The opinion is the lead department's to form; the report is the office's to compile.
            self._missed(step=step.value, due=d["due"], provisional=d["provisional"],
                         detected_on=today.isoformat(), detected_by=detected_by,
                         what=_STEP_WORDS[step], lead_department=self.lead_department,
                         responsible=self.lead_department if step is Step.opinion else REPORT_OFFICE)
        return steps

    @event("DeadlineMissed")
    def _missed(self, step: str, due: str, provisional: bool, detected_on: str, detected_by: str,
                what: str, lead_department: str, responsible: str | None = None) -> None:
        self.deadlines[step]["missed_on"] = detected_on


@stable_names("sessions", actors={"EmergencyExemptionRecorded": "decided_by"})
class Exemption(Aggregate):
    """A decision taken without consultation under the simplification rule (002 第十四条).

    Never silent: category and reason are recorded and shown to the supervising office.
    """

    @classmethod
    def record(cls, decision: str, category: str, reason: str | None, decided_by: str,
               department: str, decided_on: date, topic_id: str | None, urgency: str | None = None) -> Exemption:
        """``urgency``: why the decision must be taken at once (需立即做出决策决定, 002 第十四条)."""
        return cls(
            decision=decision, category=ExemptionCategory(category).value,
            reason=require_reason(reason, "Deciding without consultation (002 第十四条)"),
            decided_by=decided_by, department=department, decided_on=decided_on.isoformat(),
            topic_id=topic_id,
            urgency=require_reason(urgency, "Deciding without consultation (需立即做出决策决定, 002 第十四条)"),
        )

    @event("EmergencyExemptionRecorded")
    def __init__(self, decision: str, category: str, reason: str, decided_by: str, department: str,
                 decided_on: str, topic_id: str | None, urgency: str | None = None):
        self.decision = decision
        self.category = category
        self.reason = reason
        self.decided_by = decided_by
        self.department = department
        self.decided_on = decided_on
        self.topic_id = topic_id
        #: Exemptions recorded before the statement was asked for have none.
        self.urgency = urgency
