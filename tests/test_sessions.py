"""Issue 4: sessions — from scheduling to leaders' instructions, on working-day deadlines.

Every rule is shown through HTTP on a running system whose services talk over
the real broker: the sessions service learns plans from the catalog's Kafka
topic, the trace is built from the sessions topic, outcomes reach their topic.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from services.sessions.application import SessionsApplication
from services.sessions.domain import Role, Session
from services.sessions.projections import SessionViews, open_deadline_sessions
from shared.access import Role as Acting
from shared.clock import FixedClock
from shared.config import OUTCOMES_TOPIC, SERVICE_TOPICS, Settings
from shared.replay import differences, rebuild
from shared.stores import open_view_store
from tests import steps
from tests.conftest import KafkaEndpoint, make_settings
from tests.harness import RunningSystem, read_topic, wait_for
from tests.steps import approve, item, plan, topic

NAMES = ("catalog", "sessions", "feedback")


def refused(system: RunningSystem, path: str, body: dict[str, Any], status: int, rule: str,
            words: str = "") -> dict[str, Any]:
    return steps.refused(system, "sessions", path, body, status, rule, words)


def planned_topic(system: RunningSystem, form: str = "symposium", kind: str = "government",
                  department: str = "县住建局", month: str = "2026-10") -> str:
    """A topic placed, for ``month``, in a plan of ``kind`` that its body decided."""
    topic_id = topic(system, "livelihood")
    plan_id = plan(system, kind)
    system.post(f"/catalog/plans/{plan_id}/items", item(topic_id, department, form=form, scheduled_month=month),
                expect=200)
    approve(system, plan_id, kind)
    wait_planned(system, topic_id)
    return topic_id


def wait_planned(system: RunningSystem, topic_id: str) -> list[dict[str, Any]]:
    """The sessions service learns plans from Kafka: wait until it has."""
    return wait_for(lambda: system.get(f"/sessions/views/planned-topics/{topic_id}"), 30,
                    f"sessions to learn that {topic_id} is planned")


def schedule(system: RunningSystem, topic_id: str, scheduled_for: str = "2026-10-20",
             form: str = "symposium", department: str = "县住建局", **extra: Any) -> str:
    body = {"topic_id": topic_id, "form": form, "title": f"{form} 协商会", "scheduled_for": scheduled_for,
            "lead_department": department, "host": "县政府办公室", **extra}
    return system.post("/sessions", body, expect=201).json()["id"]


def held_body(held_on: str = "2026-10-20", **extra: Any) -> dict[str, Any]:
    return {"held_on": held_on, "attendees": ["王委员", "李代表", "张群众"], "minutes": "会议纪要：同意加装电梯方案",
            **extra}


def events_of(system: RunningSystem, name: str, subject: str | None = None) -> list[dict[str, Any]]:
    """Every stored event of one type, as the sessions service publishes it."""
    app = system.services["sessions"].app
    found = []
    for envelope in app.envelopes(app.notifications(0, 10_000)):
        if envelope.name == name and (subject is None or envelope.subject == subject):
            found.append(envelope.data)
    return found


@pytest.fixture
def session_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"deadline_check_interval": 0.2})


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(date(2026, 9, 1))


@pytest.fixture
def system(session_settings: Settings, clock: FixedClock) -> Iterator[RunningSystem]:
    with RunningSystem(session_settings, NAMES, clock) as running:
        yield running


def test_a_session_from_plan_to_instruction(system: RunningSystem, clock: FixedClock,
                                            kafka: KafkaEndpoint) -> None:
    # Only a topic in an approved plan gets a session; sessions learns plans from Kafka.
    unplanned = topic(system, "livelihood")
    draft = plan(system)
    system.post(f"/catalog/plans/{draft}/items", item(unplanned, form="hearing", scheduled_month="2026-10"),
                expect=200)
    body = {"topic_id": unplanned, "form": "hearing", "title": "听证会", "scheduled_for": "2026-10-20",
            "lead_department": "县住建局", "host": "县政府办公室"}
    refused(system, "/sessions", body, 409, "topic_not_planned", "not in a plan in force")
    approve(system, draft)
    assert wait_planned(system, unplanned)[0]["form"] == "hearing"

    # The form is the plan's, or a change with a reason.
    refused(system, "/sessions", {**body, "form": "symposium"}, 409, "form_not_planned", "hearing")
    changed = system.post("/sessions", {**body, "form": "symposium", "form_change_reason": "听证条件不具备，改为座谈"},
                          expect=201).json()["id"]
    assert system.get(f"/sessions/{changed}")["form_change_reason"] == "听证条件不具备，改为座谈"
    # Moved (改期) and then cancelled, each with a reason; a cancelled session goes no further.
    refused(system, f"/sessions/{changed}/reschedule", {"scheduled_for": "2026-11-10", "decided_by": "县政府办公室"},
            422, "missing")
    moved = system.post(f"/sessions/{changed}/reschedule", {"scheduled_for": "2026-11-10", "reason": "与人代会冲突",
                                                            "decided_by": "县政府办公室"}, expect=200).json()
    assert (moved["scheduled_for"], moved["due"]["notice_by"]["date"]) == ("2026-11-10", "2026-10-19")
    system.post(f"/sessions/{changed}/cancellation", {"reason": "议题已并入听证会", "decided_by": "县政府办公室"},
                expect=200)
    refused(system, f"/sessions/{changed}/notice", {"served_on": "2026-10-01", "materials": ["x"]},
            409, "session_cancelled", "议题已并入听证会")
    refused(system, "/sessions", {**body, "form": "tea_party"}, 422, "enum")
    refused(system, "/sessions", {**body, "scheduled_for": "2026-10-32"}, 422, "date_format", "YYYY-MM-DD")

    # A topic added by amendment is planned too.
    approved = plan(system)
    system.post(f"/catalog/plans/{approved}/items", item(topic(system, "budget")), expect=200)
    approve(system, approved)
    amended = topic(system, "reform")
    system.post(f"/catalog/plans/{approved}/amendments",
                {**item(amended, "县发改局", scheduled_month="2026-10"), "reason": "临时增加",
                 "approved_by": "县委常委会"}, expect=201)
    assert wait_planned(system, amended)[0]["by_amendment"] is True
    schedule(system, amended, department="县发改局")

    # The session itself: invitations by role, the holiday notice case, waiver, held.
    topic_id = unplanned
    session = schedule(system, topic_id, form="hearing")
    people = [{"name": f"参加人{i}", "role": role.value, "organization": "单位"} for i, role in enumerate(Role)]
    people[0]["name"] = "王委员"
    invited = system.post(f"/sessions/{session}/invitations", {"participants": people}, expect=200).json()
    assert [p["role"] for p in invited["participants"]] == [r.value for r in Role]
    problem = refused(system, f"/sessions/{session}/invitations",
                      {"participants": [{"name": "x", "role": "neighbour", "organization": "y"}]}, 422, "enum")
    assert problem["errors"][0]["field"] == "participants.0.role"

    # Served 2026-09-23 for 2026-10-20: 18 weekdays, but Mid-Autumn and National Day leave 13.
    clock.set(date(2026, 9, 23))
    notice = system.post(f"/sessions/{session}/notice",
                         {"served_on": "2026-09-23", "materials": ["方案征求意见稿"]}, expect=200).json()
    assert (notice["working_days_before"], notice["notice_sufficient"], notice["provisional"]) == (13, False, False)
    refused(system, f"/sessions/{session}/notice", {"served_on": "2026-09-01", "materials": ["x"]},
            409, "notice_already_served")

    clock.set(date(2026, 10, 20))
    problem = refused(system, f"/sessions/{session}/held", held_body(), 409, "notice_insufficient", "15 working days")
    assert "13 working days" in problem["detail"]
    refused(system, f"/sessions/{session}/held", held_body("2026-10-21", notice_waiver_reason="急"),
            409, "held_in_future")
    held = system.post(f"/sessions/{session}/held",
                       held_body(notice_waiver_reason="汛期前必须完成决策", public_summary="会议同意加装电梯方案"), expect=200).json()
    assert held["status"] == "held"
    assert held["held"]["notice_waiver_reason"] == "汛期前必须完成决策"
    # Due dates: opinion 5 working days after, report 5 after that.
    assert (held["due"]["opinion"]["due"], held["due"]["report"]["due"]) == ("2026-10-27", "2026-11-03")
    assert held["due"]["opinion"]["provisional"] is False
    refused(system, f"/sessions/{session}/invitations", {"participants": people[:1]}, 409, "session_already_held")

    # Report follows the consultation opinion; submitted; leaders instruct; departments implement.
    refused(system, f"/sessions/{session}/report",
            {"summary": "报告", "compiled_by": "县政府办公室", "opinion_ids": []}, 409, "not_opinion_formed")
    system.post(f"/sessions/{session}/consultation-opinion",
                {"summary": "协商意见：分批实施", "formed_by": "县住建局"}, expect=200)
    refused(system, f"/sessions/{session}/report",
            {"summary": "报告", "compiled_by": "县政府办公室", "opinion_ids": ["nope"]}, 422, "uuid_parsing")
    # Only opinions the feedback service published, on this session's topic (learned from Kafka).
    invented = "3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
    refused(system, f"/sessions/{session}/report", {"summary": "报告", "compiled_by": "县政府办公室",
            "opinion_ids": [invented]}, 409, "unknown_opinions", invented)
    opinion_ids = [steps.opinion(system, topic_id, session, channel="in_session")["id"] for _ in range(2)]
    elsewhere = steps.opinion(system, amended)["id"]
    report_body = {"summary": "协商报告", "compiled_by": "县政府办公室", "opinion_ids": [*opinion_ids, elsewhere]}
    wait_for(lambda: system.post(f"/sessions/{session}/report", report_body).json()["rule"]
             == "opinions_of_other_topic", 30, "sessions to learn the opinions")
    report = system.post(f"/sessions/{session}/report", {**report_body, "opinion_ids": opinion_ids},
                         expect=200).json()["report"]
    assert report["opinion_ids"] == opinion_ids
    refused(system, f"/sessions/{session}/instructions",
            {"leader": "县长", "text": "同意", "departments": ["县住建局"]}, 409, "not_report_submitted")
    system.post(f"/sessions/{session}/report/submission", {"submitted_to": ["县委", "县政府"]}, expect=200)
    waiting = wait_for(lambda: system.get("/sessions/views/awaiting-instruction"), 20, "awaiting instruction")
    assert [s["id"] for s in waiting] == [session]

    instructed = {"leader": "县委书记", "text": "抓紧落实，年内见效", "departments": ["县住建局", "县财政局"]}
    keyed = {**system.as_(Acting.government_office), "Idempotency-Key": f"instruction-{session}"}
    instruction = system.post(f"/sessions/{session}/instructions", instructed, expect=201, headers=keyed).json()["id"]
    # Sent again with its key (the answer lost): the same instruction, not a second one.
    again = system.post(f"/sessions/{session}/instructions", instructed, expect=201, headers=keyed)
    assert (again.json()["id"], again.headers["Idempotent-Replayed"]) == (instruction, "true")
    assert [i["id"] for i in system.get(f"/sessions/{session}")["instructions"]] == [instruction]
    refused(system, f"/sessions/{session}/instructions/{instruction}/implementation",
            {"department": "县教育局", "note": "x"}, 409, "department_not_tasked")
    system.post(f"/sessions/{session}/instructions/{instruction}/implementation",
                {"department": "县住建局", "note": "已完成首批12部电梯"}, expect=200)
    # A government session's follow-up goes to the government office (督办), not to the CPPCC
    # office, which receives the implementation of CPPCC outcomes (001 §19).
    implemented = system.get(f"/sessions/{session}")["instructions"][0]["implementation"]
    assert implemented == [{"department": "县住建局", "note": "已完成首批12部电梯",
                            "reported_on": "2026-10-20", "copied_to": "government_office"}]
    assert wait_for(lambda: system.get("/sessions/views/awaiting-instruction") == [], 20, "queue emptied")

    # Each body's view.
    agenda = system.get("/sessions/views/departments/县财政局/agenda")
    assert [i["id"] for i in agenda["instructions"]] == [instruction]
    assert agenda["instructions"][0]["implementation_reported"] is False
    lead = system.get("/sessions/views/departments/县住建局/agenda")
    assert session in [s["id"] for s in lead["sessions"]] and lead["deadlines"] == []
    supervision = system.get("/sessions/views/supervision")
    assert [(w["id"], w["notice_waiver_reason"], w["held_working_days_before"])
            for w in supervision["notice_waivers"]] == [(session, "汛期前必须完成决策", 13)]
    public = system.get("/sessions/public/sessions")
    assert [(s["id"], s["public_summary"], s["attendee_count"]) for s in public] == [(session, "会议同意加装电梯方案", 3)]
    assert all("minutes" not in s for s in public)

    # Every event is in the topic's trace, after the catalog's.
    expected = ["SessionScheduled", "ParticipantsInvited", "NoticeServed", "SessionHeld",
                "ConsultationOpinionFormed", "ReportCompiled", "ReportSubmitted", "InstructionIssued",
                "ImplementationReported"]
    trace = system.wait_trace(topic_id, 5 + len(expected) + 3 + len(opinion_ids))
    trace = wait_for(lambda: (t := system.trace(topic_id)) and [
        s["type"] for s in t if s["subject"] == session] == expected and t, 20, "the session's steps")
    session_steps = [s for s in trace if s["service"] == "sessions"]
    assert [s["type"] for s in trace if s["service"] == "feedback"] == ["OpinionSubmitted"] * 2
    assert [s["type"] for s in session_steps if s["subject"] == changed] == [
        "SessionScheduled", "SessionRescheduled", "SessionCancelled"]
    assert [s["actor"] for s in session_steps if s["type"] == "InstructionIssued"] == ["government_office/经办人"]

    # On Kafka: no participant names on the sessions topic; outcomes carry no attendees or internal minutes.
    topic_name = system.settings.topic(SERVICE_TOPICS["sessions"])
    published = [json.loads(r.value) for r in read_topic(kafka.bootstrap, topic_name)]
    assert "王委员" not in json.dumps(published, ensure_ascii=False)
    assert "会议纪要" not in json.dumps(published, ensure_ascii=False), "minutes name speakers: they stay inside"
    invited_event = next(e for e in published if e["type"].endswith(".ParticipantsInvited.v1"))
    refs = system.services["sessions"].app.participant_ref
    assert invited_event["data"]["participants"][0]["ref"] == refs("王委员")
    held_event = next(e for e in published if e["type"].endswith(".SessionHeld.v1"))
    assert refs("王委员") in held_event["data"]["attendees"]  # invited and attended: the same person
    assert invited_event["topicid"] == topic_id
    outcomes = [json.loads(r.value) for r in read_topic(kafka.bootstrap, system.settings.topic(OUTCOMES_TOPIC))]
    held_outcome = next(e for e in outcomes if e["type"].endswith(".SessionHeld.v1"))
    assert "attendees" not in held_outcome["data"] and held_outcome["data"]["minutes"] is None
    assert held_outcome["data"]["public_summary"] == "会议同意加装电梯方案"
    assert held_outcome["data"]["attendee_count"] == 3
    assert any(e["type"].endswith(".ReportSubmitted.v1") for e in outcomes)

    # The views rebuild from the log to the same documents.
    service = system.services["sessions"]
    wait_for(lambda: service.projections["session_views"].position("sessions") == service.app.max_position(),
             20, "views caught up")
    rebuilt, _ = rebuild(service.app, [SessionViews])
    live = {k: v for k, v in service.views.dump().items() if k[0] not in ("planned", "catalog_plan", "published_opinion")}
    assert differences(live, rebuilt.dump()) == []


def test_deadline_missed_fires_once_per_step_even_across_a_restart(
        session_settings: Settings, clock: FixedClock) -> None:
    with RunningSystem(session_settings, NAMES, clock) as system:
        topic_id = planned_topic(system)
        session = schedule(system, topic_id)
        system.post(f"/sessions/{session}/notice", {"served_on": "2026-09-01", "materials": ["材料"]}, expect=200)
        clock.set(date(2026, 10, 20))
        system.post(f"/sessions/{session}/held", held_body(), expect=200)

        # Due 2026-10-27: nothing on the due date itself.
        clock.set(date(2026, 10, 27))
        wait_for(lambda: system.get("/sessions/views/supervision")["upcoming"], 20, "deadlines listed")
        scheduler_rounds(system, 5)
        assert events_of(system, "DeadlineMissed") == []

        # The first working day after: once, however many rounds pass.
        clock.set(date(2026, 10, 28))
        wait_for(lambda: events_of(system, "DeadlineMissed"), 20, "DeadlineMissed")
        scheduler_rounds(system, 5)
        missed = events_of(system, "DeadlineMissed")
        assert [(m["step"], m["due"], m["detected_on"]) for m in missed] == [("opinion", "2026-10-27", "2026-10-28")]
        overdue = wait_for(lambda: system.get("/sessions/views/supervision")["overdue"], 20, "overdue listed")
        assert [(o["session_id"], o["step"], o["due"], o["working_days_overdue"]) for o in overdue] == [
            (session, "opinion", "2026-10-27", 1)]
        assert session in [d["session_id"] for d in system.get("/sessions/views/departments/县住建局/agenda")["deadlines"]]

        # Done late: no longer outstanding, still on record.
        system.post(f"/sessions/{session}/consultation-opinion", {"summary": "意见", "formed_by": "县住建局"},
                    expect=200)
        wait_for(lambda: system.get("/sessions/views/supervision")["completed_late"], 20, "completed late")
        assert system.get("/sessions/views/supervision")["overdue"] == []

    # Restarted on the same stores, with the clock past the report's due date (2026-11-03).
    clock.set(date(2026, 11, 5))
    with RunningSystem(session_settings, NAMES, clock) as system:
        wait_for(lambda: len(events_of(system, "DeadlineMissed")) == 2, 20, "report deadline missed")
        scheduler_rounds(system, 5)
        assert [(m["step"], m["detected_on"]) for m in events_of(system, "DeadlineMissed")] == [
            ("opinion", "2026-10-28"), ("report", "2026-11-05")]
        trace = system.wait_trace(topic_id, 11)
        assert [s["actor"] for s in trace if s["type"] == "DeadlineMissed"] == ["sessions-deadline-scheduler"] * 2
        assert system.get(f"/sessions/{session}")["due"]["report"]["missed_on"] == "2026-11-05"

    # And restarted again: nothing more to report.
    with RunningSystem(session_settings, NAMES, clock) as system:
        scheduler_rounds(system, 5)
        assert len(events_of(system, "DeadlineMissed")) == 2


def scheduler_rounds(system: RunningSystem, rounds: int) -> None:
    """Let the scheduler (every 0.2 s here) run at least ``rounds`` more times."""
    time.sleep(rounds * system.settings.deadline_check_interval + 0.5)


@pytest.fixture
def sqlite_system(tmp_path: Path, kafka: KafkaEndpoint, clock: FixedClock) -> Iterator[RunningSystem]:
    s = make_settings("sqlite", tmp_path, kafka, None, deadline_check_interval=0.2)
    with RunningSystem(s, NAMES, clock) as running:
        yield running


def test_research_vetting_exemption_and_provisional_deadlines(sqlite_system: RunningSystem,
                                                              clock: FixedClock) -> None:
    system = sqlite_system
    # 不调研不协商: a thematic consultation is not held without research.
    thematic = planned_topic(system, form="thematic_consultation", kind="cppcc", department="县政协办公室",
                             month="2026-12")
    session = schedule(system, thematic, "2026-12-28", form="thematic_consultation", department="县政协办公室")
    assert system.get(f"/sessions/{session}")["research_required"] is True
    clock.set(date(2026, 11, 2))
    system.post(f"/sessions/{session}/notice", {"served_on": "2026-11-02", "materials": ["调研提纲"]}, expect=200)
    clock.set(date(2026, 12, 28))
    refused(system, f"/sessions/{session}/held", held_body("2026-12-28"), 409, "research_required", "不调研不协商")
    system.post(f"/sessions/{session}/research", {"summary": "走访12个社区", "filed_by": "县政协提案委"}, expect=200)
    held = system.post(f"/sessions/{session}/held", held_body("2026-12-28"), expect=200).json()
    # The 5 + 5 working days are the government consultation's (002 第七条(四)), not the CPPCC's.
    assert set(held["due"]) == {"notice_by"}

    # A 有事好商量 room admits only participants its Party organisation vetted (003 二(二)).
    room = planned_topic(system, form="grassroots_meeting", kind="cppcc_room", department="城东镇")
    meeting = schedule(system, room, "2027-01-20", form="grassroots_meeting", department="城东镇",
                       date_change_reason="岁末事务多，移至次年一月")
    assert system.get(f"/sessions/{meeting}")["grassroots_room"] is True
    problem = refused(system, f"/sessions/{meeting}/invitations", {"participants": [
        {"name": "赵村民", "role": "public_representative", "organization": "刘圩村", "vetted": True},
        {"name": "钱村民", "role": "stakeholder", "organization": "刘圩村"},
    ]}, 409, "participant_not_vetted", "钱村民")
    assert "赵村民" not in problem["detail"]
    system.post(f"/sessions/{meeting}/invitations", {"participants": [
        {"name": "钱村民", "role": "stakeholder", "organization": "刘圩村", "vetted": True, "vetted_by": "村党支部"},
    ]}, expect=200)
    clock.set(date(2026, 12, 30))
    notice = system.post(f"/sessions/{meeting}/notice", {"served_on": "2026-12-30", "materials": ["议题"]},
                         expect=200).json()
    assert notice["provisional"] is True and notice["years_without_data"] == [2027]

    # An emergency exemption needs a category and reason, and the supervising office sees it.
    exemption = {"decision": "封闭受损桥梁并实施交通管制", "category": "public_safety", "reason": "桥梁检测发现重大安全隐患",
                 "decided_by": "县政府常务会议", "department": "县交通运输局", "decided_on": "2026-12-01",
                 "topic_id": thematic, "urgency": "桥梁随时可能垮塌，需立即封闭"}
    for field, bad, rule in (("reason", "", "string_too_short"), ("category", "convenience", "enum"),
                             ("urgency", "\u200b", "blank")):
        problem = refused(system, "/sessions/exemptions", {**exemption, field: bad}, 422, rule)
        assert problem["errors"][0]["field"] == field
    exemption_id = system.post("/sessions/exemptions", exemption, expect=201).json()["id"]
    assert system.get(f"/sessions/exemptions/{exemption_id}")["category"] == "public_safety"
    listed = wait_for(lambda: system.get("/sessions/views/supervision")["exemptions"], 20, "exemption listed")
    assert [(e["id"], e["reason"]) for e in listed] == [(exemption_id, "桥梁检测发现重大安全隐患")]
    wait_for(lambda: "EmergencyExemptionRecorded" in [s["type"] for s in system.trace(thematic)], 20,
             "exemption in the trace")
    assert system.http.get("/sessions/00000000-0000-4000-8000-000000000000").status_code == 404


def test_publishing_the_2027_calendar_confirms_provisional_deadlines(tmp_path: Path, kafka: KafkaEndpoint) -> None:
    calendars = tmp_path / "calendars"
    calendars.mkdir()
    s = make_settings("sqlite", tmp_path, kafka, None, calendar_dir=calendars, deadline_check_interval=0.2)
    clock = FixedClock(date(2026, 12, 28))
    with RunningSystem(s, NAMES, clock) as system:
        topic_id = planned_topic(system, month="2026-12")
        session = schedule(system, topic_id, "2026-12-28")
        held = system.post(f"/sessions/{session}/held",
                           held_body("2026-12-28", notice_waiver_reason="年末集中决策"), expect=200).json()
        assert (held["due"]["opinion"]["due"], held["due"]["opinion"]["provisional"]) == ("2027-01-04", True)

    # The State Council publishes 2027; the operator drops it in and restarts.
    (calendars / "2027.json").write_text(json.dumps(
        {"year": 2027, "holidays": {"2027-01-01": "元旦"}, "workdays": []}), encoding="utf-8")
    clock.set(date(2027, 1, 5))
    with RunningSystem(s, NAMES, clock) as system:
        # New Year's Day is a holiday: the opinion is due one day later, and the date is firm.
        confirmed = wait_for(lambda: events_of(system, "DeadlineConfirmed"), 20, "deadlines confirmed")
        assert [(c["step"], c["previous_due"], c["due"]) for c in confirmed] == [
            ("opinion", "2027-01-04", "2027-01-05"), ("report", "2027-01-11", "2027-01-12")]
        due = system.get(f"/sessions/{session}")["due"]
        assert (due["opinion"]["due"], due["opinion"]["provisional"]) == ("2027-01-05", False)
        # On the provisional date this would have been reported missed today; it is not.
        scheduler_rounds(system, 5)
        assert events_of(system, "DeadlineMissed") == []
        upcoming = wait_for(lambda: (u := system.get("/sessions/views/supervision")["upcoming"])
                            and not u[0]["provisional"] and u, 20, "confirmed dates in the views")
        assert [d["due"] for d in upcoming] == ["2027-01-05", "2027-01-12"]
        wait_for(lambda: "DeadlineConfirmed" in [step["type"] for step in system.trace(topic_id)], 20,
                 "the confirmation in the trace")


def test_two_schedulers_racing_on_one_session_record_the_miss_once(settings: Settings) -> None:
    """Two replicas of the sessions service share a store; both see the same overdue step."""
    clock = FixedClock(date(2026, 10, 20))
    first, second = SessionsApplication(settings, clock), SessionsApplication(settings, clock)
    try:
        planned = [{"plan_id": "p", "plan_kind": "government", "form": "symposium"}]
        session = first.schedule_session(planned, topic_id="t", form="symposium", title="座谈会",
                                         scheduled_for=date(2026, 10, 20), lead_department="县住建局",
                                         host="县政府办公室")
        first.hold(session, held_on=date(2026, 10, 20), attendees=["王"], minutes="纪要", minutes_internal=False,
                   notice_waiver_reason="紧急", recorded_by=None)
        clock.set(date(2026, 10, 28))

        # The second replica loads the session; the first records the miss before the second saves.
        load = second.get

        def load_then_lose_the_race(cls: type, aggregate_id: str) -> Session:
            loaded = load(cls, aggregate_id)
            assert first.record_missed_deadlines([session]) == [(session, "opinion")]
            return loaded

        second.get = load_then_lose_the_race  # type: ignore[method-assign]
        assert second.record_missed_deadlines([session]) == []
        stored = [n for n in first.notifications(0) if n.topic.endswith(".DeadlineMissed")]
        assert len(stored) == 1
    finally:
        first.close()
        second.close()


def test_each_body_runs_its_sessions_by_its_own_rules(system: RunningSystem, clock: FixedClock,
                                                      kafka: KafkaEndpoint) -> None:
    """Issue 11: the 15-day notice and the 5 + 5 days are the government's (002 第七条); CPPCC
    sessions record the notice (001 §18) and copy implementation to the CPPCC office (001 §19);
    a village meeting needs no vetting (004); a topic outside the plan is consulted on through the
    unplanned path, with its reason and deciding body (001 §9), shown to the supervising office."""
    cppcc = planned_topic(system, form="consultation_symposium", kind="cppcc", department="县政协办公室",
                          month="2026-09")
    session = schedule(system, cppcc, "2026-09-04", form="consultation_symposium", department="县政协办公室")
    # A session keeps to its plan item's month and lead department, or says why not.
    base = {"topic_id": cppcc, "form": "consultation_symposium", "title": "协商座谈会", "host": "县政协",
            "scheduled_for": "2026-09-04", "lead_department": "县政协办公室"}
    refused(system, "/sessions", {**base, "scheduled_for": "2026-10-09"}, 409, "date_outside_month", "2026-09")
    refused(system, "/sessions", {**base, "lead_department": "县民政局"}, 409, "lead_department_not_planned",
            "县政协办公室")
    moved = system.post("/sessions", {**base, "scheduled_for": "2026-10-09", "lead_department": "县民政局",
                                      "date_change_reason": "九月议程已满", "lead_department_change_reason": "民政牵头更宜"},
                        expect=201).json()["id"]
    assert system.get(f"/sessions/{moved}")["date_change_reason"] == "九月议程已满"
    refused(system, "/sessions", {"topic_id": cppcc, "form": "hearing", "title": "听证", "scheduled_for": "2026-09-04",
                                  "lead_department": "县政协办公室", "host": "县政协", "form_change_reason": "改"},
            409, "form_not_allowed")
    system.post(f"/sessions/{session}/notice", {"served_on": "2026-09-01", "materials": ["协商材料"]}, expect=200)
    clock.set(date(2026, 9, 4))
    held = system.post(f"/sessions/{session}/held", held_body("2026-09-04"), expect=200).json()
    assert (held["held"]["working_days_before"], held["held"]["notice_waiver_reason"]) == (2, None)
    assert set(held["due"]) == {"notice_by"}, "no 5 + 5 working days for a CPPCC session"
    system.post(f"/sessions/{session}/consultation-opinion", {"summary": "意见", "formed_by": "县政协"}, expect=200)
    system.post(f"/sessions/{session}/report", {"summary": "报告", "compiled_by": "县政协办公室", "opinion_ids": []},
                expect=200)
    system.post(f"/sessions/{session}/report/submission", {"submitted_to": ["县委"]}, expect=200)
    instruction = system.post(f"/sessions/{session}/instructions", {"leader": "县委书记", "text": "落实",
                                                                   "departments": ["县民政局"]}, expect=201).json()["id"]
    system.post(f"/sessions/{session}/instructions/{instruction}/implementation",
                {"department": "县民政局", "note": "已落实"}, expect=200)
    copies = wait_for(lambda: (c := system.get("/sessions/views/cppcc-office/implementation"))
                      and c[0]["implementation"] and c, 20, "copies to the CPPCC office")
    assert [c["session_id"] for c in copies] == [session]
    assert copies[0]["implementation"][0]["copied_to"] == "cppcc_office"

    # A government session still needs 15 working days, or a recorded waiver.
    government = planned_topic(system, form="symposium", month="2026-09")
    short = schedule(system, government, "2026-09-08")
    system.post(f"/sessions/{short}/notice", {"served_on": "2026-09-01", "materials": ["材料"]}, expect=200)
    clock.set(date(2026, 9, 8))
    refused(system, f"/sessions/{short}/held", held_body("2026-09-08"), 409, "notice_insufficient", "002 第七条(二)")

    # A village 开单 meeting: the list is reported, not approved, and participants are not vetted.
    village_topic = topic(system, "livelihood", source="grassroots")
    village = system.post("/catalog/plans", {"year": 2026, "kind": "grassroots", "issuer": "城关镇"},
                          expect=201).json()["id"]
    system.post(f"/catalog/plans/{village}/items",
                item(village_topic, "和平村", form="grassroots_meeting", scheduled_month="2026-09"), expect=200)
    system.post(f"/catalog/plans/{village}/report", {"compiled_by": "城关镇"}, expect=200)
    wait_planned(system, village_topic)
    meeting = schedule(system, village_topic, "2026-09-10", form="grassroots_meeting", department="和平村")
    assert system.get(f"/sessions/{meeting}")["body"] == "village"
    system.post(f"/sessions/{meeting}/invitations", {"participants": [
        {"name": "孙村民", "role": "public_representative", "organization": "和平村"},
        {"name": "周解事员", "role": "mediator", "organization": "和平村说事站"}]}, expect=200)

    # Outside the plan: only with a reason and the deciding body, and the supervision list shows it.
    outside = topic(system, "livelihood")
    body = {"topic_id": outside, "form": "heart_to_heart", "title": "谈心谈话", "scheduled_for": "2026-09-15",
            "lead_department": "县政府办公室", "host": "县政府办公室"}
    refused(system, "/sessions", body, 409, "topic_not_planned", "unplanned path")
    problem = refused(system, "/sessions", {**body, "unplanned": {"decided_by": "县政府", "kind": "government"}},
                      422, "missing")
    assert problem["errors"][0]["field"] == "unplanned.reason"
    refused(system, "/sessions", {**body, "form": "sector", "unplanned": {
        "reason": "突发事项", "decided_by": "县政府", "kind": "government"}}, 409, "form_not_allowed")
    unplanned = system.post("/sessions", {**body, "unplanned": {
        "reason": "群众反映强烈，需及时沟通", "decided_by": "县政府常务会议", "kind": "government"}}, expect=201).json()["id"]
    # As the contract writes it ({reason, decided_by}): the CPPCC's rule (001 §9), where the form suits.
    briefing = system.post("/sessions", {**body, "topic_id": topic(system, "livelihood"), "form": "consultation_symposium",
                                         "unplanned": {"reason": "重大决策形成过程中及时协商", "decided_by": "政协主席会议"}},
                           expect=201).json()["id"]
    assert system.get(f"/sessions/{briefing}")["body"] == "cppcc"
    listed = wait_for(lambda: len(u := system.get("/sessions/views/supervision")["unplanned"]) == 2 and u, 20,
                      "the unplanned sessions")
    assert {(u["id"], u["unplanned"]["decided_by"]) for u in listed} == {(unplanned, "县政府常务会议"),
                                                                          (briefing, "政协主席会议")}

    # No catalog, sessions or outcome message carries a person's name (a citizen proposer included).
    citizen = topic(system, "livelihood", source="public_solicitation", proposer="吴阿姨", proposer_kind="person")
    wait_for(lambda: system.trace(citizen), 20, "the citizen's topic on Kafka")
    names = ("王委员", "李代表", "张群众", "孙村民", "周解事员", "吴阿姨")
    for contract_topic in (SERVICE_TOPICS["catalog"], SERVICE_TOPICS["sessions"], OUTCOMES_TOPIC):
        text = json.dumps([json.loads(r.value) for r in read_topic(kafka.bootstrap, system.settings.topic(
            contract_topic))], ensure_ascii=False)
        assert not [n for n in names if n in text], contract_topic


def test_notices_are_dated_honestly_counted_per_participant_and_served_again_after_a_move(
        system: RunningSystem, clock: FixedClock) -> None:
    """Issue 11: a notice is not dated after today nor after the session; one entered more than
    2 working days late is accepted and flagged; a participant invited after the notice is
    counted from the invitation; a moved session gets a new notice; held_on is the scheduled day."""
    topic_id = planned_topic(system, month="2026-11")
    session = schedule(system, topic_id, "2026-11-20")
    refused(system, f"/sessions/{session}/notice", {"served_on": "2026-09-02", "materials": ["材料"]}, 409,
            "notice_in_future")
    system.post(f"/sessions/{session}/invitations", {"participants": [
        {"name": "王代表", "role": "npc_deputy", "organization": "县人大"}]}, expect=200)
    notice = system.post(f"/sessions/{session}/notice", {"served_on": "2026-09-01", "materials": ["材料"]},
                         expect=200).json()
    assert notice["recorded_late"] is False
    clock.set(date(2026, 11, 10))
    system.post(f"/sessions/{session}/invitations", {"participants": [
        {"name": "李专家", "role": "expert", "organization": "县职业学院"}]}, expect=200)
    clock.set(date(2026, 11, 20))
    refused(system, f"/sessions/{session}/held", held_body("2026-11-19"), 409, "held_on_other_date", "reschedule")
    problem = refused(system, f"/sessions/{session}/held", held_body("2026-11-20"), 409, "notice_insufficient",
                      "invited after the notice")
    assert "2026-11-10" in problem["detail"]

    # Moved: the old notice no longer counts; a new one is served, here entered 14 working days late.
    moved = system.post(f"/sessions/{session}/reschedule", {"scheduled_for": "2026-11-27", "reason": "会议室冲突",
                                                            "decided_by": "县政府办公室"}, expect=200).json()
    assert moved["notice"] is None and moved["held"] is None
    refused(system, f"/sessions/{session}/held", held_body("2026-11-20"), 409, "held_on_other_date")
    late = system.post(f"/sessions/{session}/notice", {"served_on": "2026-11-02", "materials": ["新材料"]},
                       expect=200).json()
    assert (late["recorded_late"], late["recorded_on"]) == (True, "2026-11-20")
    flagged = wait_for(lambda: system.get("/sessions/views/supervision")["notices_recorded_late"], 20, "the flag")
    assert [(f["id"], f["served_on"], f["recorded_on"]) for f in flagged] == [(session, "2026-11-02", "2026-11-20")]
    clock.set(date(2026, 11, 27))
    # The expert, invited 2026-11-10, still had fewer than 15 working days: a waiver is recorded.
    refused(system, f"/sessions/{session}/held", held_body("2026-11-27"), 409, "notice_insufficient")
    held = system.post(f"/sessions/{session}/held", held_body("2026-11-27", notice_waiver_reason="专家临时增补"),
                       expect=200).json()
    assert held["held"]["notice_waiver_reason"] == "专家临时增补"


def test_the_scheduler_asks_only_for_sessions_with_a_step_already_due(settings: Settings) -> None:
    """Each session the scheduler gets is loaded for its aggregate to decide; one whose open
    steps fall due today or later cannot be overdue yet, so it is not asked for. The steps
    are read through the store's index of open steps by due date, as feedback's are."""
    views = open_view_store(settings, "sessions")
    try:
        with views.transaction() as txn:
            for session, step, due, done in [("a", "opinion", "2026-10-27", {}), ("a", "report", "2026-11-03", {}),
                                             ("b", "opinion", "2026-11-02", {}),
                                             ("c", "opinion", "2026-10-20", {"met_on": "2026-10-21"}),
                                             ("c", "report", "2026-10-27", {"missed_on": "2026-10-28"}),
                                             ("d", "report", "2026-10-30", {})]:
                txn.put("deadline", f"{session}/{step}", {
                    "session_id": session, "step": step, "due": due, "provisional": False,
                    "met_on": None, "missed_on": None, **done})
        assert open_deadline_sessions(views, date(2026, 10, 30)) == ["a"]
        assert open_deadline_sessions(views, date(2026, 10, 31)) == ["a", "d"]
        assert open_deadline_sessions(views) == ["a", "b", "d"]
    finally:
        views.datastore.close()
