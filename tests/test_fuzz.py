"""Every route of the four services, fuzzed from its own OpenAPI document (schemathesis, in-process).

Hypothesis generates valid and invalid requests for each operation. No answer may be a
server error, and every status must be one the document declares. The services run on
real SQLite stores; the broker is not needed for commands (the relays would publish later).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import status_code_conformance
from schemathesis.checks import not_a_server_error

from shared.access import Role, endpoints, mint
from shared.config import Settings
from shared.runtime import create_app


class WithoutLifespan:
    """The application without its start and stop: the test client schemathesis uses runs
    both around every request, and stopping closes the stores. Commands are stored all the
    same; followers and relays simply do not run here."""

    def __init__(self, app: object):
        self.app = app

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()  # type: ignore[operator]
                done = message["type"].replace(".startup", ".startup.complete").replace(
                    ".shutdown", ".shutdown.complete")
                await send({"type": done})  # type: ignore[operator]
                if message["type"] == "lifespan.shutdown":
                    return
        await self.app(scope, receive, send)  # type: ignore[operator]


DATA = Path(tempfile.mkdtemp(prefix="consult-fuzz-"))
# Unreachable broker: commands are stored, nothing is published. No rate limit in the way.
CONFIG = Settings(data_dir=DATA, store="sqlite", kafka_bootstrap_servers="127.0.0.1:9",
                  rate_limit_writes="100000/second", rate_limit_reads="100000/second", log_format="json")
APP = create_app(CONFIG)
#: Each operation is called as a role its route allows (the first one), so the fuzzing
#: reaches the route's own rules; tests/test_access.py covers who is refused.
ROLES = {(e.method, e.path): e.roles for e in endpoints(APP)}
TOKENS = {role: mint(CONFIG, role, "经办人", "县民政局" if role is Role.department else None, 2) for role in Role}

schema = schemathesis.openapi.from_asgi("/openapi.json", WithoutLifespan(APP))


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_route_answers_a_server_error_or_an_undocumented_status(case: schemathesis.Case) -> None:
    if case.operation.path.endswith("/health"):
        # 503 is health's documented answer here: the broker is unreachable on purpose.
        case.call_and_validate(checks=[status_code_conformance])
        return
    roles = ROLES.get((case.operation.method.upper(), case.operation.path))
    headers = {"Authorization": f"Bearer {TOKENS[roles[0]]}"} if roles else {}
    case.call_and_validate(headers=headers, checks=[not_a_server_error, status_code_conformance])
