"""Steps of a consultation through the public HTTP API, shared by the story tests."""

from __future__ import annotations

from typing import Any

from tests.harness import RunningSystem


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
