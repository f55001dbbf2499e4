"""Service configuration files, rendered by pure functions of the settings."""
