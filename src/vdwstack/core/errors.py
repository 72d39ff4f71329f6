"""Errors every stage may raise."""


class ConfigError(ValueError):
    """A bad configuration value; the message names the field."""
