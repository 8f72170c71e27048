"""schemathesis against the annotation app's own OpenAPI description (``create_app(...).openapi()``; the app does
not serve it), sent to a real server on 127.0.0.1 as the admin, an annotator and nobody."""

from __future__ import annotations

import schemathesis

from lima_align.annotate.app import create_app
from tests.schema_fuzz import by_status, fuzz


def test_fuzzing_the_annotation_app_finds_no_server_error(server):
    schema = schemathesis.openapi.from_dict(create_app(server["db"]).openapi())
    who = [{"Authorization": f"Bearer {server['admin']}"}, {"Authorization": f"Bearer {server['tokens']['alice']}"},
           {}]
    seen = fuzz(schema, server["url"], who, examples=400)
    statuses = by_status(seen)
    print("annotate fuzz:", dict(sorted(statuses.items())))
    assert not [s for s in statuses if s >= 500]
    operations = {op for op, _ in seen}
    assert len(operations) == 14, operations  # every documented route was reached
    assert statuses[200] + statuses[303] > 20 and statuses[401] > 20 and statuses[422] > 5
