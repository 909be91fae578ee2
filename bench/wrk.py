"""Load from wrk (Debian's `/usr/bin/wrk`, a compiled load generator), so that the floor measured
is the app's, not the client's; and the CPU time the app's processes used meanwhile.

Every run is one wrk process with a Lua script the benchmark writes into its temporary directory.
The script sends, in turn, the raw HTTP requests of a records file (each thread takes every
`threads`-th record, so threads never share one; a load of fewer records than threads, such as one
fixed request, is repeated until every thread has one; a thread that reaches its last record begins
again, and counts a wrap), or, for refresh, spends a pool of refresh tokens: each thread keeps a
queue of its tokens, takes one per request, and puts back the one each answer returns. An answer is
handled before its connection sends again, so a thread with as many tokens as connections never
runs dry; wrk itself calls `request()` once in the first thread to check the script, which spends a
token, so the pool has one more per thread. Its `done()` prints one line of JSON: wrk's counts and
latency percentiles, and what the threads counted (answers that were not 2xx, by status; requests
sent; wraps).
"""

from __future__ import annotations

import asyncio
import json
import resource
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.load import machine_busy_seconds

WRK = "/usr/bin/wrk"  # Debian's package
RESULT_MARK = "BENCH-WRK "
RECORD_SEPARATOR = "\x1e"  # ASCII RS: never in an HTTP request line, header or JSON body
TIMEOUT_SECONDS = 10
SOCKET_ERRORS = ("connect", "read", "write", "timeout")

_SCRIPT = r"""
-- One wrk run of the Compute Billing Platform's benchmark (written by bench/wrk.py).
local records_path, tokens_path, refresh_path = %(records)s, %(tokens)s, %(refresh_path)s
local thread_count = %(threads)d
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

local function mine(path, separator)
  local taken, index = {}, 0
  local file = assert(io.open(path, "rb"))
  local all = file:read("*a")
  file:close()
  for record in all:gmatch("[^" .. separator .. "]+") do
    if index %% thread_count == id then taken[#taken + 1] = record end
    index = index + 1
  end
  return taken
end

function init(args)
  non2xx, sent, wraps, next_record, statuses = 0, 0, 0, 1, {}
  records, tokens = {}, {}
  if records_path ~= "" then records = mine(records_path, "\30") end
  if tokens_path ~= "" then tokens = mine(tokens_path, "\n") end
end

function request()
  sent = sent + 1
  if tokens_path ~= "" then
    local token = table.remove(tokens, 1) or "none-left"
    return wrk.format("POST", refresh_path, {["Content-Type"] = "application/json"},
      '{"refresh_token":"' .. token .. '"}')
  end
  local record = records[next_record]
  next_record = next_record + 1
  if next_record > #records then next_record, wraps = 1, wraps + 1 end
  return record
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    statuses[status] = (statuses[status] or 0) + 1
  elseif tokens_path ~= "" then
    local token = body:match('"refresh_token"%%s*:%%s*"([^"]+)"')
    if token then tokens[#tokens + 1] = token end
  end
end

function done(summary, latency, requests)
  local non2xx_total, sent_total, wraps_total, statuses_total = 0, 0, 0, {}
  for _, thread in ipairs(threads) do
    non2xx_total = non2xx_total + thread:get("non2xx")
    sent_total = sent_total + thread:get("sent")
    wraps_total = wraps_total + thread:get("wraps")
    for status, count in pairs(thread:get("statuses")) do
      statuses_total[status] = (statuses_total[status] or 0) + count
    end
  end
  local counted = {}
  for status, count in pairs(statuses_total) do
    counted[#counted + 1] = string.format('"%%d":%%d', status, count)
  end
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"duration_us":%%d,"requests":%%d,"non2xx":%%d,"connect":%%d,"read":%%d,' ..
    '"write":%%d,"timeout":%%d,"sent":%%d,"wraps":%%d,"p50_us":%%d,"p99_us":%%d,' ..
    '"statuses":{%%s}}\n',
    summary.duration, summary.requests, non2xx_total, e.connect, e.read, e.write, e.timeout,
    sent_total, wraps_total, latency:percentile(50), latency:percentile(99),
    table.concat(counted, ",")))
end
"""


def raw_request(
    method: str,
    path: str,
    host: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> str:
    """One HTTP/1.1 request as wrk sends it, keep-alive."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body is not None or method != "GET":
        lines.append(f"Content-Length: {len(body or b'')}")
    return "\r\n".join(lines) + "\r\n\r\n" + (body or b"").decode()


@dataclass(frozen=True, slots=True)
class Load:
    """What one wrk run sends: raw requests in turn (`records`), or refresh-token rotation
    (`refresh_tokens`, at least one per connection) against `refresh_path`."""

    records: Sequence[str] = ()
    refresh_tokens: Sequence[str] = ()
    refresh_path: str = ""


@dataclass(frozen=True, slots=True)
class WrkResult:
    name: str
    connections: int
    seconds: float  # wrk's own measured duration
    requests: int  # answers wrk counted (any status)
    non2xx: int
    socket_errors: int  # connect, read, write and timeout errors
    sent: int  # requests started, including those still unanswered when wrk stopped
    wraps: int  # times a thread ran out of records and began again
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int]  # answers that were not 2xx, by status
    socket_error_counts: dict[str, int]
    app_cpu_seconds: float  # the app's processes (parent and children) over the run
    wrk_cpu_seconds: float
    machine_cpu_seconds: float  # every core, anything but idle

    @property
    def succeeded(self) -> int:
        return self.requests - self.non2xx

    @property
    def errors(self) -> int:
        return self.non2xx + self.socket_errors

    def error_detail(self) -> str:
        """What the errors were: `409 x3, timeout x1`."""
        kinds = [f"{status} x{count}" for status, count in sorted(self.statuses.items())]
        kinds += [f"{kind} x{count}" for kind, count in self.socket_error_counts.items()]
        return ", ".join(kinds)

    @property
    def throughput(self) -> float:
        return self.succeeded / self.seconds if self.seconds > 0 else 0.0

    @property
    def app_cpu_ms_per_request(self) -> float | None:
        return self.app_cpu_seconds / self.succeeded * 1000 if self.succeeded else None

    def cores(self) -> tuple[float, float, float]:
        """Cores busy on average: the app, wrk, everything else (PostgreSQL, Redis, …)."""
        app, load = self.app_cpu_seconds / self.seconds, self.wrk_cpu_seconds / self.seconds
        other = max(0.0, self.machine_cpu_seconds / self.seconds - app - load)
        return app, load, other


def app_processes(app_pid: int) -> list[psutil.Process]:
    """The app's parent process and every process under it (Uvicorn's server processes)."""
    parent = psutil.Process(app_pid)
    return [parent, *parent.children(recursive=True)]


def app_cpu_seconds(app_pid: int) -> float:
    total = 0.0
    for process in app_processes(app_pid):
        with suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def app_rss_bytes(app_pid: int) -> int:
    total = 0
    for process in app_processes(app_pid):
        with suppress(psutil.NoSuchProcess):
            total += int(process.memory_info().rss)
    return total


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua one for these paths


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Wrk:
    """Runs wrk against the app at `base_url` (app processes under `app_pid`), writing its
    scripts and records into `workdir`."""

    def __init__(self, base_url: str, app_pid: int, workdir: Path, *, max_threads: int) -> None:
        if shutil.which(WRK) is None:
            raise RuntimeError(f"{WRK} is missing: apt-get install wrk")
        self.base_url = base_url
        self.host = base_url.split("://", 1)[1]
        self.app_pid = app_pid
        self._workdir = workdir
        self._max_threads = max_threads
        self._runs = 0

    def _write(self, name: str, lines: Iterable[str], separator: str) -> str:
        path = self._workdir / name
        path.write_text(separator.join(lines) + separator)
        return str(path)

    def _script(self, load: Load, threads: int) -> Path:
        self._runs += 1
        records = tokens = ""
        if load.records:
            # Each thread takes every `threads`-th record: repeat a short load so that no thread
            # is left without one (its connections would send nothing).
            repeats = -(-threads // len(load.records))
            every = list(load.records) * repeats
            records = self._write(f"wrk-{self._runs}.records", every, RECORD_SEPARATOR)
        if load.refresh_tokens:
            tokens = self._write(f"wrk-{self._runs}.tokens", load.refresh_tokens, "\n")
        script = self._workdir / f"wrk-{self._runs}.lua"
        script.write_text(
            _SCRIPT
            % {
                "records": _lua_string(records),
                "tokens": _lua_string(tokens),
                "refresh_path": _lua_string(load.refresh_path),
                "threads": threads,
                "mark": RESULT_MARK,
            }
        )
        return script

    def _run(self, argv: list[str]) -> tuple[str, float, float, float]:
        """wrk's output, and the CPU time of wrk, of the app and of the machine meanwhile."""
        wrk_before, app_before = _children_cpu_seconds(), app_cpu_seconds(self.app_pid)
        machine_before = machine_busy_seconds()
        finished = subprocess.run(argv, capture_output=True, text=True, check=False)
        app = app_cpu_seconds(self.app_pid) - app_before
        machine = machine_busy_seconds() - machine_before
        if finished.returncode != 0:
            raise RuntimeError(f"wrk failed ({finished.returncode}): {finished.stderr.strip()}")
        return finished.stdout, _children_cpu_seconds() - wrk_before, app, machine

    async def run(self, name: str, load: Load, *, connections: int, seconds: float) -> WrkResult:
        threads = min(self._max_threads, connections)
        script = self._script(load, threads)
        argv = [
            WRK,
            f"--threads={threads}",
            f"--connections={connections}",
            f"--duration={max(1, round(seconds))}s",
            f"--timeout={TIMEOUT_SECONDS}s",
            "--latency",
            f"--script={script}",
            self.base_url,
        ]
        output, wrk_cpu, app_cpu, machine_cpu = await asyncio.to_thread(self._run, argv)
        marked = [line for line in output.splitlines() if line.startswith(RESULT_MARK)]
        if not marked:
            raise RuntimeError(f"wrk printed no result:\n{output}")
        figures: dict[str, Any] = json.loads(marked[-1].removeprefix(RESULT_MARK))
        return WrkResult(
            name=name,
            connections=connections,
            seconds=figures["duration_us"] / 1e6,
            requests=figures["requests"],
            non2xx=figures["non2xx"],
            socket_errors=sum(figures[k] for k in SOCKET_ERRORS),
            sent=figures["sent"],
            wraps=figures["wraps"],
            p50_ms=figures["p50_us"] / 1000,
            p99_ms=figures["p99_us"] / 1000,
            statuses={int(status): count for status, count in figures["statuses"].items()},
            socket_error_counts={kind: figures[kind] for kind in SOCKET_ERRORS if figures[kind]},
            app_cpu_seconds=app_cpu,
            wrk_cpu_seconds=wrk_cpu,
            machine_cpu_seconds=machine_cpu,
        )
