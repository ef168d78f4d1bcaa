"""Feedback commands. The store exists from the start so later events join one history."""

from shared.application import ServiceApplication


class FeedbackApplication(ServiceApplication):
    service = "feedback"
