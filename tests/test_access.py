"""Issue 14: access — each body sees and does only what belongs to it.

- Every cell of the role-by-route table (README, ``shared.access.table``) is called with a
  token of that role: a role the route does not allow gets 403 ``role_not_allowed``, an
  allowed one gets past the check. Without a token, or with a bad one, 401.
- On a running system with the real broker: cross-department and cross-citizen attempts,
  confidential opinions, members' own proposals, actors in the trace, limits per principal.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.testclient import TestClient

from shared.access import Role, endpoints, is_open, mint
from shared.config import SERVICE_TOPICS, Settings
from shared.runtime import create_app
from tests import steps
from tests.conftest import KafkaEndpoint, make_settings
from tests.harness import RunningSystem, read_topic, wait_for
from tests.steps import approve, item, plan, topic

DEPARTMENT = "县民政局"
OTHER_DEPARTMENT = "县住建局"
#: What each path parameter is filled with in the table test.
PARAMETERS = {"department": DEPARTMENT, "unit": DEPARTMENT, "name": "陈委员", "member": "陈委员", "year": "2026",
              "recipient": "employer", "ref": "0" * 32}


def path_of(template: str) -> str:
    for name, value in PARAMETERS.items():
        template = template.replace(f"{{{name}}}", value)
    while "{" in template:
        start, end = template.index("{"), template.index("}")
        template = template[:start] + str(uuid.uuid4()) + template[end + 1:]
    return template


def token(settings: Settings, role: Role, name: str = "经办人", department: str | None = None, **identity: str) -> \
        dict[str, str]:
    if role is Role.department and department is None:
        department = DEPARTMENT
    return {"Authorization": f"Bearer {mint(settings, role, name, department, 1, **identity)}"}


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Settings, Any]]:
    """The four services in-process (no lifespan: no broker needed to check access)."""
    data = tmp_path_factory.mktemp("access")
    config = Settings(data_dir=data, store="sqlite", kafka_bootstrap_servers="127.0.0.1:9",
                      rate_limit_writes="100000/second", rate_limit_reads="100000/second", log_format="json")
    app = create_app(config)
    client = TestClient(app, raise_server_exceptions=True)
    yield client, config, app
    for service in app.state.services.values():
        service.close()


def test_every_cell_of_the_role_table(offline: tuple[TestClient, Settings, Any]) -> None:
    client, config, app = offline
    routes = [e for e in endpoints(app) if e.documented and e.roles is not None]
    assert len(routes) >= 80
    tokens = {role: token(config, role) for role in Role}
    wrong = []
    for route in routes:
        path = path_of(route.path)
        for role in Role:
            response = client.request(route.method, path, headers=tokens[role],
                                      json={} if route.method == "POST" else None)
            body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
            denied = response.status_code == 403 and body.get("rule") == "role_not_allowed"
            if (role in route.roles) == denied or response.status_code in (401, 500):
                wrong.append(f"{route.method} {route.path} as {role.value}: {response.status_code} {body}")
            if denied:
                assert body["detail"].startswith(("A ", "The ", "An ")) and "may not use this route" in body["detail"]
    assert not wrong, "\n".join(wrong)


def test_the_assembled_app_holds_every_service_route_flat(offline: tuple[TestClient, Settings, Any]) -> None:
    """Routes sit in the app's own list with their prefix (``Service.api_router``): a router
    included under a prefix is matched again at each level on every request, which cost a
    tenth of the server's time under load (bench/README.md)."""
    from fastapi.routing import APIRoute

    from shared.runtime import SERVICE_NAMES

    _, _, app = offline
    own = [r for r in app.router.routes if isinstance(r, APIRoute) and r.path.split("/")[1] in SERVICE_NAMES]
    served = [e for e in endpoints(app) if e.path.split("/")[1] in SERVICE_NAMES]
    assert len(own) == len(served) >= 80
    assert all(isinstance(r, APIRoute) or r.path.split("/")[1] not in SERVICE_NAMES
               for r in app.router.routes if hasattr(r, "path")), [type(r).__name__ for r in app.router.routes]
    assert {r.tags[0] for r in own} == set(SERVICE_NAMES)
    assert all(r.tags[0] == r.path.split("/")[1] for r in own)


def test_without_a_valid_token_every_protected_route_answers_401(
        offline: tuple[TestClient, Settings, Any], tmp_path: Path) -> None:
    client, config, app = offline
    for route in endpoints(app):
        response = client.request(route.method, path_of(route.path))
        if is_open(route.path):
            assert response.status_code != 401, route
        else:
            assert response.status_code == 401, (route, response.text)
            assert response.json()["rule"] == "unauthenticated"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")

    now = int(time.time())
    good = {"sub": "x", "role": "government_office", "name": "王芳", "iss": config.auth_issuer,
            "aud": config.auth_audience, "iat": now, "exp": now + 600}
    key = Ed25519PrivateKey.generate()
    own = mint(config, Role.government_office, "王芳")
    bad = {
        "expired": (jwt.encode({**good, "exp": now - 3600}, key, "EdDSA"), None),
        "another key": (jwt.encode(good, key, "EdDSA"), "signature"),
        "unsigned": (jwt.encode(good, None, "none"), "signature"),
        "hmac with the public key as secret": (jwt.encode(good, "x" * 32, "HS256"), "signature"),
        "garbage": ("not.a.token", "signature"),
        "tampered": (own[:-4] + ("AAAA" if not own.endswith("AAAA") else "BBBB"), "signature"),
        "oversized": ("a" * 9000, "longer"),
    }
    own_key_settings = config.model_copy(update={"auth_audience": "elsewhere"})
    bad["other audience"] = (mint(own_key_settings, Role.government_office, "王芳"), "audience")
    bad["unknown role"] = (jwt.encode({**good, "role": "mayor"}, key, "EdDSA"), None)
    for what, (value, words) in bad.items():
        response = client.get("/catalog/views/plan-desk", headers={"Authorization": f"Bearer {value}"})
        assert response.status_code == 401, (what, response.text)
        if words:
            assert words in response.json()["detail"], (what, response.json())
        assert value not in response.text
    assert client.get("/catalog/views/plan-desk", headers={"Authorization": "Basic eDp5"}).status_code == 401
    assert client.get("/catalog/views/plan-desk", headers={"Authorization": f"Bearer {own}"}).status_code == 200


def test_a_token_from_a_configured_public_key_is_verified_and_the_embedded_key_is_not(
        tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    provider = Ed25519PrivateKey.generate()
    pem = provider.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    (tmp_path / "idp.pem").write_text(pem)
    config = Settings(data_dir=tmp_path, store="sqlite", kafka_bootstrap_servers="127.0.0.1:9",
                      auth_public_key=str(tmp_path / "idp.pem"), auth_issuer="https://idp.gov.example",
                      auth_audience="consultation")
    app = create_app(config, ["catalog"])
    client = TestClient(app)
    now = int(time.time())
    claims = {"sub": "u1", "role": "cppcc_office", "name": "李秘书", "iss": "https://idp.gov.example",
              "aud": "consultation", "exp": now + 600}
    ok = client.get("/catalog/views/plan-desk",
                    headers={"Authorization": f"Bearer {jwt.encode(claims, provider, 'EdDSA')}"})
    assert ok.status_code == 200, ok.text
    wrong_issuer = jwt.encode({**claims, "iss": "consult-embedded"}, provider, "EdDSA")
    assert client.get("/catalog/views/plan-desk",
                      headers={"Authorization": f"Bearer {wrong_issuer}"}).status_code == 401
    with pytest.raises(ValueError, match="identity provider"):
        mint(config, Role.cppcc_office, "李秘书")
    # Public keys only: a deployment cannot be configured to accept unsigned or HMAC tokens.
    for algorithms in ("none", "HS256,EdDSA", ""):
        with pytest.raises(ValueError, match="public keys only"):
            Settings(data_dir=tmp_path, auth_algorithms=algorithms)
    for service in app.state.services.values():
        service.close()


def test_the_embedded_signing_key_is_owner_only(offline: tuple[TestClient, Settings, Any]) -> None:
    _, config, _ = offline
    assert (config.data_dir / "auth-signing.key").stat().st_mode & 0o777 == 0o600


# -- on a running system ----------------------------------------------------------------------

@pytest.fixture
def system(settings: Settings) -> Iterator[RunningSystem]:
    """The four services on the real broker, once on SQLite and once on PostgreSQL."""
    with RunningSystem(settings, ("catalog", "sessions", "proposals", "feedback")) as running:
        yield running


def as_(system: RunningSystem, role: Role, name: str = "经办人", department: str | None = None,
        **identity: str) -> dict[str, str]:
    return token(system.settings, role, name, department, **identity)


def planned(system: RunningSystem) -> str:
    topic_id = topic(system)
    plan_id = plan(system)
    system.post(f"/catalog/plans/{plan_id}/items", item(topic_id, DEPARTMENT), expect=200)
    approve(system, plan_id)
    return topic_id


def submitted(system: RunningSystem, topic_id: str, headers: dict[str, str], author: dict[str, Any],
              **extra: Any) -> dict[str, Any]:
    body = {"topic_id": topic_id, "channel": "online", "author": author, "content": "建议增设助餐点", **extra}

    def attempt() -> dict[str, Any] | None:
        response = system.http.post("/feedback/opinions", json=body, headers=headers)
        if response.status_code == 409 and response.json()["rule"] in steps.NOT_LEARNED_YET:
            return None
        assert response.status_code == 201, response.text
        return response.json()

    return wait_for(attempt, 30, "the opinion")


def status(system: RunningSystem, method: str, path: str, headers: dict[str, str],
           body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    response = system.http.request(method, path, headers=headers, json=body)
    return response.status_code, response.json()


def test_departments_citizens_and_confidential_opinions_each_see_only_their_own(system: RunningSystem) -> None:
    topic_id = planned(system)
    mine = as_(system, Role.department, "刘科长", DEPARTMENT)
    theirs = as_(system, Role.department, "赵科长", OTHER_DEPARTMENT)
    alice = as_(system, Role.citizen, "吴阿姨", phone="13912345678")
    bob = as_(system, Role.citizen, "钱先生", phone="13800000000")
    office = as_(system, Role.government_office, "王芳")

    # A citizen submits in their own name only; the event's actor is their reference.
    code, problem = status(system, "POST", "/feedback/opinions", alice, {
        "topic_id": topic_id, "channel": "online", "author": {"name": "钱先生", "phone": "13800000000"},
        "content": "冒名"})
    assert (code, problem["rule"], problem["errors"][0]["field"]) == (403, "acting_for_another", "author")
    # A citizen who proposes a topic does so as a person: never as a "body" under their own
    # name, which would be published as it stands.
    proposal = {"title": "社区食堂", "description": "建议开设社区食堂", "source": "public_solicitation",
                "proposer": "吴阿姨", "content_type": "livelihood"}
    stored = system.services["catalog"].app.max_position()
    code, problem = status(system, "POST", "/catalog/topics", alice, proposal)
    assert (code, problem["rule"], problem["errors"][0]["field"]) == (403, "citizen_is_a_person", "proposer_kind")
    assert system.services["catalog"].app.max_position() == stored  # refused: nothing stored
    code, created = status(system, "POST", "/catalog/topics", alice, {**proposal, "proposer_kind": "person"})
    assert code == 201
    system.wait_trace(created["id"], 1)
    on_kafka = [r for r in read_topic(system.settings.kafka_bootstrap_servers,
                                      system.settings.topic(SERVICE_TOPICS["catalog"]))
                if r.key == created["id"].encode()]
    assert on_kafka and all("吴阿姨".encode() not in r.value for r in on_kafka)
    public = submitted(system, topic_id, alice, {"name": "吴阿姨", "phone": "13912345678"})
    secret = submitted(system, topic_id, alice, {"name": "吴阿姨", "phone": "13912345678"},
                       confidential=True, content="我家隔壁的违建挡住了消防通道")
    ref = public["author_ref"]
    for opinion in (public, secret):
        assert status(system, "GET", f"/feedback/opinions/{opinion['id']}", alice)[0] == 200

    # Another citizen sees neither the opinions nor the author's list, and cannot rate.
    code, problem = status(system, "GET", f"/feedback/opinions/{public['id']}", bob)
    assert (code, problem["rule"]) == (403, "not_yours")
    assert status(system, "GET", f"/feedback/authors/{ref}/opinions", bob)[1]["rule"] == "not_yours"
    # The list is a view, brought up to date from the log just after each save.
    def both_listed() -> list[dict[str, Any]] | None:
        found = status(system, "GET", f"/feedback/authors/{ref}/opinions", alice)[1]
        return found if {o["id"] for o in found} == {public["id"], secret["id"]} else None

    own_list = wait_for(both_listed, 10, "the author's list")
    assert "消防通道" in str(own_list)

    # The confidential opinion: its author and the answering department, nobody else.
    code, problem = status(system, "GET", f"/feedback/opinions/{secret['id']}", office)
    assert (code, problem["rule"]) == (403, "confidential")
    code, record = status(system, "GET", f"/feedback/opinions/{secret['id']}", mine)
    assert code == 200 and record["content"] == "我家隔壁的违建挡住了消防通道"
    assert record["author"]["phone"] == "13912345678"
    assert status(system, "GET", f"/feedback/opinions/{secret['id']}", theirs)[1]["rule"] == "not_yours"
    queue = lambda who: status(system, "GET", f"/feedback/views/departments/{DEPARTMENT}", who)  # noqa: E731
    wait_for(lambda: len(queue(mine)[1]["to_answer"]) == 2, 30, "the department's queue")
    assert "消防通道" in str(queue(mine)[1])
    office_view = queue(office)[1]
    assert "消防通道" not in str(office_view) and len(office_view["to_answer"]) == 2
    assert queue(theirs)[0] == 403
    auditor = as_(system, Role.auditor, "审计员")
    code, record = status(system, "GET", f"/feedback/opinions/{public['id']}", auditor)
    assert code == 200 and "phone" not in record["author"] and "name" not in record["author"]

    # Another department can neither answer nor see; the assigned one answers as itself only.
    before = system.services["feedback"].app.max_position()
    answer = {"disposition": "adopted", "answered_by": OTHER_DEPARTMENT}
    assert status(system, "POST", f"/feedback/opinions/{public['id']}/answer", theirs, answer)[1]["rule"] == \
        "not_yours"
    code, problem = status(system, "POST", f"/feedback/opinions/{public['id']}/answer", mine, answer)
    assert (code, problem["rule"], problem["errors"][0]["field"]) == (403, "acting_for_another", "answered_by")
    assert system.services["feedback"].app.max_position() == before
    assert status(system, "POST", f"/feedback/opinions/{public['id']}/answer", mine,
                  {"disposition": "adopted", "answered_by": DEPARTMENT})[0] == 200
    assert status(system, "POST", f"/feedback/opinions/{public['id']}/feedback", mine,
                  {"channel": "sms", "message": "已采纳", "delivered_by": DEPARTMENT})[0] == 200
    assert status(system, "POST", f"/feedback/opinions/{public['id']}/satisfaction", bob,
                  {"rating": "unsatisfied"})[1]["rule"] == "not_yours"
    assert status(system, "POST", f"/feedback/opinions/{public['id']}/satisfaction", alice,
                  {"rating": "satisfied"})[0] == 200

    # The trace names who acted: the department's official, the citizen by reference only.
    steps_ = system.wait_trace(topic_id, 1)
    trace = wait_for(lambda: (t := system.trace(topic_id)) and any(
        s["type"] == "SatisfactionRated" for s in t) and t, 30, "the rating in the trace")
    actors = {s["type"]: s["actor"] for s in trace}
    assert actors["OpinionAnswered"] == f"{DEPARTMENT}/刘科长"
    assert actors["SatisfactionRated"] == actors["OpinionSubmitted"] == f"citizen:{ref}"
    assert actors["PlanApproved"] == "government_office/经办人"
    assert "吴阿姨" not in str(trace) and "13912345678" not in str(trace) and steps_


def test_members_see_their_own_proposals_and_duty_record(system: RunningSystem) -> None:
    chen = as_(system, Role.member, "陈委员")
    zhou = as_(system, Role.member, "周委员")
    office = as_(system, Role.cppcc_office, "李秘书")
    body = {"title": "关于发展农村互助养老的提案", "kind": "cppcc_proposal", "content": "建议……",
            "proposers": [{"name": "陈委员", "sector": "社会福利和社会保障界"}]}
    code, problem = status(system, "POST", "/proposals", zhou, body)
    assert (code, problem["rule"], problem["errors"][0]["field"]) == (403, "acting_for_another", "proposers")
    code, created = status(system, "POST", "/proposals", chen, body)
    assert code == 201
    proposal = created["id"]
    assert status(system, "GET", f"/proposals/{proposal}", chen)[0] == 200
    assert status(system, "GET", f"/proposals/{proposal}", zhou)[1]["rule"] == "not_yours"
    assert status(system, "GET", "/proposals/views/proposers/陈委员", zhou)[1]["rule"] == "not_yours"
    assert status(system, "GET", "/proposals/views/proposers/陈委员", chen)[0] == 200
    # The NPC office keeps suggestions, not the CPPCC's proposals.
    npc = as_(system, Role.npc_office, "人大联工委")
    review = {"decision": "filed", "reviewed_by": "县政协提案委员会"}
    assert status(system, "POST", f"/proposals/{proposal}/review", npc, review)[1]["rule"] == "not_yours"
    assert status(system, "POST", f"/proposals/{proposal}/review", office, review)[0] == 200
    assert status(system, "POST", f"/proposals/{proposal}/assignment", office, {"lead_unit": DEPARTMENT})[0] == 200
    # Only the assigned unit handles it; a department sees only what is assigned to it.
    other = as_(system, Role.department, "赵科长", OTHER_DEPARTMENT)
    assert status(system, "GET", f"/proposals/{proposal}", other)[1]["rule"] == "not_yours"
    assert status(system, "GET", f"/proposals/{proposal}", as_(system, Role.department, "刘科长", DEPARTMENT))[0] \
        == 200
    # The duty record: the member's own.
    code, member = status(system, "POST", "/proposals/members", office,
                          {"name": "陈委员", "sector": "社会福利和社会保障界", "term": "第十届", "term_from": 2022,
                           "term_to": 2027})
    assert code == 201, member
    assert status(system, "GET", "/proposals/members/陈委员", chen)[0] == 200
    assert status(system, "GET", "/proposals/members/陈委员", zhou)[1]["rule"] == "not_yours"


def test_rate_limits_count_per_principal(kafka: KafkaEndpoint, tmp_path: Path) -> None:
    settings = make_settings("sqlite", tmp_path, kafka, None, rate_limit_reads="3/minute")
    with RunningSystem(settings, ["catalog"]) as system:
        first, second = as_(system, Role.government_office, "王芳"), as_(system, Role.cppcc_office, "李秘书")
        codes = [system.http.get("/catalog/views/plan-desk", headers=first).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        # The same address, another principal: its own budget.
        assert system.http.get("/catalog/views/plan-desk", headers=second).status_code == 200
