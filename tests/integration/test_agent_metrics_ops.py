"""The operator's side of the agents' metrics: `metrics_bind` in settings and environment,
`storymesh up --metrics-base` handing out ports, an agent daemon's endpoint (prometheus_client
imported only when on), and the monitor staying quiet about agents whose metrics do not
answer.
"""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from rich.console import Console

from storymesh import settings as settings_mod
from storymesh.errors import ConfigError
from storymesh.ops.daemons import metrics_endpoint
from storymesh.ops.monitor import AGENT_RETRY, AgentScraper, metrics_address
from storymesh.ops.supervisor import Child, CrashHistory, RestartPolicy, _show, plan
from storymesh.settings import Settings
from testkit.mesh import REPO

AUTHOR_TEXT = "# TYPE storymesh_author_tokens_total counter\nstorymesh_author_tokens_total {}\n"


def test_metrics_bind_is_an_agent_key_off_by_default() -> None:
    # Given no configuration, then a variable and a flag
    assert settings_mod.load("/dev/null", env={}).author.metrics_bind == ""
    env = settings_mod.load("/dev/null", env={"STORYMESH_AUTHOR_METRICS_BIND": "9101"})
    flag = settings_mod.load("/dev/null", env={}, flags={"story.metrics_bind": "0.0.0.0:9105"})
    # Then each lands in its agent's table, apart from the broker's own key
    assert env.author.metrics_bind == "9101"
    assert env.metrics_bind == ""
    assert flag.story.metrics_bind == "0.0.0.0:9105"
    with pytest.raises(ConfigError, match=r"illustrator\.metrics_bind"):
        settings_mod.load("/dev/null", env={"STORYMESH_ILLUSTRATOR_METRICS_BIND": "x:y"})


def test_up_gives_its_children_consecutive_metrics_ports() -> None:
    # Given a plan with two authors and a metrics base
    specs = plan(Settings(), authors=2, metrics_base="9100", http=True)
    # Then the broker and every agent get the next port, the gateway none
    served = {s.name: s.argv[s.argv.index("--metrics-bind") + 1]
              for s in specs if "--metrics-bind" in s.argv}
    assert served == {"broker": "127.0.0.1:9100", "author-1": "127.0.0.1:9101",
                      "author-2": "127.0.0.1:9102", "illustrator": "127.0.0.1:9103",
                      "publisher": "127.0.0.1:9104", "story": "127.0.0.1:9105"}
    assert [s.metrics for s in specs if s.name == "gateway"] == [""]
    # And the table shows each child's metrics URL
    out = io.StringIO()
    _show([Child(s, CrashHistory(RestartPolicy())) for s in specs],
          Console(file=out, width=200, color_system=None))
    assert "http://127.0.0.1:9105/metrics" in out.getvalue()
    # And a base the OS would pick, or one without room for every child, is refused
    for base in ("0", "65533"):
        with pytest.raises(ConfigError, match="metrics-base"):
            plan(Settings(), metrics_base=base)
    assert all("--metrics-bind" not in s.argv for s in plan(Settings()))


def test_the_endpoint_is_off_without_a_bind_and_refuses_a_taken_port() -> None:
    with metrics_endpoint("") as off:
        assert off is None
    with metrics_endpoint("127.0.0.1:0") as on:
        assert on is not None
        assert on.address is not None
        taken = on.address
        with pytest.raises(ConfigError, match="cannot serve metrics"), \
                metrics_endpoint(taken):
            pass


def test_an_agent_without_metrics_never_imports_prometheus_client() -> None:
    # Given a fresh interpreter that builds and sets up an agent the way the daemon does
    code = ("import sys\nfrom storymesh.ops import daemons\nfrom storymesh.agents.registry "
            "import build_agent\nfrom storymesh.settings import load\n"
            "with daemons.metrics_endpoint(''):\n"
            "    build_agent('author', load('/dev/null', env={})).setup()\n"
            "print('prometheus_client' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True)
    # Then prometheus_client stayed out of the process
    assert out.stdout.strip() == "False", out.stderr


def worker(metrics: str | None, host: str = "gpu-box-1") -> dict[str, object]:
    meta: dict[str, object] = {"host": host, "pid": 7}
    if metrics is not None:
        meta["metrics"] = metrics
    return {"service": "story.author", "id": "01", "meta": meta}


def test_the_monitor_reads_wildcard_binds_as_the_workers_host() -> None:
    assert metrics_address(worker("0.0.0.0:9101")) == "gpu-box-1:9101"
    assert metrics_address(worker("10.0.0.5:9101")) == "10.0.0.5:9101"
    assert metrics_address(worker(None)) is None


def test_the_monitor_says_nothing_of_an_agent_whose_metrics_do_not_answer() -> None:
    # Given an agent whose endpoint answers, then stops answering, then answers again
    replies: list[str | None] = ["100", "400", None, "500", "800"]
    asked: list[float] = []

    def fetch(address: str, timeout: float) -> str:
        asked.append(len(asked))
        reply = replies.pop(0)
        if reply is None:
            raise ConnectionRefusedError("connection refused")
        return AUTHOR_TEXT.format(reply)

    scraper = AgentScraper(fetch=fetch)
    snap = {"workers": [worker("127.0.0.1:9101")]}
    # When it is scraped 10 s apart
    assert scraper.figures(snap, 0.0) == {}  # one sample: no rate yet
    assert scraper.figures(snap, 10.0) == {"127.0.0.1:9101": {"tokens_per_s": 30.0}}
    # Then a failed scrape shows nothing, and it is not asked again before AGENT_RETRY
    assert scraper.figures(snap, 20.0) == {}
    assert scraper.figures(snap, 21.0) == {}
    assert len(asked) == 3
    # And once it answers again, rates come back from fresh samples only
    assert scraper.figures(snap, 20.0 + AGENT_RETRY) == {}
    later = scraper.figures(snap, 30.0 + AGENT_RETRY)
    assert later == {"127.0.0.1:9101": {"tokens_per_s": 30.0}}
