"""Options, ini keys, precedence and the report header."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_islandora_job import config


def test_every_option_has_an_ini_twin_in_one_help_group(pytester: pytest.Pytester) -> None:
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
    pytester: pytest.Pytester, args: list[str], ini: str, override: int | None, expected: int
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    parsed = pytester.parseconfig(*args)
    assert config.get(parsed, "gearman_threads", override) == expected


def test_false_is_honoured_for_booleans(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ngearman_strict_queue = true\n")
    assert config.get(pytester.parseconfig(), "gearman_strict_queue") is True
    assert (
        config.get(pytester.parseconfig("--no-gearman-strict-queue"), "gearman_strict_queue")
        is False
    )


def test_bad_values_are_usage_errors_naming_the_option(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--gearman-threads=many")
    result.stderr.fnmatch_lines(
        ["*--gearman-threads / ini gearman_threads: cannot read 'many' as int*"]
    )

    result = pytester.runpytest("--gearman-backend=kubernetes")
    result.stderr.fnmatch_lines(
        [f"*unknown backend 'kubernetes'; use one of {', '.join(config.BACKENDS)}*"]
    )


def test_external_backend_needs_servers(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--gearman-backend=external")
    result.stderr.fnmatch_lines(["*--gearman-backend=external needs --gearman-servers host:port*"])


def test_report_header_names_backend_gearmand_and_queues(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--gearman-queue=sqlite")
    result.stdout.fnmatch_lines(
        [
            "islandora-job: backend process, gearmand /usr/sbin/gearmand 1.1.*, "
            "queue sqlite, persistent queues mysql postgres sqlite"
        ]
    )


def test_unknown_persistent_queue_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ngearman_queues = mysql oracle\n")
    pytester.makepyfile("def test_it(persistent_gearman_server): pass")
    result = pytester.runpytest()
    result.stderr.fnmatch_lines(
        ["*--gearman-queues / ini gearman_queues: unknown oracle; use any of mysql postgres sqlite"]
    )


def test_the_readme_documents_every_option() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for option in config.OPTIONS:
        assert f"| `{config.flag(option)}` | `{option.name}` |" in readme


def test_a_run_inside_the_run_leaves_the_outer_servers_alone(
    pytester: pytest.Pytester, gearman_server: Any
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    pytester.runpytest().assert_outcomes(passed=1)  # in this process: its end sweeps children
    assert gearman_server.pid is not None
    assert gearman_server.version.startswith("1.1.")
    assert isinstance(gearman_server.status(), list)  # still answers


def test_report_header_names_the_image_on_docker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--gearman-backend=docker", "--gearman-image=mine/gearmand:1")
    result.stdout.fnmatch_lines(
        ["islandora-job: backend docker, gearmand image mine/gearmand:1, *"]
    )


def test_strict_queue_is_an_on_off_flag_that_takes_no_value(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ngearman_strict_queue = true\n")
    pytester.makepyfile(
        test_a="""
from pytest_islandora_job import config

def test_on(request) -> None:
    assert config.get(request.config, "gearman_strict_queue") is True
""",
        test_b="def test_not_run(): raise AssertionError('only test_a.py was named')",
    )
    # The flag leaves test_a.py alone: it is the path to run, not the flag's value.
    pytester.runpytest("--gearman-strict-queue", "test_a.py").assert_outcomes(passed=1)
    assert config.get(pytester.parseconfig("--gearman-strict-queue"), "gearman_strict_queue")
    pytester.makeini("[pytest]\n")
    assert config.get(pytester.parseconfig(), "gearman_strict_queue") is False


# One misuse of every option: (option, command-line arguments, ini lines, the message's end).
MISUSES = [
    ("gearman_backend", ["--gearman-backend=kubernetes"], "",
     f"--gearman-backend: unknown backend 'kubernetes'; use one of {', '.join(config.BACKENDS)}"),
    ("gearman_queue", ["--gearman-queue=oracle"], "",
     f"--gearman-queue: unknown queue type 'oracle'; use one of {', '.join(config.QUEUES)}"),
    ("gearman_queues", [], "gearman_queues = mysql oracle",
     "--gearman-queues / ini gearman_queues: unknown oracle; use any of mysql postgres sqlite"),
    ("gearman_listen", ["--gearman-listen=127.0.0.1:4730"], "",
     "--gearman-listen / ini gearman_listen: '127.0.0.1:4730' is not an address: give an IP "
     "address or a host name (the port is --gearman-port)"),
    ("gearman_port", ["--gearman-port=0"], "",
     "--gearman-port / ini gearman_port: 0 is not a port: give 1-65535, or leave it unset for "
     "a free port"),
    ("gearman_port", ["--gearman-port=65536"], "",
     "--gearman-port / ini gearman_port: 65536 is not a port: give 1-65535, or leave it unset "
     "for a free port"),
    ("gearman_port", [], "gearman_port = http",
     "--gearman-port / ini gearman_port: cannot read 'http' as int: give a port number from 1 "
     "to 65535"),
    ("gearman_threads", ["--gearman-threads=-1"], "",
     "--gearman-threads / ini gearman_threads: -1 is below 0: give 0 or more"),
    ("gearman_job_retries", ["--gearman-job-retries=some"], "",
     "--gearman-job-retries / ini gearman_job_retries: cannot read 'some' as int: give a whole "
     "number, 0 or more"),
    ("gearman_extra_args", ["--gearman-extra-args=--verbose 'INFO"], "",
     "--gearman-extra-args / ini gearman_extra_args: cannot read \"--verbose 'INFO\" as args "
     "(No closing quotation): quote as a shell would"),
    ("gearman_servers", ["--gearman-backend=external", "--gearman-servers=localhost"], "",
     "--gearman-servers / ini gearman_servers: 'localhost' has no port: write host:port "
     "([v6addr]:port for IPv6), e.g. 127.0.0.1:4730"),
    ("gearman_servers", ["--gearman-backend=external", "--gearman-servers=a:1;b:2"], "",
     "--gearman-servers / ini gearman_servers: 'a:1;b:2' is not one host:port: separate servers "
     "with commas, and write an IPv6 address in brackets, [v6addr]:port"),
    ("gearman_servers", ["--gearman-backend=external", "--gearman-servers=127.0.0.1:0"], "",
     "--gearman-servers / ini gearman_servers: server address '127.0.0.1:0' has a bad port '0'; "
     "use 1-65535 (write each server as host:port, e.g. 127.0.0.1:4730)"),
    ("gearman_servers", ["--gearman-servers=127.0.0.1:4730"], "",
     "--gearman-servers / ini gearman_servers: servers are for the external backend, not "
     "process: add --gearman-backend=external, or drop --gearman-servers"),
    ("gearman_image", ["--gearman-image=My Gearmand"], "",
     "--gearman-image / ini gearman_image: 'My Gearmand' is not a Docker image reference: "
     "write name[:tag], e.g. mine/gearmand:1 (lower case, no spaces)"),
    ("gearman_mysql_dsn", ["--gearman-mysql-dsn=postgresql://me@db/jobs"], "",
     "--gearman-mysql-dsn / ini gearman_mysql_dsn: 'postgresql://me@db/jobs' is a postgres DSN "
     "where a mysql DSN is needed"),
    ("gearman_postgres_dsn", [], "gearman_postgres_dsn = db.example:5432",
     "--gearman-postgres-dsn / ini gearman_postgres_dsn: 'db.example:5432' is not a database "
     "DSN; write mysql://user:pw@host:port/db, postgresql://user@host:port/db or "
     "sqlite:///path/to/file.db"),
    ("gearman_job_timeout", ["--gearman-job-timeout=-1"], "",
     "--gearman-job-timeout / ini gearman_job_timeout: malformed timeout -1.0: give a positive, "
     "finite number of seconds, e.g. 60"),
    ("gearman_start_timeout", ["--gearman-start-timeout=0"], "",
     "--gearman-start-timeout / ini gearman_start_timeout: 0.0 is not a positive number of "
     "seconds: give more than 0"),
    ("gearman_strict_queue", [], "gearman_strict_queue = maybe",
     "--gearman-strict-queue / ini gearman_strict_queue: cannot read 'maybe' as bool: give "
     "true or false"),
    ("islandora_job_modules", ["--islandora-job-modules=mypackage/jobs.py"], "",
     "--islandora-job-modules / ini islandora_job_modules: 'mypackage/jobs.py' is not an import "
     "path: write dotted module names, e.g. mypackage.jobs (not a file name)"),
]  # fmt: skip
# gearmand_exec names a program that may be missing where no test needs gearmand: it is
# checked when a fixture starts one (tests/plugin/test_kit.py).
CHECKED_BY_FIXTURES = {"gearmand_exec"}


def test_every_option_is_misused_once_below() -> None:
    misused = {name for name, *_ in MISUSES}
    assert misused | CHECKED_BY_FIXTURES == {option.name for option in config.OPTIONS}


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [pytest.param(args, ini, message, id=name) for name, args, ini, message in MISUSES],
)
def test_a_misused_option_stops_the_run_with_one_line_even_when_no_test_uses_a_fixture(
    pytester: pytest.Pytester, args: list[str], ini: str, message: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert errors == [f"ERROR: {message}"]


BLOCK_DOCKER_EXTRA = """
import sys

# As where the docker extra is not installed: importing these fails.
sys.modules["testcontainers"] = None
sys.modules["docker"] = None
"""


def test_docker_backend_without_the_docker_extra_is_a_usage_error_not_a_skip(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(BLOCK_DOCKER_EXTRA)
    pytester.makepyfile("def test_it(gearman_server): pass")
    result = pytester.runpytest_subprocess("--gearman-backend=docker")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --gearman-backend / ini gearman_backend: docker needs the docker extra "
            "(testcontainers is not installed): pip install 'pytest-islandora-job[docker]', "
            "or use --gearman-backend=process"
        ]
    )
    # The default backend needs no Docker: the same project runs.
    pytester.makepyfile("def test_it(): pass")
    assert pytester.runpytest_subprocess().ret == pytest.ExitCode.OK


def test_the_run_s_job_modules_are_in_force_in_a_test_without_a_server_fixture(
    pytester: pytest.Pytester,
) -> None:
    # A test that talks to a server of its own (no fixture) still knows the run's jobs, and
    # the ini's modules win over the environment variable's.
    pytester.makepyfile(
        runjobs="""
        def register_jobs():
            return {"run_job": "runjobs:run_job"}

        def run_job():
            pass
        """,
        test_it="""
        import pytest
        import islandora_job

        def test_no_server_fixture():
            assert islandora_job.settings().modules == ("runjobs",)
            with pytest.raises(islandora_job.UnknownJob, match="did you mean 'run_job'"):
                islandora_job.JobClient(servers=["127.0.0.1:9"]).submit_background("run_jb")
        """,
    )
    pytester.makeini("[pytest]\nislandora_job_modules = runjobs\n")
    pytester.syspathinsert()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ISLANDORA_JOB_MODULES", "not_this_one")
        pytester.runpytest_subprocess().assert_outcomes(passed=1)
