"""Runtime configuration, read from the environment.

Configuration, not code, decides where state lives and which broker carries events:
the embedded default is SQLite files under one data directory and a local broker;
set ``CONSULT_STORE=postgres`` and ``KAFKA_BOOTSTRAP_SERVERS`` to run the same
services against PostgreSQL and a Kafka cluster.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The Kafka topics of the public contract.
SERVICE_TOPICS = {
    "catalog": "consultation.catalog.v1",
    "sessions": "consultation.sessions.v1",
    "proposals": "consultation.proposals.v1",
    "feedback": "consultation.feedback.v1",
}
OUTCOMES_TOPIC = "consultation.outcomes.v1"
AUDIT_TOPIC = "consultation.audit.v1"
INBOUND_TOPIC = "consultation.inbound.v1"
INBOUND_REPLIES_TOPIC = "consultation.inbound.replies.v1"
DEADLETTER_TOPIC = "consultation.deadletter.v1"
#: Topics that carry the system's history: the services' events (the trace and the other
#: Kafka-fed views are built from them, and ``audit replay --from-kafka`` reads them whole),
#: the outcomes other departments subscribe to, and the ledger's digests. Kept for good by
#: default (``KAFKA_EVENT_RETENTION_MS``). They hold no person: envelopes are redacted. The
#: others (inbound commands, which carry the bus's personal data, their replies, dead
#: letters) keep the cluster's default retention.
HISTORY_TOPICS = (*SERVICE_TOPICS.values(), OUTCOMES_TOPIC, AUDIT_TOPIC)
ALL_TOPICS = (
    *SERVICE_TOPICS.values(),
    OUTCOMES_TOPIC,
    AUDIT_TOPIC,
    INBOUND_TOPIC,
    INBOUND_REPLIES_TOPIC,
    DEADLETTER_TOPIC,
)


class Settings(BaseSettings):
    """Every setting has a working embedded default; see README for the variables."""

    model_config = SettingsConfigDict(env_prefix="CONSULT_", extra="ignore")

    data_dir: Path = Path("./var")
    store: Literal["sqlite", "postgres"] = "sqlite"
    #: Prefix for PostgreSQL schemas, so several systems can share one database.
    schema_prefix: str = ""

    postgres_host: str = Field("127.0.0.1", validation_alias="POSTGRES_HOST")
    postgres_port: int = Field(5432, validation_alias="POSTGRES_PORT")
    postgres_user: str = Field("postgres", validation_alias="POSTGRES_USER")
    postgres_password: str = Field("", validation_alias="POSTGRES_PASSWORD")
    postgres_dbname: str = Field("postgres", validation_alias="POSTGRES_DBNAME")
    #: Connections each store keeps open (twice as many more under load). A service has
    #: an event store and a view store of this size, and two small ones (relay, vault).
    postgres_pool_size: int = Field(4, ge=1, le=100)
    #: TLS to PostgreSQL, as libpq names it (``disable`` … ``verify-full``); every store's
    #: connections use it (``shared.stores.use_postgres_tls``).
    postgres_sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        "prefer", validation_alias="POSTGRES_SSLMODE")
    postgres_sslrootcert: Path | None = Field(None, validation_alias="POSTGRES_SSLROOTCERT")
    postgres_sslcert: Path | None = Field(None, validation_alias="POSTGRES_SSLCERT")
    postgres_sslkey: Path | None = Field(None, validation_alias="POSTGRES_SSLKEY")

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias="KAFKA_BOOTSTRAP_SERVERS"
    )
    #: Idempotent producers need broker support; the embedded broker has none.
    kafka_idempotence: bool = Field(True, validation_alias="KAFKA_IDEMPOTENCE")
    kafka_partitions: int = Field(3, validation_alias="KAFKA_TOPIC_PARTITIONS")
    kafka_replication: int = Field(1, validation_alias="KAFKA_TOPIC_REPLICATION")
    #: ``retention.ms`` the history topics are created with; -1: kept for good. A topic that
    #: exists with a shorter retention is named in health (``HISTORY_TOPICS``).
    kafka_event_retention_ms: int = Field(-1, ge=-1, validation_alias="KAFKA_EVENT_RETENTION_MS")
    #: How the services reach a secured cluster: ``SASL_SSL`` with SCRAM is the usual
    #: production choice (``shared.kafka.kafka_options``; every producer and consumer uses it).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias="KAFKA_SECURITY_PROTOCOL")
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = Field(
        "SCRAM-SHA-512", validation_alias="KAFKA_SASL_MECHANISM")
    kafka_sasl_username: str | None = Field(None, validation_alias="KAFKA_SASL_USERNAME")
    kafka_sasl_password: SecretStr | None = Field(None, validation_alias="KAFKA_SASL_PASSWORD")
    #: CA bundle that signed the brokers' certificates (system CAs when unset); a client
    #: certificate and key for clusters that authenticate clients by TLS.
    kafka_ssl_cafile: Path | None = Field(None, validation_alias="KAFKA_SSL_CAFILE")
    kafka_ssl_certfile: Path | None = Field(None, validation_alias="KAFKA_SSL_CERTFILE")
    kafka_ssl_keyfile: Path | None = Field(None, validation_alias="KAFKA_SSL_KEYFILE")
    #: How long a silent consumer keeps its partitions. A restarted consumer waits
    #: about this long to rejoin when the broker never saw the old one leave, so the
    #: embedded setup uses a short one; Kafka clusters accept 6000 ms and up by default.
    kafka_session_timeout_ms: int = Field(10_000, validation_alias="KAFKA_SESSION_TIMEOUT_MS")

    #: Consumer-group prefix; two systems on one cluster keep separate groups.
    group_prefix: str = "consult"
    #: Prefix for every Kafka topic name ("" = the contract's names). Lets two
    #: independent systems (a staging copy, a test run) share one cluster.
    topic_prefix: str = ""
    #: Turns the outbox relay off (operators draining a node; crash tests).
    relay_enabled: bool = True
    #: Seconds between polls of a store's notification log when nothing woke us.
    poll_interval: float = 0.25
    #: Seconds between the deadline scheduler's checks (it acts on dates, so a minute is plenty).
    deadline_check_interval: float = 60.0
    #: Local policy, not a seed rule (the seeds say only "in time", 及时): working days a
    #: department has to answer an opinion, and then to deliver the feedback.
    answer_working_days: int = Field(15, ge=1, le=250)
    feedback_working_days: int = Field(5, ge=1, le=250)
    #: National practice, not a seed rule: a proposal or suggestion is answered within about
    #: three months of assignment (交办之日起三个月内答复, ~60 working days), and handled
    #: again within about a month after an unsatisfied rating.
    proposal_reply_working_days: int = Field(60, ge=1, le=250)
    proposal_rehandling_working_days: int = Field(20, ge=1, le=250)
    #: Local policy (the seeds give no figure, 004 干群面对面 3): the post-evaluation starts
    #: when at least ``min_forms`` forms are in and this share of them say the aim was
    #: not achieved, or when this many forms object (satisfaction 2 or less).
    post_evaluation_min_forms: int = Field(10, ge=1)
    post_evaluation_missed_share: float = Field(0.5, gt=0, le=1)
    post_evaluation_objections: int = Field(20, ge=1)
    #: Extra official calendars (JSON files), e.g. a year the library does not know yet.
    calendar_dir: Path | None = None
    #: Secret for pseudonymous references to people in events (HMAC key, 16+ bytes).
    #: Unset: one is generated in the data directory. Every node must share it.
    pseudonym_key: SecretStr | None = None
    #: Secret that wraps each person's own key in the personal-data vault (16+ bytes).
    #: Unset: one is generated in the data directory. Every node must share it.
    vault_key: SecretStr | None = None
    #: Each caller's budget of commands (POST) and of reads, in the ``limits`` notation
    #: ("50/second", "3000 per minute"); beyond it, 429 with Retry-After (``shared.ratelimit``).
    rate_limit_writes: str = "50/second"
    rate_limit_reads: str = "200/second"
    #: Requests one process works on at once; one more waits ``shed_after`` seconds for a
    #: place, then gets 503 with Retry-After (``shared.ratelimit.Shed``): load is shed, not queued.
    max_in_flight: int = Field(64, ge=1, le=10_000)
    shed_after: float = Field(0.5, ge=0, le=30)
    #: Largest request body accepted, in bytes (HTTP 413 beyond).
    max_body_bytes: int = 1_048_576
    #: Seconds a request's whole body may take to arrive; slower, 408 (a client that trickles
    #: its body would otherwise hold one of the ``max_in_flight`` places for as long as it likes).
    body_timeout: float = Field(30.0, gt=0, le=3600)
    #: Seconds a request's line and headers may take to arrive, counted from the connection's
    #: opening or the request's first byte; slower, 408 and the connection closed (one that
    #: sent nothing is closed). Without it, connections left silent or sent headers a byte at
    #: a time stayed open for good, until no file descriptor was left for anyone else.
    head_timeout: float = Field(10.0, gt=0, le=3600)
    #: Largest stored event, in bytes: a command that would record more is refused (422),
    #: so every accepted event fits in a Kafka message (``kafka_max_message_bytes``).
    max_event_bytes: int = 524_288
    #: The last day version 1 of an outcome type that has a newer version is published
    #: beside it (docs/schema-evolution.md: at least six months after the newer one).
    outcomes_v1_until: date = date(2027, 6, 30)
    #: Largest message the relays send (aiokafka ``max_request_size``; Kafka's default
    #: broker limit is about 1 MiB). A stored event whose envelope exceeds it is parked.
    kafka_max_message_bytes: int = Field(1_048_576, validation_alias="KAFKA_MAX_MESSAGE_BYTES")
    #: Seconds between a relay's checks that the broker still holds what it published
    #: (a broker that restarted empty) and that every topic exists.
    broker_check_interval: float = 5.0
    #: A Kafka consumer whose group has committed nothing new for this many seconds while
    #: its topics hold more is restarted (``shared.watchdog``); checked every
    #: ``broker_check_interval`` seconds.
    consumer_stall_after: float = Field(30.0, gt=0)
    #: Seconds between seals of each service's audit ledger (a signed digest of the chain head).
    audit_seal_interval: float = 300.0
    #: The Ed25519 key (PEM) that signs audit digests. Unset: one is generated in the data
    #: directory. Every node of one deployment must use the same key.
    audit_signing_key_file: Path | None = None
    #: Events a relay may fall behind its store before health says degraded.
    relay_lag_alert: int = 1_000
    #: Bearer tokens (``shared.access``). Production verifies the identity provider's JWTs:
    #: keys from a JWKS URL or one public key (PEM text, or a file's path), with this
    #: issuer and audience. Unset: the embedded default signs and verifies with its own
    #: key in the data directory (``consult token`` mints one for local use).
    auth_jwks_url: str | None = None
    auth_public_key: str | None = None
    auth_issuer: str = "consult-embedded"
    auth_audience: str = "consultation"
    auth_algorithms: str = "EdDSA,ES256,RS256"
    #: Seconds of clock difference with the identity provider tolerated on ``exp``/``nbf``.
    auth_leeway: int = Field(30, ge=0, le=300)
    #: Log rendering: JSON lines, pretty console, or pretty only on a terminal.
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("rate_limit_writes", "rate_limit_reads")
    @classmethod
    def _rate(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError(f"{value!r} is no rate: write it like '50/second' or '3000 per minute'") from None
        return value

    @field_validator("auth_algorithms")
    @classmethod
    def _asymmetric(cls, value: str) -> str:
        names = [a.strip() for a in value.split(",") if a.strip()]
        refused = [a for a in names if a.lower() == "none" or a.upper().startswith("HS")]
        if refused or not names:
            raise ValueError(f"{value!r}: tokens are verified with public keys only; name asymmetric "
                             "algorithms (EdDSA, ES256, RS256, ...), never 'none' or HS*")
        return value

    @model_validator(mode="after")
    def _sasl_credentials(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL") and not (
                self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError(f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                             "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        return self

    def environment(self) -> dict[str, str]:
        """These settings as the environment variables that give them (unset ones left out):
        for a service started in another process with the same configuration."""
        env = {}
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None:
                continue
            alias = info.validation_alias if isinstance(info.validation_alias, str) else None
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, bool):
                value = str(value).lower()
            elif isinstance(value, date):
                value = value.isoformat()
            env[alias or f"CONSULT_{name.upper()}"] = str(value)
        return env

    @property
    def auth_embedded(self) -> bool:
        """True when this deployment signs its own tokens (no identity provider set)."""
        return not (self.auth_jwks_url or self.auth_public_key)

    @property
    def postgres(self) -> bool:
        return self.store == "postgres"

    def topic(self, name: str) -> str:
        """The Kafka topic this system uses for a contract topic."""
        return f"{self.topic_prefix}{name}"
