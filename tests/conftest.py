"""Shared fixtures: settings with short heartbeats, a real broker on loopback, and the tiny
offline models (built once per session, only by the tests that ask for them)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from storymesh.broker.server import BrokerServer
from storymesh.settings import Settings
from testkit import tiny_models
from testkit.mesh import fast_settings as fast_settings
from testkit.mesh import new_broker
from testkit.postgres import PostgresCluster, PostgresMissing


@pytest.fixture
def settings() -> Settings:
    return fast_settings()


@pytest.fixture
def broker(settings: Settings) -> Iterator[BrokerServer]:
    """A real broker on a random loopback port, in a thread; `broker.endpoint` to connect."""
    server = new_broker(settings)
    server.start()
    yield server
    server.stop()
    server.context.term()


@pytest.fixture
def endpoint_settings(broker: BrokerServer, settings: Settings) -> Settings:
    """The test settings with `broker` pointing at the running broker."""
    return fast_settings(**{k: getattr(settings, k) for k in (
        "heartbeat_interval", "liveness", "request_timeout", "service_wait", "drain_grace",
        "reconnect_max")}, broker=broker.endpoint)


# --- tiny random models (testkit/tiny_models.py); tests that use them are marked `ml` ------

@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a tiny random causal LM whose tokenizer has a chat template."""
    return tiny_models.build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="session")
def tiny_lm_plain(tiny_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model with no chat template: the author must fall back to a plain prompt."""
    folder = tmp_path_factory.mktemp("tiny-lm-plain")
    for item in tiny_lm.iterdir():
        if item.name != "chat_template.jinja":
            shutil.copy(item, folder / item.name)
    config = folder / "tokenizer_config.json"
    data = json.loads(config.read_text(encoding="utf-8"))
    data.pop("chat_template", None)
    config.write_text(json.dumps(data), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny SD pipeline without a safety checker."""
    return tiny_models.build_tiny_sd(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="session")
def tiny_sd_flagging(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny SD pipeline whose (real, tiny) safety checker flags every image."""
    return tiny_models.build_tiny_sd(tmp_path_factory.mktemp("tiny_sd_nsfw"),
                                     with_safety_checker=True)


# --- PostgreSQL (testkit/postgres.py): one throwaway cluster per session, a database per test --

@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A real PostgreSQL server on a free loopback port, removed after the session."""
    try:
        cluster = PostgresCluster()
    except PostgresMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    with cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres: PostgresCluster) -> Iterator[str]:
    """A fresh empty database on the session's server; dropped after the test."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)
