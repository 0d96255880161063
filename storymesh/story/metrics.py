"""What the story service reports to Prometheus (with `[story] metrics_bind` set): how many
stories are in each status, how long each step takes from asking an agent to journalling
its answer, how long a story takes from submission to its book, and the journal's size.

The counts and the size are read from the journal at scrape time (one small query each), so
they are the journal's truth, shared by every instance on the host: aggregate them with
`max`, not `sum`, across instances that share a journal. The timings are observed by the
engine and the pipeline as stories run.
"""

from __future__ import annotations

from storymesh.core.schema import Status
from storymesh.runtime.metrics import Metrics, MetricSpec, Reading
from storymesh.story.journal import Journal

STORY_BUCKETS = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
                 14400.0)

STORIES = MetricSpec("storymesh_stories", "gauge", "stories in the journal, by status",
                     ("status",))
STEP_SECONDS = MetricSpec("storymesh_story_step_seconds", "histogram",
                          "seconds from asking an agent for a step to journalling its answer "
                          "(retries included)", ("step",))
STORY_SECONDS = MetricSpec("storymesh_story_seconds", "histogram",
                           "seconds from a story's submission to its completion",
                           buckets=STORY_BUCKETS)
JOURNAL_BYTES = MetricSpec("storymesh_journal_bytes", "gauge",
                           "bytes of stories in the journal (what retention_bytes bounds)")

STORY_SPECS = (STORIES, STEP_SECONDS, STORY_SECONDS, JOURNAL_BYTES)


def watch_journal(metrics: Metrics, journal: Journal) -> None:
    """Report the journal's story counts and size at every scrape."""
    def stories() -> Reading:
        counts = journal.count_by_status()
        return [({"status": str(s)}, float(counts.get(str(s), 0))) for s in Status]

    metrics.declare((STEP_SECONDS, STORY_SECONDS))  # the other two are read, not kept
    metrics.read(STORIES, stories)
    metrics.read(JOURNAL_BYTES, lambda: [({}, float(journal.total_bytes()))])
