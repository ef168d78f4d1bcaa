"""Issue 3: the catalog — topics, screening, scope, plans, amendments, views, trace."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.catalog.domain import Source
from services.catalog.projections import CatalogViews
from shared.config import OUTCOMES_TOPIC, SERVICE_TOPICS
from shared.replay import differences, rebuild
from tests import steps
from tests.conftest import KafkaEndpoint
from tests.harness import RunningSystem, read_topic, wait_for
from tests.steps import item, plan, topic


def refused(system: RunningSystem, path: str, body: dict[str, Any], status: int, rule: str,
            words: str = "") -> dict[str, Any]:
    return steps.refused(system, "catalog", path, body, status, rule, words)


def test_topics_from_every_source_and_screening(system: RunningSystem) -> None:
    ids = {s.value: topic(system, source=s.value, accept=False,
                          **({"proposal_id": "0b0c2f44-1d0f-4a55-9a1b-5c8c3d7f0e11"} if s is Source.proposal else {}))
           for s in Source}
    assert len(ids) == 16
    linked = system.get(f"/catalog/topics/{ids['proposal']}")
    assert linked["proposal_id"] == "0b0c2f44-1d0f-4a55-9a1b-5c8c3d7f0e11"

    # A topic from a proposal must name it; unknown enumerations are named.
    problem = refused(system, "/catalog/topics", {"title": "x", "description": "y", "source": "proposal",
                                                  "proposer": "p", "content_type": "other"},
                      422, "proposal_link_required")
    assert "proposal_id" in problem["detail"]
    refused(system, "/catalog/topics", {"title": "x", "description": "y", "source": "gossip",
                                        "proposer": "p", "content_type": "other"}, 422, "enum")

    accepted, rejected = ids["npc"], ids["grassroots"]
    # A rejection without a reason is refused and stores nothing.
    problem = refused(system, f"/catalog/topics/{rejected}/screening",
                      {"decision": "rejected", "screened_by": "主席会议"}, 422, "reason_required")
    assert problem["errors"][0]["field"] == "reason"
    system.post(f"/catalog/topics/{rejected}/screening",
                {"decision": "rejected", "screened_by": "主席会议", "reason": "内部：与既有议题重复"}, expect=200)
    system.post(f"/catalog/topics/{accepted}/screening",
                {"decision": "accepted", "screened_by": "主席会议"}, expect=200)
    refused(system, f"/catalog/topics/{accepted}/screening",
            {"decision": "rejected", "screened_by": "x", "reason": "again"}, 409, "already_screened")
    assert system.get(f"/catalog/topics/{rejected}")["status"] == "rejected"
    assert system.http.get("/catalog/topics/not-a-topic").status_code == 404

    pipeline = wait_for(lambda: (p := system.get("/catalog/views/topic-pipeline"))
                        and p["by_source"].get("npc", {}).get("accepted") == 1 and p, 20, "pipeline")
    assert pipeline["by_source"]["grassroots"] == {"rejected": 1}
    assert pipeline["by_source"]["sector"] == {"proposed": 1}
    assert set(pipeline["by_source"]) == {s.value for s in Source}


@pytest.mark.parametrize("content_type,words", [
    ("party_policy", "Party policy (党的方针政策)"),
    ("party_documents", "Party policy (党的方针政策)"),
    ("fixed_by_law", "fixed by law"),
    ("beyond_self_government", "beyond village self-government"),
])
def test_grassroots_scope_rules(system: RunningSystem, content_type: str, words: str) -> None:
    grassroots = plan(system, "grassroots")
    out_of_scope = topic(system, content_type, source="grassroots")
    refused(system, f"/catalog/plans/{grassroots}/items", item(out_of_scope), 409, "out_of_scope", words)
    refused(system, f"/catalog/plans/{grassroots}/items", item(out_of_scope), 409, "out_of_scope", "004 三(二)1")
    system.post(f"/catalog/plans/{grassroots}/items", item(topic(system, "livelihood")), expect=200)


def test_plan_rules_from_draft_to_amendment(system: RunningSystem) -> None:
    gov, cppcc = plan(system, "government"), plan(system, "cppcc")
    in_scope, party, proposed_only = topic(system, "budget"), topic(system, "party_policy"), topic(system, accept=False)

    # Government plans take what 000 三 / 002 第五条 list; CPPCC plans take 001 §4–§5.
    refused(system, f"/catalog/plans/{gov}/items", item(party), 409, "out_of_scope", "000 三")
    system.post(f"/catalog/plans/{cppcc}/items", item(party), expect=200)
    refused(system, f"/catalog/plans/{gov}/items", item(proposed_only), 409, "topic_not_accepted")
    refused(system, f"/catalog/plans/{gov}/items", item("9d5f8c4e-0000-4000-8000-000000000000"),
            409, "unknown_topic")
    refused(system, f"/catalog/plans/{gov}/items", {**item(in_scope), "scheduled_month": "2026-13"},
            422, "string_pattern_mismatch")
    assert system.http.post("/catalog/plans/00000000-0000-4000-8000-000000000000/items",
                            json=item(in_scope)).status_code == 404

    # Empty plans cannot be approved; unapproved plans cannot be published.
    refused(system, f"/catalog/plans/{gov}/approval", {"approved_by": "县委常委会"}, 409, "plan_empty")
    system.post(f"/catalog/plans/{gov}/items", item(in_scope, internal_note="内部：预算口径待核"), expect=200)
    refused(system, f"/catalog/plans/{gov}/items", item(in_scope), 409, "duplicate_topic")
    refused(system, f"/catalog/plans/{gov}/publication", {}, 409, "plan_not_approved")
    refused(system, f"/catalog/plans/{gov}/amendments",
            {**item(topic(system, "reform")), "reason": "临时增加", "approved_by": "县委常委会"},
            409, "plan_not_approved")

    # The CPPCC plan goes through the chair meeting first.
    refused(system, f"/catalog/plans/{cppcc}/approval", {"approved_by": "县委常委会"}, 409, "review_required")
    refused(system, f"/catalog/plans/{gov}/review", {"reviewed_by": "主席会议"}, 409, "review_not_applicable")
    system.post(f"/catalog/plans/{cppcc}/review", {"reviewed_by": "政协主席会议"}, expect=200)

    waiting = wait_for(lambda: (w := system.get("/catalog/views/awaiting-approval")) and len(w) == 2 and w,
                       20, "approval queue")
    assert {p["id"] for p in waiting} == {gov, cppcc}

    system.post(f"/catalog/plans/{gov}/approval", {"approved_by": "县委常委会"}, expect=200)
    system.post(f"/catalog/plans/{cppcc}/approval", {"approved_by": "县委常委会"}, expect=200)
    refused(system, f"/catalog/plans/{gov}/items", item(topic(system, "reform")), 409, "plan_not_draft")
    refused(system, f"/catalog/plans/{gov}/approval", {"approved_by": "x"}, 409, "already_approved")

    # An approved plan changes only by an amendment with reason and approver.
    added = topic(system, "reform")
    problem = refused(system, f"/catalog/plans/{gov}/amendments",
                      {**item(added, "县发改局"), "reason": "", "approved_by": "县委常委会"},
                      422, "string_too_short")
    assert problem["errors"][0]["field"] == "reason"
    refused(system, f"/catalog/plans/{gov}/amendments", {**item(added, "县发改局"), "reason": "r"},
            422, "missing")
    refused(system, f"/catalog/plans/{gov}/amendments",
            {**item(in_scope), "reason": "重复", "approved_by": "县委常委会"}, 409, "duplicate_topic")
    amended = system.post(f"/catalog/plans/{gov}/amendments",
                          {**item(added, "县发改局"), "reason": "临时增加：营商环境改革", "approved_by": "县委常委会"},
                          expect=201).json()
    assert amended["number"] == 1
    history = system.get(f"/catalog/plans/{gov}")["amendments"]
    assert [(a["topic_id"], a["reason"], a["approved_by"]) for a in history] == [
        (added, "临时增加：营商环境改革", "县委常委会")]

    # Published to society; the public sees published plans only, without internal notes.
    assert system.get("/catalog/public/plans") == []
    system.post(f"/catalog/plans/{gov}/publication", {"published_by": "县政府办公室"}, expect=200)
    refused(system, f"/catalog/plans/{gov}/publication", {}, 409, "already_published")
    public = wait_for(lambda: system.get("/catalog/public/plans?year=2026"), 20, "public plans")
    assert [p["id"] for p in public] == [gov]
    assert "内部" not in str(public) and "internal_note" not in str(public)
    assert public[0]["amendments"][0]["reason"] == "临时增加：营商环境改革"

    catalogue = system.get("/catalog/views/government-catalogue/2026")
    assert [p["id"] for p in catalogue["plans"]] == [gov]
    assert catalogue["plans"][0]["items"][0]["internal_note"] == "内部：预算口径待核"
    schedule = system.get("/catalog/views/departments/县发改局/schedule")
    assert [(r["topic_id"], r["amendment"]) for r in schedule] == [(added, True)]
    assert [r["topic_id"] for r in system.get("/catalog/views/departments/县住建局/schedule")] == [in_scope, party]
    assert system.get("/catalog/views/awaiting-approval") == []

    # Every catalog event shows in the topic's trace, in the order it happened
    # (this plan was drafted before the topic was proposed).
    steps = system.wait_trace(in_scope, 6)
    assert [s["type"] for s in steps] == [
        "PlanDrafted", "TopicProposed", "TopicAccepted", "PlanItemAdded", "PlanApproved", "PlanPublished"]
    # Who acted: the signed-in official (the bodies named stay in the events' data).
    assert [s["actor"] for s in steps][-2:] == ["government_office/经办人"] * 2
    amended_steps = system.wait_trace(added, 6)
    assert [s["type"] for s in amended_steps] == [
        "PlanDrafted", "PlanApproved", "TopicProposed", "TopicAccepted", "PlanAmended", "PlanPublished"]

    # Rebuilding every catalog view from the events gives the same views.
    service = system.services["catalog"]
    wait_for(lambda: service.projections["catalog_views"].position("catalog") == service.app.max_position(),
             20, "views caught up")
    rebuilt, replayed = rebuild(service.app, [CatalogViews])
    assert replayed == service.app.max_position()
    assert differences(service.views.dump(), rebuilt.dump()) == []


def test_a_citizen_who_proposes_a_topic_is_named_only_in_the_catalog_record(
        system: RunningSystem, kafka: KafkaEndpoint) -> None:
    """Issue 11: a person's name stays in the catalog store; events, the trace and views
    carry the keyed pseudonymous reference sessions gives the same name."""
    citizen = "陈秀英"
    topic_id = topic(system, source="public_solicitation", accept=False, proposer=citizen, proposer_kind="person")
    refused(system, "/catalog/topics", {"title": "x", "description": "y", "source": "public_solicitation",
                                        "proposer": citizen, "proposer_kind": "citizen", "content_type": "other"},
            422, "enum")
    record = system.get(f"/catalog/topics/{topic_id}")
    assert (record["proposer"], record["proposer_kind"]) == (citizen, "person")
    body = topic(system, source="npc", accept=False)
    assert system.get(f"/catalog/topics/{body}")["proposer_kind"] == "body"
    ref = system.services["catalog"].app.pseudonyms.ref("participant", citizen)
    assert ref == system.services["sessions"].app.participant_ref(citizen)
    trace = system.wait_trace(topic_id, 1)
    # The desk entered it: the trace names the official, never the citizen.
    assert trace[0]["actor"] == "government_office/经办人" and citizen not in json.dumps(trace, ensure_ascii=False)
    pipeline = wait_for(lambda: json.dumps(system.get("/catalog/views/topic-pipeline"), ensure_ascii=False),
                        10, "the pipeline")
    assert citizen not in pipeline
    on_kafka = [r.value.decode() for r in read_topic(kafka.bootstrap, system.settings.topic(SERVICE_TOPICS["catalog"]))]
    assert any(ref in v for v in on_kafka) and not any(citizen in v for v in on_kafka)


def test_each_body_decides_its_own_plan(system: RunningSystem, kafka: KafkaEndpoint) -> None:
    """Issue 11: government leaders decide the catalogue (published, required); the chair meeting
    reviews and the Party committee decides a CPPCC plan; a room's Party organisation decides its
    list; a village's 开单 list is reported, not approved. Forms suit the plan's kind."""
    government, cppcc, room = plan(system, "government"), plan(system, "cppcc"), plan(system, "cppcc_room")
    village = system.post("/catalog/plans", {"year": 2026, "kind": "grassroots", "issuer": "城关镇"},
                          expect=201).json()["id"]
    assert system.get(f"/catalog/plans/{village}")["kind"] == "village"  # the old name is the 开单 list

    # Forms must suit the body (001 §8); months lie in the plan's year; the participant scope is named.
    topic_id = topic(system)
    refused(system, f"/catalog/plans/{cppcc}/items", item(topic_id, form="hearing"), 409, "form_not_allowed",
            "协商议题和协商形式相匹配")
    refused(system, f"/catalog/plans/{village}/items", item(topic_id, form="standing_committee_deliberation"),
            409, "form_not_allowed")
    refused(system, f"/catalog/plans/{government}/items", item(topic_id, scheduled_month="2027-01"), 409,
            "month_outside_year")
    problem = refused(system, f"/catalog/plans/{government}/items",
                      {k: v for k, v in item(topic_id).items() if k != "participant_scope"}, 422, "missing")
    assert problem["errors"][0]["field"] == "participant_scope"
    for plan_id, form in ((government, "hearing"), (cppcc, "consultation_symposium"),
                          (room, "grassroots_meeting"), (village, "questionnaire")):
        system.post(f"/catalog/plans/{plan_id}/items", item(topic(system), form=form), expect=200)

    # Who decides what, in their own words.
    refused(system, f"/catalog/plans/{government}/review", {"reviewed_by": "主席会议"}, 409,
            "review_not_applicable", "government's leaders")
    refused(system, f"/catalog/plans/{cppcc}/approval", {"approved_by": "县委常委会"}, 409, "review_required", "主席会议")
    system.post(f"/catalog/plans/{cppcc}/review", {"reviewed_by": "政协主席会议"}, expect=200)
    # An item added after the review sends the plan back to the chair meeting.
    after = system.post(f"/catalog/plans/{cppcc}/items", item(topic(system), form="sector"), expect=200).json()
    assert after["status"] == "draft" and after["reviewed_by"] is None
    refused(system, f"/catalog/plans/{cppcc}/approval", {"approved_by": "县委常委会"}, 409, "review_required")
    system.post(f"/catalog/plans/{cppcc}/review", {"reviewed_by": "政协主席会议"}, expect=200)
    system.post(f"/catalog/plans/{cppcc}/approval", {"approved_by": "县委常委会"}, expect=200)
    refused(system, f"/catalog/plans/{village}/approval", {"approved_by": "县政府"}, 409,
            "approval_not_applicable", "county government office")
    refused(system, f"/catalog/plans/{government}/report", {"compiled_by": "城关镇"}, 409, "report_not_applicable")
    reported = system.post(f"/catalog/plans/{village}/report", {"compiled_by": "城关镇"}, expect=200).json()
    assert (reported["status"], reported["reported"]["reported_to"]) == ("reported", "县政府办公室")
    system.post(f"/catalog/plans/{room}/approval", {"approved_by": "城东镇党委"}, expect=200)
    system.post(f"/catalog/plans/{government}/approval", {"approved_by": "县政府常务会议"}, expect=200)
    refused(system, f"/catalog/plans/{government}/amendments",
            {**item(topic(system), scheduled_month="2027-03"), "reason": "临时增加", "approved_by": "县政府"},
            409, "month_outside_year")
    desk = wait_for(lambda: (d := system.get("/catalog/views/plan-desk"))["to_publish"] and d, 20, "the plan desk")
    assert [p["id"] for p in desk["to_publish"]] == [government]

    # The published catalogue carries its items on the outcome topic.
    system.post(f"/catalog/plans/{government}/publication", {}, expect=200)

    def published() -> list[dict[str, Any]]:
        records = read_topic(kafka.bootstrap, system.settings.topic(OUTCOMES_TOPIC))
        return [json.loads(r.value) for r in records if b"PlanPublished" in r.value]

    [outcome] = wait_for(published, 20, "PlanPublished on the outcome topic")
    [entry] = outcome["data"]["items"]
    assert (entry["title"], entry["form"], entry["scheduled_month"], entry["lead_department"]) == (
        "议题 livelihood government", "hearing", "2026-05", "县住建局")
    assert "internal_note" not in entry
