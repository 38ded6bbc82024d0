"""pytest fixtures that boot gearmand and run islandora_job workers for your tests.

The fixtures come with the plugin (entry point `pytest11`); factories build more of them;
the waits and assertions are importable from here.
"""

from pytest_islandora_job.assertions import (
    JobWaitTimeout,
    assert_background_handle,
    assert_batch_succeeds,
    assert_job_result,
    wait_for_job,
    wait_until_idle,
)

__all__ = [
    "JobWaitTimeout",
    "assert_background_handle",
    "assert_batch_succeeds",
    "assert_job_result",
    "wait_for_job",
    "wait_until_idle",
]
