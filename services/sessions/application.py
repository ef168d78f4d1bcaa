"""Sessions commands."""

from shared.application import ServiceApplication


class SessionsApplication(ServiceApplication):
    service = "sessions"
