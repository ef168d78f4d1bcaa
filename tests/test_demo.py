"""``consult demo`` as a newcomer runs it, and a department that knows only the AsyncAPI
document reading what it produced on ``consultation.outcomes.v1``."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from shared.embedded import free_port

ROOT = Path(__file__).resolve().parent.parent
CONTRACT_OUTCOMES = {
    "catalog.PlanPublished", "sessions.SessionHeld", "sessions.ReportSubmitted", "feedback.OpinionAnswered",
    "feedback.FeedbackDelivered", "feedback.TopicResultsPublished", "proposals.ProposalAnswered",
    "feedback.PostEvaluationTriggered", "feedback.PostEvaluationConcluded"}


def _clean_env() -> dict[str, str]:
    """A newcomer's shell: none of this system's settings."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("CONSULT_", "KAFKA_", "POSTGRES_", "CATALOG_", "SESSIONS_", "PROPOSALS_",
                                 "FEEDBACK_"))}


def _consult(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shared.cli", *args], cwd=cwd, env=_clean_env(),
                          capture_output=True, text=True, timeout=300)


def _example_consumer():  # noqa: ANN202 - a module loaded from its path, as a user would run it
    spec = importlib.util.spec_from_file_location("outcomes_consumer", ROOT / "examples" / "outcomes_consumer.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_demo_starts_the_system_runs_twice_and_its_outcomes_match_the_published_document(tmp_path: Path) -> None:
    port, broker_port = free_port(), free_port()
    url, broker = f"http://127.0.0.1:{port}", f"127.0.0.1:{broker_port}"
    work = tmp_path / "newcomer"
    work.mkdir()
    pid = None
    try:
        first = _consult("demo", "--url", url, "--broker", broker, "--data-dir", str(work / "var"), cwd=ROOT)
        started = re.search(r"keeps running \(pid (\d+)\)", first.stdout)
        pid = int(started.group(1)) if started else None
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        assert pid is not None
        assert "starting `consult up`" in first.stdout
        assert "议题全程留痕" in first.stdout and "提出意见建议（OpinionSubmitted）  /gov/bus/hotline-12345" in first.stdout
        assert "Where to look next" in first.stdout and f"{url}/docs" in first.stdout

        # The same data directory: the demo signs its requests with the system's embedded key.
        second = _consult("demo", "--url", url, "--broker", broker, "--data-dir", str(work / "var"), cwd=ROOT)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        assert "starting `consult up`" not in second.stdout
        topics = [re.search(r"议题全程留痕 — the trace of topic (\S+):", run.stdout).group(1)  # type: ignore[union-attr]
                  for run in (first, second)]
        assert topics[0] != topics[1], "each run makes a consultation of its own"

        consumer = subprocess.run([sys.executable, str(ROOT / "examples" / "outcomes_consumer.py"),
                                   "--bootstrap", broker, "--json", "--idle", "2"],
                                  env=_clean_env(), capture_output=True, text=True, timeout=120, cwd=work)
        assert consumer.returncode == 0, consumer.stderr[-3000:]
        summary = json.loads(consumer.stdout)
        assert summary["invalid"] == [] and summary["events"] > 0
        seen = {".".join(t.split(".")[1:3]) for t in summary["types"]}
        assert CONTRACT_OUTCOMES <= seen, CONTRACT_OUTCOMES - seen
        assert "consultation.feedback.OpinionAnswered.v2" in summary["types"]
        for topic in topics:
            outcome = summary["topics"][topic]
            assert len(outcome["plans"]) == 1 and len(outcome["sessions"]) == 1 and len(outcome["reports"]) == 1
            answers = sorted((o["disposition"], o["adopted"], o["department"]) for o in outcome["opinions"].values())
            assert answers == [("adopted", True, "县民政局"), ("not_adopted", False, "县民政局"),
                               ("partially_adopted", True, "县民政局")]
            assert all(o.get("fed_back_on") for o in outcome["opinions"].values())
            assert outcome["results"] and [p["step"] for p in outcome["post_evaluations"]] == [
                "PostEvaluationTriggered", "PostEvaluationConcluded"]
        # Public form: no person on the outcome topic (the demo's citizens and members by name).
        assert not any(name in consumer.stdout for name in ("吴阿姨", "赵先生", "孙大爷", "陈委员"))
        # Nor in the logs of the whole system that ran both consultations.
        logs = (work / "var" / "consult-up.log").read_text(encoding="utf-8")
        assert "inbound command answered" in logs  # the log is the system's, and it is complete
        for secret in ("吴阿姨", "赵先生", "孙大爷", "13912345678", "13800138000", "11010519491231002X", "幸福路8号"):
            assert secret not in logs, f"{secret} is in the system's log"
        # Nor any of the bearer tokens the demo signed its requests with (a JWT starts "eyJ").
        assert "eyJ" not in logs and "consult token --role" in logs
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)


def test_the_example_consumer_refuses_what_the_document_does_not_describe() -> None:
    import yaml

    consumer = _example_consumer()
    checks = consumer.validators(yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text(encoding="utf-8")))
    good = {"specversion": "1.0", "id": "e1", "source": "/consultation/feedback",
            "type": "consultation.feedback.OpinionAnswered.v2", "subject": "o1", "time": "2026-12-04T09:00:00Z",
            "datacontenttype": "application/json", "sequence": 3, "topicid": "t1",
            "data": {"opinion_id": "o1", "topic_id": "t1", "round": 1, "disposition": "adopted", "adopted": True,
                     "reason": None, "department": "县民政局", "answered_on": "2026-12-04"}}
    headers = {"content-type": b"application/cloudevents+json"}
    renamed = {**good, "id": "e2", "data": {**good["data"], "answered_by": "县民政局"}}
    del renamed["data"]["department"]
    wrong = {**good, "id": "e3", "data": {**good["data"], "disposition": "maybe"}}
    unknown = {**good, "id": "e4", "type": "consultation.feedback.OpinionAnswered.v9"}
    records = [(json.dumps(m).encode(), headers) for m in (good, renamed, wrong, unknown)]
    records.append((b"{}", {"content-type": b"application/json"}))
    events, problems = consumer.check(records, checks)
    assert [e["id"] for e in events] == ["e1"]
    assert any("#1" in p and "department" in p for p in problems)
    assert any("#2" in p and "maybe" in p for p in problems)
    assert any("#3" in p and "not in the document" in p for p in problems)
    assert any("#4" in p and "content-type" in p for p in problems)
