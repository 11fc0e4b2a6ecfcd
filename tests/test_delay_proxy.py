"""The delay proxy adds the round-trip time it is asked for, no more, no less, and goes away
cleanly: measured with a TCP echo server on 127.0.0.1 behind it."""

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


def median_rtt_ms(port: int) -> float:
    with _connect(port) as sock:
        _exchange(sock)
        times = []
        for _ in range(ROUND_TRIPS):
            start = time.perf_counter()
            _exchange(sock)
            times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("rtt_ms", [10.0, 50.0])
def test_the_added_delay_is_the_asked_rtt_within_1_ms(echo_port, rtt_ms):
    direct = median_rtt_ms(echo_port)
    with DelayProxy("127.0.0.1", echo_port, rtt_ms) as proxy:
        added = median_rtt_ms(proxy.port) - direct
    assert abs(added - rtt_ms) <= 1.0, f"asked {rtt_ms} ms, added {added:.3f} ms"


def test_a_fractional_half_rtt_is_not_rounded_up_to_whole_ms(echo_port):
    # The lab's proxy turned a nominal 25 ms into 29.1 ms (asyncio.sleep(0.0125) took 14.3 ms).
    direct = median_rtt_ms(echo_port)
    with DelayProxy("127.0.0.1", echo_port, 25.0) as proxy:
        added = median_rtt_ms(proxy.port) - direct
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
    direct = median_rtt_ms(echo_port)
    proxy = ProxyProcess("127.0.0.1", echo_port, 10.0).start()
    process = proxy.process
    try:
        added = median_rtt_ms(proxy.port) - direct
    finally:
        proxy.stop()
    assert abs(added - 10.0) <= 1.0, f"added {added:.3f} ms"
    assert process.poll() is not None


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
        assert median_rtt_ms(proxy.port) >= 2.0
    finally:
        proxy.stop()
