"""edge_msl.notify against a real AF_UNIX datagram socket bound by the test (path and abstract name)."""

import os
import socket

import pytest

from edge_msl.notify import Notifier


@pytest.fixture
def listener(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(2.0)
    yield sock, path
    sock.close()


def recv(sock):
    return sock.recv(4096).decode().split("\n")


def test_ready_status_stopping_over_a_path_socket(listener):
    sock, path = listener
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready("listening on hw:0\nwith a newline")
    assert recv(sock) == ["READY=1", "STATUS=listening on hw:0 with a newline"]
    assert n.status("2 sources")
    assert recv(sock) == ["STATUS=2 sources"]
    assert not n.status("2 sources")  # unchanged: not sent again
    assert n.stopping("bye")
    assert recv(sock) == ["STOPPING=1", "STATUS=bye"]


def test_abstract_namespace_socket():
    name = f"edge-msl-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        assert recv(sock) == ["READY=1"]
    finally:
        sock.close()


def test_watchdog_interval_and_rate_limit(listener):
    sock, path = listener
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())})
    assert n.watchdog_interval_s == pytest.approx(2.0)
    assert n.watchdog(now=100.0)
    assert recv(sock) == ["WATCHDOG=1"]
    assert not n.watchdog(now=101.0)  # within half the timeout: not sent
    assert n.watchdog(now=102.5)
    assert recv(sock) == ["WATCHDOG=1"]


def test_watchdog_meant_for_another_process_is_ignored(listener):
    _, path = listener
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"})
    assert n.watchdog_interval_s == 0 and not n.watchdog(now=100.0)


def test_without_systemd_everything_is_a_quiet_no_op(tmp_path):
    assert not Notifier({}).ready()
    # a socket that vanished must not raise into the daemon
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert n.enabled and not n.ready()
