"""The server state machine without sockets: each gearmand behaviour the server copies."""

from __future__ import annotations

import pytest

from islandora_job.gearman.protocol import PacketType as T
from islandora_job.gearman.protocol import request
from islandora_job.server.state import VERSION
from islandora_job.server.store import SQLiteStore

from .harness import Net


@pytest.fixture
def net() -> Net:
    return Net()


def test_a_foreground_job_runs_on_a_worker_and_its_result_reaches_the_client(net: Net) -> None:
    worker, client = net.peer(), net.peer()
    worker.send(T.CAN_DO, b"rev")
    worker.send(T.PRE_SLEEP)
    client.send(T.SUBMIT_JOB, b"rev", b"", b"abc")
    assert client.take() == [("JOB_CREATED", "H:testhost:1")]
    assert worker.take() == [("NOOP",)]
    worker.send(T.GRAB_JOB_UNIQ)
    assert worker.take() == [("JOB_ASSIGN_UNIQ", "H:testhost:1", "rev", "", "abc")]
    worker.send(T.WORK_STATUS, b"H:testhost:1", b"1", b"2")
    worker.send(T.WORK_DATA, b"H:testhost:1", b"part")
    worker.send(T.WORK_COMPLETE, b"H:testhost:1", b"c\0ba")
    assert client.take() == [
        ("WORK_STATUS", "H:testhost:1", "1", "2"),
        ("WORK_DATA", "H:testhost:1", "part"),
        ("WORK_COMPLETE", "H:testhost:1", "c\0ba"),
    ]
    assert net.admin("status") == b"rev\t0\t0\t1\n.\n"


def test_grab_job_answers_job_assign_and_no_job_when_empty(net: Net) -> None:
    worker, client = net.peer(), net.peer()
    worker.send(T.GRAB_JOB)
    assert worker.take() == [("NO_JOB",)]
    worker.send(T.CAN_DO, b"f")
    client.send(T.SUBMIT_JOB_BG, b"f", b"u", b"x")
    worker.send(T.GRAB_JOB)
    assert worker.take() == [("JOB_ASSIGN", "H:testhost:1", "f", "x")]
    client.send(T.SUBMIT_JOB_BG, b"f", b"u2", b"y")
    worker.send(T.GRAB_JOB_ALL)  # gearmand 1.1.20 answers it with JOB_ASSIGN_UNIQ
    assert worker.take() == [("JOB_ASSIGN_UNIQ", "H:testhost:2", "f", "u2", "y")]


def test_priorities_run_high_then_normal_then_low(net: Net) -> None:
    client, worker = net.peer(), net.peer()
    client.send(T.SUBMIT_JOB_LOW_BG, b"f", b"", b"low")
    client.send(T.SUBMIT_JOB_BG, b"f", b"", b"normal")
    client.send(T.SUBMIT_JOB_HIGH_BG, b"f", b"", b"high")
    client.send(T.SUBMIT_JOB_LOW, b"f", b"", b"low-fg")
    client.send(T.SUBMIT_JOB_HIGH, b"f", b"", b"high-fg")
    worker.send(T.CAN_DO, b"f")
    order = []
    for _ in range(5):
        worker.send(T.GRAB_JOB_UNIQ)
        (assign,) = worker.take()
        order.append(assign[-1])
    assert order == ["high", "high-fg", "normal", "low", "low-fg"]
    assert net.admin("prioritystatus") == b"f\t0\t0\t0\t1\n.\n"


def test_unique_ids_coalesce_per_function(net: Net) -> None:
    a, b, worker = net.peer(), net.peer(), net.peer()
    a.send(T.SUBMIT_JOB, b"f", b"same", b"1")
    b.send(T.SUBMIT_JOB, b"f", b"same", b"2")
    b.send(T.SUBMIT_JOB, b"g", b"same", b"3")
    assert a.take() == [("JOB_CREATED", "H:testhost:1")]
    assert b.take() == [("JOB_CREATED", "H:testhost:1"), ("JOB_CREATED", "H:testhost:2")]
    worker.send(T.CAN_DO, b"f")
    worker.send(T.GRAB_JOB_UNIQ)
    worker.take()
    worker.send(T.WORK_COMPLETE, b"H:testhost:1", b"done")
    assert a.take() == b.take() == [("WORK_COMPLETE", "H:testhost:1", "done")]
    # Once done, the unique id is free again.
    a.send(T.SUBMIT_JOB_BG, b"f", b"same", b"4")
    assert a.take() == [("JOB_CREATED", "H:testhost:3")]


def test_one_client_submitting_a_unique_twice_hears_the_result_once(net: Net) -> None:
    client, worker = net.peer(), net.peer()
    client.send(T.SUBMIT_JOB, b"f", b"u", b"x")
    client.send(T.SUBMIT_JOB, b"f", b"u", b"x")
    worker.send(T.CAN_DO, b"f")
    worker.send(T.GRAB_JOB_UNIQ)
    worker.send(T.WORK_COMPLETE, b"H:testhost:1", b"r")
    assert client.take() == [
        ("JOB_CREATED", "H:testhost:1"),
        ("JOB_CREATED", "H:testhost:1"),
        ("WORK_COMPLETE", "H:testhost:1", "r"),
    ]


def test_a_unique_of_dash_means_the_payload(net: Net) -> None:
    client = net.peer()
    client.send(T.SUBMIT_JOB_BG, b"f", b"-", b"payload")
    client.send(T.SUBMIT_JOB_BG, b"f", b"-", b"payload")
    client.send(T.GET_STATUS_UNIQUE, b"payload")
    assert client.take() == [
        ("JOB_CREATED", "H:testhost:1"),
        ("JOB_CREATED", "H:testhost:1"),
        ("STATUS_RES_UNIQUE", "payload", "1", "0", "0", "0", "0"),
    ]


def test_exceptions_reach_only_clients_that_asked_others_get_a_clean_work_fail(net: Net) -> None:
    asked, plain, worker = net.peer(), net.peer(), net.peer()
    asked.send(T.OPTION_REQ, b"exceptions")
    assert asked.take() == [("OPTION_RES", "exceptions")]
    asked.send(T.SUBMIT_JOB, b"f", b"u", b"x")
    plain.send(T.SUBMIT_JOB, b"f", b"u", b"x")
    worker.send(T.CAN_DO, b"f")
    worker.send(T.GRAB_JOB_UNIQ)
    worker.take()
    worker.send(T.WORK_EXCEPTION, b"H:testhost:1", b"boom")
    assert asked.take()[-1] == ("WORK_EXCEPTION", "H:testhost:1", "boom")
    assert plain.take()[-1] == ("WORK_FAIL", "H:testhost:1")
    # The job is over: a WORK_FAIL after it is refused as gearmand does.
    worker.send(T.WORK_FAIL, b"H:testhost:1")
    assert worker.take() == [("ERROR", "JOB_NOT_FOUND", "Job given in work result not found")]


def test_warnings_and_fail_are_forwarded(net: Net) -> None:
    client, worker = net.peer(), net.peer()
    worker.send(T.CAN_DO, b"f")
    client.send(T.SUBMIT_JOB, b"f", b"", b"x")
    worker.send(T.GRAB_JOB_UNIQ)
    worker.send(T.WORK_WARNING, b"H:testhost:1", b"careful")
    worker.send(T.WORK_FAIL, b"H:testhost:1")
    assert client.take()[1:] == [
        ("WORK_WARNING", "H:testhost:1", "careful"),
        ("WORK_FAIL", "H:testhost:1"),
    ]


def test_work_packets_for_another_workers_job_are_refused(net: Net) -> None:
    client, worker, other = net.peer(), net.peer(), net.peer()
    worker.send(T.CAN_DO, b"f")
    client.send(T.SUBMIT_JOB, b"f", b"", b"x")
    worker.send(T.GRAB_JOB_UNIQ)
    other.send(T.WORK_COMPLETE, b"H:testhost:1", b"stolen")
    assert other.take() == [("ERROR", "JOB_NOT_FOUND", "Job given in work result not found")]
    assert client.take() == [("JOB_CREATED", "H:testhost:1")]


def test_get_status_of_unknown_queued_and_running_jobs(net: Net) -> None:
    client, worker = net.peer(), net.peer()
    client.send(T.GET_STATUS, b"H:nowhere:9")
    assert client.take() == [("STATUS_RES", "H:nowhere:9", "0", "0", "0", "0")]
    client.send(T.SUBMIT_JOB, b"f", b"u", b"x")
    client.send(T.GET_STATUS, b"H:testhost:1")
    assert client.take()[1] == ("STATUS_RES", "H:testhost:1", "1", "0", "0", "0")
    worker.send(T.CAN_DO, b"f")
    worker.send(T.GRAB_JOB_UNIQ)
    worker.send(T.WORK_STATUS, b"H:testhost:1", b"3", b"4")
    client.take()
    client.send(T.GET_STATUS, b"H:testhost:1")
    client.send(T.GET_STATUS_UNIQUE, b"u")
    assert client.take() == [
        ("STATUS_RES", "H:testhost:1", "1", "1", "3", "4"),
        ("STATUS_RES_UNIQUE", "u", "1", "1", "3", "4", "1"),
    ]


def test_echo_options_and_client_id(net: Net) -> None:
    peer = net.peer()
    peer.send(T.ECHO_REQ, b"hi\0there")
    peer.send(T.OPTION_REQ, b"bogus")
    peer.send(T.SET_CLIENT_ID, b"me")
    peer.send(T.CAN_DO, b"a")
    peer.send(T.CAN_DO_TIMEOUT, b"b", b"5")
    assert peer.take() == [
        ("ECHO_RES", "hi\0there"),
        ("ERROR", "UNKNOWN_OPTION", "Server does not recognize given option"),
    ]
    workers = net.admin("workers").splitlines()
    assert f"{peer.id} 127.0.0.1 me : b a".encode() in workers
    peer.send(T.CANT_DO, b"a")
    assert f"{peer.id} 127.0.0.1 me : b".encode() in net.admin("workers").splitlines()
    peer.send(T.RESET_ABILITIES)
    assert f"{peer.id} 127.0.0.1 me :".encode() in net.admin("workers").splitlines()


def test_packets_only_a_server_sends_are_not_expected(net: Net) -> None:
    peer = net.peer()
    for kind in (T.NOOP, T.JOB_CREATED, T.SUBMIT_JOB_SCHED, T.SUBMIT_REDUCE_JOB):
        args = [b"x"] * (
            8 if kind is T.SUBMIT_JOB_SCHED else 5 if kind is T.SUBMIT_REDUCE_JOB else 1
        )
        peer.send(kind, *(args if kind is not T.NOOP else []))
    assert peer.take() == [("ERROR", "INVALID_COMMAND", "Command not expected")] * 4
    peer.raw(b"\0RES" + request(T.ECHO_REQ, b"x")[4:])
    assert peer.take() == [("ERROR", "INVALID_MAGIC", "Request magic expected")]


def test_pre_sleep_with_work_waiting_wakes_at_once_and_noop_is_sent_once(net: Net) -> None:
    worker, client = net.peer(), net.peer()
    worker.send(T.CAN_DO, b"f")
    client.send(T.SUBMIT_JOB_BG, b"f", b"", b"1")
    worker.send(T.PRE_SLEEP)
    assert worker.take() == [("NOOP",)]
    worker.send(T.GRAB_JOB_UNIQ)
    worker.send(T.PRE_SLEEP)
    worker.take()
    client.send(T.SUBMIT_JOB_BG, b"f", b"", b"2")
    client.send(T.SUBMIT_JOB_BG, b"f", b"", b"3")
    assert worker.take() == [("NOOP",)]


def test_a_dead_workers_job_is_queued_again_and_counts_a_retry(net: Net) -> None:
    client, worker = net.peer(), net.peer()
    worker.send(T.CAN_DO, b"f")
    client.send(T.SUBMIT_JOB, b"f", b"", b"x")
    worker.send(T.GRAB_JOB_UNIQ)
    worker.close()
    assert net.admin("show jobs") == b"H:testhost:1\t1\t0\t0\n.\n"
    second = net.peer()
    second.send(T.CAN_DO, b"f")
    second.send(T.GRAB_JOB_UNIQ)
    assert second.take() == [("JOB_ASSIGN_UNIQ", "H:testhost:1", "f", "", "x")]
    second.send(T.WORK_COMPLETE, b"H:testhost:1", b"ok")
    assert client.take()[-1] == ("WORK_COMPLETE", "H:testhost:1", "ok")


def test_job_retries_fail_the_job_when_reached() -> None:
    net = Net(job_retries=2)
    client = net.peer()
    client.send(T.SUBMIT_JOB, b"f", b"", b"x")
    for tries in (1, 2):
        worker = net.peer()
        worker.send(T.CAN_DO, b"f")
        worker.send(T.GRAB_JOB_UNIQ)
        assert worker.take()[0][0] == "JOB_ASSIGN_UNIQ"
        worker.close()
        expected = [] if tries == 1 else [("WORK_FAIL", "H:testhost:1")]
        assert client.take()[tries == 1 :] == expected
    assert net.admin("show jobs") == b".\n"


def test_can_do_timeout_queues_the_job_again_when_the_worker_is_late(net: Net) -> None:
    client, worker = net.peer(), net.peer()
    worker.send(T.CAN_DO_TIMEOUT, b"f", b"2")
    client.send(T.SUBMIT_JOB, b"f", b"", b"x")
    worker.send(T.GRAB_JOB_UNIQ)
    assert net.state.tick() == net.clock.now + 2
    net.clock.now += 2.5
    assert net.state.tick() is None
    assert net.admin("show jobs") == b"H:testhost:1\t1\t0\t0\n.\n"
    worker.send(T.WORK_COMPLETE, b"H:testhost:1", b"late")
    assert worker.take()[-1] == ("ERROR", "JOB_NOT_FOUND", "Job given in work result not found")


def test_epoch_jobs_wait_for_their_time(net: Net) -> None:
    client, worker = net.peer(), net.peer()
    worker.send(T.CAN_DO, b"f")
    when = int(net.clock.now) + 60
    client.send(T.SUBMIT_JOB_EPOCH, b"f", b"", str(when).encode(), b"later")
    worker.send(T.GRAB_JOB_UNIQ)
    assert worker.take() == [("NO_JOB",)]
    worker.send(T.PRE_SLEEP)
    assert net.state.tick() == when
    net.clock.now = when
    net.state.tick()
    net.deliver()
    assert worker.take() == [("NOOP",)]
    worker.send(T.GRAB_JOB_UNIQ)
    assert worker.take()[0][-1] == "later"


def test_a_foreground_job_whose_client_left_is_dropped_when_a_worker_would_take_it(
    net: Net,
) -> None:
    client, worker = net.peer(), net.peer()
    client.send(T.SUBMIT_JOB, b"f", b"", b"forgotten")
    client.send(T.SUBMIT_JOB_BG, b"f", b"", b"kept")
    client.close()
    # As gearmand: still counted, flagged ignored in show jobs.
    assert net.admin("status") == b"f\t2\t0\t0\n.\n"
    assert net.admin("show jobs") == b"H:testhost:1\t0\t1\t0\nH:testhost:2\t0\t0\t1\n.\n"
    worker.send(T.CAN_DO, b"f")
    worker.send(T.GRAB_JOB_UNIQ)
    assert worker.take() == [("JOB_ASSIGN_UNIQ", "H:testhost:2", "f", "", "kept")]
    assert net.admin("status") == b"f\t1\t1\t1\n.\n"


def test_maxqueue_refuses_submits_beyond_the_limit(net: Net) -> None:
    client, worker = net.peer(), net.peer()
    worker.send(T.CAN_DO, b"f")
    assert net.admin("maxqueue f 1") == b"OK\r\n"
    client.send(T.SUBMIT_JOB_BG, b"f", b"", b"1")
    client.send(T.SUBMIT_JOB, b"f", b"", b"2")
    assert client.take() == [
        ("JOB_CREATED", "H:testhost:1"),
        ("ERROR", "QUEUE_ERROR", "Job queue is full"),
    ]
    assert net.admin("maxqueue f 0") == b"OK\r\n"
    client.send(T.SUBMIT_JOB_BG, b"f", b"", b"3")
    assert client.take() == [("JOB_CREATED", "H:testhost:2")]


def test_admin_commands_in_gearmands_formats(net: Net) -> None:
    client = net.peer()
    assert net.admin("version") == b"OK " + VERSION + b"\n"
    assert net.admin("getpid") == b"OK 4242\n"
    assert net.admin("show jobs") == b".\n"
    assert net.admin("cancel job H:x:1") == b"ERR UNKNOWN_JOB\r\n"
    assert net.admin("drop function nope") == b"ERR function not found\r\n"
    assert net.admin("bogus") == b"ERR UNKNOWN_COMMAND Unknown+server+commandbogus\r\n"
    assert net.admin("maxqueue") == (
        b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+"
        b"maxqueue\r\n"
    )
    client.send(T.SUBMIT_JOB_BG, b"f", b"u", b"x")
    assert net.admin("show unique jobs") == b"u\n.\n"
    assert net.admin("cancel job H:testhost:1") == b"OK\r\n"
    assert net.admin("show jobs") == b"H:testhost:1\t0\t1\t0\n.\n"
    assert net.admin("drop function f") == b"OK\r\n"
    assert net.admin("status") == b".\n"
    assert net.admin("create function g") == b"OK\r\n"
    assert net.admin("status") == b"g\t0\t0\t0\n.\n"


def test_drop_function_refuses_while_workers_can_do_it(net: Net) -> None:
    worker = net.peer()
    worker.send(T.CAN_DO, b"f")
    assert net.admin("drop function f") == (
        b"ERR there are still connected workers or executing clients\r\n"
    )


def test_shutdown_sets_the_flag(net: Net) -> None:
    assert net.admin("shutdown graceful") == b"OK\r\n"
    assert net.state.shutdown == "graceful"


def test_admin_lines_and_packets_may_alternate_on_one_connection(net: Net) -> None:
    peer = net.peer()
    peer.raw(b"version\r\n" + request(T.ECHO_REQ, b"x") + b"getpid\n")
    assert peer.take() == [("ECHO_RES", "x")]
    assert peer.text == b"OK " + VERSION + b"\nOK 4242\n"


def test_input_split_anywhere_is_reassembled(net: Net) -> None:
    peer = net.peer()
    data = request(T.ECHO_REQ, b"a" * 100) + b"getpid\n" + request(T.ECHO_REQ, b"b")
    for i in range(len(data)):
        peer.raw(data[i : i + 1])
    assert peer.take() == [("ECHO_RES", "a" * 100), ("ECHO_RES", "b")]
    assert peer.text == b"OK 4242\n"


@pytest.mark.parametrize("chunk", [5, 13, 40, 100, 150, 5000])
def test_packets_split_after_complete_ones_are_run_as_soon_as_whole(net: Net, chunk: int) -> None:
    peer = net.peer()
    packets = [request(T.ECHO_REQ, b"%d" % i * 40) for i in range(30)]
    ends = [sum(len(p) for p in packets[: i + 1]) for i in range(30)]
    data = b"".join(packets)
    for start in range(0, len(data), chunk):
        peer.raw(data[start : start + chunk])
        # Every packet wholly sent by now has been answered: nothing waits for more bytes.
        assert len(peer.inbox) == len([end for end in ends if end <= start + chunk])
    assert [p.args[0] for p in peer.inbox] == [b"%d" % i * 40 for i in range(30)]


def test_an_oversized_packet_closes_the_connection_before_its_body_comes() -> None:
    net = Net(max_packet_size=1024)
    peer = net.peer()
    peer.raw(b"\0REQ" + (16).to_bytes(4, "big") + (1025).to_bytes(4, "big"))
    assert peer.closed_by_server


def test_an_overlong_admin_line_and_garbage_close_the_connection(net: Net) -> None:
    line, garbage = net.peer(), net.peer()
    line.raw(b"x" * (64 * 1024 + 1))
    assert line.closed_by_server
    garbage.raw(b"\0XYZ" + bytes(8))
    assert garbage.closed_by_server


def test_test_controls_hold_release_show_queued_and_drop_workers(net: Net) -> None:
    client, worker = net.peer(), net.peer()
    worker.send(T.CAN_DO, b"f")
    worker.send(T.PRE_SLEEP)
    assert net.admin("hold f") == b"OK\r\n"
    client.send(T.SUBMIT_JOB_LOW_BG, b"f", b"u1", b"\xff\x00data")
    assert worker.take() == []  # held: no wake-up
    worker.send(T.GRAB_JOB_UNIQ)
    assert worker.take() == [("NO_JOB",)]
    assert [(j.handle, j.unique, j.priority, j.data) for j in net.state.queued_jobs()] == [
        ("H:testhost:1", "u1", 2, b"\xff\x00data")
    ]
    assert net.admin("show queued f").endswith(b"\n.\n")
    worker.send(T.PRE_SLEEP)
    assert net.admin("release f") == b"OK\r\n"
    assert worker.take() == [("NOOP",)]
    worker.send(T.GRAB_JOB_UNIQ)
    assert worker.take()[0][1] == "H:testhost:1"
    assert net.admin("drop workers f") == b"OK 1\n"
    assert worker.closed_by_server


def test_background_jobs_are_kept_in_the_store_until_done(tmp_path) -> None:
    store = SQLiteStore(tmp_path / "q.sqlite3")
    net = Net(store=store)
    client, worker = net.peer(), net.peer()
    client.send(T.SUBMIT_JOB_HIGH_BG, b"f", b"a", b"1")
    client.send(T.SUBMIT_JOB_LOW_BG, b"f", b"", b"2")
    client.send(T.SUBMIT_JOB_LOW_BG, b"f", b"", b"3")
    client.send(T.SUBMIT_JOB, b"f", b"", b"foreground is never kept")
    assert [(j.unique, j.priority, j.data) for j in store.load()] == [
        (b"a", 0, b"1"),
        (b"", 2, b"2"),
        (b"", 2, b"3"),
    ]
    worker.send(T.CAN_DO, b"f")
    worker.send(T.GRAB_JOB_UNIQ)
    worker.send(T.WORK_COMPLETE, b"H:testhost:1", b"")
    assert [j.data for j in store.load()] == [b"2", b"3"]
    # A new state on the same store queues them again, with their priority.
    again = Net(store=store)
    assert [(j.unique, j.priority, j.data) for j in again.state.queued_jobs()] == [
        ("", 2, b"2"),
        ("", 2, b"3"),
    ]
    store.close()
