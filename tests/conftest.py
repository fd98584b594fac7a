"""Fixtures shared by the whole suite, and a check that the suite leaves no temporary files behind.

The session runs with TMPDIR (and `tempfile.tempdir`) pointing at a fresh folder of its own, so
every test, helper and child process (gateways, backends, Redis) creates its temporary files
there, whatever else on the machine writes to /tmp. At the end that folder must hold nothing but
pytest's own `tmp_path` folders; anything else fails the run with its names. The folder is then
removed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shared.store.memory import MemoryStores
from shared.store.protocols import Stores
from shared.store.redis import open_redis_stores
from tests.redis_server import RedisServer, start_redis
from tests.redis_topologies import RedisClusterTopology, SentinelTopology, start_cluster, start_sentinel

_PYTEST_OWN = "pytest-of-"  # tmp_path folders, which pytest manages and keeps by design
_SESSION_TMP = pytest.StashKey[tuple[Path, str | None, str | None]]()


def pytest_configure(config: pytest.Config) -> None:
    session_tmp = tempfile.mkdtemp(prefix="mcp-aggregator-tests-")
    config.stash[_SESSION_TMP] = (Path(session_tmp), os.environ.get("TMPDIR"), tempfile.tempdir)
    os.environ["TMPDIR"] = tempfile.tempdir = session_tmp


def pytest_sessionfinish(session: pytest.Session) -> None:
    session_tmp, old_env, old_tempdir = session.config.stash[_SESSION_TMP]
    leftovers = sorted(path.name for path in session_tmp.iterdir() if not path.name.startswith(_PYTEST_OWN))
    shutil.rmtree(session_tmp, ignore_errors=True)
    tempfile.tempdir = old_tempdir
    if old_env is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = old_env
    if leftovers:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_sep("=", "temporary files left behind", red=True)
            reporter.write_line(f"each helper must remove what it creates; left: {', '.join(leftovers)}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def sentinel_redis() -> Iterator[SentinelTopology]:
    """Master, replica and three sentinels, started the first time a test asks (kill tests start their own)."""
    topology = start_sentinel()
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture(scope="session")
def cluster_redis() -> Iterator[RedisClusterTopology]:
    """Three masters with a replica each, started the first time a test asks (kill tests start their own)."""
    topology = start_cluster()
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["memory", "redis", "sentinel", "cluster"])
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[Stores]:
    """Each store implementation in turn, Redis in each of its shapes (under a namespace of its own)."""
    if request.param == "memory":
        instance: Stores = MemoryStores()
    else:
        fixture = {"redis": "redis_server", "sentinel": "sentinel_redis", "cluster": "cluster_redis"}[request.param]
        url = request.getfixturevalue(fixture).url
        instance = await open_redis_stores(url, namespace=f"test-{uuid.uuid4().hex[:8]}")
    try:
        yield instance
    finally:
        await instance.aclose()
