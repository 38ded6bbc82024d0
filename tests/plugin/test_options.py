"""Options, ini keys, precedence and the report header."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_islandora_job import config


def test_every_option_has_an_ini_twin_in_one_help_group(pytester: pytest.Pytester):
    result = pytester.runpytest("--help")
    text = result.stdout.str()
    group = text.split("islandora-job: gearmand, queues and job workers:")[1]
    group = group.split("\n\n")[0]
    for option in config.OPTIONS:
        assert config.flag(option) in group
        assert f"  {option.name} (" in text  # the ini key is listed in [pytest] ini-options


@pytest.mark.parametrize(
    ("args", "ini", "override", "expected"),
    [
        ([], "", None, 0),  # default
        ([], "gearman_threads = 3", None, 3),  # ini
        (["--gearman-threads=5"], "gearman_threads = 3", None, 5),  # option over ini
        (["--gearman-threads=5"], "gearman_threads = 3", 0, 0),  # factory over all; 0 honoured
    ],
)
def test_factory_argument_beats_option_beats_ini_beats_default(
    pytester: pytest.Pytester, args, ini, override, expected
):
    pytester.makeini(f"[pytest]\n{ini}\n")
    parsed = pytester.parseconfig(*args)
    assert config.get(parsed, "gearman_threads", override) == expected


def test_false_is_honoured_for_booleans(pytester: pytest.Pytester):
    pytester.makeini("[pytest]\ngearman_strict_queue = true\n")
    assert config.get(pytester.parseconfig(), "gearman_strict_queue") is True
    assert (
        config.get(pytester.parseconfig("--gearman-strict-queue=false"), "gearman_strict_queue")
        is False
    )


def test_bad_values_are_usage_errors_naming_the_option(pytester: pytest.Pytester):
    result = pytester.runpytest("--gearman-threads=many")
    result.stderr.fnmatch_lines(
        ["*--gearman-threads / ini gearman_threads: cannot read 'many' as int*"]
    )

    result = pytester.runpytest("--gearman-backend=kubernetes")
    result.stderr.fnmatch_lines(
        ["*unknown backend 'kubernetes'; use one of process, docker, external*"]
    )


def test_external_backend_needs_servers(pytester: pytest.Pytester):
    result = pytester.runpytest("--gearman-backend=external")
    result.stderr.fnmatch_lines(["*--gearman-backend=external needs --gearman-servers host:port*"])


def test_report_header_names_backend_gearmand_and_queues(pytester: pytest.Pytester):
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--gearman-queue=sqlite")
    result.stdout.fnmatch_lines(
        [
            "islandora-job: backend process, gearmand /usr/sbin/gearmand 1.1.*, "
            "queue sqlite, persistent queues mysql postgres sqlite"
        ]
    )


def test_unknown_persistent_queue_is_a_usage_error(pytester: pytest.Pytester):
    pytester.makeini("[pytest]\ngearman_queues = mysql oracle\n")
    pytester.makepyfile("def test_it(persistent_gearman_server): pass")
    result = pytester.runpytest()
    result.stderr.fnmatch_lines(["*gearman_queues: unknown oracle; use mysql postgres sqlite*"])


def test_the_readme_documents_every_option():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for option in config.OPTIONS:
        assert f"| `{config.flag(option)}` | `{option.name}` |" in readme


def test_a_run_inside_the_run_leaves_the_outer_servers_alone(
    pytester: pytest.Pytester, gearman_server
):
    pytester.makepyfile("def test_nothing(): pass")
    pytester.runpytest().assert_outcomes(passed=1)  # in this process: its end sweeps children
    assert gearman_server.pid is not None
    assert gearman_server.version.startswith("1.1.")
    assert isinstance(gearman_server.status(), list)  # still answers


def test_report_header_names_the_image_on_docker(pytester: pytest.Pytester):
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--gearman-backend=docker", "--gearman-image=mine/gearmand:1")
    result.stdout.fnmatch_lines(
        ["islandora-job: backend docker, gearmand image mine/gearmand:1, *"]
    )
