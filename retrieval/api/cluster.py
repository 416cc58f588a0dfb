"""Reaching Ray (an optional extra): the one place that imports it, for the distributed build and
for shards held in Ray actors."""

from __future__ import annotations

import contextlib
import os
from typing import Optional

from retrieval.errors import InputError


def ray_module():
    try:
        import ray
    except ImportError as exc:
        raise InputError("the distributed build and Ray-held shards need Ray; pip install 'retrieval[ray]' "
                         "(or leave out --ray to build in this process)") from exc
    return ray


@contextlib.contextmanager
def _usage_stats_off():
    """Ray's usage statistics off for the processes ``ray.init`` starts (they read the variable when
    they start), unless the environment already says otherwise; the variable is put back after, so
    that a library call leaves the process environment as it found it."""
    key = "RAY_USAGE_STATS_ENABLED"
    before = os.environ.get(key)
    if before is None:
        os.environ[key] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)


def connect(address: Optional[str] = None, **init_kwargs):
    """Join the Ray cluster at ``address`` (``"auto"``: the one this machine belongs to), or start a
    local one (``None``), unless this process is already connected. Ray's usage statistics, which
    it would otherwise try to send over the internet, are off unless the environment says so."""
    ray = ray_module()
    if not ray.is_initialized():
        try:
            with _usage_stats_off():
                if address in (None, "", "local"):
                    init_kwargs.setdefault("include_dashboard", False)
                    ray.init(**init_kwargs)
                else:
                    ray.init(address=address, **init_kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = "a local Ray cluster" if address in (None, "", "local") else f"the Ray cluster at {address!r}"
            raise InputError(f"expected to reach {where}, but Ray said: {str(exc).splitlines()[0] if str(exc) else exc!r}; "
                             f"start one with 'ray start --head' (then --ray auto), or give --ray no address for "
                             f"a local cluster") from exc
    return ray
