"""Middleware Conveyor ships for common needs (docs/middleware.md): `sentry` (the
optional `sentry` extra) and `logging`."""
