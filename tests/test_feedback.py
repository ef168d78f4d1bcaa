"""Issue 9: feedback — every opinion answered, every contributor told, every decision
evaluated, and the whole trace.

Shown through HTTP on running systems whose services talk over the real broker:
the feedback service learns topics and sessions from the catalog's and sessions'
Kafka topics, sessions learns published opinions from the feedback topic, and
the test reads every topic from the beginning to see what left the stores.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from types import SimpleNamespace
from typing import Any

import pytest

from services.feedback.projections import FeedbackViews, Trace, trace as trace_of
from shared.access import Role
from shared.clock import FixedClock
from shared.config import ALL_TOPICS, OUTCOMES_TOPIC, SERVICE_TOPICS, Settings
from shared.envelope import CloudEvent
from shared.replay import differences, rebuild
from shared.stores import open_view_store
from tests import steps
from tests.conftest import KafkaEndpoint
from tests.harness import RunningSystem, read_topic, wait_for
from tests.steps import approve, item, plan, topic

NAMES = ("catalog", "sessions", "feedback")
#: A resident ID number with a valid check character, and the person it belongs to.
ID_NUMBER = "11010519491231002X"
AUTHOR = {"name": "王小明", "phone": "13912345678", "id_number": ID_NUMBER, "address": "幸福路8号3单元",
          "organization": "幸福社区"}
SECRET = "我家隔壁的违建挡住了消防通道"


def refused(system: RunningSystem, path: str, body: dict[str, Any], status: int, rule: str,
            words: str = "") -> dict[str, Any]:
    """Refused, nothing stored: no event, and no key made for a person either."""
    vault = system.services["feedback"].app.vault
    keys = vault.keys_held()
    problem = steps.refused(system, "feedback", path, body, status, rule, words)
    assert vault.keys_held() == keys
    return problem


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(date(2026, 9, 1))


@pytest.fixture
def system(settings: Settings, clock: FixedClock) -> Iterator[RunningSystem]:
    tuned = settings.model_copy(update={"deadline_check_interval": 0.2, "post_evaluation_min_forms": 3})
    with RunningSystem(tuned, NAMES, clock) as running:
        yield running


def planned_topic(system: RunningSystem, department: str = "县住建局") -> str:
    topic_id = topic(system, "livelihood")
    plan_id = plan(system)
    system.post(f"/catalog/plans/{plan_id}/items", item(topic_id, department, scheduled_month="2026-09"), expect=200)
    approve(system, plan_id)
    # The topic's acceptance and the plan's item travel in different partitions: wait for both.
    wait_for(lambda: (t := system.get(f"/feedback/views/known-topics/{topic_id}", None)).get("lead_department")
             and t.get("status") == "accepted", 30, "feedback to learn the topic's acceptance and lead department")
    return topic_id


def answer(system: RunningSystem, opinion_id: str, disposition: str = "adopted", by: str = "县住建局",
           **extra: Any) -> dict[str, Any]:
    return system.post(f"/feedback/opinions/{opinion_id}/answer",
                       {"disposition": disposition, "answered_by": by, **extra}, expect=200).json()


def feed_back(system: RunningSystem, opinion_id: str, by: str = "县住建局") -> dict[str, Any]:
    return system.post(f"/feedback/opinions/{opinion_id}/feedback",
                       {"channel": "phone", "message": "您的意见已采纳，感谢参与", "delivered_by": by},
                       expect=200).json()


def views_caught_up(system: RunningSystem) -> None:
    service = system.services["feedback"]
    wait_for(lambda: service.projections[FeedbackViews.name].position("feedback") == service.app.max_position(),
             20, "feedback views caught up")


def test_a_consultation_from_opinion_to_evaluation_without_a_person_on_any_topic(
        system: RunningSystem, clock: FixedClock, kafka: KafkaEndpoint, capfd: pytest.CaptureFixture[str]) -> None:
    topic_id = planned_topic(system)
    known = system.get(f"/feedback/views/known-topics/{topic_id}")
    assert (known["status"], known["lead_department"]) == ("accepted", "县住建局")

    # -- what an opinion must name ----------------------------------------------------
    unknown = "5d1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
    base = {"channel": "online", "author": {"name": "李四"}, "content": "建议"}
    refused(system, "/feedback/opinions", {**base, "topic_id": unknown}, 409, "unknown_topic",
            "may still be on its way")
    rejected = topic(system, "livelihood", accept=False)
    system.post(f"/catalog/topics/{rejected}/screening",
                {"decision": "rejected", "reason": "不属协商范围", "screened_by": "政协办公室"}, expect=200)
    wait_for(lambda: system.get(f"/feedback/views/known-topics/{rejected}", None).get("status") == "rejected",
             30, "feedback to learn the rejection")
    refused(system, "/feedback/opinions", {**base, "topic_id": rejected}, 409, "topic_not_accepted")
    for body, field, rule in [
        (base, "topic_id", "topic_required"),
        ({**base, "topic_id": topic_id, "channel": "in_session"}, "session_id", "session_required"),
        ({**base, "topic_id": topic_id, "channel": "grassroots"}, "platform_level", "platform_level_required"),
        ({**base, "topic_id": topic_id, "category": "personal"}, "category", "grassroots_only"),
        ({**base, "topic_id": topic_id, "author": {"name": "李四", "id_number": "110105194912310021"}},
         "author.id_number", "id_number_checksum"),
        ({**base, "topic_id": topic_id, "author": {"name": "李四", "phone": "call me"}}, "author.phone",
         "phone_format"),
        ({**base, "topic_id": topic_id, "channel": "carrier_pigeon"}, "channel", "enum"),
        ({**base, "topic_id": topic_id, "channel": "proposal"}, "channel", "channel_reserved"),
    ]:
        problem = refused(system, "/feedback/opinions", body, 422, rule)
        assert problem["errors"][0]["field"] == field, problem

    # -- opinions: one public, one confidential (点对点) ---------------------------------
    session = schedule_session(system, topic_id)
    # The author speaks in the session, signed in as himself; his other opinion the desk enters.
    author = system.as_(Role.citizen, AUTHOR["name"], id_number=ID_NUMBER)
    public = steps.opinion(system, topic_id, session, channel="in_session", author=AUTHOR, headers=author,
                           content=f"建议加装电梯。我是{AUTHOR['name']}，电话{AUTHOR['phone']}，住{AUTHOR['address']}")
    private = steps.opinion(system, topic_id, channel="visit", author=AUTHOR, content=SECRET, confidential=True)
    other = steps.opinion(system, topic_id, channel="hotline", name="赵六")
    assert public["author_ref"] == private["author_ref"] != other["author_ref"]
    ref = public["author_ref"]
    record = system.get(f"/feedback/opinions/{public['id']}")
    assert record["content"] == "建议加装电梯。我是[姓名]，电话[电话]，住[地址]"
    assert {k: record["author"][k] for k in AUTHOR} == AUTHOR and record["responsible"] == "县住建局"
    # 15 working days (local policy), counting Sunday 2026-09-20, a make-up working day (调休).
    assert record["deadlines"]["answer"]["due"] == "2026-09-21"

    # -- answers, feedback, satisfaction, and the unsatisfied loop -------------------------
    refused(system, f"/feedback/opinions/{public['id']}/feedback",
            {"channel": "phone", "message": "x", "delivered_by": "县住建局"}, 409, "not_answered")
    problem = refused(system, f"/feedback/opinions/{public['id']}/answer",
                      {"disposition": "not_adopted", "answered_by": "县住建局"}, 422, "reason_required")
    assert problem["errors"][0]["field"] == "reason"
    answer(system, public["id"])
    refused(system, f"/feedback/opinions/{public['id']}/answer",
            {"disposition": "adopted", "answered_by": "县住建局"}, 409, "already_answered")
    refused(system, f"/feedback/opinions/{public['id']}/satisfaction", {"rating": "satisfied"}, 409, "no_feedback_yet")
    feed_back(system, public["id"])
    rated = system.post(f"/feedback/opinions/{public['id']}/satisfaction",
                        {"rating": "unsatisfied", "comment": "电梯仍未开工"}, expect=200).json()
    assert (rated["status"], rated["round"]) == ("open", 2)
    answer(system, public["id"], "partially_adopted", reason="资金分两年安排")
    feed_back(system, public["id"])
    done = system.post(f"/feedback/opinions/{public['id']}/satisfaction", {"rating": "satisfied"}, expect=200).json()
    assert [(r["answer"]["disposition"], r["satisfaction"]["rating"]) for r in done["rounds"]] == [
        ("adopted", "unsatisfied"), ("partially_adopted", "satisfied")]

    # -- results: only once every opinion is answered -----------------------------------------
    refused(system, f"/feedback/topics/{topic_id}/results", {"summary": "结果", "published_by": "县住建局"},
            409, "opinions_unanswered", "2 opinion(s)")
    answer(system, private["id"], "not_adopted", reason="涉及个人纠纷，已点对点调解")
    answer(system, other["id"], "adopted")
    system.post(f"/feedback/topics/{topic_id}/results", {"summary": "采纳两条，一条不予采纳并说明理由",
                "published_by": "县住建局"}, expect=201)
    views_caught_up(system)
    results = system.get(f"/feedback/public/topics/{topic_id}")["results"]
    assert results["totals"] == {"opinions": 3, "adopted": 1, "partially_adopted": 1, "not_adopted": 1,
                                 "confidential": 1}
    assert [r["opinion_id"] for r in results["record"]] == [public["id"], other["id"]]

    # -- each body's view --------------------------------------------------------------------
    # A confidential text: its author (signed in with the ID number they gave) and the answering
    # department see it; the desk that reads the author's list and the department's queue does not.
    own = system.get(f"/feedback/authors/{ref}/opinions", headers=author)
    assert [(o["id"], o["content"]) for o in own][1] == (private["id"], SECRET)
    assert [o["content"] for o in system.get(f"/feedback/authors/{ref}/opinions")][1] is None
    queue = system.get("/feedback/views/departments/县住建局", headers=system.as_(Role.department, "经办人", "县住建局"))
    assert {row["opinion"]["id"]: row["opinion"]["content"] for row in queue["to_feed_back"]}[private["id"]] == SECRET
    office = system.get("/feedback/views/departments/县住建局")
    assert SECRET not in str(office) and len(office["to_feed_back"]) == len(queue["to_feed_back"])
    shown = system.get(f"/feedback/public/opinions?topic_id={topic_id}")
    assert [o["id"] for o in shown] == [public["id"], other["id"]]
    assert all("author_ref" not in o for o in shown)
    totals = system.get("/feedback/views/supervision")["departments"]
    assert totals == [{"department": "县住建局", "opinions": 3, "answered": 3, "fed_back": 1, "overdue": 0,
                       "satisfaction": {"satisfied": 1, "basically_satisfied": 0, "unsatisfied": 1}}]

    # -- the report consolidates published opinions; a decision goes to deliberation ------------
    system.post(f"/sessions/{session}/consultation-opinion", {"summary": "协商意见", "formed_by": "县住建局"},
                expect=200)
    wait_for(lambda: system.post(f"/sessions/{session}/report", {"summary": "协商报告", "compiled_by": "县政府办公室",
             "opinion_ids": [public["id"]]}).status_code == 200, 30, "the report with a published opinion")
    decision = system.post("/feedback/decisions", {"topic_id": topic_id, "title": "老旧小区加装电梯实施办法",
                           "kind": "normative_document", "area": "urban_construction", "drafted_by": "县住建局"},
                           expect=201).json()["id"]
    deliberated = system.post(f"/feedback/decisions/{decision}/deliberation", {"submitted_by": "县住建局"},
                              expect=200).json()
    assert deliberated["deliberation"]["adoption_record"] == results["record"]
    system.post(f"/feedback/decisions/{decision}/issuance", {"issued_on": "2026-09-01", "issued_by": "县政府"},
                expect=200)
    system.post("/feedback/evaluations", {"topic_id": topic_id, "decision_id": decision, "effect": "achieved",
                "satisfaction": 4, "operability": "good", "reasonableness": "good", "suggestions": "加快进度",
                "evaluator": AUTHOR["name"]}, expect=201)

    # -- the trace: every step in order, the same when rebuilt from the topics ------------------
    expected = ["TopicProposed", "TopicAccepted", "PlanItemAdded", "PlanApproved", "SessionScheduled",
                "OpinionSubmitted", "OpinionSubmitted", "OpinionSubmitted"]
    later = ["OpinionAnswered", "FeedbackDelivered", "SatisfactionRated", "OpinionReopened",
             "TopicResultsPublished", "ConsultationOpinionFormed", "ReportCompiled", "DecisionDrafted",
             "DecisionSubmittedForDeliberation", "DecisionIssued", "EvaluationSubmitted"]
    # Each service's events reach the trace through its own topic, so wait for all of them.
    trace = wait_for(lambda: (t := system.trace(topic_id)) and set(expected + later) <= {
        s["type"] for s in t} and t, 30, "the whole trace")
    types = [s["type"] for s in trace]
    positions = [types.index(name) for name in expected]
    assert positions == sorted(positions), types
    assert all(name in types[positions[-1]:] for name in later), types
    assert {s["service"] for s in trace} == {"catalog", "sessions", "feedback"}
    submitted = [s["actor"] for s in trace if s["type"] == "OpinionSubmitted"]
    assert f"citizen:{ref}" in submitted and "government_office/经办人" in submitted

    # -- erasure: the key goes, the history stays, the opinion still counts -----------------------
    system.post(f"/feedback/authors/{ref}/erasure", {"requested_by": "县政府办公室", "reason": "本人申请"},
                expect=201)
    refused(system, f"/feedback/authors/{ref}/erasure", {"requested_by": "县政府办公室", "reason": "再次"},
            409, "already_erased")
    refused(system, "/feedback/authors/00000000000000000000000000000000/erasure",
            {"requested_by": "县政府办公室", "reason": "x"}, 404, "not_found")
    gone = system.get(f"/feedback/opinions/{public['id']}")["author"]
    assert gone == {"ref": None, "organization": None, "erased": True}
    views_caught_up(system)
    assert system.get(f"/feedback/authors/{ref}/opinions") == []
    assert system.get("/feedback/views/supervision")["departments"][0]["opinions"] == 3
    trace = wait_for(lambda: (t := system.trace(topic_id)) and all(ref not in (s["actor"] or "") for s in t) and t,
                     30, "the trace without the person")

    service = system.services["feedback"]
    rebuilt, _ = rebuild(service.app, [FeedbackViews])
    live = {k: v for k, v in service.views.dump().items() if k[0] in FeedbackViews.views}
    assert differences(live, rebuilt.dump()) == []

    # Rebuilding the trace from the Kafka topics gives the same document.
    replayed = open_view_store(system.settings, "feedback", "trace_replay")
    trace_view = Trace(replayed)
    for name in SERVICE_TOPICS.values():
        for record in read_topic(kafka.bootstrap, system.settings.topic(name)):
            trace_view.handle(CloudEvent.model_validate_json(record.value))
    assert trace_of(replayed, topic_id) == system.trace(topic_id)

    # No topic carries the person or the confidential text; the logs do not either.
    forbidden = [AUTHOR["name"], AUTHOR["phone"], ID_NUMBER, AUTHOR["address"], SECRET, "隔壁的违建"]
    for name in ALL_TOPICS:
        for record in read_topic(kafka.bootstrap, system.settings.topic(name), timeout=3):
            text = record.value.decode()
            assert not [f for f in forbidden if f in text or json.dumps(f)[1:-1] in text], (name, text)
    outcomes = [json.loads(r.value) for r in read_topic(kafka.bootstrap, system.settings.topic(OUTCOMES_TOPIC))]
    answered = [e["subject"] for e in outcomes if e["type"].endswith(".OpinionAnswered.v1")]
    assert private["id"] not in answered and public["id"] in answered
    assert all(e["topicid"] == topic_id for e in outcomes if e["source"] == "/consultation/feedback")
    assert any(e["type"].endswith(".TopicResultsPublished.v1") for e in outcomes)
    logs = capfd.readouterr()
    assert not [f for f in forbidden if f in logs.out + logs.err]


def schedule_session(system: RunningSystem, topic_id: str) -> str:
    body = {"topic_id": topic_id, "form": "symposium", "title": "加装电梯座谈会", "scheduled_for": "2026-09-01",
            "lead_department": "县住建局", "host": "县政府办公室"}
    session = wait_for(lambda: (r := system.post("/sessions", body)).status_code == 201 and r.json()["id"],
                       30, "sessions to learn the plan")
    system.post(f"/sessions/{session}/held", {"held_on": "2026-09-01", "attendees": ["王委员"], "minutes": "纪要",
                "notice_waiver_reason": "演示"}, expect=200)
    return session


def test_grassroots_items_escalate_one_tier_at_a_time_and_the_body_escalated_to_answers(
        system: RunningSystem, clock: FixedClock) -> None:
    item_ = {"channel": "grassroots", "platform_level": "village_station", "platform": "和平村说事站",
             "author": {"name": "刘大爷", "phone": "023-12345678"}, "content": "村道路灯坏了三个月"}
    problem = refused(system, "/feedback/opinions", item_, 422, "category_required")
    assert problem["errors"][0]["field"] == "category"
    opened = system.post("/feedback/opinions", {**item_, "category": "public_interest"}, expect=201).json()["id"]
    record = system.get(f"/feedback/opinions/{opened}")
    assert (record["topic_id"], record["responsible"], record["category"]) == (None, "和平村说事站", "public_interest")

    path = f"/feedback/opinions/{opened}/escalation"
    refused(system, path, {"to": "县住建局", "tier": "county", "escalated_by": "和平村说事站", "reason": "无法解决"},
            409, "escalation_tier", "乡镇吹哨 部门报道")
    refused(system, path, {"to": "城关镇", "tier": "township", "escalated_by": "和平村说事站", "reason": "\u200b"},
            422, "blank")
    system.post(path, {"to": "城关镇综合执法队", "tier": "township", "escalated_by": "和平村说事站",
                       "reason": "村里无力解决"}, expect=200)
    refused(system, path, {"to": "城关镇", "tier": "township", "escalated_by": "x", "reason": "再升"},
            409, "escalation_tier", "村社吹哨 队伍报道")
    clock.set(date(2026, 9, 3))
    escalated = system.post(path, {"to": "县城管局", "tier": "county", "escalated_by": "城关镇综合执法队",
                                   "reason": "涉及县级路网改造"}, expect=200).json()
    assert [e["tier"] for e in escalated["escalations"]] == ["township", "county"]
    assert escalated["deadlines"]["answer"]["from"] == "2026-09-03"  # a fresh window for the new body
    queue = wait_for(lambda: (q := system.get("/feedback/views/departments/县城管局"))["escalations"] and q,
                     20, "the county department's queue")
    assert queue["escalations"][0]["opinion"]["id"] == opened
    assert queue["escalations"][0]["working_days_elapsed"] == 0

    refused(system, f"/feedback/opinions/{opened}/answer", {"disposition": "adopted", "answered_by": "和平村说事站"},
            403, "not_yours", "和平村说事站")
    answer(system, opened, by="县城管局")
    refused(system, path, {"to": "县政府", "tier": "county", "escalated_by": "x", "reason": "y"}, 409, "already_answered")

    # Only grassroots items escalate; the answer window is watched by the scheduler.
    topic_id = planned_topic(system)
    written = steps.opinion(system, topic_id)["id"]
    refused(system, f"/feedback/opinions/{written}/escalation",
            {"to": "县政府", "tier": "county", "escalated_by": "x", "reason": "y"}, 409, "not_grassroots")
    clock.set(date(2026, 9, 25))  # the answer window closed on 2026-09-23, the feedback one on 09-10
    overdue = wait_for(lambda: len((s := system.get("/feedback/views/supervision"))["overdue"]) == 2 and s,
                       20, "both misses")
    assert [(d["subject"], d["step"], d["due"], d["working_days_overdue"]) for d in overdue["overdue"]] == [
        (opened, "feedback", "2026-09-10", 11), (written, "answer", "2026-09-23", 1)]  # 09-25: Mid-Autumn
    assert {d["department"]: d["overdue"] for d in overdue["departments"]} == {"县住建局": 1, "县城管局": 1}
    assert system.get(f"/feedback/opinions/{opened}")["deadlines"]["feedback"]["missed_on"] == "2026-09-25"


def test_decisions_deliberation_gate_interpretation_deadline_and_post_evaluation(
        system: RunningSystem, clock: FixedClock, kafka: KafkaEndpoint) -> None:
    topic_id = planned_topic(system)
    draft = {"topic_id": topic_id, "title": "养老服务补贴办法", "kind": "major_public_policy",
             "area": "elderly_care", "drafted_by": "县民政局"}
    refused(system, "/feedback/decisions", {**draft, "topic_id": "5d1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"},
            409, "unknown_topic")
    decision = system.post("/feedback/decisions", draft, expect=201).json()["id"]
    gate = f"/feedback/decisions/{decision}/deliberation"
    refused(system, gate, {"submitted_by": "县民政局"}, 409, "no_public_consultation", "no opinions were solicited")
    opinion_id = steps.opinion(system, topic_id)["id"]
    refused(system, gate, {"submitted_by": "县民政局"}, 409, "no_public_consultation", "1 opinion(s)")
    problem = refused(system, gate, {"submitted_by": "县民政局", "exemption": {"ground": "emergency"}}, 422, "missing")
    assert problem["errors"][0]["field"] == "exemption.reason"
    refused(system, f"/feedback/decisions/{decision}/issuance", {"issued_on": "2026-09-01", "issued_by": "县政府"},
            409, "not_deliberated")
    answer(system, opinion_id, "not_adopted", reason="超出本级财力")
    deliberated = system.post(gate, {"submitted_by": "县民政局"}, expect=200).json()["deliberation"]
    assert [(r["opinion_id"], r["disposition"], r["reason"]) for r in deliberated["adoption_record"]] == [
        (opinion_id, "not_adopted", "超出本级财力")]
    refused(system, gate, {"submitted_by": "县民政局"}, 409, "already_deliberated")
    urgent = system.post("/feedback/decisions", {**draft, "title": "防汛应急补助"}, expect=201).json()["id"]
    exempt = system.post(f"/feedback/decisions/{urgent}/deliberation", {"submitted_by": "县应急局", "exemption": {
        "ground": "emergency", "reason": "汛情紧急"}}, expect=200).json()["deliberation"]
    assert exempt["exemption"] == {"ground": "emergency", "reason": "汛情紧急"} and exempt["adoption_record"] == []

    # Issued on 2026-09-25 (Mid-Autumn): 20 working days run past the National Day holiday to
    # 2026-10-29, not to 2026-10-23 as weekdays alone would.
    clock.set(date(2026, 9, 25))
    issued = system.post(f"/feedback/decisions/{decision}/issuance", {"issued_on": "2026-09-25", "issued_by": "县政府"},
                         expect=200).json()
    assert issued["due"]["interpretation"]["due"] == "2026-10-29"
    clock.set(date(2026, 10, 29))
    views_caught_up(system)
    # One read: the scheduler may record another step's miss (the opinion's) at any moment.
    assert [d for d in system.get("/feedback/views/supervision")["overdue"] if d["step"] == "interpretation"] == []
    clock.set(date(2026, 10, 30))
    missed = wait_for(lambda: [d for d in system.get("/feedback/views/supervision")["overdue"]
                               if d["step"] == "interpretation"], 20, "the interpretation miss")
    assert [(d["subject"], d["due"], d["department"]) for d in missed] == [(decision, "2026-10-29", "县民政局")]
    late = system.post(f"/feedback/decisions/{decision}/interpretation", {"held_on": "2026-10-30", "by": "县民政局"},
                       expect=200).json()
    assert late["interpretation"]["on_time"] is False

    # Evaluation forms: three in, two say the aim was missed -> the post-evaluation starts, once.
    form = {"topic_id": topic_id, "decision_id": decision, "effect": "not_achieved", "satisfaction": 2,
            "operability": "poor", "reasonableness": "fair", "shortcomings": "申请材料繁琐", "evaluator": "周阿姨"}
    refused(system, "/feedback/evaluations", {**form, "satisfaction": 6}, 422, "less_than_equal")
    refused(system, "/feedback/evaluations", {**form, "decision_id": urgent}, 409, "not_issued")
    system.post("/feedback/evaluations", {**form, "effect": "achieved", "satisfaction": 4}, expect=201)
    system.post("/feedback/evaluations", form, expect=201)
    assert system.get(f"/feedback/decisions/{decision}")["post_evaluation"] is None
    system.post("/feedback/evaluations", {**form, "evaluator": "吴大伯"}, expect=201)
    triggered = system.get(f"/feedback/decisions/{decision}")["post_evaluation"]
    assert triggered["trigger"] == "evaluation_forms" and "2 of 3" in triggered["reason"]
    system.post("/feedback/evaluations", {**form, "evaluator": "郑先生"}, expect=201)
    refused(system, f"/feedback/decisions/{decision}/post-evaluation", {"reason": "群众意见多", "opened_by": "县政府办"},
            409, "post_evaluation_open")
    report = f"/feedback/decisions/{decision}/post-evaluation/report"
    refused(system, report, {"conclusion": "pause", "summary": "x", "formed_by": "y"}, 422, "enum")
    concluded = system.post(report, {"conclusion": "adjust", "summary": "简化申请材料", "formed_by": "县政府常务会议",
                                     "participants": ["县民政局", "县司法局", "群众代表"]}, expect=200).json()
    assert concluded["status"] == "to_adjust"
    # By hand, with a reason, on another decision.
    refused(system, f"/feedback/decisions/{urgent}/post-evaluation", {"reason": "x", "opened_by": "y"}, 409, "not_issued")

    events = [e for e in system.services["feedback"].app.envelopes(system.services["feedback"].app.notifications(0))
              if e.name == "PostEvaluationTriggered"]
    assert len(events) == 1 and events[0].topicid == topic_id
    wait_for(lambda: any(json.loads(r.value)["type"].endswith(".PostEvaluationTriggered.v1") for r in
                         read_topic(kafka.bootstrap, system.settings.topic(OUTCOMES_TOPIC))), 20, "the outcome")
    evaluation = system.get(f"/feedback/public/topics/{topic_id}")["evaluation"]
    assert evaluation["forms"] == 4 and evaluation["effect"] == {"achieved": 1, "not_achieved": 3}
    # The topic's public page shows its own decisions, in the order they were drafted, and no other's.
    other = system.post("/feedback/decisions", {**draft, "topic_id": planned_topic(system), "title": "另一办法"},
                        expect=201).json()["id"]
    views_caught_up(system)
    public = system.get(f"/feedback/public/topics/{topic_id}")["decisions"]
    assert [(d["id"], d["status"]) for d in public] == [(decision, "to_adjust"), (urgent, "deliberated")]
    assert other not in {d["id"] for d in public}


def test_the_scheduler_loads_only_subjects_with_a_step_already_due(settings: Settings) -> None:
    """Each subject the scheduler gets is loaded from the store for its aggregate to decide;
    one whose steps fall due today or later cannot be overdue (not before the first working
    day after the due date), so it is not asked for, however many wait for an answer. The
    store reads those steps through an index of the open ones by due date, not by reading
    every step; a store an earlier release wrote gets the index when it is opened."""
    from shared.deadlines import close_deadline, open_deadlines, put_deadline

    views = open_view_store(settings, "feedback")
    try:
        with views.transaction() as txn:
            for subject, step, due, done in [("a", "answer", "2026-09-23", {}), ("b", "answer", "2026-09-25", {}),
                                             ("c", "feedback", "2026-10-09", {}),
                                             ("d", "answer", "2026-09-01", {"met_on": "2026-09-02"}),
                                             ("e", "answer", "2026-09-01", {"missed_on": "2026-09-02"}),
                                             ("f", "feedback", "2026-09-24", {})]:
                put_deadline(txn, "opinion", subject, step, {"due": due, "from": "2026-09-01", "provisional": False},
                             "县民政局", None)
                if done:
                    txn.put("deadline", f"{subject}/{step}", {**txn.get("deadline", f"{subject}/{step}"), **done})
        assert open_deadlines(views, date(2026, 9, 25)) == [("opinion", "a"), ("opinion", "f")]
        assert open_deadlines(views) == [("opinion", s) for s in "abcf"]

        with views.transaction() as txn:  # a's answer given; e answered late and asked again
            close_deadline(txn, SimpleNamespace(subject="a", name="OpinionAnswered"), "answer", met_on="2026-09-24")
            put_deadline(txn, "opinion", "e", "answer", {"due": "2026-09-20", "from": "2026-09-10",
                                                         "provisional": False, "round": 2}, "县民政局", None)
        assert open_deadlines(views, date(2026, 9, 25)) == [("opinion", "e"), ("opinion", "f")]

        # A store an earlier release made has no such index: opening it makes one over what is there.
        with views.datastore.transaction(commit=True) as cursor:
            schema = f'"{views.datastore.schema}".' if settings.postgres else ""
            cursor.execute(f"DROP INDEX {schema}view_documents_open_steps")
        views.datastore.close()
        views = open_view_store(settings, "feedback")
        assert open_deadlines(views, date(2026, 9, 25)) == [("opinion", "e"), ("opinion", "f")]

        with views.datastore.transaction(commit=False) as cursor:
            if settings.postgres:
                cursor.execute("SET LOCAL enable_seqscan = off")  # a table this small is read whole
                cursor.execute("EXPLAIN " + views.sql_open_steps_due_before, ("2026-09-25",))
            else:
                cursor.execute("EXPLAIN QUERY PLAN " + views.sql_open_steps_due_before, ("2026-09-25",))
            plan = " ".join(str(v) for row in cursor.fetchall()
                            for v in (row.values() if isinstance(row, dict) else tuple(row)))
        assert "view_documents_open_steps" in plan, plan
    finally:
        views.datastore.close()


def _pages(system: RunningSystem, path: str) -> list[list[str]]:
    """Every page of a public list, following its ``Link: <…>; rel="next"`` headers (no token)."""
    pages = []
    while path:
        response = system.http.get(path, auth=None)
        assert response.status_code == 200, response.text
        pages.append([o["id"] for o in response.json()])
        link = response.headers.get("link")
        path = link[1:link.index(">")] if link else ""
        assert not link or link.endswith('>; rel="next"')
    return pages


def test_the_public_list_of_opinions_comes_a_page_at_a_time(system: RunningSystem, monkeypatch: Any) -> None:
    """An open list costs what a page holds, not what the store holds: ``limit`` items, at most
    ``shared.pages.SCAN`` opinions looked at; every public opinion on exactly one page."""
    import shared.pages

    topic_id = planned_topic(system)
    made = [steps.opinion(system, topic_id, channel="hotline", name=f"居民{n}", confidential=n == 3)["id"]
            for n in range(9)]
    for n, opinion_id in enumerate(made):
        if n % 4 != 1:  # 1 and 5 stay unanswered; 3 is confidential
            answer(system, opinion_id)
    views_caught_up(system)
    public = [o for n, o in enumerate(made) if n % 4 != 1 and n != 3]

    pages = _pages(system, f"/feedback/public/opinions?topic_id={topic_id}&limit=2")
    assert [o for page in pages for o in page] == public  # in the order they were made, each once
    assert all(len(page) == 2 for page in pages[:-1]) and len(pages) == 4
    assert [o for page in _pages(system, "/feedback/public/opinions?limit=4") for o in page] == public
    assert _pages(system, f"/feedback/public/opinions?topic_id={topic_id}") == [public]  # 100 by default

    monkeypatch.setattr(shared.pages, "SCAN", 3)  # a page looks at no more than this many
    scanned = _pages(system, f"/feedback/public/opinions?topic_id={topic_id}&limit=5")
    assert [o for page in scanned for o in page] == public and max(map(len, scanned)) <= 3

    for query, field in [("limit=0", "limit"), ("limit=501", "limit"), ("after=x", "after")]:
        problem = system.http.get(f"/feedback/public/opinions?{query}", auth=None)
        assert problem.status_code == 422 and problem.json()["errors"][0]["field"] == field, problem.text
