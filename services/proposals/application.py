"""Proposals commands."""

from shared.application import ServiceApplication


class ProposalsApplication(ServiceApplication):
    service = "proposals"
