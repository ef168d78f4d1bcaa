"""A department's consumer of ``consultation.outcomes.v1``, knowing only the AsyncAPI document.

It reads the outcome topic from the beginning, checks every message against the schema
the document gives for its ``type`` (envelope and ``data``), and folds the outcomes into
each consultation topic's public outcome: its place in a published plan, the sessions
held, the reports submitted, how each opinion was answered and fed back, the published
results and post-evaluations, and the proposals answered. Nothing here imports the
consultation system's code: aiokafka, PyYAML and jsonschema are all it needs.

    python examples/outcomes_consumer.py --bootstrap 127.0.0.1:9092
    python examples/outcomes_consumer.py --bootstrap kafka:9092 --json > outcomes.json

Exits 1 if any message does not match the document (each is listed, with why).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaConsumer
from jsonschema import Draft202012Validator

DEFAULT_DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml"
CHANNEL = "consultation.outcomes.v1"


def validators(document: dict[str, Any], channel: str = CHANNEL) -> dict[str, Draft202012Validator]:
    """One validator per CloudEvent ``type`` the channel's message may carry."""
    components = document["components"]

    def resolve(ref: str) -> dict[str, Any]:
        _, kind, name = ref.removeprefix("#/").split("/", 2)
        return components[kind][name]

    [message_ref] = document["channels"][channel]["messages"].values()
    payload = resolve(message_ref["$ref"])["payload"]
    payload = resolve(payload["$ref"]) if "$ref" in payload else payload
    alternatives = [resolve(o["$ref"]) if "$ref" in o else o for o in payload.get("oneOf", [payload])]
    # $refs inside the schemas point into the document's components: resolve them there.
    root = {"components": components}
    return {
        schema["properties"]["type"]["const"]: Draft202012Validator({**schema, **root})
        for schema in alternatives
    }


class Outcomes:
    """Each topic's public outcome, folded from the events in the order they came."""

    def __init__(self) -> None:
        self.topics: dict[str, dict[str, Any]] = defaultdict(lambda: {
            "plans": [], "sessions": [], "reports": [], "opinions": {}, "results": None,
            "post_evaluations": [], "proposals": []})
        self.digests: list[dict[str, Any]] = []
        #: Proposals answered before they belonged to any topic.
        self.proposals: list[dict[str, Any]] = []

    def apply(self, event: dict[str, Any]) -> None:
        name, version = event["type"].split(".")[2], event["type"].rsplit(".v", 1)[1]
        data, topic = event["data"], event.get("topicid")
        if name == "PlanPublished":
            for item in data.get("items", []):
                self.topics[item["topic_id"]]["plans"].append(
                    {"plan_id": event["subject"], "form": item.get("form"),
                     "lead_department": item.get("lead_department"), "scheduled_month": item.get("scheduled_month")})
            return
        if name == "KeyProposalDigestSubmitted":
            self.digests.append({"title": data.get("title"), "proposals": len(data.get("proposals", []))})
            return
        if name == "ProposalAnswered" and topic is None:
            self.proposals.append({"proposal_id": event["subject"], "category": data.get("category"),
                                   "unit": data.get("unit")})
            return
        if topic is None:
            return
        outcome = self.topics[topic]
        if name == "SessionHeld":
            outcome["sessions"].append({"session_id": event["subject"], "held_on": data.get("held_on"),
                                        "public_summary": data.get("public_summary")})
        elif name == "ReportSubmitted":
            outcome["reports"].append({"session_id": event["subject"], "submitted_to": data.get("submitted_to")})
        elif name == "OpinionAnswered" and version == "2":
            # The newer form says it all; version 1 of the same answer is the same fact.
            opinion = outcome["opinions"].setdefault(data["opinion_id"], {})
            opinion.update(disposition=data["disposition"], adopted=data["adopted"], reason=data["reason"],
                           department=data["department"], answered_on=data["answered_on"])
        elif name == "OpinionAnswered":
            opinion = outcome["opinions"].setdefault(event["subject"], {})
            opinion.setdefault("disposition", data["disposition"])
            opinion.setdefault("department", data["answered_by"])
        elif name == "FeedbackDelivered":
            outcome["opinions"].setdefault(event["subject"], {})["fed_back_on"] = data.get("delivered_on")
        elif name in ("TopicResultsPublished", "TopicResultsRevised"):
            outcome["results"] = {"summary": data.get("summary"), "by": data.get("published_by")}
        elif name in ("PostEvaluationTriggered", "PostEvaluationConcluded"):
            outcome["post_evaluations"].append({"step": name, "decision_id": event["subject"],
                                                "conclusion": data.get("conclusion")})
        elif name == "ProposalAnswered":
            outcome["proposals"].append({"proposal_id": event["subject"], "category": data.get("category"),
                                         "unit": data.get("unit")})


async def consume(bootstrap: str, topic: str, idle_seconds: float) -> list[tuple[Any, Any]]:
    """Every message now on ``topic``, from the beginning (no consumer group: nothing is committed)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=100)
    await consumer.start()
    records = []
    try:
        idle = 0.0
        while idle < idle_seconds:
            batch = await consumer.getmany(timeout_ms=500)
            got = [r for rs in batch.values() for r in rs]
            idle = 0.0 if got else idle + 0.5
            records += [(r.value, dict(r.headers or ())) for r in got]
    finally:
        await consumer.stop()
    return records


def check(records: list[tuple[Any, Any]], checks: dict[str, Draft202012Validator]) -> tuple[
        list[dict[str, Any]], list[str]]:
    """The valid events (each (source, id) once) and what is wrong with the others."""
    events, problems, seen = [], [], set()
    for offset, (value, headers) in enumerate(records):
        if headers.get("content-type") != b"application/cloudevents+json":
            problems.append(f"#{offset}: content-type is {headers.get('content-type')!r}, not CloudEvents JSON")
        try:
            event = json.loads(value)
        except ValueError as error:
            problems.append(f"#{offset}: not JSON ({error})")
            continue
        validator = checks.get(event.get("type")) if isinstance(event, dict) else None
        if validator is None:
            problems.append(f"#{offset}: type {event.get('type') if isinstance(event, dict) else '?'!r} "
                            "is not in the document")
            continue
        errors = sorted(validator.iter_errors(event), key=lambda e: list(e.absolute_path))
        if errors:
            problems += [f"#{offset} {event['type']}: {'.'.join(map(str, e.absolute_path)) or '(root)'}: "
                         f"{e.message[:300]}" for e in errors]
            continue
        if (event["source"], event["id"]) not in seen:  # CloudEvents: the same pair is the same event
            seen.add((event["source"], event["id"]))
            events.append(event)
    return events, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--document", type=Path, default=DEFAULT_DOCUMENT, help="the AsyncAPI document")
    parser.add_argument("--topic", default=CHANNEL, help="the topic's name on this cluster, if prefixed")
    parser.add_argument("--idle", type=float, default=3.0, help="stop after this many seconds without a message")
    parser.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    args = parser.parse_args(argv)

    checks = validators(yaml.safe_load(args.document.read_text(encoding="utf-8")))
    records = asyncio.run(consume(args.bootstrap, args.topic, args.idle))
    events, problems = check(records, checks)
    outcomes = Outcomes()
    for event in events:
        outcomes.apply(event)
    summary = {"messages": len(records), "events": len(events), "invalid": problems,
               "types": sorted({e["type"] for e in events}), "topics": outcomes.topics, "digests": outcomes.digests,
               "proposals": outcomes.proposals}
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        print(f"{len(records)} messages, {len(events)} events, {len(problems)} not matching the document")
        for topic, outcome in outcomes.topics.items():
            answered = outcome["opinions"].values()
            print(f"topic {topic}: {len(outcome['plans'])} plan item(s), {len(outcome['sessions'])} session(s), "
                  f"{len(outcome['reports'])} report(s), {len(answered)} opinion(s) answered "
                  f"({sum(1 for o in answered if o.get('adopted'))} adopted in whole or part), "
                  f"results {'published' if outcome['results'] else 'not yet'}, "
                  f"{len(outcome['proposals'])} proposal answer(s)")
        print(f"{len(outcomes.proposals)} proposal(s) answered outside any topic, "
              f"{len(outcomes.digests)} key proposal digest(s)")
        for problem in problems:
            print(f"  not matching: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
