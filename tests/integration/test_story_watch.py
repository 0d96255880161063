"""Watch events carry running totals, so a watcher that hears a story twice (a watch
re-sent after its story-service worker died) shows the same progress, never double."""

from __future__ import annotations

from storymesh.story.api import StoryClient
from storymesh.story.local import LocalMesh
from testkit.mesh import fast_settings


def test_each_watch_of_a_story_reports_the_same_running_totals() -> None:
    # Given a finished story in an in-process mesh
    with LocalMesh(fast_settings()) as mesh, \
            StoryClient(mesh.endpoint, settings=mesh.settings.peer_section(),
                        context=mesh.context) as stories:
        corr = stories.submit("A kite that wants to touch the clouds", chapters=3, seed=11)
        first = [e for e in stories.events(corr) if not e["final"] and e["event"] != "publishing"]
        # When the same story is watched again
        second = [e for e in stories.events(corr) if not e["final"]]
    # Then both watches carry identical totals, step by step
    totals = [(e["event"], e["done"], e.get("chapters_written"), e.get("pictures_painted"))
              for e in first]
    assert totals == [(e["event"], e["done"], e.get("chapters_written"),
                       e.get("pictures_painted")) for e in second]
    # and the totals climb by one finished step per event, ending with everything done
    steps = first
    assert [e["done"] for e in steps] == list(range(1, len(steps) + 1))
    assert steps[-1]["chapters_written"] == 3
    assert steps[-1]["pictures_painted"] == 4
