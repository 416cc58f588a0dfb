"""Schema-based fuzzing of the HTTP API (schemathesis strategies from the app's own OpenAPI spec,
driven by Hypothesis), with every check schemathesis has (``st run -c all``): no 5xx, every status
code, content type and header the spec documents, responses that match their schemas, schema-valid
requests accepted and invalid ones rejected. Every error is JSON."""

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import CHECKS, load_all_checks  # noqa: E402

from retrieval import build_collection  # noqa: E402
from retrieval.server import create_app  # noqa: E402

FAKE = dict(image_encoder="fake-image", text_encoder="fake-text", cache_dir="", k=3, p=2.0)


def all_checks():
    load_all_checks()
    return CHECKS.get_all()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_spec_is_true_under_every_check(tiny_data, fake_encoders, tmp_path, mode):
    col = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "squares", **FAKE)
    app = create_app({"squares": str(col)}, limits={"max_body_bytes": 100_000})
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) >= 9  # every endpoint is fuzzed, including uploads
    checks = all_checks()
    assert len(checks) >= 10, [c.__name__ for c in checks]
    seen, failures = {}, []
    for op in operations:
        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  derandomize=True)  # the same examples every run: a CI failure can be replayed
        def check(case):
            if case.path_parameters and "name" in case.path_parameters and mode == GenerationMode.POSITIVE:
                case.path_parameters["name"] = "squares"  # reach the handlers, not only the 404 for unknown names
            try:
                response = case.call_and_validate(checks=checks)
            except Exception as exc:  # noqa: BLE001 - collected, reported together below
                failures.append(f"{case.method} {case.formatted_path} {type(exc).__name__}: {str(exc)[:400]}")
                return
            seen[(case.method, op.path, response.status_code)] = True
            if response.status_code >= 400:
                assert "error" in response.json(), response.text[:300]
        check()
    assert not failures, "\n".join(sorted(set(failures))[:20])
    assert len({k[1] for k in seen}) == len(operations)
    if mode == GenerationMode.POSITIVE:
        assert any(code == 200 for (_, path, code) in seen if path.endswith("/search"))  # generated queries answered
