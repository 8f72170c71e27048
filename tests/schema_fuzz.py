"""schemathesis, run for a bounded number of examples against a real server on 127.0.0.1 with a service's own
OpenAPI description: schema-valid and schema-violating requests, with each of the given header sets. A 5xx, an
undocumented status, a body that does not match its documented schema or media type, or a schema-violating request
that is accepted all fail.

The default run is derandomized (the same cases every time); ``LIMA_FUZZ_EXAMPLES=N`` runs N random cases per
service instead, for a longer soak.
"""

from __future__ import annotations

import os
from collections import Counter

import requests
from hypothesis import HealthCheck, given, settings, strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               response_schema_conformance, status_code_conformance)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]


def fuzz(schema, base_url: str, who: list[dict], examples: int) -> Counter:
    """Run ``examples`` generated cases (positive and negative) against ``base_url``; the statuses seen, by
    operation."""
    soak = os.environ.get("LIMA_FUZZ_EXAMPLES")
    seen: Counter = Counter()
    session = requests.Session()
    cases = st.one_of(schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE))

    @settings(max_examples=int(soak) if soak else examples, deadline=None, database=None, derandomize=not soak,
              suppress_health_check=list(HealthCheck))
    @given(case=cases, headers=st.sampled_from(who))
    def run(case, headers):
        response = case.call(base_url=base_url, session=session, headers=headers, allow_redirects=False,
                             timeout=30)
        seen[(f"{case.method} {case.path}", response.status_code)] += 1
        case.validate_response(response, checks=CHECKS)

    run()
    return seen


def by_status(seen: Counter) -> Counter:
    statuses: Counter = Counter()
    for (_, status), n in seen.items():
        statuses[status] += n
    return statuses
