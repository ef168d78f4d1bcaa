"""Issue 10: proposals (提案) and suggestions (建议), from submission to the proposer's rating,
into consultation topics and back, and members' duty records ("五个一").

Shown through HTTP on running systems whose services talk over the real broker, on
SQLite and PostgreSQL: the catalog turns a converted proposal into a topic from the
proposals topic and answers on its own; feedback takes in a proposal turned into an
opinion; the test reads the topics from the beginning to see what left the stores.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from services.proposals.projections import ProposalViews
from shared.clock import FixedClock
from shared.config import OUTCOMES_TOPIC, SERVICE_TOPICS, Settings
from shared.replay import differences, rebuild
from tests import steps
from tests.conftest import KafkaEndpoint
from tests.harness import RunningSystem, read_topic, wait_for
from tests.steps import approve, item, plan, topic

NAMES = ("catalog", "proposals", "feedback")
PHONE = "13812345678"
LEAD, CO = "县住建局", "县财政局"


def refused(system: RunningSystem, path: str, body: dict[str, Any], status: int, rule: str,
            words: str = "") -> dict[str, Any]:
    return steps.refused(system, "proposals", path, body, status, rule, words)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(date(2026, 9, 24))


@pytest.fixture
def system(settings: Settings, clock: FixedClock) -> Iterator[RunningSystem]:
    tuned = settings.model_copy(update={"deadline_check_interval": 0.2, "proposal_reply_working_days": 10})
    with RunningSystem(tuned, NAMES, clock) as running:
        yield running


def caught_up(system: RunningSystem) -> None:
    """The proposals views hold every event stored so far."""
    service = system.services["proposals"]
    wait_for(lambda: service.projections[ProposalViews.name].position("proposals") == service.app.max_position(),
             20, "proposals views caught up")


def submit(system: RunningSystem, title: str = "关于加快老旧小区加装电梯的提案", **extra: Any) -> str:
    body = {"title": title, "content": "建议简化审批、财政补贴。", "kind": "cppcc_proposal",
            "proposers": [{"name": "李委员", "sector": "经济界", "phone": PHONE}], **extra}
    return system.post("/proposals", body, expect=201).json()["id"]


def review(system: RunningSystem, proposal_id: str, decision: str = "filed", **extra: Any) -> dict[str, Any]:
    return system.post(f"/proposals/{proposal_id}/review",
                       {"decision": decision, "reviewed_by": "县政协提案委员会", "meeting": "提案审查会议",
                        **extra}, expect=200).json()


def assign(system: RunningSystem, proposal_id: str, **extra: Any) -> dict[str, Any]:
    return system.post(f"/proposals/{proposal_id}/assignment", {"lead_unit": LEAD, **extra},
                       expect=200).json()


def consult(system: RunningSystem, proposal_id: str, mode: str = "on_site", held_on: str = "2026-09-24") -> None:
    system.post(f"/proposals/{proposal_id}/handling-consultation",
                {"mode": mode, "held_on": held_on, "proposer_view": "提案人同意办理思路"}, expect=200)


def reply(system: RunningSystem, proposal_id: str, category: str = "A") -> dict[str, Any]:
    return system.post(f"/proposals/{proposal_id}/reply",
                       {"category": category, "content": "已列入年度计划并安排资金", "unit": LEAD},
                       expect=200).json()


def test_from_submission_through_review_handling_reply_and_a_second_round(
        system: RunningSystem, clock: FixedClock, kafka: KafkaEndpoint) -> None:
    # -- submission: alone, jointly, collectively; what is refused ---------------------------
    base = {"title": "提案", "content": "内容", "kind": "cppcc_proposal"}
    refused(system, "/proposals", base, 409, "proposer_required")
    refused(system, "/proposals", {**base, "kind": "npc_suggestion", "collective": {"kind": "sector",
                                                                                   "name": "经济界"}},
            409, "collective_cppcc_only")
    refused(system, "/proposals", {**base, "proposers": [{"name": "甲"}, {"name": "甲"}]}, 409,
            "duplicate_proposer")
    for body, field, rule in [
        ({**base, "kind": "motion", "proposers": [{"name": "甲"}]}, "kind", "enum"),
        ({**base, "title": "长" * 501, "proposers": [{"name": "甲"}]}, "title", "string_too_long"),
        ({**base, "proposers": [{"name": "甲", "phone": "call me"}]}, "proposers.0.phone", "phone_format"),
        ({**base, "proposers": [{"name": "\u200b"}]}, "proposers.0.name", "blank"),
    ]:
        problem = refused(system, "/proposals", body, 422, rule)
        assert problem["errors"][0]["field"] == field, problem
    proposal_id = submit(system)
    joint = submit(system, "关于发展县域物流的提案",
                   proposers=[{"name": "王委员", "sector": "农业界"}, {"name": "赵委员", "sector": "农业界"}])
    collective = submit(system, "关于优化营商环境的提案", proposers=[],
                        collective={"kind": "sector", "name": "工商联界"})
    assert system.get(f"/proposals/{collective}")["submitted_by"] == "工商联界"

    # -- review (提案审查会议) -------------------------------------------------------------------
    problem = refused(system, f"/proposals/{joint}/review",
                      {"decision": "not_filed", "reviewed_by": "县政协提案委员会"}, 422, "reason_required")
    assert problem["errors"][0]["field"] == "reason"
    refused(system, f"/proposals/{joint}/review", {"decision": "not_filed", "reviewed_by": "县政协提案委员会",
                                                   "reason": "不属提案范围", "key": True}, 409,
            "designation_needs_filing")
    review(system, joint, "not_filed", reason="属于个人诉求，不符合立案标准")
    refused(system, f"/proposals/{joint}/review", {"decision": "filed", "reviewed_by": "x"}, 409,
            "already_reviewed")
    refused(system, f"/proposals/{joint}/assignment", {"lead_unit": LEAD}, 409, "not_assignable")
    review(system, collective)
    record = review(system, proposal_id, key=True, face_to_face=True)
    assert (record["status"], record["key"], record["face_to_face"]) == ("filed", True, True)

    # -- assignment (共同交办会) ------------------------------------------------------------------
    refused(system, f"/proposals/{collective}/assignment", {"lead_unit": LEAD, "leader": "副县长"}, 409,
            "key_proposal_only")
    refused(system, f"/proposals/{proposal_id}/assignment", {"lead_unit": LEAD, "co_units": [LEAD]}, 409,
            "units_overlap")
    refused(system, f"/proposals/{proposal_id}/assignment", {"lead_unit": LEAD, "due_on": "2026-09-24"}, 409,
            "due_in_past")
    record = assign(system, proposal_id, co_units=[CO], leader="王副县长", supervisor="政协李副主席")
    # 10 working days (the test's policy) across Mid-Autumn and National Day: weekdays alone give 10-08.
    assert record["due"]["reply"]["due"] == "2026-10-15"
    key = wait_for(lambda: [k for k in system.get("/proposals/views/supervision")["key_proposals"]
                            if k["lead_unit"]], 20, "the key proposal assigned")
    assert (key[0]["id"], key[0]["leader"], key[0]["supervisor"]) == (proposal_id, "王副县长", "政协李副主席")

    # -- handling: co-unit views, the consultation gate, face to face ----------------------------
    refused(system, f"/proposals/{proposal_id}/reply", {"category": "A", "content": "x", "unit": CO}, 409,
            "lead_unit_replies")
    refused(system, f"/proposals/{proposal_id}/reply", {"category": "A", "content": "x", "unit": LEAD}, 409,
            "co_unit_views_missing", CO)
    # A department the proposal is not assigned to is refused before the domain's rules are asked.
    refused(system, f"/proposals/{proposal_id}/co-unit-views", {"unit": "县教育局", "view": "x"}, 403,
            "not_yours")
    system.post(f"/proposals/{proposal_id}/co-unit-views", {"unit": CO, "view": "可安排补贴资金"}, expect=200)
    refused(system, f"/proposals/{proposal_id}/reply", {"category": "A", "content": "x", "unit": LEAD}, 409,
            "consultation_required", "必经环节")
    refused(system, f"/proposals/{proposal_id}/handling-consultation",
            {"mode": "on_site", "held_on": "2026-09-25", "proposer_view": "x"}, 409, "consultation_date")
    consult(system, proposal_id, "on_site")
    refused(system, f"/proposals/{proposal_id}/reply", {"category": "A", "content": "x", "unit": LEAD}, 409,
            "face_to_face_required")
    consult(system, proposal_id, "face_to_face")
    refused(system, f"/proposals/{proposal_id}/reply", {"category": "D", "content": "x", "unit": LEAD}, 422,
            "enum")
    record = reply(system, proposal_id, "B")
    assert record["status"] == "replied" and record["rounds"][0]["reply"]["on_time"] is True

    # -- the proposer's rating; unsatisfied reopens handling once --------------------------------
    problem = refused(system, f"/proposals/{proposal_id}/rating", {"rating": "unsatisfied"}, 422,
                      "comment_required")
    assert problem["errors"][0]["field"] == "comment"
    refused(system, f"/proposals/{collective}/rating", {"rating": "satisfied"}, 409, "not_replied")
    refused(system, f"/proposals/{proposal_id}/rating", {"rating": "satisfied", "rated_by": "路人"}, 409,
            "not_a_proposer")
    clock.set(date(2026, 10, 9))
    record = system.post(f"/proposals/{proposal_id}/rating",
                         {"rating": "unsatisfied", "comment": "补贴标准偏低"}, expect=200).json()
    assert (record["status"], record["round"]) == ("handling", 2)
    assert record["rounds"][1]["comment"] == "补贴标准偏低"
    assert record["due"]["reply"]["round"] == 2 and record["due"]["reply"]["from"] == "2026-10-09"
    refused(system, f"/proposals/{proposal_id}/reply", {"category": "A", "content": "x", "unit": LEAD}, 409,
            "consultation_required")
    consult(system, proposal_id, "face_to_face", "2026-10-09")
    reply(system, proposal_id, "A")
    record = system.post(f"/proposals/{proposal_id}/rating",
                         {"rating": "unsatisfied", "comment": "仍不满意"}, expect=200).json()
    assert record["status"] == "closed" and len(record["rounds"]) == 2, "handling reopens once, not again"
    assert [r["reply"]["category"] for r in record["rounds"]] == ["B", "A"]
    assert [r["rating"]["rating"] for r in record["rounds"]] == ["unsatisfied", "unsatisfied"]
    assert record["proposers"][0]["phone"] == PHONE  # the official record keeps the contact

    # -- publication, digest, views ---------------------------------------------------------------
    refused(system, f"/proposals/{collective}/publication", {}, 409, "not_replied")
    system.post(f"/proposals/{proposal_id}/publication", {}, expect=200)
    refused(system, f"/proposals/{proposal_id}/publication", {}, 409, "already_published")
    refused(system, "/proposals/digests", {"title": "摘报", "summary": "s", "proposal_ids": [collective]}, 409,
            "not_key_proposal")
    system.post("/proposals/digests", {"title": "重要提案摘报第1期", "summary": "加装电梯提案办理情况",
                                       "proposal_ids": [proposal_id]}, expect=201)
    caught_up(system)
    public = system.get("/proposals/public/proposals")
    assert public[0]["proposers"] == [{"name": "李委员", "sector": "经济界"}]
    assert [r["category"] for r in public[0]["replies"]] == ["B", "A"]
    assessment = {u["unit"]: u for u in system.get("/proposals/views/assessment")["units"]}
    assert assessment[LEAD]["replied"] == 2 and assessment[LEAD]["ratings"]["unsatisfied"] == 2
    pipeline = system.get("/proposals/views/pipeline?key=true")
    assert pipeline["totals"]["status"] == {"closed": 1, "not_filed": 1, "filed": 1}
    assert [p["id"] for p in pipeline["proposals"]] == [proposal_id]
    assert [p["id"] for p in system.get("/proposals/views/proposers/王委员")] == [joint]

    # -- nothing personal leaves the store: no phone anywhere, no proposer on the outcome topic ------
    on_topic = [r.value.decode() for r in read_topic(kafka.bootstrap, system.settings.topic(SERVICE_TOPICS["proposals"]))]
    assert any("ProposalAnswered" in v for v in on_topic) and not any(PHONE in v for v in on_topic)
    def proposal_outcomes() -> list[dict[str, Any]]:
        records = read_topic(kafka.bootstrap, system.settings.topic(OUTCOMES_TOPIC))
        found = [json.loads(r.value) for r in records if b"/consultation/proposals" in r.value]
        return found if len({o["type"] for o in found}) == 2 else []

    outcomes = wait_for(proposal_outcomes, 20, "proposal outcomes")
    assert {o["type"] for o in outcomes} == {"consultation.proposals.ProposalAnswered.v1",
                                            "consultation.proposals.KeyProposalDigestSubmitted.v1"}
    assert not any("李委员" in json.dumps(o, ensure_ascii=False) or PHONE in json.dumps(o) for o in outcomes)

    # -- every view is a projection: rebuilt from the store, it equals the live one ---------------
    service = system.services["proposals"]
    caught_up(system)
    rebuilt, _ = rebuild(service.app, [ProposalViews])
    own = {"proposal", "proposer_proposal", "member_proposal", "deadline", "digest", "member"}
    live = {k: v for k, v in service.views.dump().items() if k[0] in own}
    assert differences(live, rebuilt.dump()) == []


def test_a_reply_missed_across_national_day_is_supervised_and_rated_late(
        system: RunningSystem, clock: FixedClock) -> None:
    proposal_id = submit(system)
    review(system, proposal_id)
    assign(system, proposal_id)
    queue = system.get(f"/proposals/views/units/{LEAD}")
    wait_for(lambda: system.get(f"/proposals/views/units/{LEAD}")["to_reply"], 20, "the unit's queue")
    queue = system.get(f"/proposals/views/units/{LEAD}")["to_reply"][0]
    assert (queue["due"], queue["working_days_left"]) == ("2026-10-15", 10)
    clock.set(date(2026, 10, 15))  # the due date itself: not missed yet
    before = system.services["proposals"].app.max_position()
    clock.set(date(2026, 10, 16))
    wait_for(lambda: system.get("/proposals/views/supervision")["overdue"], 20, "the missed reply")
    overdue = system.get("/proposals/views/supervision")["overdue"][0]
    assert (overdue["id"], overdue["due"], overdue["working_days_overdue"]) == (proposal_id, "2026-10-15", 1)
    record = system.get(f"/proposals/{proposal_id}")
    assert record["due"]["reply"]["missed_on"] == "2026-10-16"
    # Reported once, however often the scheduler runs.
    time.sleep(1.0)
    assert system.services["proposals"].app.max_position() == before + 1
    consult(system, proposal_id, "joint", "2026-10-16")
    record = reply(system, proposal_id, "C")
    assert record["rounds"][0]["reply"]["on_time"] is False
    wait_for(lambda: system.get("/proposals/views/assessment")["units"][0]["late"] == 1, 20, "assessment")
    assert system.get("/proposals/views/supervision")["overdue"] == []


def test_a_proposal_becomes_a_topic_through_kafka_and_a_refusal_comes_back(system: RunningSystem) -> None:
    proposal_id = submit(system, "关于" + "加快推进城乡公交一体化" * 20 + "的提案")
    refused(system, f"/proposals/{proposal_id}/conversion", {"converted_by": "县政协"}, 409, "not_filed")
    review(system, proposal_id)
    system.post(f"/proposals/{proposal_id}/conversion", {"converted_by": "县政协提案委员会",
                                                         "content_type": "livelihood"}, expect=202)
    # The title is longer than a topic's: the catalog says so, and the proposal shows it.
    conversion = wait_for(lambda: (c := system.get(f"/proposals/{proposal_id}")["conversion"])["status"] != "requested"
                          and c, 30, "the catalog's answer")
    assert conversion["status"] == "refused" and conversion["refusal"]["rule"] == "string_too_long"
    assert "title" in conversion["refusal"]["reason"]
    system.post(f"/proposals/{proposal_id}/conversion", {"converted_by": "县政协提案委员会",
                                                         "content_type": "livelihood",
                                                         "title": "城乡公交一体化"}, expect=202)
    record = wait_for(lambda: (p := system.get(f"/proposals/{proposal_id}"))["topic_id"] and p, 30, "the topic")
    assert record["conversion"]["attempt"] == 2
    topic_id = record["topic_id"]
    created = system.get(f"/catalog/topics/{topic_id}")
    assert (created["source"], created["proposal_id"], created["title"]) == ("proposal", proposal_id, "城乡公交一体化")
    refused(system, f"/proposals/{proposal_id}/conversion", {"converted_by": "县政协"}, 409, "already_converted")
    # The topic's trace starts with the proposal.
    # Each service's steps reach the trace through their own topic: wait for the catalog's and the proposal's.
    trace = wait_for(lambda: (t := system.trace(topic_id)) and {"ProposalTopicLinked", "TopicProposed"} <= {
        s["type"] for s in t} and t, 30, "the topic's trace")
    types = [s["type"] for s in trace]
    assert types[0] == "ProposalSubmitted" and types.index("TopicProposed") > types.index("ProposalConverted")
    assert "ProposalConversionRefused" in types
    # The catalog made one topic, and one refusal, however the events were delivered.
    catalog = system.services["catalog"].app
    assert catalog.max_position() == 2


def test_an_opinion_taken_up_as_a_proposal_and_a_proposal_turned_into_an_opinion(system: RunningSystem) -> None:
    topic_id = topic(system, "livelihood")
    plan_id = plan(system)
    system.post(f"/catalog/plans/{plan_id}/items", item(topic_id, LEAD), expect=200)
    approve(system, plan_id)
    for service in ("proposals", "feedback"):
        wait_for(lambda s=service: (t := system.get(f"/{s}/views/known-topics/{topic_id}", None)).get(
            "lead_department") and t.get("status") == "accepted", 30, f"{service} to learn the topic")
    opinion = steps.opinion(system, topic_id, channel="online", name="市民甲")
    private = steps.opinion(system, topic_id, channel="visit", name="市民乙", confidential=True)

    def take_up(opinion_id: str) -> Any:
        response = system.post("/proposals", {"title": "关于电梯补贴的提案", "content": "采纳群众意见",
                                              "kind": "cppcc_proposal", "proposers": [{"name": "孙委员"}],
                                              "from_opinion_id": opinion_id})
        return None if response.json().get("rule") == "unknown_opinion" else response

    response = wait_for(lambda: take_up(opinion["id"]), 30, "proposals to learn the opinion")
    assert response.status_code == 201, response.text
    taken = response.json()["id"]
    assert system.get(f"/proposals/{taken}")["opinion_id"] == opinion["id"]
    wait_for(lambda: take_up(private["id"]), 30, "the confidential opinion")
    refused(system, "/proposals", {"title": "t", "content": "c", "kind": "cppcc_proposal",
                                   "proposers": [{"name": "孙委员"}], "from_opinion_id": private["id"]},
            409, "opinion_confidential")
    # The opinion's topic's trace shows the proposal that took it up.
    wait_for(lambda: "ProposalSubmitted" in {s["type"] for s in system.trace(topic_id)}, 30, "the trace")

    # A proposal the review meeting turns into an opinion reaches the feedback service through Kafka.
    other = submit(system, "关于小区停车的建议")
    problem = refused(system, f"/proposals/{other}/review", {"decision": "to_opinion", "reviewed_by": "提案委员会",
                                                             "reason": "宜作意见办理"}, 422, "topic_required")
    assert problem["errors"][0]["field"] == "topic_id"
    refused(system, f"/proposals/{other}/review", {"decision": "to_opinion", "reviewed_by": "提案委员会",
                                                   "reason": "宜作意见办理",
                                                   "topic_id": "5d1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"},
            409, "unknown_topic")
    review(system, other, "to_opinion", reason="宜作意见办理", topic_id=topic_id)

    def taken_in() -> Any:
        queue = system.get(f"/feedback/views/departments/{LEAD}")["to_answer"]
        return [row["opinion"] for row in queue if row["opinion"]["channel"] == "proposal"]

    [converted] = wait_for(taken_in, 30, "feedback to take in the proposal's opinion")
    assert converted["content"].startswith("关于小区停车的建议") and converted["topic_id"] == topic_id
    # Each service's events reach the trace through their own topic: wait for both.
    trace = wait_for(lambda: (t := system.trace(topic_id)) and "ProposalTurnedIntoOpinion" in {
        s["type"] for s in t} and any(s["subject"] == converted["id"] for s in t) and t, 30, "the opinion's trace")
    assert sum(s["type"] == "OpinionSubmitted" and s["subject"] == converted["id"] for s in trace) == 1


def test_members_duty_record_lists_who_falls_short(system: RunningSystem, clock: FixedClock) -> None:
    clock.set(date(2026, 11, 30))
    member = {"sector": "经济界", "term": "第十五届", "term_from": 2023, "term_to": 2027}
    for name, employer in (("李委员", "县一中"), ("周委员", "县医院"), ("吴委员", "县一中")):
        system.post("/proposals/members", {**member, "name": name, "employer": employer}, expect=201)
    refused(system, "/proposals/members", {**member, "name": "李委员"}, 409, "already_registered")
    refused(system, "/proposals/members", {**member, "name": "郑委员", "term_to": 2020}, 409, "term_years")
    duties = "/proposals/members/李委员/duties"
    system.post(duties, {"year": 2026, "duty": "plenary_attendance", "on": "2026-01-10"}, expect=201)
    refused(system, duties, {"year": 2026, "duty": "plenary_attendance"}, 409, "already_recorded")
    refused(system, duties, {"year": 2030, "duty": "activity", "title": "视察"}, 409, "outside_term")
    refused(system, duties, {"year": 2026, "duty": "activity", "title": "视察", "on": "2026-12-01"}, 409,
            "duty_date")
    problem = refused(system, duties, {"year": 2026, "duty": "activity"}, 422, "title_required")
    assert problem["errors"][0]["field"] == "body"
    refused(system, "/proposals/members/无此人/duties", {"year": 2026, "duty": "plenary_attendance"}, 404,
            "not_found")
    system.post(duties, {"year": 2026, "duty": "social_condition_report", "title": "关于农村养老的社情民意"},
                expect=201)
    system.post(duties, {"year": 2026, "duty": "activity", "title": "专题视察"}, expect=201)
    system.post(duties, {"year": 2025, "duty": "research_report", "title": "县域物流调研报告"}, expect=201)
    submit(system)  # 李委员's proposal of 2026 counts itself
    submit(system, "人大建议", kind="npc_suggestion", proposers=[{"name": "吴委员"}])  # not a CPPCC proposal
    system.post("/proposals/members/吴委员/duties", {"year": 2026, "duty": "plenary_attendance"}, expect=201)

    caught_up(system)
    report_ = system.get("/proposals/views/duties/2026")
    short = {s["member"]: s["short_of"] for s in report_["short"]}
    assert "李委员" not in short
    assert {"plenary_attendance", "proposal"} <= set(short["周委员"])
    assert "proposal" in short["吴委员"] and "plenary_attendance" not in short["吴委员"]
    # The per-term duty is judged in the term's last year.
    record_2027 = {m["member"]: m for m in system.get("/proposals/views/duties/2027")["members"]}
    assert "plenary_speech_or_research_report" in record_2027["周委员"]["short_of"]
    assert "plenary_speech_or_research_report" not in record_2027["李委员"]["short_of"]
    # Attendance reported to the organisation department (everyone) and to an employer (its own).
    everyone = system.get("/proposals/views/duties/2026/attendance/organization_department")
    assert {m["member"] for m in everyone["members"]} == {"李委员", "周委员", "吴委员"}
    school = system.get("/proposals/views/duties/2026/attendance/employer?employer=县一中")
    assert {m["member"]: m["plenary_attendance"] for m in school["members"]} == {"李委员": True, "吴委员": True}
    assert system.http.get("/proposals/views/duties/2026/attendance/employer").status_code == 409
    assert system.http.get("/proposals/views/duties/2026/attendance/press").status_code == 422
