"""Rebuilding read models from a service's store into fresh storage.

Every view is a projection; replaying the log into an empty view store must give
the same documents as the live one. Operators use this to audit the views.
"""

from __future__ import annotations

import uuid
from typing import Any

from shared.application import ServiceApplication
from shared.projection import ViewProjection
from shared.stores import ViewStore, open_view_store


def rebuild(
    app: ServiceApplication, projections: list[type[ViewProjection]], label: str | None = None
) -> tuple[ViewStore, int]:
    """Replay ``app``'s whole log through ``projections`` into a new view store."""
    store = open_view_store(app.settings, app.service, label or f"rebuild_{uuid.uuid4().hex[:8]}")
    running = [p(store) for p in projections]
    after, replayed = 0, 0
    while batch := app.notifications(after, 1000):
        for event in app.envelopes(batch):
            for projection in running:
                projection.handle(event)
        after = batch[-1].id
        replayed += len(batch)
    return store, replayed


def differences(live: dict[Any, Any], rebuilt: dict[Any, Any]) -> list[str]:
    """Keys whose documents differ, are missing, or are extra."""
    out = [f"missing from rebuild: {k}" for k in live.keys() - rebuilt.keys()]
    out += [f"only in rebuild: {k}" for k in rebuilt.keys() - live.keys()]
    out += [f"differs: {k}" for k in live.keys() & rebuilt.keys() if live[k] != rebuilt[k]]
    return sorted(out)
