"""Schema-based fuzzing of the HTTP API (schemathesis strategies from the app's own OpenAPI spec,
driven by Hypothesis): whatever the generated request, the server answers without a 5xx, and every
error is JSON."""

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from retrieval import build_collection  # noqa: E402
from retrieval.server import create_app  # noqa: E402

FAKE = dict(image_encoder="fake-image", text_encoder="fake-text", cache_dir="", k=3, p=2.0)


def test_no_server_errors_on_generated_requests(tiny_data, fake_encoders, tmp_path):
    col = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "squares", **FAKE)
    app = create_app({"squares": str(col)}, limits={"max_body_bytes": 100_000})
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) >= 9  # every endpoint is fuzzed, including uploads
    seen = {}
    for op in operations:
        @given(case=op.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  derandomize=True)  # the same examples every run: a CI failure can be replayed
        def check(case):
            if case.path_parameters and "name" in case.path_parameters:
                case.path_parameters["name"] = "squares"  # reach the handlers, not only the 404 for unknown names
            response = case.call()
            seen[(case.method, op.path, response.status_code)] = True
            assert response.status_code < 500, (case.method, case.path, response.text[:300])
            if response.status_code >= 400:
                assert "error" in response.json(), response.text[:300]
        check()
    assert len({k[1] for k in seen}) == len(operations)
    assert any(code == 200 for (_, path, code) in seen if path.endswith("/search"))  # generated queries got answers
