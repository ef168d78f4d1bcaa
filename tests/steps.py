"""Steps of a consultation through the public HTTP API, shared by the story tests."""

from __future__ import annotations

from typing import Any

from tests.harness import RunningSystem, wait_for


def topic(system: RunningSystem, content_type: str = "livelihood", source: str = "government",
          accept: bool = True, **extra: Any) -> str:
    body = {"title": f"议题 {content_type} {source}", "description": "说明", "source": source,
            "proposer": "县政府办公室", "content_type": content_type, **extra}
    topic_id = system.post("/catalog/topics", body, expect=201).json()["id"]
    if accept:
        system.post(f"/catalog/topics/{topic_id}/screening",
                    {"decision": "accepted", "screened_by": "政协办公室"}, expect=200)
    return topic_id


def plan(system: RunningSystem, kind: str = "government", year: int = 2026) -> str:
    return system.post("/catalog/plans", {"year": year, "kind": kind, "issuer": "县政府办公室"},
                       expect=201).json()["id"]


def item(topic_id: str, department: str = "县住建局", **extra: Any) -> dict[str, Any]:
    return {"topic_id": topic_id, "form": "symposium", "lead_department": department,
            "scheduled_month": "2026-05", "participant_scope": "人大代表、政协委员、群众代表", **extra}


def approve(system: RunningSystem, plan_id: str, kind: str = "government") -> None:
    if kind == "cppcc":
        system.post(f"/catalog/plans/{plan_id}/review", {"reviewed_by": "政协主席会议"}, expect=200)
    system.post(f"/catalog/plans/{plan_id}/approval", {"approved_by": "县委常委会"}, expect=200)


def refused(system: RunningSystem, service: str, path: str, body: dict[str, Any], status: int,
            rule: str, words: str = "") -> dict[str, Any]:
    """The command is refused with the rule named, and nothing is stored."""
    before = system.services[service].app.max_position()
    response = system.post(path, body)
    assert response.status_code == status, response.text
    problem = response.json()
    assert problem["rule"] == rule, problem
    assert words in problem["detail"], problem
    assert system.services[service].app.max_position() == before
    return problem


#: The feedback service learns topics, their plans' lead departments and sessions over Kafka:
#: these refusals mean it has not learned yet what the test did a moment ago.
NOT_LEARNED_YET = ("unknown_topic", "unknown_session", "topic_not_accepted", "no_answering_department")


def opinion(system: RunningSystem, topic_id: str | None, session_id: str | None = None,
            channel: str = "written", name: str = "张三", headers: dict[str, str] | None = None,
            **extra: Any) -> dict[str, Any]:
    """Submit an opinion; the feedback service learns topics and sessions from Kafka, so a
    409 saying one is not known yet, or not yet known as accepted (the callers accepted it),
    is retried (a refusal changes nothing)."""
    body: dict[str, Any] = {"channel": channel, "author": {"name": name}, "content": "建议分批实施", **extra}
    if topic_id:
        body["topic_id"] = topic_id
    if session_id:
        body["session_id"] = session_id

    def attempt() -> dict[str, Any] | None:
        response = system.post("/feedback/opinions", body, headers=headers)
        if response.status_code == 409 and response.json()["rule"] in NOT_LEARNED_YET:
            return None
        assert response.status_code == 201, response.text
        return response.json()

    return wait_for(attempt, 30, f"feedback to accept an opinion on {topic_id}")
