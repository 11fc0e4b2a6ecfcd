"""The delay proxy adds the round-trip time it is asked for, no more, no less, and goes away
cleanly: measured with a TCP echo server on 127.0.0.1 behind it.

The delay is measured against the same kind of proxy asked for 0 ms, round trips taken in turn on
both: forwarding itself (four socket hops and the wake-ups of a sleeping process) costs 0.1-1 ms
on this shared 2-core VM, and more when it is busy. That cost is no part of the delay a proxy is
asked for, and it is no error in a recording: `durosim record` times `select 1` through the proxy
and the trace carries what the path really had."""

import socket
import socketserver
import statistics
import threading
import time

import pytest

from durosim.lab.delay_proxy import DelayProxy, ProxyProcess

ROUND_TRIPS = 30


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture(scope="module")
def echo_port():
    server = _Server(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _exchange(sock: socket.socket, size: int = 200) -> None:
    sock.sendall(b"x" * size)
    got = 0
    while got < size:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-exchange"
        got += len(chunk)


def added_ms(start, rtt_ms: float) -> float:
    """The median round trip through a proxy asked for `rtt_ms` minus that through one asked for
    0 ms, both started by `start(rtt_ms)` and timed alternately, so the machine's load at any
    moment weighs on both alike."""
    delayed, zero = start(rtt_ms), start(0.0)
    try:
        with _connect(delayed.port) as slow, _connect(zero.port) as fast:
            _exchange(slow)
            _exchange(fast)
            times: dict[socket.socket, list[float]] = {slow: [], fast: []}
            for _ in range(ROUND_TRIPS):
                for sock in (slow, fast):
                    begin = time.perf_counter()
                    _exchange(sock)
                    times[sock].append((time.perf_counter() - begin) * 1000.0)
    finally:
        delayed.stop()
        zero.stop()
    return statistics.median(times[slow]) - statistics.median(times[fast])


def thread_proxy(echo_port: int):
    return lambda rtt_ms: DelayProxy("127.0.0.1", echo_port, rtt_ms).start()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("rtt_ms", [10.0, 50.0])
def test_the_added_delay_is_the_asked_rtt_within_1_ms(echo_port, rtt_ms):
    added = added_ms(thread_proxy(echo_port), rtt_ms)
    assert abs(added - rtt_ms) <= 1.0, f"asked {rtt_ms} ms, added {added:.3f} ms"


def test_a_fractional_half_rtt_is_not_rounded_up_to_whole_ms(echo_port):
    # The lab's proxy turned a nominal 25 ms into 29.1 ms (asyncio.sleep(0.0125) took 14.3 ms).
    added = added_ms(thread_proxy(echo_port), 25.0)
    assert abs(added - 25.0) <= 1.0, f"added {added:.3f} ms"


def test_chunks_are_pipelined_not_delayed_behind_each_other(echo_port):
    with DelayProxy("127.0.0.1", echo_port, 50.0) as proxy, _connect(proxy.port) as sock:
        start = time.perf_counter()
        for _ in range(5):
            sock.sendall(b"y" * 10)
            time.sleep(0.005)
        got = 0
        while got < 50:
            got += len(sock.recv(65536))
        elapsed_ms = (time.perf_counter() - start) * 1000.0
    # Serialised they would take 5 x 50 ms; pipelined, one RTT plus the 20 ms of sending.
    assert 50.0 <= elapsed_ms < 90.0


def test_an_unreachable_upstream_closes_the_client_at_once():
    with DelayProxy("127.0.0.1", _free_port(), 10.0) as proxy, _connect(proxy.port) as sock:
        sock.settimeout(3)
        assert sock.recv(10) == b""


def test_an_upstream_that_closes_closes_the_client():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept_and_close():
        conn, _ = listener.accept()
        conn.close()

    closer = threading.Thread(target=accept_and_close, daemon=True)
    closer.start()
    with DelayProxy("127.0.0.1", port, 20.0) as proxy, _connect(proxy.port) as sock:
        sock.settimeout(3)
        start = time.perf_counter()
        assert sock.recv(10) == b""
        assert time.perf_counter() - start < 1.0
    closer.join()
    listener.close()


def test_stop_leaves_no_thread_and_no_listener(echo_port):
    proxy = DelayProxy("127.0.0.1", echo_port, 10.0).start()
    with _connect(proxy.port) as sock:
        _exchange(sock)
        proxy.stop()
        sock.settimeout(3)
        assert sock.recv(10) == b""
    assert not [t for t in threading.enumerate() if t.name == "durosim-delay-proxy"]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1)


def test_the_proxy_process_adds_the_rtt_and_stops(echo_port):
    processes = []

    def start(rtt_ms: float) -> ProxyProcess:
        proxy = ProxyProcess("127.0.0.1", echo_port, rtt_ms).start()
        processes.append(proxy.process)
        return proxy

    added = added_ms(start, 10.0)
    assert abs(added - 10.0) <= 1.0, f"added {added:.3f} ms"
    assert len(processes) == 2 and all(p.poll() is not None for p in processes)


def test_a_module_named_like_a_library_in_the_current_folder_does_not_break_it(
    echo_port, tmp_path, monkeypatch
):
    # A user's bisect.py or random.py beside their traces once replaced the stdlib module in
    # the proxy's child process (python -c puts the current folder first on sys.path).
    for name in ("bisect", "random", "selectors"):
        (tmp_path / f"{name}.py").write_text("raise SystemExit('shadowed')\n")
    monkeypatch.chdir(tmp_path)
    proxy = ProxyProcess("127.0.0.1", echo_port, 2.0).start()
    try:
        assert proxy.port > 0
        with _connect(proxy.port) as sock:
            begin = time.perf_counter()
            _exchange(sock)
            assert (time.perf_counter() - begin) * 1000.0 >= 2.0
    finally:
        proxy.stop()
