"""Fixtures of the embedded server's tests: the server as the plugin runs it (a child process
on a claimed port), in memory and with its SQLite queue."""

from __future__ import annotations

from pytest_islandora_job import factories

embedded = factories.gearman_server(backend="embedded")
embedded_sqlite = factories.gearman_server(backend="embedded", queue="sqlite", scope="function")
embedded_worker = factories.job_worker("embedded")
embedded_client = factories.job_client("embedded")
