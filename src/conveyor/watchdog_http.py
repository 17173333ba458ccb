"""What /healthz says once the watchdog found a stuck loop (see conveyor.watchdog)."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from conveyor import watchdog


def stuck_response() -> Response | None:
    """503 naming the stuck loops, or None while every loop iterates."""
    stuck = watchdog.stuck()
    if not stuck:
        return None
    return JSONResponse({"alive": False, "stuck": stuck}, status_code=503)
