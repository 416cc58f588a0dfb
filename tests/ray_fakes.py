"""Worker setup for the Ray tests: register the fake encoders in a Ray worker process (the tests'
monkeypatched registry lives only in the pytest process). Importable as ``tests.ray_fakes`` because
the test cluster puts the repository on the workers' PYTHONPATH."""

import os
import time


def register_fakes(delay=None):
    from retrieval.encoders import registry
    from tests.conftest import FakeImageEncoder, FakeTextEncoder

    delay = float(os.environ.get("RETRIEVAL_TEST_ENCODE_DELAY", "0") if delay is None else delay)

    def factory(cls):
        def make(arg, *, name, device, modality):
            enc = cls(name=name, device=device)
            if delay:  # slow enough that a build can be killed half-way
                inner = enc._encode_batch
                enc._encode_batch = lambda batch: (time.sleep(delay), inner(batch))[1]
            return enc
        return make

    registry.REGISTRY = dict(registry.REGISTRY, **{
        "fake-image": registry.Backend(("image",), False, True, "test colour histogram", factory(FakeImageEncoder)),
        "fake-text": registry.Backend(("text",), False, True, "test bag of words", factory(FakeTextEncoder)),
    })
