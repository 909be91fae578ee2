"""Request dependencies on process-wide state: the settings and the clock."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from computebill.clock import Clock
from computebill.config import Settings


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


SettingsDep = Annotated[Settings, Depends(_settings)]
ClockDep = Annotated[Clock, Depends(_clock)]
