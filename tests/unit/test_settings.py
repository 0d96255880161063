"""Unit tests of layered settings: defaults < TOML file < STORYMESH_* environment < CLI flags,
every value checked on load, errors naming the key and the layer it came from."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from storymesh import settings as settings_mod
from storymesh.errors import ConfigError
from storymesh.settings import (
    AgentSettings,
    BrokerSettings,
    PeerSettings,
    Settings,
    StorySettings,
    describe,
    load,
)


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "storymesh.toml"
    path.write_text(text, encoding="utf-8")
    return path


TOML = """
heartbeat_interval = 1.5
liveness = 5
queue_limit = 7
log_level = "debug"

[author]
model = "file-model"
device = "cuda"
slots = 2
"""


def test_defaults_without_file_env_or_flags(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no config/storymesh.toml here
    s = load(None, env={})
    assert s == Settings()
    assert s.heartbeat_interval == 2.5
    assert s.liveness == 4
    assert s.liveness_timeout == 10.0
    assert s.publisher.backend == "reportlab"
    assert s.author.backend == "embedded"
    assert dict(s.sources) == {}


def test_the_default_config_file_is_read_when_present(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "storymesh.toml").write_text("liveness = 6\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    s = load(None, env={})
    assert s.liveness == 6
    assert s.sources["liveness"] == str(Path("config/storymesh.toml"))


def test_file_overrides_defaults(tmp_path: Path) -> None:
    path = write_toml(tmp_path, TOML)
    s = load(path, env={})
    assert s.heartbeat_interval == 1.5
    assert s.liveness == 5
    assert s.queue_limit == 7
    assert s.author == AgentSettings(model="file-model", device="cuda", slots=2)
    assert s.illustrator == AgentSettings()  # untouched sections keep their defaults
    assert s.max_attempts == 3


def test_environment_overrides_file_and_flags_override_environment(tmp_path: Path) -> None:
    # Given the same keys set in the file, the environment and (some) flags
    path = write_toml(tmp_path, TOML)
    env = {"STORYMESH_LIVENESS": "6", "STORYMESH_QUEUE_LIMIT": "8",
           "STORYMESH_AUTHOR_MODEL": "env-model", "STORYMESH_AUTHOR_SLOTS": "3",
           "HOME": "/ignored", "OTHER_LIVENESS": "99"}
    flags = {"queue_limit": 9, "author.model": "flag-model", "log_level": None}
    # When loaded
    s = load(path, env=env, flags=flags)
    # Then each key comes from the highest layer that sets it
    assert s.heartbeat_interval == 1.5             # file only
    assert s.liveness == 6                          # env over file
    assert s.queue_limit == 9                       # flag over env over file
    assert s.author.model == "flag-model"           # nested flag over env over file
    assert s.author.slots == 3                      # nested env over file
    assert s.author.device == "cuda"                # nested file only
    assert s.log_level == "debug"                   # a None flag is "not given"
    assert s.sources["heartbeat_interval"] == str(path)
    assert s.sources["liveness"] == "environment"
    assert s.sources["queue_limit"] == "command line"
    assert s.sources["author.model"] == "command line"
    assert s.sources["author.slots"] == "environment"
    assert s.sources["author.device"] == str(path)


def test_env_values_are_converted_to_the_field_types() -> None:
    env = {"STORYMESH_HEARTBEAT_INTERVAL": "0.25", "STORYMESH_STRICT_MDP": "yes",
           "STORYMESH_ILLUSTRATOR_TORCH_THREADS": "4", "STORYMESH_BIND": "ipc:///tmp/b"}
    s = load("/dev/null", env=env)
    assert s.heartbeat_interval == 0.25
    assert s.strict_mdp is True
    assert s.illustrator.torch_threads == 4
    assert s.bind == "ipc:///tmp/b"


@pytest.mark.parametrize(("text", "value"), [("1", True), ("true", True), ("on", True),
                                             ("0", False), ("False", False), ("no", False)])
def test_boolean_spellings(text: str, value: bool) -> None:
    assert load("/dev/null", env={"STORYMESH_STRICT_MDP": text}).strict_mdp is value


def test_flags_accept_dashes_and_nested_tables() -> None:
    s = load("/dev/null", env={}, flags={"max-attempts": 5, "publisher.backend": "html"})
    assert s.max_attempts == 5
    assert s.publisher.backend == "html"


def test_settings_are_frozen() -> None:
    s = load("/dev/null", env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.liveness = 9  # type: ignore[misc]


def test_agent_returns_the_section_and_rejects_unknown_agents() -> None:
    s = load("/dev/null", env={}, flags={"illustrator.model": "sd"})
    assert s.agent("illustrator").model == "sd"
    with pytest.raises(ConfigError, match="unknown agent"):
        s.agent("painter")


# --- invalid values name the key and the source ------------------------------------------

@pytest.mark.parametrize(("text", "key"), [
    ("heartbeat_interval = 0\n", "heartbeat_interval"),
    ("heartbeat_interval = \"fast\"\n", "heartbeat_interval"),
    ("liveness = 2.5\n", "liveness"),
    ("liveness = true\n", "liveness"),
    ("bind = \"http://x\"\n", "bind"),
    ("log_level = \"loud\"\n", "log_level"),
    ("strict_mdp = \"maybe\"\n", "strict_mdp"),
    ("[author]\nslots = 0\n", "author.slots"),
    ("[author]\ndtype = \"int4\"\n", "author.dtype"),
    ("[author]\nmodel = [1]\n", "author.model"),
    ("author = \"x\"\n", "author"),
    ("[liveness]\nx = 1\n", "liveness"),
])
def test_invalid_file_values_name_key_and_file(tmp_path: Path, text: str, key: str) -> None:
    path = write_toml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path, env={})
    message = str(info.value)
    assert key in message
    assert str(path) in message


@pytest.mark.parametrize(("name", "value", "key"), [
    ("STORYMESH_LIVENESS", "three", "liveness"),
    ("STORYMESH_HEARTBEAT_INTERVAL", "-1", "heartbeat_interval"),
    ("STORYMESH_MAX_ATTEMPTS", "1.5", "max_attempts"),
    ("STORYMESH_AUTHOR_SLOTS", "0", "author.slots"),
    ("STORYMESH_AUTHOR_DTYPE", "fp8", "author.dtype"),
    ("STORYMESH_BROKER", "localhost:5555", "broker"),
])
def test_invalid_env_values_name_key_and_environment(name: str, value: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load("/dev/null", env={name: value})
    message = str(info.value)
    assert key in message
    assert "environment" in message


@pytest.mark.parametrize(("flags", "key"), [
    ({"liveness": 0}, "liveness"),
    ({"queue_limit": "many"}, "queue_limit"),
    ({"author.slots": -1}, "author.slots"),
    ({"log_format": "xml"}, "log_format"),
])
def test_invalid_flags_name_key_and_command_line(flags: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load("/dev/null", env={}, flags=flags)
    message = str(info.value)
    assert key in message
    assert "command line" in message


def test_a_later_layer_does_not_hide_an_invalid_earlier_one(tmp_path: Path) -> None:
    # An invalid file value fails the load even if the environment would override it.
    path = write_toml(tmp_path, "liveness = 0\n")
    with pytest.raises(ConfigError, match=str(path)):
        load(path, env={"STORYMESH_LIVENESS": "4"})


# --- unknown keys and files ---------------------------------------------------------------

@pytest.mark.parametrize("text", ["heartbeat = 1\n", "[author]\nmodle = \"x\"\n",
                                  "[painter]\nmodel = \"x\"\n"])
def test_unknown_file_keys_are_rejected(tmp_path: Path, text: str) -> None:
    path = write_toml(tmp_path, text)
    with pytest.raises(ConfigError, match="unknown setting") as info:
        load(path, env={})
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ["STORYMESH_HEARTBEAT", "STORYMESH_AUTHOR_MODLE",
                                  "STORYMESH_PAINTER_MODEL", "STORYMESH_AUTHOR"])
def test_unknown_env_keys_are_rejected(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load("/dev/null", env={name: "1"})
    assert name in str(info.value)


@pytest.mark.parametrize("flags", [{"heartbeat": 1}, {"author.modle": "x"},
                                   {"painter.model": "x"}, {"sources": {}}])
def test_unknown_flags_are_rejected(flags: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="command line"):
        load("/dev/null", env={}, flags=flags)


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load(missing, env={})


def test_a_missing_file_named_by_storymesh_config_is_an_error(tmp_path: Path) -> None:
    # A file the user named through the environment must not be silently ignored.
    missing = tmp_path / "typo.toml"
    with pytest.raises(ConfigError, match=r"typo\.toml"):
        load(None, env={"STORYMESH_CONFIG": str(missing)})


def test_storymesh_config_names_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "liveness = 7\n")
    assert load(None, env={"STORYMESH_CONFIG": str(path)}).liveness == 7


def test_a_broken_toml_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "liveness = = 3\n")
    with pytest.raises(ConfigError, match=str(path)):
        load(path, env={})


# --- describe ----------------------------------------------------------------------------

def test_describe_reports_every_key_with_value_and_source(tmp_path: Path) -> None:
    path = write_toml(tmp_path, TOML)
    s = load(path, env={"STORYMESH_LIVENESS": "6"}, flags={"author.slots": 4})
    rows = {key: (value, source) for key, value, source in describe(s)}
    assert rows["heartbeat_interval"] == (1.5, str(path))
    assert rows["liveness"] == (6, "environment")
    assert rows["author.slots"] == (4, "command line")
    assert rows["author.model"] == ("file-model", str(path))
    assert rows["max_attempts"] == (3, "default")
    assert rows["publisher.backend"] == ("reportlab", "default")
    assert "sources" not in rows
    assert "author" not in rows
    agent_keys = {f.name for f in dataclasses.fields(AgentSettings)}
    for section in settings_mod.AGENT_SECTIONS:
        assert {f"{section}.{k}" for k in agent_keys} <= set(rows)


# --- sections: what each component receives --------------------------------------------------

def test_each_section_carries_the_loaded_values_of_its_keys(tmp_path: Path) -> None:
    # Given settings from a file, the environment and a flag
    config = tmp_path / "s.toml"
    config.write_text('hwm = 77\nwatch_slots = 3\n')
    settings = load(config, env={"STORYMESH_LIVENESS": "7"}, flags={"bind": "tcp://*:6000"})
    # When the sections are built
    broker, peer, story = (settings.broker_section(), settings.peer_section(),
                           settings.story_section())
    # Then each holds the same values under the same keys, and nothing else
    assert (broker.bind, broker.hwm, broker.liveness) == ("tcp://*:6000", 77, 7)
    assert (peer.hwm, peer.liveness, peer.broker) == (77, 7, settings.broker)
    assert story.watch_slots == 3
    assert story.peer == peer
    for section in (broker, peer):
        for f in dataclasses.fields(section):
            assert getattr(section, f.name) == getattr(settings, f.name), f.name
    assert broker.liveness_timeout == peer.liveness_timeout == settings.liveness_timeout
    assert not hasattr(peer, "queue_limit")
    assert not hasattr(broker, "journal")


@pytest.mark.parametrize("section", [BrokerSettings, PeerSettings, StorySettings])
def test_sections_are_frozen_and_name_only_real_keys(section: type) -> None:
    keys = {f.name for f in dataclasses.fields(Settings)}
    names = {f.name for f in dataclasses.fields(section)} - {"peer"}
    assert names <= keys
    assert section.__dataclass_params__.frozen  # type: ignore[attr-defined]
