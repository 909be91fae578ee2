"""A login for an unknown e-mail costs the same bcrypt check as a wrong password."""

from __future__ import annotations

import statistics
import time

import bcrypt

from computebill.config import Settings
from tests.support.http import api_for

ROUNDS = 10  # about 50-100 ms a hash here: large enough to dominate the request's own cost
SAMPLES = 9


async def test_unknown_and_known_emails_take_the_same_time(settings: Settings, email: str) -> None:
    started = time.perf_counter()
    bcrypt.checkpw(b"x", bcrypt.hashpw(b"y", bcrypt.gensalt(ROUNDS)))
    one_hash = (time.perf_counter() - started) / 2

    async for api in api_for(settings.model_copy(update={"bcrypt_rounds": ROUNDS})):
        await api.sign_up(email)
        known: list[float] = []
        unknown: list[float] = []
        for n in range(SAMPLES):  # interleaved, so drift in machine load hits both alike
            for target, times in ((email, known), (f"nobody{n}-{email}", unknown)):
                started = time.perf_counter()
                answer = await api.log_in(target, "a wrong password here")
                times.append(time.perf_counter() - started)
                assert answer.status_code == 401

    difference = abs(statistics.median(known) - statistics.median(unknown))
    noise = max(statistics.stdev(known), statistics.stdev(unknown))
    # Both paths run one bcrypt check: neither is much faster than one hash, and the gap
    # between them is within the spread of the measurements, far below one hash's time.
    assert min(statistics.median(known), statistics.median(unknown)) > 0.5 * one_hash
    assert difference < max(2 * noise, 0.25 * one_hash), (known, unknown, one_hash)
