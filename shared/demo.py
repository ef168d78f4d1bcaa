"""``consult demo``: one whole consultation, driven through the public interfaces, then its trace.

A livelihood topic put forward by a CPPCC special committee (专门委员会荐题) is screened
(会商), placed in the CPPCC's annual plan, reviewed, approved and published; a thematic
consultation (专题协商会) is researched, announced and held; opinions come from a
member in the session, a village 说事站 and the 12345 hotline over the e-government bus;
the report goes to the Party committee and the government, a leader instructs; every
opinion is answered (one not adopted, with its reason), fed back and rated; the results
are published; a policy goes through the deliberation gate and is evaluated; and a
member's proposal is handled, answered and converted into a topic of its own.

It talks to the running system over HTTP and Kafka only, as any client would. When
nothing answers at ``--url`` it starts ``consult up`` on the embedded defaults and leaves
it running, so that the views it points to afterwards can be looked at.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.access import mint
from shared.clock import Clock
from shared.config import INBOUND_REPLIES_TOPIC, INBOUND_TOPIC, Settings
from shared.kafka import kafka_options

T = TypeVar("T")

#: The trace's steps in the words of the officials who read it.
LABELS = {
    "TopicProposed": "提出议题", "TopicAccepted": "会商通过", "TopicRejected": "会商未通过",
    "PlanDrafted": "起草年度协商计划", "PlanItemAdded": "议题列入计划", "PlanReviewed": "主席会议审议",
    "PlanApproved": "党委批准计划", "PlanPublished": "计划向社会公布", "PlanAmended": "计划调整",
    "SessionScheduled": "安排协商活动", "ParticipantsInvited": "邀请参加人员", "ResearchFiled": "提交调研报告",
    "NoticeServed": "提前通知并送达材料", "SessionHeld": "召开协商会", "ReportCompiled": "形成协商报告",
    "ConsultationOpinionFormed": "形成协商意见", "ReportSubmitted": "报送协商报告",
    "InstructionIssued": "领导批示", "ImplementationReported": "报告落实情况",
    "OpinionSubmitted": "提出意见建议", "OpinionEscalated": "吹哨上报", "OpinionAnswered": "答复意见（采纳情况）",
    "FeedbackDelivered": "反馈提出人", "SatisfactionRated": "满意度评价", "OpinionReopened": "不满意重新办理",
    "TopicResultsPublished": "公开协商结果", "DecisionDrafted": "起草决策",
    "DecisionSubmittedForDeliberation": "提交审议（附采纳情况）", "DecisionIssued": "决策印发",
    "PolicyInterpreted": "政策解读", "EvaluationSubmitted": "群众评议", "EvaluationCounted": "评议计入",
    "PostEvaluationTriggered": "启动后评估", "PostEvaluationConcluded": "后评估结论",
    "ProposalSubmitted": "提交提案", "ProposalFiled": "立案", "ProposalAssigned": "交办",
    "HandlingConsultationHeld": "办理协商", "ProposalAnswered": "答复提案", "ProposalRated": "提案人评价",
    "ProposalConverted": "提案转化为协商议题", "ProposalTopicLinked": "形成协商议题",
    "KeyProposalDigestSubmitted": "重要提案摘报", "ProposalPublished": "提案公开",
    "DeadlineMissed": "逾期", "ProposalTurnedIntoOpinion": "提案转为意见",
}
SERVICE_LABELS = {"catalog": "议题计划", "sessions": "协商活动", "proposals": "提案办理", "feedback": "意见反馈"}
HOTLINE = "/gov/bus/hotline-12345"
#: Refusals that mean the feedback service has not yet learned (over Kafka) what the demo did.
NOT_LEARNED_YET = ("unknown_topic", "topic_not_accepted", "unknown_session")
DEPARTMENT = "县民政局"


class DemoFailed(RuntimeError):
    """A step the demo needs was refused or never came: says which and why."""


def until(check: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """The services learn from each other over Kafka: wait, bounded, for what must arrive."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise DemoFailed(f"waited {timeout:.0f}s for {what}")
        time.sleep(0.25)


class Client:
    """The public HTTP API, with every refusal turned into a readable failure. Each request
    is signed by the one who acts (``by``): a token ``consult token`` would mint."""

    def __init__(self, url: str, settings: Settings, headers: dict[str, str] | None = None):
        self.http = httpx.Client(base_url=url, timeout=30, headers=headers or {})
        self.settings = settings

    def token(self, role: str, name: str, department: str | None = None, **identity: str) -> dict[str, str]:
        """The Authorization header of one principal (``shared.access``)."""
        token = mint(self.settings, role, name, department, 2, identity.get("phone"), identity.get("id_number"))
        return {"Authorization": f"Bearer {token}"}

    def post(self, path: str, body: dict[str, Any], expect: int = 200, retry: tuple[str, ...] = (),
             by: dict[str, str] | None = None) -> Any:
        """POST; a 409 whose rule is in ``retry`` means "not learned yet": try again, bounded."""

        def attempt() -> Any:
            response = self.http.post(path, json=body, headers=by)
            if response.status_code == expect:
                return response.json()
            problem = _json(response)
            if response.status_code == 409 and problem.get("rule") in retry:
                return None
            raise DemoFailed(f"POST {path} answered {response.status_code}: {problem.get('detail', response.text)}")

        return until(attempt, f"POST {path} to be accepted ({', '.join(retry)})") if retry else attempt()

    def get(self, path: str, not_yet: bool = False, by: dict[str, str] | None = None) -> Any:
        """GET; with ``not_yet``, a 404 is "not learned yet" (None), not a failure."""
        response = self.http.get(path, headers=by)
        if not_yet and response.status_code == 404:
            return None
        if response.status_code != 200:
            raise DemoFailed(f"GET {path} answered {response.status_code}: {response.text[:300]}")
        return response.json()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class Bus:
    """The e-government bus: sends a command on the inbound topic and waits for its answer."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def send(self, kind: str, data: dict[str, Any], source: str) -> dict[str, Any]:
        return asyncio.run(self._send(kind, data, source))

    async def _send(self, kind: str, data: dict[str, Any], source: str) -> dict[str, Any]:
        options = kafka_options(self.settings)
        command = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": source,
                   "type": f"consultation.inbound.{kind}.v1", "time": datetime.now().astimezone().isoformat(),
                   "datacontenttype": "application/json", "data": data}
        replies = AIOKafkaConsumer(self.settings.topic(INBOUND_REPLIES_TOPIC), **options,
                                   group_id=None, auto_offset_reset="latest", enable_auto_commit=False,
                                   fetch_max_wait_ms=50)
        producer = AIOKafkaProducer(**options, acks="all")
        await replies.start()
        await producer.start()
        try:
            await replies.getmany(timeout_ms=100)  # joined: "latest" is now fixed
            await producer.send_and_wait(self.settings.topic(INBOUND_TOPIC), json.dumps(command).encode(),
                                         key=source.encode(),
                                         headers=[("content-type", b"application/cloudevents+json")])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                for records in (await replies.getmany(timeout_ms=500)).values():
                    for record in records:
                        answer = json.loads(record.value)
                        if answer.get("inboundid") == command["id"]:
                            return answer["data"]
            raise DemoFailed(f"no reply to the bus's {kind} within 60s")
        finally:
            await producer.stop()
            await replies.stop()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/catalog/health", timeout=2).status_code in (200, 503)
    except httpx.HTTPError:
        return False


def ensure_running(url: str, data_dir: str | None, broker: str | None,
                   out: Callable[[str], None]) -> subprocess.Popen | None:
    """Start ``consult up`` on the embedded defaults when nothing answers at ``url``."""
    if _healthy(url):
        return None
    port = httpx.URL(url).port or 8000
    logs = Path(data_dir or Settings().data_dir)
    logs.mkdir(parents=True, exist_ok=True)
    log = (logs / "consult-up.log").open("ab")
    command = [sys.executable, "-c", "import sys; from shared.cli import main; sys.exit(main())", "up",
               "--port", str(port)] + (["--data-dir", data_dir] if data_dir else [])
    if broker:
        command += ["--broker-port", broker.rsplit(":", 1)[-1]]
    out(f"Nothing answers at {url}: starting `consult up` (log: {logs / 'consult-up.log'})")
    with log:  # the child has its own copy of the file
        process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)

    def ready() -> bool:
        if process.poll() is not None:
            raise DemoFailed(f"`consult up` exited with {process.returncode}; see {logs / 'consult-up.log'}")
        try:
            return all(httpx.get(f"{url}/{s}/health", timeout=2).status_code == 200
                       for s in ("catalog", "sessions", "proposals", "feedback"))
        except httpx.HTTPError:
            return False

    until(ready, "the system to start", 120)
    return process


def run(url: str, settings: Settings, out: Callable[[str], None] = print,
        headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The consultation, step by step; returns the ids it made and the trace."""
    api, bus = Client(url, settings, headers), Bus(settings)
    # Who acts, each signed in as the role the step belongs to (README: roles and routes).
    cppcc = api.token("cppcc_office", "李秘书")
    party = api.token("party_office", "张主任")
    government = api.token("government_office", "王芳")
    department = api.token("department", "刘科长", DEPARTMENT)
    member = api.token("member", "陈委员")
    platform = api.token("government_office", "幸福社区解事员")
    # The system's today (Beijing time), not this machine's: after 16:00 UTC they differ,
    # and a date in the step's request would fall outside the round the system opened.
    today = Clock().today()
    month = today.strftime("%Y-%m")
    ids: dict[str, Any] = {}

    def step(text: str) -> None:
        out(f"  · {text}")

    out("1. 议题 — a CPPCC special committee puts forward a livelihood topic")
    topic = api.post("/catalog/topics", {
        "title": "推进社区居家养老服务全覆盖", "source": "cppcc_special_committee",
        "description": "全县60岁以上老人占比超过21%，社区养老服务站覆盖不足，建议开展专题协商。",
        "proposer": "县政协社会和法制委员会", "content_type": "livelihood"}, 201, by=cppcc)["id"]
    ids["topic"] = topic
    step(f"topic {topic} proposed by 县政协社会和法制委员会")
    api.post(f"/catalog/topics/{topic}/screening", {"decision": "accepted", "screened_by": "县委办公室、县政府办公室、县政协办公室",
                                                    "reason": "群众关注度高，属民生重大事项"}, by=cppcc)
    step("screened (会商) and accepted")

    out("2. 计划 — the CPPCC's annual plan: drafted, reviewed, approved, published")
    plan = api.post("/catalog/plans", {"year": today.year, "kind": "cppcc", "issuer": "县政协办公室"}, 201, by=cppcc)["id"]
    api.post(f"/catalog/plans/{plan}/items", {
        "topic_id": topic, "form": "thematic_consultation", "lead_department": DEPARTMENT,
        "scheduled_month": month, "participant_scope": "政协委员、人大代表、专家、老年群众代表、相关部门"}, by=cppcc)
    api.post(f"/catalog/plans/{plan}/review", {"reviewed_by": "县政协主席会议"}, by=cppcc)
    api.post(f"/catalog/plans/{plan}/approval", {"approved_by": "县委常委会"}, by=party)
    api.post(f"/catalog/plans/{plan}/publication", {}, by=cppcc)
    ids["plan"] = plan
    step(f"plan {plan}: reviewed by 县政协主席会议, approved by 县委常委会, published")

    out("3. 协商活动 — a thematic consultation: research, notice, held")
    session = api.post("/sessions", {
        "topic_id": topic, "form": "thematic_consultation", "title": "社区居家养老服务专题协商会",
        "scheduled_for": today.isoformat(), "lead_department": DEPARTMENT, "host": "县政协办公室"},
        201, retry=("topic_not_planned",), by=cppcc)["id"]
    ids["session"] = session
    api.post(f"/sessions/{session}/invitations", {"participants": [
        {"name": "陈委员", "role": "cppcc_member", "organization": "县政协社会福利和社会保障界"},
        {"name": "刘代表", "role": "npc_deputy", "organization": "县人大代表"},
        {"name": "周教授", "role": "expert", "organization": "市老年学学会"},
        {"name": "吴阿姨", "role": "public_representative", "organization": "幸福社区"},
        {"name": "县民政局", "role": "department", "organization": "县民政局"}]}, by=cppcc)
    api.post(f"/sessions/{session}/research", {"summary": "走访12个社区养老服务站，梳理出场地、人员、资金三方面问题。",
                                               "filed_by": "县政协社会和法制委员会"}, by=cppcc)
    # Served three days ago, recorded now (the supervising office sees records entered late).
    api.post(f"/sessions/{session}/notice", {"served_on": (today - timedelta(days=3)).isoformat(),
                                             "materials": ["协商方案", "调研报告", "县民政局情况通报"]}, by=cppcc)
    api.post(f"/sessions/{session}/held", {
        "held_on": today.isoformat(), "attendees": ["陈委员", "刘代表", "周教授", "吴阿姨"],
        "minutes": "陈委员建议……；刘代表建议……", "public_summary": "会议就社区养老服务站建设、运营补贴、人才队伍提出意见建议。"}, by=cppcc)
    step(f"session {session}: invited, researched, notice served, held")

    out("4. 意见建议 — opinions from three channels")
    in_session = api.post("/feedback/opinions", {
        "topic_id": topic, "session_id": session, "channel": "in_session", "author": {"name": "陈委员"},
        "content": "建议把闲置校舍改建为社区养老服务站。"}, 201, retry=NOT_LEARNED_YET, by=member)["id"]
    step(f"in the session (会上): {in_session}")
    grassroots = api.post("/feedback/opinions", {
        "topic_id": topic, "channel": "grassroots", "platform_level": "village_station", "platform": "城关镇幸福社区说事站",
        "author": {"name": "吴阿姨", "phone": "13912345678", "id_number": "11010519491231002X", "address": "幸福路8号"},
        "content": "希望服务站提供助餐和上门助浴。"}, 201, retry=NOT_LEARNED_YET, by=platform)["id"]
    step(f"at a village 说事站 (grassroots platform): {grassroots}")

    def by_bus() -> str | None:
        answer = bus.send("SubmitOpinion", {"topic_id": topic, "channel": "hotline",
                                            "author": {"name": "赵先生", "phone": "13800138000"},
                                            "content": "建议对独居老人安装紧急呼叫设备。"}, HOTLINE)
        if answer["status"] == "accepted":
            return answer["id"]
        if answer.get("rule") in NOT_LEARNED_YET:
            return None  # not learned (as accepted) yet
        raise DemoFailed(f"the bus's opinion was refused: {answer.get('rule')}: {answer.get('message')}")

    hotline = until(by_bus, "the feedback service to know the topic", 60)
    step(f"from the 12345 hotline, over the e-government bus ({HOTLINE}): {hotline}")
    ids["opinions"] = [in_session, grassroots, hotline]

    out("5. 协商报告 — the consultation opinion, the report, submitted; a leader instructs")
    api.post(f"/sessions/{session}/consultation-opinion", {"summary": "同意分三年实现社区养老服务站全覆盖。",
                                                           "formed_by": DEPARTMENT}, by=department)
    api.post(f"/sessions/{session}/report", {
        "summary": "关于推进社区居家养老服务全覆盖的协商报告", "compiled_by": "县政协办公室",
        "opinion_ids": ids["opinions"]}, retry=("unknown_opinions", "opinions_of_other_topic"), by=cppcc)
    api.post(f"/sessions/{session}/report/submission", {"submitted_to": ["县委", "县政府"]}, by=cppcc)
    api.post(f"/sessions/{session}/instructions", {"leader": "县委书记", "text": "请县民政局牵头研究落实。",
                                                    "departments": [DEPARTMENT]}, 201, by=party)
    step("report compiled with the three opinions, submitted to 县委 and 县政府, instructed by 县委书记")

    out("6. 答复与反馈 — every opinion answered, fed back and rated")
    # Each contributor rates for themselves, signed in as who they are (their phone or ID
    # number, as the identity provider verified it, makes the opinion theirs).
    answers = [(in_session, "adopted", None, "satisfied", member),
               (grassroots, "partially_adopted", "助餐明年覆盖全部社区，上门助浴先在三个社区试点。", "basically_satisfied",
                api.token("citizen", "吴阿姨", id_number="11010519491231002X")),
               (hotline, "not_adopted", "紧急呼叫设备已纳入市级统一采购，县级不再重复安装。", "basically_satisfied",
                api.token("citizen", "赵先生", phone="13800138000"))]
    for opinion, disposition, reason, rating, author in answers:
        body = {"disposition": disposition, "answered_by": DEPARTMENT, **({"reason": reason} if reason else {})}
        api.post(f"/feedback/opinions/{opinion}/answer", body, by=department)
        api.post(f"/feedback/opinions/{opinion}/feedback", {"channel": "phone", "delivered_by": DEPARTMENT,
                                                            "message": "您的意见已办理，情况如下……"}, by=department)
        api.post(f"/feedback/opinions/{opinion}/satisfaction", {"rating": rating}, by=author)
        step(f"{opinion}: {disposition}{' — ' + reason if reason else ''}; fed back; {rating}")
    api.post(f"/feedback/topics/{topic}/results", {"summary": "三条意见：采纳一条、部分采纳一条、不予采纳一条并说明理由。",
                                                   "published_by": "县政协办公室"}, 201, by=cppcc)
    step("results published (结果公开)")

    out("7. 决策 — the policy passes the deliberation gate, is issued and evaluated")
    decision = api.post("/feedback/decisions", {"topic_id": topic, "title": "县社区居家养老服务补贴办法",
                                                "kind": "normative_document", "area": "elderly_care",
                                                "drafted_by": DEPARTMENT}, 201, retry=NOT_LEARNED_YET, by=department)["id"]
    ids["decision"] = decision
    gate = api.post(f"/feedback/decisions/{decision}/deliberation", {"submitted_by": DEPARTMENT}, by=department)
    step(f"decision {decision}: deliberated with the adoption record of "
         f"{len(gate['deliberation']['adoption_record'])} opinion(s)")
    api.post(f"/feedback/decisions/{decision}/issuance", {"issued_on": today.isoformat(), "issued_by": "县人民政府"}, by=government)
    api.post("/feedback/evaluations", {"topic_id": topic, "decision_id": decision, "effect": "achieved",
                                       "satisfaction": 4, "operability": "good", "reasonableness": "good",
                                       "suggestions": "补贴申请可以再简化。", "evaluator": "孙大爷"}, 201, by=api.token("citizen", "孙大爷"))
    api.post(f"/feedback/decisions/{decision}/post-evaluation", {"reason": "实施满一年，按计划开展后评估",
                                                                 "opened_by": "县政府办公室"}, by=government)
    api.post(f"/feedback/decisions/{decision}/post-evaluation/report", {
        "conclusion": "continue", "summary": "补贴办法运行平稳，继续实施。", "formed_by": "县政府常务会议"}, by=government)
    step("issued by 县人民政府, evaluated (评议), post-evaluated: continue")

    out("8. 提案 — a member's proposal handled, answered, then converted into a topic")
    proposal = api.post("/proposals", {
        "title": "关于发展农村互助养老的提案", "kind": "cppcc_proposal",
        "content": "建议依托村级组织发展互助养老点，给予运营补贴。",
        "proposers": [{"name": "陈委员", "sector": "社会福利和社会保障界"}]}, 201, by=member)["id"]
    ids["proposal"] = proposal
    api.post(f"/proposals/{proposal}/review", {"decision": "filed", "reviewed_by": "县政协提案委员会",
                                               "meeting": "提案审查会议", "key": True}, by=cppcc)
    api.post(f"/proposals/{proposal}/assignment", {"lead_unit": DEPARTMENT}, by=cppcc)
    api.post(f"/proposals/{proposal}/handling-consultation", {"mode": "on_site", "held_on": today.isoformat(),
                                                              "proposer_view": "提案人同意分步推进"}, by=department)
    api.post(f"/proposals/{proposal}/reply", {"category": "B", "unit": DEPARTMENT,
                                              "content": "已列入明年民生实事，先建20个互助养老点。"}, by=department)
    api.post(f"/proposals/{proposal}/rating", {"rating": "satisfied"}, by=member)
    api.post("/proposals/digests", {"title": "重要提案摘报", "summary": "农村互助养老提案办理情况",
                                    "proposal_ids": [proposal]}, 201, by=cppcc)
    api.post(f"/proposals/{proposal}/conversion", {"converted_by": "县政协提案委员会", "content_type": "livelihood",
                                                   "title": "发展农村互助养老"}, 202, by=cppcc)
    record = until(lambda: (p := api.get(f"/proposals/{proposal}", by=cppcc))["topic_id"] and p, "the catalog's topic")
    ids["proposal_topic"] = record["topic_id"]
    step(f"proposal {proposal}: filed (key), assigned to {DEPARTMENT}, consulted, answered B, rated, "
         f"digested; now topic {record['topic_id']}")

    expected = {"TopicProposed", "TopicAccepted", "PlanItemAdded", "PlanApproved", "SessionHeld",
                "ReportSubmitted", "OpinionSubmitted", "OpinionAnswered", "FeedbackDelivered",
                "SatisfactionRated", "TopicResultsPublished", "DecisionIssued", "EvaluationSubmitted",
                "PostEvaluationConcluded", "InstructionIssued"}
    def steps_of(topic_id: str, wanted: set[str]) -> list[dict[str, Any]] | None:
        trace = api.get(f"/feedback/traces/{topic_id}", not_yet=True, by=government)
        return trace["steps"] if trace and wanted <= {s["type"] for s in trace["steps"]} else None

    trace = until(lambda: steps_of(topic, expected), "the whole trace", 60)
    ids["trace"] = trace
    out("")
    out(f"议题全程留痕 — the trace of topic {topic}:")
    for line in timeline(trace):
        out(line)
    proposal_trace = until(lambda: steps_of(record["topic_id"], {"ProposalSubmitted", "TopicProposed"}),
                           "the proposal's topic's trace", 60)
    out("")
    out(f"The proposal's topic {record['topic_id']} starts with the proposal:")
    for line in timeline(proposal_trace):
        out(line)
    return ids


def timeline(steps: list[dict[str, Any]]) -> list[str]:
    lines = []
    for s in steps:
        when = datetime.fromisoformat(s["time"]).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        label = LABELS.get(s["type"], s["type"])
        lines.append(f"  {when}  {SERVICE_LABELS.get(s['service'], s['service'])}  {label}（{s['type']}）"
                     f"  {s.get('actor') or ''}")
    return lines


def where_next(url: str, ids: dict[str, Any], settings: Settings) -> list[str]:
    topic = ids["topic"]
    return [
        "",
        "Where to look next:",
        f"  {url}/docs                                   every route, to try out (Authorize with a token:",
        "      consult token --role government_office --name 王芳)",
        f"  {url}/feedback/public/topics/{topic}   the topic's public results",
        f"  {url}/feedback/views/departments/{quote(DEPARTMENT)}   the department's desk",
        f"  {url}/sessions/public/sessions            sessions as the public sees them",
        f"  {url}/catalog/public/plans                published plans",
        f"  {url}/proposals/views/pipeline            the CPPCC office's proposal pipeline",
        f"  {url}/feedback/traces/{topic}   this trace, as JSON",
        f"  Kafka at {settings.kafka_bootstrap_servers}: consultation.<service>.v1, consultation.outcomes.v1, "
        "consultation.inbound.v1 / .replies.v1",
        "  docs/asyncapi.yaml (every topic), docs/openapi/*.json, docs/schema-evolution.md",
        f"  .venv/bin/python examples/outcomes_consumer.py --bootstrap {settings.kafka_bootstrap_servers}"
        "   each topic's public outcome, as another department reads it",
    ]


def main(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {"data_dir": Path(args.data_dir)} if args.data_dir else {}
    if args.broker:
        overrides["kafka_bootstrap_servers"] = args.broker
    settings = Settings(**overrides)
    url = args.url.rstrip("/")
    started = ensure_running(url, args.data_dir, args.broker, print)
    ids: dict[str, Any] | None = None
    try:
        ids = run(url, settings)
    except (DemoFailed, httpx.HTTPError) as error:
        print(f"\nThe demo stopped: {error}", file=sys.stderr)
    finally:
        if started is not None and args.stop:
            started.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                started.wait(30)
    if ids is not None:
        for line in where_next(url, ids, settings):
            print(line)
    if started is not None and not args.stop:
        print(f"\nThe system keeps running (pid {started.pid}); stop it with `kill {started.pid}`.")
    return 0 if ids is not None else 1


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("demo", help="a whole consultation against the running system, then its trace",
                                 description=__doc__.split("\n\n")[1])
    parser.add_argument("--url", default=os.environ.get("CONSULT_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--broker", default=None, help="the Kafka bootstrap servers (default: "
                        "KAFKA_BOOTSTRAP_SERVERS, else the embedded broker at 127.0.0.1:9092)")
    parser.add_argument("--data-dir", default=None, help="for `consult up`, if the demo starts it")
    parser.add_argument("--stop", action="store_true", help="stop the system afterwards if the demo started it")
    parser.set_defaults(func=main)
