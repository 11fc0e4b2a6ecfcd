"""A simulated run as a Chrome trace event file (JSON), which Perfetto and chrome://tracing open:
one process for the runtime (a thread per dispatcher slot and the client), one for the pool (a
thread per connection, busy from acquisition to release, pings included), one for the
orchestrations (start to the client seeing completion)."""

from __future__ import annotations


def chrome_trace(records: list[dict]) -> dict:
    events: list[dict] = []
    threads: dict[tuple[int, str], int] = {}

    def tid(pid: int, name: str) -> int:
        key = (pid, name)
        if key not in threads:
            threads[key] = len(threads) + 1
            events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": threads[key],
                           "args": {"name": name}})  # fmt: skip
        return threads[key]

    for pid, name in ((1, "runtime"), (2, "connection pool"), (3, "orchestrations")):
        events.append({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": name}})
    for r in records:
        if r.get("type") == "call":
            args = {"instance": r["instance"], "commit_ms": r.get("commit_ms")}
            events.append({
                "name": r["op"], "cat": "call", "ph": "X", "pid": 1, "tid": tid(1, r["actor"]),
                "ts": r["start_ms"] * 1000.0, "dur": (r["end_ms"] - r["start_ms"]) * 1000.0,
                "args": args,
            })  # fmt: skip
            if r.get("connection", -1) >= 0:
                events.append({
                    "name": r["op"], "cat": "connection", "ph": "X", "pid": 2,
                    "tid": tid(2, f"connection {r['connection']}"),
                    "ts": r["acquired_ms"] * 1000.0,
                    "dur": (r["released_ms"] - r["acquired_ms"]) * 1000.0, "args": args,
                })  # fmt: skip
        elif r.get("type") == "orchestration":
            events.append({
                "name": r["instance"], "cat": "orchestration", "ph": "X", "pid": 3,
                "tid": tid(3, "warm-up" if r.get("warmup") else "measured"),
                "ts": r["start_ms"] * 1000.0, "dur": (r["end_ms"] - r["start_ms"]) * 1000.0,
            })  # fmt: skip
    return {"traceEvents": events, "displayTimeUnit": "ms"}
