"""Aggregate ids: in order of creation (UUID version 7), so each store's index by aggregate id
takes a new aggregate's first event on its last page (shared.domain.new_id)."""

from __future__ import annotations

import importlib

from shared.domain import Aggregate

SERVICES = ("catalog", "sessions", "proposals", "feedback")


def _aggregates() -> list[type[Aggregate]]:
    for service in SERVICES:
        importlib.import_module(f"services.{service}.domain")
    found, todo = [], list(Aggregate.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


def test_every_aggregate_of_every_service_is_one_of_ours() -> None:
    names = {cls.__name__ for cls in _aggregates()}
    assert {"Topic", "Plan", "Session", "Proposal", "Opinion", "Decision", "Evaluation"} <= names


def test_ids_made_without_a_source_are_version_7_and_in_order_of_creation() -> None:
    for cls in _aggregates():
        try:
            ids = [cls.create_id() for _ in range(2_000)]
        except TypeError:
            continue  # an id derived from what the aggregate is of (a member's name, a topic's results)
        if ids[0].version == 5:
            continue
        assert {i.version for i in ids} == {7}, cls.__name__
        # As SQLite stores them (hex text) and as PostgreSQL compares them (bytes).
        assert [i.hex for i in ids] == sorted(i.hex for i in ids), cls.__name__
        assert [i.bytes for i in ids] == sorted(i.bytes for i in ids), cls.__name__
        assert len(set(ids)) == len(ids)


def test_an_opinion_of_a_proposal_keeps_its_derived_id() -> None:
    from services.feedback.domain import Opinion

    assert Opinion.create_id(proposal_id="p-1") == Opinion.create_id(proposal_id="p-1")
    assert Opinion.create_id(proposal_id="p-1").version == 5
    assert Opinion.create_id().version == 7
