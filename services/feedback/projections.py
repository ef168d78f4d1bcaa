"""Feedback read models.

``TopicBook`` learns, from the catalog's and sessions' Kafka topics, which topics
were accepted, who leads them and which sessions they have: the feedback service
never calls another service. ``FeedbackViews`` keeps, from the service's own log,
what each body reads: the author's own opinions, each department's queue, the
government office's supervision totals (督办), the public's answered opinions,
topic results and evaluation results. ``Trace`` (全过程留痕) follows every
service's topic. None of them holds a person's name, phone or ID number.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from shared.books import TopicBook, known_session, known_topic  # noqa: F401 - used as q.* by the API
from shared.config import SERVICE_TOPICS
from shared.deadlines import close_deadline, elapsed, put_deadline
from shared.envelope import CloudEvent
from shared.pages import scan
from shared.projection import UnprocessableEvent, ViewProjection, existing, need, update
from shared.stores import ViewStore, ViewTransaction
from shared.workdays import WorkingCalendar

from services.feedback.domain import STATUS_AFTER


class FeedbackViews(ViewProjection):
    """Opinions, deadlines, decisions, evaluations and results, from the service's own log."""

    name = "feedback_views"
    views = ("opinion", "topic_opinion", "author_opinion", "deadline", "erased", "results",
             "decision", "topic_decision", "evaluation")
    #: 2: each decision linked to its topic (``topic_decision``), so a topic's public page
    #: reads its own decisions, not every decision of every year.
    version = 2

    # -- opinions ----------------------------------------------------------------------
    def _opinion(self, e: CloudEvent, txn: ViewTransaction) -> dict[str, Any]:
        return existing(txn, "opinion", e.subject, e, "submitted")

    def on_OpinionSubmitted(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        need(d, "channel", "author_ref", "responsible", "submitted_on", "answer_due")
        txn.put("opinion", e.subject, {
            "id": e.subject, **{k: d.get(k) for k in (
                "topic_id", "session_id", "channel", "platform_level", "platform", "category",
                "author_ref", "organization", "content", "confidential", "responsible", "submitted_on")},
            "submitted_at": e.time.isoformat(),
            "author_erased": False, "status": "open", "round": 1, "escalated": False,
            "rounds": [{"round": 1, "answer": None, "feedback": None, "satisfaction": None}],
            "escalations": [],
        })
        if d.get("topic_id"):
            txn.put("topic_opinion", f"{d['topic_id']}/{e.subject}", {"id": e.subject})
        txn.put("author_opinion", f"{d['author_ref']}/{e.subject}", {"id": e.subject})
        put_deadline(txn, "opinion", e.subject, "answer", d["answer_due"], d["responsible"], d.get("topic_id"))

    def on_OpinionEscalated(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        opinion = self._opinion(e, txn)
        opinion["escalations"].append({k: d[k] for k in ("to", "tier", "escalated_by", "reason",
                                                         "from_level", "to_level", "escalated_on")})
        opinion.update(responsible=d["to"], platform_level=d["to_level"], escalated=True)
        txn.put("opinion", e.subject, opinion)
        put_deadline(txn, "opinion", e.subject, "answer", d["answer_due"], d["to"], opinion["topic_id"])

    def _round(self, e: CloudEvent, txn: ViewTransaction, status: str, part: str,
               fields: tuple[str, ...]) -> dict[str, Any]:
        """Record the answer, feedback or satisfaction of the opinion's current round."""
        opinion = self._opinion(e, txn)
        opinion["status"] = status
        opinion["rounds"][-1][part] = {k: e.data[k] for k in fields}
        txn.put("opinion", e.subject, opinion)
        return opinion

    def on_OpinionAnswered(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        opinion = self._round(e, txn, "answered", "answer",
                              ("disposition", "reason", "answered_by", "answered_on"))
        close_deadline(txn, e, "answer", met_on=d["answered_on"])
        put_deadline(txn, "opinion", e.subject, "feedback", d["feedback_due"], opinion["responsible"],
                       opinion["topic_id"])

    def on_FeedbackDelivered(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._round(e, txn, "fed_back", "feedback", ("channel", "message", "delivered_by", "delivered_on"))
        close_deadline(txn, e, "feedback", met_on=d["delivered_on"])

    def on_SatisfactionRated(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._round(e, txn, "rated", "satisfaction", ("rating", "comment", "rated_on"))

    def on_OpinionReopened(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        opinion = self._opinion(e, txn)
        opinion.update(status="open", round=d["round"])
        opinion["rounds"].append({"round": d["round"], "answer": None, "feedback": None, "satisfaction": None})
        txn.put("opinion", e.subject, opinion)
        txn.delete("deadline", f"{e.subject}/feedback")
        put_deadline(txn, "opinion", e.subject, "answer", d["answer_due"], opinion["responsible"],
                       opinion["topic_id"])

    def on_DeadlineMissed(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        close_deadline(txn, e, d["step"], missed_on=d["detected_on"])

    def on_AuthorErased(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        """From now on the views show these opinions without the person: no reference either."""
        need(d, "author_ref")
        ref = d["author_ref"]
        for link in txn.list("author_opinion", prefix=f"{ref}/"):
            opinion = txn.get("opinion", link["id"])
            if opinion is not None:
                txn.put("opinion", link["id"], {**opinion, "author_ref": None, "author_erased": True,
                                                "organization": None})
            txn.delete("author_opinion", f"{ref}/{link['id']}")
        txn.put("erased", ref, {"ref": ref, "erased_on": d["erased_on"]})

    # -- results, decisions, evaluations ---------------------------------------------------
    def on_TopicResultsPublished(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        need(d, "topic_id")
        txn.put("results", d["topic_id"], {k: d.get(k) for k in (
            "topic_id", "summary", "published_by", "published_on", "record", "totals")})

    def on_TopicResultsRevised(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        if e.topicid is None:
            raise UnprocessableEvent("TopicResultsRevised without the topic it revises")
        txn.put("results", e.topicid, {"topic_id": e.topicid, **{k: d.get(k) for k in (
            "summary", "published_by", "published_on", "record", "totals")}})

    def _decision(self, e: CloudEvent, txn: ViewTransaction, **changes: Any) -> dict[str, Any]:
        return update(txn, "decision", e, "drafted", **changes)

    def on_DecisionDrafted(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        txn.put("decision", e.subject, {
            "id": e.subject, **{k: d.get(k) for k in ("topic_id", "title", "kind", "area", "drafted_by",
                                                      "drafted_on")},
            "status": "drafted", "deliberation": None, "issued_on": None, "interpretation": None,
            "evaluations": {"forms": 0, "aim_missed": 0, "objections": 0}, "post_evaluation": None,
        })
        if d.get("topic_id"):
            txn.put("topic_decision", f"{d['topic_id']}/{e.subject}", {"id": e.subject})

    def on_DecisionSubmittedForDeliberation(self, e: CloudEvent, d: dict[str, Any],
                                            txn: ViewTransaction) -> None:
        self._decision(e, txn, status="deliberated", deliberation={k: d.get(k) for k in (
            "submitted_by", "submitted_on", "adoption_record", "totals", "exemption")})

    def on_DecisionIssued(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        decision = self._decision(e, txn, status="issued", issued_on=d["issued_on"])
        put_deadline(txn, "decision", e.subject, "interpretation", d["interpretation_due"],
                       decision["drafted_by"], decision["topic_id"])

    def on_PolicyInterpreted(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._decision(e, txn, interpretation={k: d[k] for k in ("held_on", "by", "on_time")})
        close_deadline(txn, e, "interpretation", met_on=d["held_on"])

    on_InterpretationDeadlineMissed = on_DeadlineMissed

    def on_EvaluationCounted(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        counts = dict(existing(txn, "decision", e.subject, e, "drafted")["evaluations"])
        counts["forms"] += 1
        counts["aim_missed"] += int(d["aim_missed"])
        counts["objections"] += int(d["objection"])
        self._decision(e, txn, evaluations=counts)

    def on_PostEvaluationTriggered(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        self._decision(e, txn, status="under_post_evaluation", post_evaluation={
            **{k: d[k] for k in ("trigger", "reason", "opened_by", "opened_on", "evaluations")}, "report": None})

    def on_PostEvaluationConcluded(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        opened = existing(txn, "decision", e.subject, e, "drafted")["post_evaluation"]
        report = {k: d[k] for k in ("conclusion", "summary", "formed_by", "participants", "concluded_on")}
        self._decision(e, txn, status=STATUS_AFTER[d["conclusion"]], post_evaluation={**opened, "report": report})

    def on_EvaluationSubmitted(self, e: CloudEvent, d: dict[str, Any], txn: ViewTransaction) -> None:
        need(d, "topic_id")
        txn.put("evaluation", f"{d['topic_id']}/{e.subject}", {
            "id": e.subject, **{k: d.get(k) for k in (
                "topic_id", "decision_id", "effect", "satisfaction", "operability", "reasonableness",
                "shortcomings", "risks", "suggestions", "submitted_on")}})


class Trace(ViewProjection):
    """The trace (全过程留痕): every event of every service that belongs to a topic's chain.

    Fed from Kafka. Steps are stored per subject (aggregate), and each subject is
    linked to the topics its events name, so an aggregate whose later events do not
    repeat the topic id (a plan approved, a session held) still shows in the trace,
    and a proposal linked after the fact brings its earlier steps with it. Steps
    are ordered by time when read, so events arriving out of order end up in place.
    """

    name = "trace"
    views = ("step", "trace_erased", "link")
    kafka_topics = tuple(SERVICE_TOPICS.values())

    def apply(self, event: CloudEvent, txn: ViewTransaction) -> None:
        name, service, time = event.name, event.service, event.time.isoformat()
        step = {
            "type": name,
            "service": service,
            "time": time,
            "actor": event.actor,
            "subject": event.subject,
            "event_id": event.id,
            "topic_id": event.topicid,
            "sequence": event.sequence,
        }
        txn.put("step", f"{event.subject}/{time}/{service}/{event.sequence:012d}", step)
        if name == "AuthorErased" and event.data.get("author_ref"):
            txn.put("trace_erased", event.data["author_ref"], {"ref": event.data["author_ref"]})
        if event.topicid:
            # A proposal belongs whole to every topic it is linked to: the one it took an
            # opinion from, and the one it became (its earlier steps name no or another topic).
            self._link(txn, event.topicid, event.subject, whole=service == "proposals")
            proposal = event.data.get("proposal_id")
            if proposal:
                self._link(txn, event.topicid, str(proposal), whole=True)

    @staticmethod
    def _link(txn: ViewTransaction, topic_id: str, subject: str, whole: bool = False) -> None:
        key = f"{topic_id}/{subject}"
        current = txn.get("link", key)
        if current is not None and (current.get("whole") or not whole):
            return  # linked already, at least as wholly: writing it again would change nothing
        txn.put("link", key, {"topic_id": topic_id, "subject": subject, "whole": whole})


def trace(views: ViewStore, topic_id: str) -> list[dict[str, Any]] | None:
    # One snapshot for the whole answer: a topic with thousands of opinions is thousands of
    # subjects, and a connection per read made such a trace take longer than a client waits.
    with views.reading() as r:
        links = r.list("link", prefix=f"{topic_id}/")
        if not links:
            return None
        steps = [
            step
            for link, linked in zip(links, r.lists("step", [f"{link['subject']}/" for link in links]))
            for step in linked
            if link.get("whole") or step.get("topic_id") in (None, topic_id)
        ]
        erased = {doc["ref"] for doc in r.list("trace_erased")}
    steps.sort(key=lambda s: (s["time"], s["service"], s["sequence"]))
    # A person who was erased no longer shows, not even by reference (an actor is a bare
    # reference on older events, ``citizen:<ref>`` or ``member:<ref>`` on those a person signed).
    for step in steps:
        if step["actor"] and step["actor"].rpartition(":")[2] in erased:
            step["actor"] = None
    return steps


# -- queries: each body's view of the same documents -------------------------------------

def topic_opinions(views: ViewStore, topic_id: str) -> list[dict[str, Any]]:
    return [o for link in views.list("topic_opinion", prefix=f"{topic_id}/")
            if (o := views.get("opinion", link["id"])) is not None]


def _answer(o: dict[str, Any]) -> dict[str, Any] | None:
    """The latest answer given (a reopened opinion keeps its first until the second comes)."""
    return next((r["answer"] for r in reversed(o["rounds"]) if r["answer"]), None)


def consultation(views: ViewStore, topic_id: str) -> dict[str, Any]:
    """The adoption record of a topic's opinions (意见采纳情况), made from their answers.

    Public opinions are listed one by one; confidential ones are only counted, so
    the record can go with deliberation materials and into the public results.
    """
    opinions = topic_opinions(views, topic_id)
    record, totals = [], {"opinions": len(opinions), "adopted": 0, "partially_adopted": 0,
                          "not_adopted": 0, "confidential": 0}
    unanswered = 0
    for o in sorted(opinions, key=lambda o: (o["submitted_at"], o["id"])):
        answer = _answer(o)
        if answer is None or o["status"] == "open":
            unanswered += 1
            continue
        totals[answer["disposition"]] += 1
        if o["confidential"]:
            totals["confidential"] += 1
            continue
        record.append({"opinion_id": o["id"], "channel": o["channel"], "content": o["content"],
                       "disposition": answer["disposition"], "reason": answer["reason"],
                       "answered_by": answer["answered_by"], "round": o["round"]})
    return {"topic_id": topic_id, "record": record, "unanswered": unanswered, "totals": totals}


def author_opinions(views: ViewStore, ref: str) -> list[dict[str, Any]]:
    """The author's own opinions and where each stands."""
    opinions = [o for link in views.list("author_opinion", prefix=f"{ref}/")
                if (o := views.get("opinion", link["id"])) is not None]
    return sorted(opinions, key=lambda o: (o["submitted_at"], o["id"]))


def department_queue(views: ViewStore, department: str, today: date,
                     calendar: WorkingCalendar) -> dict[str, Any]:
    """What a department owes: opinions and escalated items to answer, feedback to deliver,
    policy interpretations — each with the working days elapsed since it became due to it."""
    owed = [d for d in views.list("deadline") if d["department"] == department and d["met_on"] is None]
    rows: dict[str, list[dict[str, Any]]] = {"to_answer": [], "to_feed_back": [], "to_interpret": []}
    for d in sorted(owed, key=lambda d: (d["due"], d["subject"])):
        row = {**d, "working_days_elapsed": elapsed(calendar, d["from"], today),
               "overdue": d["missed_on"] is not None}
        if d["kind"] == "decision":
            row["decision"] = views.get("decision", d["subject"])
            rows["to_interpret"].append(row)
            continue
        row["opinion"] = views.get("opinion", d["subject"])
        rows["to_answer" if d["step"] == "answer" else "to_feed_back"].append(row)
    escalations = [r for r in rows["to_answer"] if r["opinion"] and r["opinion"]["escalated"]]
    return {"department": department, "as_of": today.isoformat(), **rows, "escalations": escalations}


def supervision(views: ViewStore, today: date, calendar: WorkingCalendar) -> dict[str, Any]:
    """The government office's totals per department (督办, 002 第十三条) and what is overdue."""
    totals: dict[str, dict[str, Any]] = {}

    def row(department: str) -> dict[str, Any]:
        return totals.setdefault(department, {
            "department": department, "opinions": 0, "answered": 0, "fed_back": 0, "overdue": 0,
            "satisfaction": {"satisfied": 0, "basically_satisfied": 0, "unsatisfied": 0}})

    for o in views.list("opinion"):
        r = row(o["responsible"])
        r["opinions"] += 1
        r["answered"] += o["status"] != "open"
        r["fed_back"] += o["status"] in ("fed_back", "rated")
        for rnd in o["rounds"]:
            if rnd["satisfaction"]:
                r["satisfaction"][rnd["satisfaction"]["rating"]] += 1
    overdue = []
    for d in views.list("deadline"):
        if d["missed_on"] and not d["met_on"]:
            row(d["department"])["overdue"] += 1
            overdue.append({**d, "working_days_overdue": elapsed(calendar, d["due"], today)})
    return {"as_of": today.isoformat(),
            "departments": sorted(totals.values(), key=lambda r: r["department"]),
            "overdue": sorted(overdue, key=lambda d: (d["due"], d["subject"]))}


_PUBLIC = ("id", "topic_id", "session_id", "channel", "platform_level", "category", "content",
           "submitted_on", "submitted_at", "status")


def public_opinions(views: ViewStore, topic_id: str | None, after: str | None = None,
                    limit: int = 100) -> tuple[list[dict[str, Any]], str | None]:
    """What society sees: answered opinions that are not confidential, without any person;
    a page of them (``shared.pages``), and the opinion id the next page follows."""

    def public(o: dict[str, Any] | None) -> dict[str, Any] | None:
        if o is None or o["confidential"]:
            return None
        answer = _answer(o)
        return None if answer is None else {**{k: o.get(k) for k in _PUBLIC}, "answer": answer}

    if topic_id:
        return scan(views, "topic_opinion", f"{topic_id}/", after, limit,
                    lambda link: public(views.get("opinion", link["id"])))
    return scan(views, "opinion", "", after, limit, public)


def evaluation_results(views: ViewStore, topic_id: str) -> dict[str, Any]:
    forms = views.list("evaluation", prefix=f"{topic_id}/")
    tally = {"forms": len(forms), "effect": {}, "operability": {}, "reasonableness": {}}
    for f in forms:
        for k in ("effect", "operability", "reasonableness"):
            tally[k][f[k]] = tally[k].get(f[k], 0) + 1
    tally["average_satisfaction"] = (round(sum(f["satisfaction"] for f in forms) / len(forms), 2)
                                     if forms else None)
    tally["suggestions"] = [f["suggestions"] for f in forms if f.get("suggestions")]
    return tally


def public_topic(views: ViewStore, topic_id: str) -> dict[str, Any]:
    """A topic's public results and the public's evaluation of what was decided."""
    with views.reading() as r:  # one snapshot, and the topic's decisions only
        decisions = [{k: d[k] for k in ("id", "title", "kind", "status", "issued_on", "post_evaluation")}
                     for link in r.list("topic_decision", prefix=f"{topic_id}/")
                     if (d := r.get("decision", link["id"])) is not None]
    return {"topic_id": topic_id, "results": views.get("results", topic_id), "decisions": decisions,
            "evaluation": evaluation_results(views, topic_id)}
