"""Proposals: proposals (提案) and suggestions (建议).

The aggregates arrive with this service's own issue.
"""
