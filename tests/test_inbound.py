"""Commands from the e-government bus on ``consultation.inbound.v1``: applied once, always answered.

Real broker, both stores: the bus's messages are produced with a plain Kafka client and
the replies read from ``consultation.inbound.replies.v1``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from shared.books import known_topic
from shared.config import DEADLETTER_TOPIC, INBOUND_REPLIES_TOPIC, INBOUND_TOPIC
from tests import steps
from tests.harness import RunningSystem, produce, read_topic, wait_for

HOTLINE = "/gov/bus/hotline-12345"
PLATFORM = "/gov/bus/village-platform/qingshui"


def command(kind: str, data: dict[str, Any], source: str = HOTLINE, id: str | None = None) -> dict[str, Any]:
    return {"specversion": "1.0", "id": id or str(uuid.uuid4()), "source": source,
            "type": f"consultation.inbound.{kind}.v1", "time": "2026-12-04T09:00:00Z",
            "datacontenttype": "application/json", "data": data}


def send(system: RunningSystem, *messages: dict[str, Any] | bytes) -> None:
    """The bus's messages, as it sends them: JSON values, no headers."""
    produce(system.settings.kafka_bootstrap_servers, system.settings.topic(INBOUND_TOPIC), [
        (b"bus", m if isinstance(m, bytes) else json.dumps(m, ensure_ascii=False).encode()) for m in messages],
        headers=[])


def replies(system: RunningSystem, inbound_id: str, count: int) -> list[dict[str, Any]]:
    def answered() -> list[dict[str, Any]] | None:
        got = [json.loads(r.value) for r in read_topic(system.settings.kafka_bootstrap_servers,
                                                        system.settings.topic(INBOUND_REPLIES_TOPIC), 2.0)]
        mine = [r for r in got if r["inboundid"] == inbound_id]
        return mine if len(mine) >= count else None

    return wait_for(answered, 45, f"{count} replies to {inbound_id}")


def opinion_data(topic_id: str | None, **extra: Any) -> dict[str, Any]:
    return {"channel": "hotline", "topic_id": topic_id, "content": "建议增加社区食堂的供餐点",
            "author": {"name": "李四", "phone": "13800138000"}, **extra}


def accepted_topic(system: RunningSystem) -> str:
    topic_id = steps.topic(system)
    plan = steps.plan(system)
    system.post(f"/catalog/plans/{plan}/items", steps.item(topic_id), expect=200)
    steps.approve(system, plan)
    views = system.services["feedback"].views
    wait_for(lambda: (t := known_topic(views, topic_id)) and t["status"] == "accepted"
             and t.get("lead_department"), 30, "feedback to know the topic and its lead department")
    return topic_id


def test_an_opinion_sent_three_times_is_stored_once_and_answered_three_times_and_refusals_change_nothing(
        system: RunningSystem) -> None:
    topic_id = accepted_topic(system)
    feedback = system.services["feedback"].app
    before = feedback.max_position()
    message = command("SubmitOpinion", opinion_data(topic_id))
    unknown_topic = command("SubmitOpinion", opinion_data(str(uuid.uuid4())))
    no_author = command("SubmitOpinion", {k: v for k, v in opinion_data(topic_id).items() if k != "author"})
    reserved = command("SubmitOpinion", opinion_data(topic_id, channel="proposal"))
    unknown_type = command("CloseEverything", {"all": True})
    bad_envelope = {**command("SubmitOpinion", opinion_data(topic_id)), "specversion": "0.3"}
    marker = uuid.uuid4().hex
    unreadable = [f"not json {marker}".encode(), json.dumps({"type": "x", "data": marker}).encode(),
                  b"[" * 100_000 + marker.encode(),
                  json.dumps({**command("SubmitOpinion", {}), "id": marker * 20}).encode()]
    send(system, message, unknown_topic, message, no_author, reserved, unknown_type, bad_envelope, message,
         *unreadable)

    # -- three deliveries: one opinion, three identical answers ------------------------------
    answers = replies(system, message["id"], 3)
    assert {a["data"]["status"] for a in answers} == {"accepted"}
    ids = {a["data"]["id"] for a in answers}
    assert len(ids) == 1
    opinion_id = ids.pop()
    # The same answer each time, under the same reply id; correlated to the inbound event.
    assert len({a["id"] for a in answers}) == 1
    assert all(a["type"] == "consultation.inbound.CommandAccepted.v1" and a["subject"] == message["id"]
               and a["source"] == "/consultation/feedback" for a in answers)
    record = system.get(f"/feedback/opinions/{opinion_id}")
    assert record["channel"] == "hotline" and record["topic_id"] == topic_id
    assert len(feedback.recorder.select_events(uuid.UUID(opinion_id))) == 1

    # -- refusals name the rule (and the field) -------------------------------------------------
    def refusal(m: dict[str, Any]) -> dict[str, Any]:
        [answer] = replies(system, m["id"], 1)
        assert answer["type"] == "consultation.inbound.CommandRefused.v1", answer
        assert answer["data"]["status"] == "refused" and answer["data"]["inbound_source"] == HOTLINE
        return answer["data"]

    assert refusal(unknown_topic)["rule"] == "unknown_topic"
    missing = refusal(no_author)
    assert missing["rule"] == "missing" and missing["errors"][0]["field"] == "data.author"
    assert refusal(reserved)["rule"] == "channel_reserved"
    assert refusal(unknown_type)["rule"] == "unknown_type"
    assert refusal(bad_envelope)["errors"][0]["field"] == "envelope.specversion"
    # Only the accepted opinion was stored, once.
    assert feedback.max_position() == before + 1

    # -- what cannot be answered goes to dead letters, with why ------------------------------
    def parked() -> list[Any] | None:
        records = read_topic(system.settings.kafka_bootstrap_servers, system.settings.topic(DEADLETTER_TOPIC), 2.0)
        mine = [r for r in records if marker.encode() in (r.value or b"")]
        return mine if len(mine) >= len(unreadable) else None

    letters = wait_for(parked, 45, "the dead letters")
    assert len(letters) == len(unreadable), [r.value[:80] for r in letters]
    reasons = sorted(dict((k, v.decode()) for k, v in r.headers)["deadletter-reason"] for r in letters)
    assert [r.split(":")[0] for r in reasons] == ["inbound"] * 4
    assert sum("not JSON" in r for r in reasons) == 2  # not JSON at all; nested beyond any reader's depth
    assert any("no 'source' and 'id'" in r for r in reasons)
    assert any("longer than 200 characters" in r for r in reasons)
    assert all(dict(r.headers)["deadletter-topic"].decode() == system.settings.topic(INBOUND_TOPIC)
               for r in letters)

    # -- the trace shows the bus's sender; what went out carries no person -------------------
    steps_ = wait_for(lambda: [s for s in system.trace(topic_id) if s["type"] == "OpinionSubmitted"],
                      30, "the opinion in the trace")
    assert [s["actor"] for s in steps_] == [HOTLINE]
    event = next(json.loads(r.value) for r in read_topic(
        system.settings.kafka_bootstrap_servers, system.settings.topic("consultation.feedback.v1"))
        if json.loads(r.value)["subject"] == opinion_id)
    assert event["data"]["received_via"] == HOTLINE and event["data"]["inbound_id"] == message["id"]
    assert "李四" not in json.dumps(event, ensure_ascii=False) and "13800138000" not in json.dumps(event)
    # The consumers are still running: nothing above blocked the topic.
    assert all(c["running"] for c in system.get("/feedback/health", None)["consumers"])


def test_a_topic_proposed_and_an_item_escalated_over_the_bus(system: RunningSystem) -> None:
    topic = command("ProposeTopic", {
        "title": "老旧小区加装电梯", "description": "群众在征集平台提出", "source": "public_solicitation",
        "proposer": "王五", "proposer_kind": "person", "content_type": "livelihood"}, source=PLATFORM)
    send(system, topic, topic)
    answers = replies(system, topic["id"], 2)
    assert {a["data"]["status"] for a in answers} == {"accepted"} and len({a["data"]["id"] for a in answers}) == 1
    topic_id = answers[0]["data"]["id"]
    assert answers[0]["source"] == "/consultation/catalog"
    assert system.get(f"/catalog/topics/{topic_id}")["title"] == "老旧小区加装电梯"
    [proposed] = wait_for(lambda: [s for s in system.trace(topic_id) if s["type"] == "TopicProposed"],
                          30, "the topic in the trace")
    assert proposed["actor"] == PLATFORM

    item = command("SubmitOpinion", {
        "channel": "grassroots", "platform_level": "village_station", "platform": "清水村说事站",
        "category": "public_interest", "content": "村道路灯损坏", "author": {"name": "赵六"}},
        source=PLATFORM)
    send(system, item)
    [opened] = replies(system, item["id"], 1)
    assert opened["data"]["status"] == "accepted", opened
    item_id = opened["data"]["id"]
    escalation = command("EscalateItem", {
        "opinion_id": item_id, "to": "清水镇人民政府", "tier": "township",
        "escalated_by": "清水村委会", "reason": "村级无法解决"}, source=PLATFORM)
    send(system, escalation, escalation)
    answers = replies(system, escalation["id"], 2)
    assert [a["data"]["status"] for a in answers] == ["accepted", "accepted"], answers
    assert {a["data"]["id"] for a in answers} == {item_id}
    events = system.services["feedback"].app.recorder.select_events(uuid.UUID(item_id))
    assert [e.topic.rsplit(".", 1)[-1] for e in events] == ["OpinionSubmitted", "OpinionEscalated"]
    # Escalated once: a second, different escalation from the same tier is refused by the rule.
    again = command("EscalateItem", {**escalation["data"], "reason": "再次上报"}, source=PLATFORM)
    send(system, again)
    [refused] = replies(system, again["id"], 1)
    assert refused["data"]["rule"] == "escalation_tier"
