"""The machine the benchmarks run on, and the bcrypt limit measured on it."""

from __future__ import annotations

import os
import platform
import secrets
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from bench.load import machine_busy_seconds

BCRYPT_SAMPLES = 5


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cores() -> int:
    return len(os.sched_getaffinity(0))


def busy_cores_now(seconds: float = 1.0) -> float:
    """How many cores the machine keeps busy before we start: other work skews every figure."""
    before = machine_busy_seconds()
    time.sleep(seconds)
    return max(0.0, machine_busy_seconds() - before) / seconds


@dataclass(frozen=True, slots=True)
class BcryptTiming:
    cores: int
    check_seconds: float  # one bcrypt.checkpw, median of BCRYPT_SAMPLES
    parallel_rate: float  # checks per second with one thread per core, all at once

    @property
    def limit(self) -> float:
        """Logins per second if every core did nothing but bcrypt: cores ÷ one check's time."""
        return self.cores / self.check_seconds

    def limit_for(self, concurrency: int) -> float:
        """The same for `concurrency` logins at a time (each keeps at most one core busy)."""
        return min(concurrency, self.cores) / self.check_seconds


def time_bcrypt(rounds: int, cores: int) -> BcryptTiming:
    """Time bcrypt.checkpw at this cost here, in this process, alone and on every core at once."""
    password = secrets.token_urlsafe(18).encode()
    hashed = bcrypt.hashpw(password, bcrypt.gensalt(rounds))

    def check(_: int = 0) -> None:
        bcrypt.checkpw(password, hashed)

    times = []
    for _ in range(BCRYPT_SAMPLES):
        started = time.perf_counter()
        check()
        times.append(time.perf_counter() - started)
    checks = 2 * cores
    with ThreadPoolExecutor(cores) as pool:  # bcrypt releases the GIL
        started = time.perf_counter()
        list(pool.map(check, range(checks)))
        parallel_rate = checks / (time.perf_counter() - started)
    return BcryptTiming(cores, statistics.median(times), parallel_rate)
