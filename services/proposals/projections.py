"""Proposals read models.

``ProposalBook`` learns from Kafka which topics the catalog accepted (and who
leads them) and which opinions the feedback service holds, so a proposal can be
turned into an opinion on a topic, or take one up, without calling either.
``ProposalViews`` keeps, from the service's own log, what each body reads: the
CPPCC office's pipeline, each handling unit's queue, each proposer's own
proposals, the assessment of handling units, the public's published results and
the members' duty records. None holds a proposer's contact details.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

from shared.books import TopicBook, known_topic  # noqa: F401 - used as q.known_topic by the API
from shared.config import SERVICE_TOPICS
from shared.deadlines import close_deadline, put_deadline
from shared.envelope import CloudEvent
from shared.pages import scan
from shared.projection import ViewProjection, existing, need, update
from shared.stores import ViewStore, ViewTransaction
from shared.workdays import WorkingCalendar

from services.proposals.domain import PER_TERM, Duty


class ProposalBook(TopicBook):
    """Topics from the catalog (and sessions, unused here) and opinions from feedback."""

    name = "proposal_book"
    views = (*TopicBook.views, "opinion")
    kafka_topics = (SERVICE_TOPICS["catalog"], SERVICE_TOPICS["feedback"])

    def on_OpinionSubmitted(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        txn.put("opinion", e.subject, {"id": e.subject, "topic_id": d.get("topic_id"),
                                       "confidential": bool(d.get("confidential"))})


def known_opinion(views: ViewStore, opinion_id: str) -> dict[str, Any] | None:
    return views.get("opinion", opinion_id)


def _name_key(name: str) -> str:
    """A person's name as one key segment: a name holding "/" must not reach into another's keys."""
    return quote(name, safe="")


def _round(number: int, **extra: Any) -> dict[str, Any]:
    return {"round": number, "consultations": [], "reply": None, "rating": None, **extra}


class ProposalViews(ViewProjection):
    """Proposals, their deadlines, digests and members, from the service's own log."""

    name = "proposal_views"
    views = ("proposal", "proposer_proposal", "member_proposal", "deadline", "digest", "member")

    def _proposal(self, e: CloudEvent, txn: ViewTransaction, **changes: Any) -> dict[str, Any]:
        return update(txn, "proposal", e, "submitted", **changes)

    def on_ProposalSubmitted(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        need(d, "title", "kind", "submitted_on")
        proposers = d.get("proposers") or []
        collective = d.get("collective")
        sector = (collective["name"] if collective and collective.get("kind") == "sector"
                  else next((p.get("sector") for p in proposers if p.get("sector")), None))
        txn.put("proposal", e.subject, {
            "id": e.subject, **{k: d.get(k) for k in (
                "title", "content", "kind", "proposers", "collective", "submitted_by", "submitted_on",
                "opinion_id", "topic_id")},
            "sector": sector, "status": "submitted", "key": False, "face_to_face": False, "review": None,
            "assignment": None, "co_unit_views": {}, "round": 1, "rounds": [_round(1)],
            "conversion": None, "published": None,
        })
        for p in proposers:
            txn.put("proposer_proposal", f"{_name_key(p['name'])}/{e.subject}", {"id": e.subject})
            if d["kind"] == "cppcc_proposal":
                year = d["submitted_on"][:4]
                txn.put("member_proposal", f"{_name_key(p['name'])}/{year}/{e.subject}", {"id": e.subject})

    def _review(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction, status: str) -> None:
        self._proposal(e, txn, status=status, key=bool(d.get("key")), face_to_face=bool(d.get("face_to_face")),
                       review={"decision": status, **{k: d.get(k) for k in (
                           "reviewed_by", "meeting", "reviewed_on", "reason", "topic_id", "addressed_to")}})

    def on_ProposalFiled(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._review(e, d, txn, "filed")

    def on_ProposalNotFiled(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._review(e, d, txn, "not_filed")

    def on_ProposalTurnedIntoOpinion(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._review(e, d, txn, "to_opinion")

    def on_ProposalAssigned(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        need(d, "lead_unit", "reply_due")
        proposal = self._proposal(e, txn, status="handling", assignment={k: d.get(k) for k in (
            "lead_unit", "co_units", "leader", "supervisor", "assigned_by", "assigned_on")})
        put_deadline(txn, "proposal", e.subject, "reply", d["reply_due"], d["lead_unit"], proposal["topic_id"])

    def on_CoUnitViewSent(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        proposal = existing(txn, "proposal", e.subject, e, "submitted")
        views = {**proposal["co_unit_views"], d["unit"]: {k: d[k] for k in ("unit", "view", "sent_on", "round")}}
        self._proposal(e, txn, co_unit_views=views)

    def _current(self, e: CloudEvent, txn: ViewTransaction, part: str, value: Any,
                 **changes: Any) -> dict[str, Any]:
        proposal = existing(txn, "proposal", e.subject, e, "submitted")
        current = proposal["rounds"][-1]
        if part == "consultations":
            current["consultations"].append(value)
        else:
            current[part] = value
        return self._proposal(e, txn, rounds=proposal["rounds"], **changes)

    def on_HandlingConsultationHeld(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._current(e, txn, "consultations", {k: d[k] for k in ("mode", "held_on", "proposer_view", "unit")})

    def on_ProposalAnswered(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._current(e, txn, "reply", {k: d[k] for k in ("category", "content", "unit", "answered_on", "on_time")},
                      status="replied")
        close_deadline(txn, e, "reply", met_on=d["answered_on"])

    def on_ProposalRated(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._current(e, txn, "rating", {k: d.get(k) for k in ("rating", "comment", "rated_by", "rated_on")},
                      status="closed" if d["final"] else "replied")

    def on_ProposalReopened(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        proposal = existing(txn, "proposal", e.subject, e, "submitted")
        rounds = [*proposal["rounds"], _round(d["round"], reopened_on=d["reopened_on"], comment=d.get("comment"))]
        self._proposal(e, txn, status="handling", round=d["round"], rounds=rounds)
        put_deadline(txn, "proposal", e.subject, "reply", d["reply_due"], proposal["assignment"]["lead_unit"],
                     proposal["topic_id"])

    def on_DeadlineMissed(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        close_deadline(txn, e, d["step"], missed_on=d["detected_on"])

    def on_ProposalConverted(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._proposal(e, txn, conversion={"attempt": d["attempt"], "status": "requested", "topic_id": None,
                                           "converted_by": d["converted_by"], "converted_on": d["converted_on"],
                                           "refusal": None})

    def _conversion(self, e: CloudEvent, txn: ViewTransaction, **changes: Any) -> None:
        proposal = existing(txn, "proposal", e.subject, e, "submitted")
        self._proposal(e, txn, conversion={**(proposal["conversion"] or {}), **changes})

    def on_ProposalTopicLinked(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._conversion(e, txn, attempt=d["attempt"], status="topic_created", topic_id=d["topic_id"])

    def on_ProposalConversionRefused(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._conversion(e, txn, status="refused",
                         refusal={k: d[k] for k in ("rule", "reason", "refused_on")})

    def on_ProposalPublished(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._proposal(e, txn, published={k: d[k] for k in ("published_by", "published_on")})

    def on_KeyProposalDigestSubmitted(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        txn.put("digest", e.subject, {"id": e.subject, **{k: d.get(k) for k in (
            "title", "summary", "proposals", "compiled_by", "submitted_to", "submitted_on")}})

    # -- members ----------------------------------------------------------------------------
    def on_MemberRegistered(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        need(d, "name", "term_from", "term_to")
        txn.put("member", e.subject, {"id": e.subject, **{k: d.get(k) for k in (
            "name", "sector", "employer", "term", "term_from", "term_to")}, "duties": []})

    def on_DutyRecorded(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        member = existing(txn, "member", e.subject, e, "registered")
        member["duties"].append({k: d.get(k) for k in ("year", "duty", "title", "on")})
        txn.put("member", e.subject, member)


# -- queries: each body's view of the same documents -------------------------------------

def _proposals(views: ViewStore, links: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = [p for link in links if (p := views.get("proposal", link["id"])) is not None]
    return sorted(found, key=lambda p: (p["submitted_on"], p["id"]))


def _summary(p: dict[str, Any]) -> dict[str, Any]:
    reply = next((r["reply"] for r in reversed(p["rounds"]) if r["reply"]), None)
    return {**{k: p[k] for k in ("id", "title", "kind", "sector", "status", "key", "face_to_face",
                                 "submitted_by", "submitted_on", "round")},
            "lead_unit": (p["assignment"] or {}).get("lead_unit"),
            "leader": (p["assignment"] or {}).get("leader"),
            "supervisor": (p["assignment"] or {}).get("supervisor"),
            "reply": reply, "topic_id": (p["conversion"] or {}).get("topic_id") or p["topic_id"]}


def pipeline(views: ViewStore, status: str | None = None, sector: str | None = None,
             key: bool | None = None, face_to_face: bool | None = None) -> dict[str, Any]:
    """The CPPCC office's pipeline (提案工作): counts by status and sector, and the list filtered."""
    everything = sorted(views.list("proposal"), key=lambda p: (p["submitted_on"], p["id"]))
    totals: dict[str, dict[str, int]] = {"status": {}, "sector": {}}
    for p in everything:
        totals["status"][p["status"]] = totals["status"].get(p["status"], 0) + 1
        s = p["sector"] or "(none)"
        totals["sector"][s] = totals["sector"].get(s, 0) + 1
    chosen = [_summary(p) for p in everything
              if (status is None or p["status"] == status) and (sector is None or p["sector"] == sector)
              and (key is None or p["key"] == key) and (face_to_face is None or p["face_to_face"] == face_to_face)]
    return {"totals": {**totals, "key": sum(p["key"] for p in everything),
                       "face_to_face": sum(p["face_to_face"] for p in everything), "all": len(everything)},
            "proposals": chosen}


def _standing(d: dict[str, Any], today: date, calendar: WorkingCalendar) -> dict[str, Any]:
    """Working days left before the due date (after today, up to the due date), or overdue
    after it (after the due date, up to today)."""
    due = date.fromisoformat(d["due"])
    after = timedelta(days=1)
    return {"due": d["due"], "provisional": d["provisional"], "missed_on": d["missed_on"],
            "working_days_left": calendar.working_days_between(today, due + after).value if due > today else 0,
            "working_days_overdue": calendar.working_days_between(due, today + after).value if today > due else 0}


def unit_queue(views: ViewStore, unit: str, today: date, calendar: WorkingCalendar) -> dict[str, Any]:
    """A handling unit's proposals: replies it owes as lead unit (主办), with working days left
    or overdue; views it owes as co-unit (协办)."""
    to_reply, views_owed = [], []
    for d in sorted(views.list("deadline"), key=lambda d: (d["due"], d["subject"])):
        if d["department"] == unit and d["met_on"] is None:
            p = views.get("proposal", d["subject"])
            if p is not None:
                to_reply.append({**_summary(p), **_standing(d, today, calendar)})
    for p in views.list("proposal"):
        a = p["assignment"]
        if a and p["status"] == "handling" and unit in a["co_units"] and unit not in p["co_unit_views"]:
            views_owed.append({**_summary(p), "lead_unit": a["lead_unit"]})
    return {"unit": unit, "as_of": today.isoformat(), "to_reply": to_reply, "co_unit_views_owed": views_owed}


def proposer_proposals(views: ViewStore, name: str) -> list[dict[str, Any]]:
    """A member's or deputy's own proposals and where each stands."""
    return _proposals(views, views.list("proposer_proposal", prefix=f"{_name_key(name)}/"))


def assessment(views: ViewStore) -> dict[str, Any]:
    """Assessment of handling units (办理考评, 002 第十一条; 000 五(三)): replies on time,
    late, overdue, categories and the proposers' ratings, per lead unit."""
    units: dict[str, dict[str, Any]] = {}
    for p in views.list("proposal"):
        if not p["assignment"]:
            continue
        u = units.setdefault(p["assignment"]["lead_unit"], {
            "unit": p["assignment"]["lead_unit"], "assigned": 0, "replied": 0, "on_time": 0, "late": 0,
            "categories": {"A": 0, "B": 0, "C": 0},
            "ratings": {"satisfied": 0, "basically_satisfied": 0, "unsatisfied": 0}, "overdue": 0})
        u["assigned"] += 1
        for r in p["rounds"]:
            if r["reply"]:
                u["replied"] += 1
                u["on_time" if r["reply"]["on_time"] else "late"] += 1
                u["categories"][r["reply"]["category"]] += 1
            if r["rating"]:
                u["ratings"][r["rating"]["rating"]] += 1
    for d in views.list("deadline"):
        if d["missed_on"] and not d["met_on"] and d["department"] in units:
            units[d["department"]]["overdue"] += 1
    return {"units": sorted(units.values(), key=lambda u: u["unit"])}


def supervision(views: ViewStore, today: date, calendar: WorkingCalendar) -> dict[str, Any]:
    """What the CPPCC office and the government office supervise (督办): replies overdue, and the
    key proposals with the leader who leads (领办) and the chair who supervises (督办) each."""
    overdue = [{**_summary(p), **_standing(d, today, calendar), "round": d["round"]}
               for d in views.list("deadline")
               if d["missed_on"] and not d["met_on"] and (p := views.get("proposal", d["subject"]))]
    key = [_summary(p) for p in sorted(views.list("proposal"), key=lambda p: (p["submitted_on"], p["id"]))
           if p["key"]]
    return {"as_of": today.isoformat(), "overdue": sorted(overdue, key=lambda r: (r["due"], r["id"])),
            "key_proposals": key}


def public_proposals(views: ViewStore, after: str | None = None,
                     limit: int = 100) -> tuple[list[dict[str, Any]], str | None]:
    """Published proposals and their results (001 分工 14(4)): proposers by name and sector, no
    contact; a page of them (``shared.pages``), and the proposal id the next page follows."""

    def public(p: dict[str, Any]) -> dict[str, Any] | None:
        if not p["published"]:
            return None
        return {**{k: p[k] for k in ("id", "title", "content", "kind", "sector", "status", "submitted_on",
                                     "published")},
                "proposers": [{"name": x["name"], "sector": x.get("sector")} for x in p["proposers"] or []],
                "collective": p["collective"], "lead_unit": (p["assignment"] or {}).get("lead_unit"),
                "replies": [{**r["reply"], "round": r["round"]} for r in p["rounds"] if r["reply"]],
                "ratings": [r["rating"]["rating"] for r in p["rounds"] if r["rating"]]}

    return scan(views, "proposal", "", after, limit, public)


# -- members' duty records ("五个一", 001 §23) ------------------------------------------------

def _members_in(views: ViewStore, year: int) -> list[dict[str, Any]]:
    return sorted((m for m in views.list("member") if m["term_from"] <= year <= m["term_to"]),
                  key=lambda m: m["name"])


def duty_record(views: ViewStore, member: dict[str, Any], year: int) -> dict[str, Any]:
    """One member's year: plenary, proposals, social-condition reports, activities; and the term."""
    of_year = [d for d in member["duties"] if d["year"] == year]
    count = {duty: sum(d["duty"] == duty for d in of_year) for duty in Duty}
    proposals = len(views.list("member_proposal", prefix=f"{_name_key(member['name'])}/{year}/"))
    term = [d for d in member["duties"] if d["duty"] in PER_TERM]
    short = []
    if not count[Duty.plenary_attendance]:
        short.append("plenary_attendance")
    if not proposals:
        short.append("proposal")
    if not count[Duty.social_condition_report]:
        short.append("social_condition_report")
    if not count[Duty.activity]:
        short.append("activity")
    # Per term (每届): judged in the term's last year; earlier, it is shown as still owed.
    term_owed = not term
    if term_owed and year == member["term_to"]:
        short.append("plenary_speech_or_research_report")
    return {"member": member["name"], "sector": member["sector"], "employer": member["employer"],
            "term": member["term"], "year": year,
            "plenary_attendance": bool(count[Duty.plenary_attendance]), "proposals": proposals,
            "social_condition_reports": count[Duty.social_condition_report],
            "activities": count[Duty.activity],
            "term_speech_or_report": len(term), "term_duty_owed": term_owed,
            "short_of": short}


def duties(views: ViewStore, year: int) -> dict[str, Any]:
    """Every member's "五个一" record for the year, and who falls short of what."""
    records = [duty_record(views, m, year) for m in _members_in(views, year)]
    return {"year": year, "members": records,
            "short": [{"member": r["member"], "short_of": r["short_of"]} for r in records if r["short_of"]]}


#: Who the attendance is reported to (001 §23: 向党委组织、统战部门及本人所在单位通报).
RECIPIENTS = {"organization_department": "党委组织部门", "united_front_department": "统战部门",
              "employer": "本人所在单位"}


def attendance(views: ViewStore, year: int, recipient: str, employer: str | None) -> dict[str, Any]:
    """Members' attendance at the plenary and activities, as reported to one recipient: the
    organisation and united-front departments see every member, an employer its own."""
    members = _members_in(views, year)
    if recipient == "employer":
        members = [m for m in members if m["employer"] == employer]
    rows = []
    for m in members:
        r = duty_record(views, m, year)
        rows.append({k: r[k] for k in ("member", "sector", "employer", "plenary_attendance", "activities")})
    return {"year": year, "recipient": recipient, "recipient_name": RECIPIENTS[recipient],
            "employer": employer, "members": rows}
