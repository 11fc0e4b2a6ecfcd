"""A TCP proxy that adds a round-trip time between the runtime and PostgreSQL, as the lab's
`tcp_delay_proxy.py` did: every chunk read from one side is written to the other RTT/2 after it
arrived, in each direction, pipelined (a chunk never waits behind the one before it, as on a
constant-delay link), with TCP_NODELAY on both legs.

It differs from a per-packet delay (netem, the lab's NFQUEUE delayer) in that the TCP handshake to
the proxy is instant (a new connection pays its first RTT at its first bytes) and ACKs and window
updates are not delayed: irrelevant for the provider's small request/response messages.

Timing: every chunk gets an absolute deadline (arrival + RTT/2) on the loop's monotonic clock.
The lab's proxy slept with the default epoll event loop, whose timeouts are whole milliseconds
rounded up, so `asyncio.sleep(0.0125)` took ~14.3 ms and a nominal RTT of 25 ms gave 29.1 ms
(traces/recorded/README.md). This loop waits with select(), whose timeout has microsecond
resolution, sleeps to just before each deadline and spins (yielding the GIL) the last stretch.

`DelayProxy` runs in a background thread of the caller's process; `ProxyProcess` runs the same
proxy in a child process, for callers with threads that hold the GIL for long: duroxide's
`PostgresProvider.connect_with_schema` blocks in Rust without releasing it, so an in-process
proxy could not forward the very connection being made.

A pause (`record --fault link@START+DURATION`) is a link that carries nothing for a while and
loses nothing: connections stay open, nothing is delivered, and the bytes that arrive meanwhile
are held; when it ends, what was already due goes at once and what arrived during the pause goes
RTT/2 after the end, in order. New connections are still accepted (their bytes are held too).
`ProxyProcess` takes "pause" and "resume" as lines on its standard input and answers each with
a line ("paused", "resumed") once the loop has done it.
"""

from __future__ import annotations

import asyncio
import collections
import math
import selectors
import signal
import socket
import sys
import threading
import time
import weakref

from durosim.lab.child import ChildProcess

# Sleep until this long before a deadline, then finish with short yielding spins: select()
# overshoots by the kernel's timer slack plus a wake-up (50-200 us on a loaded 2-core VM).
SPIN_S = 0.0003


class _Leg(asyncio.Protocol):
    """One TCP connection of a proxied pair: it delays what it receives and writes it into its
    peer's transport at the deadline."""

    def __init__(self, proxy: DelayProxy):
        self.proxy = proxy
        self.loop = proxy.loop
        self.transport: asyncio.Transport | None = None
        self.peer: _Leg | None = None
        self.queue: collections.deque = collections.deque()
        self.timer: asyncio.TimerHandle | None = None
        self.closing = False
        self.eof_forwarded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.proxy.legs.add(self)
        self.proxy.known.add(self)

    def data_received(self, data: bytes) -> None:
        self._schedule((self.proxy.due(), data))

    def eof_received(self) -> bool:
        self._schedule((self.proxy.due(), b""))
        return True  # keep the other direction open until its own EOF

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy.legs.discard(self)
        self.closing = True
        if not self.proxy.stopping:
            self._schedule((self.proxy.due(), None))

    # The peer pauses us while its socket cannot take more (flow control across the proxy).
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None and not self.peer.closing:
            self.peer.transport.resume_reading()

    def _schedule(self, item: tuple[float, bytes | None]) -> None:
        self.queue.append(item)
        if self.timer is None and self.peer is not None:
            self._arm()

    def _arm(self) -> None:
        if self.proxy.paused:  # `resume` arms again
            return
        due = self.queue[0][0]
        self.timer = self.loop.call_at(due - SPIN_S, self._spin)

    def hold(self) -> None:
        """Pause: deliver nothing until `release`."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def release(self, resumed_at: float) -> None:
        """Resume: what arrived during the pause is due RTT/2 after `resumed_at`."""
        end = resumed_at + self.proxy.half_s
        self.queue = collections.deque(
            (end if due == math.inf else due, data) for due, data in self.queue
        )
        if self.queue and self.peer is not None and self.timer is None:
            self._arm()

    def _spin(self) -> None:
        self.timer = None
        due = self.queue[0][0]
        while self.loop.time() < due:
            time.sleep(0)  # yield the GIL to other threads while waiting the last stretch
        self._deliver()

    def _deliver(self) -> None:
        """Write everything that is due, in order; re-arm for the next chunk."""
        peer = self.peer
        assert peer is not None and peer.transport is not None
        now = self.loop.time()
        while self.queue and self.queue[0][0] <= now:
            _, data = self.queue.popleft()
            if data is None:
                self.queue.clear()
                peer.transport.close()
                return
            if data == b"":
                if peer.transport.can_write_eof() and not peer.transport.is_closing():
                    peer.transport.write_eof()
                self.eof_forwarded = True
                if peer.eof_forwarded:  # both directions are done
                    peer.transport.close()
                    if self.transport is not None:
                        self.transport.close()
                continue
            if not peer.transport.is_closing():
                peer.transport.write(data)
        if self.queue:
            self._arm()

    def attach(self, peer: _Leg) -> None:
        self.peer = peer
        if self.queue and self.timer is None:
            self._arm()


class DelayProxy:
    """Listen on 127.0.0.1 (a free port) and forward to `upstream`, adding `rtt_ms` per round
    trip. Runs its own event loop in a background thread; use as a context manager."""

    def __init__(self, upstream_host: str, upstream_port: int, rtt_ms: float):
        if rtt_ms < 0:
            raise ValueError(f"rtt_ms must be >= 0, got {rtt_ms}")
        self.upstream = (upstream_host, upstream_port)
        self.rtt_ms = rtt_ms
        self.half_s = rtt_ms / 2000.0
        self.host = "127.0.0.1"
        self.port = 0
        self.legs: set[_Leg] = set()
        # every leg that may still hold bytes, closed ones too (a pause holds their close)
        self.known: weakref.WeakSet[_Leg] = weakref.WeakSet()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self.stopping = False
        self.paused = False

    def due(self) -> float:
        """The deadline of a chunk arriving now: RTT/2 on; during a pause, held (inf)."""
        return math.inf if self.paused else self.loop.time() + self.half_s

    def pause(self) -> None:
        """Hold all traffic until `resume` (from any thread; returns once the loop has)."""
        self._in_loop(self._pause)

    def resume(self) -> None:
        """Deliver what was held (from any thread; returns once the loop has)."""
        self._in_loop(self._resume)

    def _in_loop(self, action) -> None:
        async def run() -> None:
            action()

        asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=10)

    def _pause(self) -> None:
        self.paused = True
        for leg in list(self.known):
            leg.hold()

    def _resume(self) -> None:
        self.paused = False
        now = self.loop.time()
        for leg in list(self.known):
            leg.release(now)

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> DelayProxy:
        # select() takes a microsecond timeout; epoll and poll only whole milliseconds.
        self.loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self._server = self.loop.run_until_complete(
                    self.loop.create_server(self._accept, self.host, 0)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as err:  # reported to the caller of start()
                failure.append(err)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, name="durosim-delay-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self.loop.close()
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close the listener and every connection, stop the loop and join its thread."""
        if self._thread is None or self.loop is None:
            return
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop)
            self._thread.join(timeout=10)
        self.loop.close()
        self._thread = None

    async def _shutdown(self) -> None:
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for leg in list(self.legs):
            if leg.timer is not None:
                leg.timer.cancel()
            if leg.transport is not None:
                leg.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        # Two turns of the loop: the aborted transports close their sockets, the tasks unwind.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self.loop.stop()

    def _accept(self) -> _Leg:
        client = _Leg(self)
        task = self.loop.create_task(self._connect_upstream(client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return client

    async def _connect_upstream(self, client: _Leg) -> None:
        """Open the upstream leg; a client whose upstream cannot be reached is closed at once."""
        try:
            _, upstream = await self.loop.create_connection(lambda: _Leg(self), *self.upstream)
        except OSError:
            if client.transport is not None:
                client.transport.close()
            return
        if client.closing:
            upstream.transport.close()
            return
        client.attach(upstream)
        upstream.attach(client)


class ProxyProcess(ChildProcess):
    """`DelayProxy` in a child process of its own (its own GIL), stopped when `stop()` closes
    its stdin or this process dies; use as a context manager."""

    def __init__(self, upstream_host: str, upstream_port: int, rtt_ms: float):
        if rtt_ms < 0:
            raise ValueError(f"rtt_ms must be >= 0, got {rtt_ms}")
        super().__init__(
            "delay proxy", _CHILD, [upstream_host, str(upstream_port), repr(float(rtt_ms))]
        )
        self.host = "127.0.0.1"
        self.port = 0

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def pause(self) -> None:
        """Hold all traffic until `resume`; returns once the child has."""
        self._tell("pause", "paused")

    def resume(self) -> None:
        self._tell("resume", "resumed")

    def _tell(self, command: str, answer: str) -> None:
        process = self.process
        if process is None:
            raise OSError(f"{self.what} is not running")
        process.stdin.write(command + "\n")
        process.stdin.flush()
        line = process.stdout.readline().strip()
        if line != answer:
            raise OSError(f"{self.what} did not {command}: {line or 'no answer'}")

    def start(self) -> ProxyProcess:
        line = self.first_line()
        if not line.isdigit():
            self.stop()
            raise OSError(f"delay proxy did not start: {line}")
        self.port = int(line)
        return self


def _serve(upstream_host: str, upstream_port: str, rtt_ms: str) -> None:
    """The child of `ProxyProcess`: print the port, forward until stdin closes, pausing and
    resuming as its lines say."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with DelayProxy(upstream_host, int(upstream_port), float(rtt_ms)) as proxy:
        print(proxy.port, flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "pause":
                proxy.pause()
                print("paused", flush=True)
            elif command == "resume":
                proxy.resume()
                print("resumed", flush=True)


_CHILD = "import sys; from durosim.lab.delay_proxy import _serve; _serve(*sys.argv[1:])"
