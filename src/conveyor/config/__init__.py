"""Conveyor settings: defaults < YAML file < environment variables < explicit overrides."""

from conveyor.config.loading import load_settings
from conveyor.config.models import (
    ApiToken,
    ConfigError,
    ConfigIssue,
    QueueSettings,
    Settings,
    WebUser,
)
from conveyor.durations import format_duration, parse_duration, parse_size

__all__ = [
    "ApiToken",
    "ConfigError",
    "ConfigIssue",
    "QueueSettings",
    "Settings",
    "WebUser",
    "format_duration",
    "load_settings",
    "parse_duration",
    "parse_size",
]
