"""Sessions read models.

``PlanBook`` learns, from the catalog's Kafka topic, which topics approved plans
hold and in which form — the sessions service never calls the catalog.
``SessionViews`` keeps, from the service's own log, the documents every body reads:
each lead department's agenda, the government office's supervision list (督办),
the Party committee office's reports awaiting instruction, the CPPCC office's
implementation copies and the public's held sessions.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from shared.config import SERVICE_TOPICS
from shared.deadlines import open_steps
from shared.envelope import CloudEvent
from shared.forms import current_plan_kind
from shared.projection import ViewProjection, existing, need
from shared.stores import ViewStore, ViewTransaction
from shared.workdays import WorkingCalendar

from services.sessions.domain import REPORT_OFFICE

_ITEM = ("topic_id", "form", "lead_department", "scheduled_month")


class PlanBook(ViewProjection):
    """Topics in approved plans (directly or by amendment), from ``consultation.catalog.v1``."""

    name = "plan_book"
    views = ("planned", "catalog_plan")
    kafka_topics = (SERVICE_TOPICS["catalog"],)

    def _plan(self, e: CloudEvent, txn: ViewTransaction) -> dict[str, Any]:
        return existing(txn, "catalog_plan", e.subject, e, "drafted")

    @staticmethod
    def _planned(txn: ViewTransaction, plan: dict[str, Any], item: dict[str, Any], **extra: Any) -> None:
        txn.put("planned", f"{item['topic_id']}/{plan['id']}", {
            **{k: item.get(k) for k in _ITEM}, "plan_id": plan["id"], "plan_kind": plan["kind"],
            "year": plan["year"], **extra,
        })

    def on_PlanDrafted(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        need(d, "kind", "year")
        txn.put("catalog_plan", e.subject, {"id": e.subject, "kind": current_plan_kind(d["kind"]),
                                            "year": d["year"], "status": "draft", "items": []})

    def on_PlanItemAdded(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        need(d, "topic_id", "form")
        plan = self._plan(e, txn)
        plan["items"].append({k: d.get(k) for k in _ITEM})
        txn.put("catalog_plan", e.subject, plan)

    def on_PlanApproved(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        plan = self._plan(e, txn)
        plan["status"] = "approved"
        txn.put("catalog_plan", e.subject, plan)
        for item in plan["items"]:
            self._planned(txn, plan, item, by_amendment=False)

    on_PlanReported = on_PlanApproved  # a village 开单 list is in force once reported (004)

    def on_PlanAmended(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        need(d, "topic_id", "form")
        plan = self._plan(e, txn)
        self._planned(txn, plan, d, by_amendment=True, amendment_reason=d.get("reason"))


class OpinionBook(ViewProjection):
    """Opinions the feedback service has published, and their topics, from
    ``consultation.feedback.v1``: what a report may consolidate."""

    name = "opinion_book"
    views = ("published_opinion",)
    kafka_topics = (SERVICE_TOPICS["feedback"],)

    def on_OpinionSubmitted(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        txn.put("published_opinion", e.subject, {"id": e.subject, "topic_id": d.get("topic_id")})


class SessionViews(ViewProjection):
    """Sessions, deadlines, instructions and exemptions, from the service's own log."""

    name = "session_views"
    views = ("session", "deadline", "instruction", "exemption")

    def _session(self, e: CloudEvent, txn: ViewTransaction) -> dict[str, Any]:
        return existing(txn, "session", e.subject, e, "scheduled")

    @staticmethod
    def _put(e: CloudEvent, txn: ViewTransaction, session: dict[str, Any], **changes: Any) -> dict[str, Any]:
        session.update(changes)
        txn.put("session", e.subject, session)
        return session

    def _update(self, e: CloudEvent, txn: ViewTransaction, **changes: Any) -> dict[str, Any]:
        return self._put(e, txn, self._session(e, txn), **changes)

    @staticmethod
    def _deadline(e: CloudEvent, txn: ViewTransaction, step: str, **changes: Any) -> None:
        key = f"{e.subject}/{step}"
        deadline = existing(txn, "deadline", key, e, "set")
        deadline.update(changes)
        txn.put("deadline", key, deadline)

    def on_SessionScheduled(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        txn.put("session", e.subject, {
            "id": e.subject, "topic_id": d["topic_id"], "title": d["title"], "form": d["form"],
            "lead_department": d["lead_department"], "host": d["host"],
            "scheduled_for": d["scheduled_for"], "notice_by": d["notice_by"],
            "notice_by_provisional": d["notice_by_provisional"],
            "form_change_reason": d.get("form_change_reason"), "status": "scheduled",
            "research_required": d["research_required"], "research_filed": False,
            "grassroots_room": d["grassroots_room"], "invited": 0, "notice": None,
            "body": d.get("body") or "government", "unplanned": d.get("unplanned"),
            "held_on": None, "attendee_count": 0, "public_summary": None,
            "notice_waiver_reason": None, "report": None, "instructions": 0,
        })

    def on_SessionRescheduled(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        if d.get("notice_withdrawn"):
            self._update(e, txn, notice=None)
        self._update(e, txn, scheduled_for=d["scheduled_for"], notice_by=d["notice_by"],
                     notice_by_provisional=d["notice_by_provisional"], rescheduled_from=d["previous"],
                     reschedule_reason=d["reason"])

    def on_SessionCancelled(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._update(e, txn, status="cancelled", cancellation_reason=d["reason"])

    def on_ParticipantsInvited(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        session = self._session(e, txn)
        self._put(e, txn, session, invited=session["invited"] + len(d["participants"]))

    def on_ResearchFiled(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._update(e, txn, research_filed=True)

    def on_NoticeServed(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._update(e, txn, notice={
            **{k: d[k] for k in ("served_on", "working_days_before", "notice_sufficient", "provisional")},
            "recorded_on": d.get("recorded_on"), "recorded_late": bool(d.get("recorded_late")),
        })

    def on_SessionHeld(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        session = self._update(
            e, txn, status="held", held_on=d["held_on"], attendee_count=d["attendee_count"],
            public_summary=d.get("public_summary"),
            notice_waiver_reason=d.get("notice_waiver_reason"),
            held_working_days_before=d["working_days_before"],
        )
        for step, deadline in d["deadlines"].items():
            txn.put("deadline", f"{e.subject}/{step}", {
                "session_id": e.subject, "topic_id": session["topic_id"], "title": session["title"],
                "lead_department": session["lead_department"], "step": step,
                # The opinion is the lead department's to form, the report the office's to compile.
                "responsible": session["lead_department"] if step == "opinion" else REPORT_OFFICE,
                "due": deadline["due"], "provisional": deadline["provisional"],
                "years_without_data": deadline["years_without_data"],
                "met_on": None, "missed_on": None,
            })

    def on_ConsultationOpinionFormed(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._update(e, txn, status="opinion_formed", opinion_formed_on=d["formed_on"])
        if txn.get("deadline", f"{e.subject}/opinion") is not None:
            self._deadline(e, txn, "opinion", met_on=d["formed_on"])
        if d.get("report_due"):
            self._deadline(e, txn, "report", **{k: d["report_due"][k] for k in (
                "due", "provisional", "years_without_data")})

    def on_ReportCompiled(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._update(e, txn, status="report_compiled", report={
            "summary": d["summary"], "compiled_by": d["compiled_by"], "compiled_on": d["compiled_on"],
            "opinion_ids": d["opinion_ids"], "submitted_to": [], "submitted_on": None,
        })

    def on_ReportSubmitted(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        session = self._session(e, txn)
        report = {**(session["report"] or {}), "submitted_to": d["submitted_to"],
                  "submitted_on": d["submitted_on"]}
        self._put(e, txn, session, status="report_submitted", report=report)
        if txn.get("deadline", f"{e.subject}/report") is not None:
            self._deadline(e, txn, "report", met_on=d["submitted_on"])

    def on_InstructionIssued(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        session = self._session(e, txn)
        self._put(e, txn, session, status="instructed", instructions=session["instructions"] + 1)
        txn.put("instruction", f"{e.subject}/{d['instruction_id']}", {
            "id": d["instruction_id"], "session_id": e.subject, "topic_id": session["topic_id"],
            "title": session["title"], "leader": d["leader"], "text": d["text"],
            "departments": d["departments"], "issued_on": d["issued_on"], "implementation": [],
        })

    def on_ImplementationReported(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        key = f"{e.subject}/{d['instruction_id']}"
        instruction = existing(txn, "instruction", key, e, "issued")
        instruction["implementation"].append({
            "department": d["department"], "note": d["note"], "reported_on": d["reported_on"],
            "copied_to": d["copied_to"],
        })
        txn.put("instruction", key, instruction)

    def on_DeadlineMissed(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._deadline(e, txn, d["step"], missed_on=d["detected_on"],
                       responsible=d.get("responsible") or d.get("lead_department"))

    def on_DeadlineConfirmed(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._deadline(e, txn, d["step"], due=d["due"], provisional=False, years_without_data=[],
                       previous_due=d["previous_due"])

    def on_EmergencyExemptionRecorded(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        txn.put("exemption", e.subject, {
            "id": e.subject, **{k: d.get(k) for k in (
                "decision", "category", "reason", "decided_by", "department", "decided_on", "topic_id",
                "urgency")},
            "recorded_at": e.time.isoformat(),
        })


# -- queries: each body's view of the same documents -------------------------------

def planned(views: ViewStore, topic_id: str) -> list[dict[str, Any]]:
    """The approved plan items (and amendments) that hold this topic."""
    return views.list("planned", prefix=f"{topic_id}/")


def published_opinions(views: ViewStore, opinion_ids: list[str]) -> dict[str, str | None]:
    """The topic of each of these opinions the feedback service has published (others absent)."""
    return {i: doc["topic_id"] for i in opinion_ids if (doc := views.get("published_opinion", i))}


def open_deadline_sessions(views: ViewStore, today: date | None = None) -> list[str]:
    """Sessions with a step neither done nor yet reported missed: what the scheduler checks.

    With ``today``, only those with such a step already due before it, the only ones that
    can be overdue (not before the first working day after the due date), read through
    the store's index of open steps by due date, as the other services' schedulers read
    theirs: every open step of every session, every minute, grew with the years.
    """
    return sorted({d["session_id"] for d in open_steps(views, today)})


def _by_date(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r.get(key) or "", r.get("title") or ""))


def department_agenda(views: ViewStore, department: str) -> dict[str, Any]:
    """A lead department's sessions, its open deadlines and the instructions that task it."""
    sessions = [s for s in views.list("session") if s["lead_department"] == department]
    deadlines = [d for d in views.list("deadline")
                 if d.get("responsible", d["lead_department"]) == department and d["met_on"] is None]
    instructions = []
    for i in views.list("instruction"):
        if department in i["departments"]:
            reported = any(n["department"] == department for n in i["implementation"])
            instructions.append({**i, "implementation_reported": reported})
    return {
        "department": department,
        "sessions": _by_date(sessions, "scheduled_for"),
        "deadlines": _by_date(deadlines, "due"),
        "instructions": _by_date(instructions, "issued_on"),
    }


def supervision(views: ViewStore, today: date, calendar: WorkingCalendar) -> dict[str, Any]:
    """The government office's supervision list (督办, 002 第十三条), as of ``today``.

    Overdue steps say how many working days they are late; that figure changes with
    the date, not with events, so it is worked out when asked rather than stored.
    """
    deadlines = views.list("deadline")
    for d in deadlines:
        if d["missed_on"] and not d["met_on"]:
            late = calendar.working_days_between(date.fromisoformat(d["due"]), today + timedelta(days=1))
            d["working_days_overdue"] = late.value
    waivers = [
        {k: s[k] for k in ("id", "topic_id", "title", "lead_department", "scheduled_for", "held_on",
                           "held_working_days_before", "notice_waiver_reason")}
        for s in views.list("session") if s.get("notice_waiver_reason")
    ]
    return {
        "as_of": today.isoformat(),
        "overdue": _by_date([d for d in deadlines if d["missed_on"] and not d["met_on"]], "due"),
        "completed_late": _by_date([d for d in deadlines if d["missed_on"] and d["met_on"]], "due"),
        "upcoming": _by_date([d for d in deadlines if not d["missed_on"] and not d["met_on"]], "due"),
        "notice_waivers": _by_date(waivers, "held_on"),
        # Notices entered more than 2 working days after their stated date: accepted, not hidden.
        "notices_recorded_late": _by_date([
            {k: s[k] for k in ("id", "topic_id", "title", "lead_department", "scheduled_for")}
            | {"served_on": s["notice"]["served_on"], "recorded_on": s["notice"]["recorded_on"]}
            for s in views.list("session") if (s.get("notice") or {}).get("recorded_late")], "served_on"),
        "exemptions": _by_date(views.list("exemption"), "decided_on"),
        # Consulted outside the year's plan (001 §9): reason and deciding body shown, never silent.
        "unplanned": _by_date([{k: s[k] for k in ("id", "topic_id", "title", "body", "scheduled_for", "unplanned")}
                               for s in views.list("session") if s.get("unplanned")], "scheduled_for"),
    }


def awaiting_instruction(views: ViewStore) -> list[dict[str, Any]]:
    """The Party committee office's queue: reports submitted, no instruction yet."""
    return _by_date([s for s in views.list("session") if s["status"] == "report_submitted"], "held_on")


def implementation_copies(views: ViewStore) -> list[dict[str, Any]]:
    """What the CPPCC office receives: instructions on CPPCC outcomes and the implementation
    reported on them (001 §19); government sessions' follow-up goes to the government office."""
    cppcc = {s["id"] for s in views.list("session") if s.get("body") in ("cppcc", "cppcc_room")}
    return _by_date([i for i in views.list("instruction") if i["session_id"] in cppcc], "issued_on")


_PUBLIC = ("id", "topic_id", "title", "form", "lead_department", "held_on", "attendee_count", "public_summary")


def public_sessions(views: ViewStore) -> list[dict[str, Any]]:
    """What society sees: held sessions and their public summary; minutes (纪要) stay internal."""
    return _by_date([{k: s.get(k) for k in _PUBLIC} for s in views.list("session") if s["held_on"]],
                    "held_on")
