"""Who may call what: bearer tokens, roles, and the principal every event is recorded under.

- **Authentication.** Every route but health, the public views and the API documents
  needs ``Authorization: Bearer <JWT>`` (``Authenticate``, an ASGI middleware, answers
  401 before anything else runs). Tokens are verified with PyJWT: signature, issuer,
  audience and expiry, with keys from the identity provider's JWKS URL or one public
  key (``CONSULT_AUTH_*``). The embedded default signs its own tokens with an Ed25519
  key kept owner-only in the data directory; ``consult token`` mints one.
- **Roles.** Each route declares the roles that may call it (``allow``, at the route);
  any other role gets 403 with a reason an official understands. The README's
  role-by-route table is generated from these declarations (``consult docs``).
- **Bound principals.** A handling department acts only as its own department, a
  citizen or member only as themselves: a body field that names who acts (``*_by``,
  ``unit``, ``proposer``, an opinion's author, ...) and names someone else is refused
  (403, ``acting_for_another``). Which records a bound principal may see or answer
  (its assigned opinions, its own proposals) each service checks at the record.
- **The actor.** The principal acting in a request is stamped on every event the
  request records (``ServiceApplication.save``); the envelope's ``actor`` and so the
  trace show it: officials by role or department and name, people (citizens, members)
  by their pseudonymous reference only.

Claims a token carries: ``sub``, ``iss``, ``aud``, ``exp``, ``role`` (below), ``name``;
``department`` for a handling department; a citizen's ``phone`` or ``id_number`` when the
identity provider verified one (their opinions are then theirs by that identity).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field, ValidationError, model_validator
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.config import Settings
from shared.fields import IdNumber, Name, Phone
from shared.pseudonyms import Pseudonyms


class Role(StrEnum):
    """Who a caller is, as the token's ``role`` claim says."""

    party_office = "party_office"  # 党委办公室
    government_office = "government_office"  # 政府办公室
    cppcc_office = "cppcc_office"  # 政协办公室
    npc_office = "npc_office"  # 人大常委会办公室
    department = "department"  # 承办部门 (bound to its department)
    member = "member"  # 政协委员 / 人大代表
    citizen = "citizen"  # 群众
    auditor = "auditor"  # 审计 (read-only)
    integration = "integration"  # 集成客户端 (outcomes and public views)


TITLES = {
    Role.party_office: "The Party committee office (党委办公室)",
    Role.government_office: "The government office (政府办公室)",
    Role.cppcc_office: "The CPPCC office (政协办公室)",
    Role.npc_office: "The NPC office (人大常委会办公室)",
    Role.department: "A handling department (承办部门)",
    Role.member: "A CPPCC member or NPC deputy (委员/代表)",
    Role.citizen: "A citizen (群众)",
    Role.auditor: "An auditor (审计, read-only)",
    Role.integration: "An integration client (集成客户端)",
}

OFFICES = (Role.party_office, Role.government_office, Role.cppcc_office, Role.npc_office)
#: Officials who run consultation and handle its results.
STAFF = (*OFFICES, Role.department)
#: Who may read the internal record.
READERS = (*STAFF, Role.auditor)
#: People acting for themselves: their body fields must name themselves.
PERSONS = (Role.citizen, Role.member)

#: Paths anyone may read without a token.
_OPEN_PREFIXES = ("/docs", "/openapi.json")
MAX_TOKEN = 8192


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    role: Role
    name: str
    subject: str
    issuer: str
    department: str | None = None
    #: A person's pseudonymous reference (citizens, members): how events and views know them.
    ref: str | None = None

    @property
    def actor(self) -> str:
        """How events name this caller: officials by their body and name, people by reference."""
        if self.role in PERSONS:
            return f"{self.role.value}:{self.ref}"
        if self.role is Role.department:
            return f"{self.department}/{self.name}"
        return f"{self.role.value}/{self.name}"

    @property
    def key(self) -> str:
        """Who to count for rate limits: one identity at one issuer."""
        return f"{self.issuer}|{self.subject}"

    @property
    def bound(self) -> str | None:
        """The one name this caller may act as, or None for an office (names its bodies)."""
        if self.role is Role.department:
            return self.department
        if self.role in PERSONS:
            return self.name
        return None


#: The principal acting in the current request; ``ServiceApplication.save`` stamps it on events.
acting: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("acting", default=None)


class Claims(BaseModel):
    """What a token must say, checked like any request: the same limits and normalisation."""

    sub: str = Field(min_length=1, max_length=200)
    role: Role
    name: Name
    department: Name | None = None
    phone: Phone | None = None
    id_number: IdNumber | None = None

    @model_validator(mode="after")
    def _department(self) -> Claims:
        if (self.role is Role.department) != (self.department is not None):
            raise ValueError("a handling department's token names its department; no other role's does")
        return self


class Unauthenticated(Exception):
    """No usable token (401); the message says why, without echoing the token."""


# -- keys ----------------------------------------------------------------------------------

def embedded_key_path(settings: Settings) -> Path:
    return settings.data_dir / "auth-signing.key"


def _public_key(text_or_path: str) -> Any:
    text = text_or_path if "-----BEGIN" in text_or_path else Path(text_or_path).read_text()
    return serialization.load_pem_public_key(text.encode())


class Verifier:
    """Checks a bearer token and says who it names."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.algorithms = [a.strip() for a in settings.auth_algorithms.split(",") if a.strip()]
        self.jwks = (jwt.PyJWKClient(settings.auth_jwks_url, cache_keys=True, lifespan=300, timeout=10)
                     if settings.auth_jwks_url else None)
        if self.jwks is None:
            if settings.auth_public_key:
                self.key = _public_key(settings.auth_public_key)
            else:
                from shared.ledger import ed25519_key

                self.key = ed25519_key(embedded_key_path(settings)).public_key()
        self.pseudonyms = Pseudonyms.for_settings(settings)
        # Verified tokens, until they expire: a client sends the same one many times.
        self._seen: dict[str, tuple[Principal, float]] = {}

    async def principal(self, token: str) -> Principal:
        seen = self._seen.get(token)
        if seen is not None and seen[1] > time.time():
            return seen[0]
        if len(token) > MAX_TOKEN:
            raise Unauthenticated(f"the token is longer than {MAX_TOKEN} characters")
        key = await asyncio.to_thread(self._jwks_key, token) if self.jwks else self.key
        principal, expires = self._decode(token, key)
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[token] = (principal, expires)
        return principal

    def _jwks_key(self, token: str) -> Any:
        assert self.jwks is not None
        try:
            return self.jwks.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientError as error:
            raise Unauthenticated(f"the token's signing key is not known ({error})") from None
        except jwt.PyJWTError:
            raise Unauthenticated("the token is not a JWT") from None

    def _decode(self, token: str, key: Any) -> tuple[Principal, float]:
        s = self.settings
        try:
            payload = jwt.decode(token, key, algorithms=self.algorithms, audience=s.auth_audience,
                                 issuer=s.auth_issuer, leeway=s.auth_leeway,
                                 options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired; get a new one") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"the token is not for this system (audience must be {s.auth_audience!r})") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(f"the token was not issued by {s.auth_issuer!r}") from None
        except jwt.MissingRequiredClaimError as error:
            raise Unauthenticated(f"the token has no {error.claim!r} claim") from None
        except jwt.PyJWTError:
            raise Unauthenticated("the token's signature or form is not valid") from None
        try:
            claims = Claims.model_validate({k: payload.get(k) for k in Claims.model_fields if k in payload})
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'claims'}: {e['msg']}" for e in error.errors())
            raise Unauthenticated(f"the token's claims are not usable ({problems})") from None
        ref = (self.pseudonyms.person(claims.model_dump()) if claims.role in PERSONS else None)
        principal = Principal(role=claims.role, name=claims.name, subject=claims.sub, issuer=s.auth_issuer,
                              department=claims.department, ref=ref)
        return principal, float(payload["exp"])

    def person_ref(self, person: dict[str, Any]) -> str:
        return self.pseudonyms.person(person)


def mint(settings: Settings, role: Role | str, name: str, department: str | None = None,
         hours: float = 8, phone: str | None = None, id_number: str | None = None) -> str:
    """A token signed with the embedded key, for local use (``consult token``)."""
    if not settings.auth_embedded:
        raise ValueError("this deployment verifies tokens of its identity provider (CONSULT_AUTH_JWKS_URL "
                         "or CONSULT_AUTH_PUBLIC_KEY); get a token there")
    from shared.ledger import ed25519_key

    claims = Claims(sub=f"{role}:{department or ''}:{name}", role=Role(role), name=name, department=department,
                    phone=phone, id_number=id_number)
    now = int(time.time())
    payload = {**claims.model_dump(exclude_none=True), "iss": settings.auth_issuer,
               "aud": settings.auth_audience, "iat": now, "exp": now + int(hours * 3600),
               "jti": uuid.uuid4().hex}
    return jwt.encode(payload, ed25519_key(embedded_key_path(settings)), algorithm="EdDSA")


# -- the middleware -------------------------------------------------------------------------

def is_open(path: str) -> bool:
    """Health, the public views and the API documents need no token."""
    if path.startswith(_OPEN_PREFIXES):
        return True
    parts = path.strip("/").split("/")
    return len(parts) >= 2 and parts[1] in ("health", "public")


def _refusal(status: int, detail: str, rule: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail, "rule": rule}, headers=headers)


class Authenticate:
    """ASGI middleware: names the caller (``scope["state"]["principal"]``) or refuses with 401.

    Outermost, so nothing (not the body, not the rate limit) is spent on a caller who
    cannot say who they are; the rate limit then counts per principal.
    """

    def __init__(self, app: ASGIApp, verifier: Verifier):
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers", ())).get(b"authorization")
        problem = None
        principal = None
        if header is not None:
            scheme, _, token = header.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                problem = "the Authorization header must be 'Bearer <token>'"
            else:
                try:
                    principal = await self.verifier.principal(token.strip())
                except Unauthenticated as error:
                    problem = str(error)
        if principal is None and not is_open(scope.get("path", "")):
            problem = problem or "this route needs a bearer token (consult token mints one for local use)"
            challenge = 'Bearer realm="consultation"' + (', error="invalid_token"' if header is not None else "")
            await _refusal(401, f"Not signed in: {problem}.", "unauthenticated",
                           {"WWW-Authenticate": challenge})(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


# -- at the route ---------------------------------------------------------------------------

#: Body fields that say who acts (an office names its bodies there freely).
def _acting_fields(body: dict[str, Any]) -> Iterable[tuple[str, Any]]:
    for key, value in body.items():
        if key.endswith("_by") or key in ("by", "unit", "proposer", "issuer", "evaluator"):
            yield key, value


_bearer = HTTPBearer(auto_error=False, description="A JWT from the identity provider, or `consult token`")


class Allow:
    """The roles that may call a route (a FastAPI dependency, so it runs before the body is
    validated: a role that may not call a route learns nothing of its rules)."""

    def __init__(self, roles: Iterable[Role]):
        self.roles = tuple(dict.fromkeys(roles))

    async def __call__(self, request: Request, _: Any = Depends(_bearer)) -> Principal:
        principal = request.scope.get("state", {}).get("principal")
        if principal is None:  # the middleware refuses first; kept for routes mounted elsewhere
            raise Forbidden("Not signed in.", "unauthenticated", status=401)
        if principal.role not in self.roles:
            route = request.scope.get("route")
            what = (getattr(route, "summary", None) or "this").rstrip(".")
            allowed = "; ".join(TITLES[r] for r in self.roles)
            raise Forbidden(f"{TITLES[principal.role]} may not use this route ({what}). It is for: {allowed}.",
                            "role_not_allowed")
        if principal.bound is not None and request.method == "POST":
            await self._names_self(request, principal)
        acting.set(principal)
        return principal

    @staticmethod
    async def _names_self(request: Request, principal: Principal) -> None:
        try:
            body = await request.json()
        except Exception:  # malformed: the body's validation says so next
            return
        if not isinstance(body, dict):
            return
        for key, value in _acting_fields(body):
            if isinstance(value, str) and value.strip() != principal.bound:
                refuse_other(principal, key)
        author = body.get("author")
        if principal.role in PERSONS and isinstance(author, dict) and isinstance(author.get("name"), str):
            verifier: Verifier = request.app.state.verifier
            person = {k: author.get(k) for k in ("name", "phone", "id_number")}
            try:
                ref = verifier.person_ref(person)
            except (AttributeError, TypeError):
                return
            if ref != principal.ref:
                refuse_other(principal, "author")
        proposers = body.get("proposers")
        if principal.role is Role.member and isinstance(proposers, list) and proposers and not any(
                isinstance(p, dict) and p.get("name") == principal.name for p in proposers):
            refuse_other(principal, "proposers")


def refuse_other(principal: Principal, field: str) -> None:
    who = "your department" if principal.role is Role.department else "yourself"
    raise Forbidden(f"{field}: you act here only as {who} ({principal.bound}); this names someone else.",
                    "acting_for_another", field)


def only_own(principal: Principal, *departments: str | None, what: str) -> None:
    """A handling department sees and acts on what is assigned to it (``departments``), no more."""
    if principal.role is Role.department and principal.department not in departments:
        raise Forbidden(f"{what} is not assigned to {principal.department}; a department sees and "
                        "handles only what is assigned to it.", "not_yours")


def only_self(principal: Principal, ref_or_name: str | None, what: str) -> None:
    """A citizen or member sees only their own (``ref_or_name``: their reference or name)."""
    if principal.role in PERSONS and ref_or_name not in (principal.ref, principal.name):
        raise Forbidden(f"{what} belongs to someone else; {TITLES[principal.role].lower()} sees only "
                        "their own.", "not_yours")


class Forbidden(Exception):
    """403 (or 401): the caller may not do this; ``detail`` says why, for an official."""

    def __init__(self, detail: str, rule: str, field: str | None = None, status: int = 403):
        super().__init__(detail)
        self.detail, self.rule, self.field, self.status = detail, rule, field, status


def allow(*groups: Role | Iterable[Role]) -> list[Any]:
    """``dependencies=allow(STAFF, Role.citizen)`` on a route: who may call it."""
    roles: list[Role] = []
    for group in groups:
        roles += [group] if isinstance(group, Role) else list(group)
    return [Depends(Allow(roles))]


def caller(request: Request) -> Principal:
    """The route's principal (``Allow`` checked it)."""
    return request.scope["state"]["principal"]


Caller = Depends(caller)

def roles_of(route: Any) -> tuple[Role, ...] | None:
    """The roles a route allows, or None for an open route."""
    for dependency in getattr(route, "dependencies", ()):
        if isinstance(dependency.dependency, Allow):
            return dependency.dependency.roles
    return None


@dataclass(frozen=True)
class Endpoint:
    """One HTTP route of the assembled application: method, full path, allowed roles."""

    method: str
    path: str
    roles: tuple[Role, ...] | None
    documented: bool


def endpoints(app: Any) -> list[Endpoint]:
    """Every route of ``app``, with its full path (routers included under prefixes)."""
    from fastapi.routing import iter_route_contexts

    found = []
    for context in iter_route_contexts(app.routes):
        methods = context.methods
        if not methods or context.path is None:
            continue
        original = context.original_route
        found.append(Endpoint(sorted(set(methods) - {"HEAD"})[0], context.path, roles_of(original),
                              bool(getattr(original, "include_in_schema", True))))
    return found


def check_routes(app: Any) -> None:
    """Every route but the open ones declares its roles; a new route cannot be left to any role."""
    missing = [f"{e.method} {e.path}" for e in endpoints(app)
               if not is_open(e.path) and e.roles is None and e.documented]
    if missing:
        raise RuntimeError(f"routes without an access rule (shared.access.allow): {', '.join(missing)}")


def table(app: Any) -> str:
    """The role-by-route table (Markdown) the README carries: ✓ may call, blank 403,
    "open" needs no token."""
    order = list(Role)
    lines = ["| route | " + " | ".join(r.value for r in order) + " |", "|" + " --- |" * (len(order) + 1)]
    for e in endpoints(app):
        if not e.documented:
            continue
        cells = ["open" if e.roles is None else ("✓" if r in e.roles else "") for r in order]
        lines.append(f"| `{e.method} {e.path}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def install(app: Any, settings: Settings) -> Verifier:
    """The middleware and the refusal handler on ``app``; every route checked for its rule."""
    verifier = Verifier(settings)
    app.state.verifier = verifier
    check_routes(app)

    @app.exception_handler(Forbidden)
    async def forbidden(_: Request, exc: Forbidden) -> JSONResponse:
        content: dict[str, Any] = {"detail": exc.detail, "rule": exc.rule}
        if exc.field:
            content["errors"] = [{"field": exc.field, "rule": exc.rule, "message": exc.detail}]
        headers = {"WWW-Authenticate": 'Bearer realm="consultation"'} if exc.status == 401 else None
        return JSONResponse(status_code=exc.status, content=content, headers=headers)

    return verifier


def stamp(events: Iterable[Any], principal: Callable[[], Principal | None] = acting.get) -> None:
    """Record the acting principal on new events (a stored field beside the event's own)."""
    who = principal()
    if who is None:
        return
    for event in events:
        object.__setattr__(event, "principal", who.actor)
