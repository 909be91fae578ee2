"""A server process keeps what start-up built out of the garbage collector's full collections,
which otherwise paused every request of the process for tens of milliseconds."""

from __future__ import annotations

import json
import subprocess
import sys

from computebill.config import Settings
from tests.support.settings import settings_environment

# In a child process: build the app as `computebill app` does in each server process, then
# report what a full collection would still walk.
BUILD_THE_APP = """
import gc, json
from computebill.app import create_app_from_environment
create_app_from_environment()
print(json.dumps({"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())}))
"""


def test_the_server_process_freezes_what_start_up_built(settings: Settings) -> None:
    child = subprocess.run(
        [sys.executable, "-c", BUILD_THE_APP],
        env=settings_environment(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    heap = json.loads(child.stdout.splitlines()[-1])
    # The app's modules, routes and models are frozen; a full collection walks what is left.
    assert heap["frozen"] > 100_000
    assert heap["tracked"] < heap["frozen"] / 20
