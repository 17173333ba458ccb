"""`AlertDelivery`: sends the notifications the evaluation queued, with retries.

Each pass claims at most `BATCH` due rows (moving them on by a lease, so a sender that dies
mid-POST is retried, never lost) and POSTs them concurrently, each bounded by
`alerts.send_timeout`. A 2xx marks the row delivered; anything else reschedules it with
exponential backoff until `alerts.max_attempts`, then gives up and keeps the error for the
alerts page. Delivery is at least once: a receiver may see a notification twice after a
crash, and can tell by the `X-Conveyor-Delivery` id (PagerDuty by its dedup key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx

from conveyor import metrics
from conveyor.alerting.receivers import build_request
from conveyor.config import Settings
from conveyor.errors import DatabaseUnavailable, StatementRejected
from conveyor.store import Store
from conveyor.store.alerts import ClaimedNotification

log = logging.getLogger("conveyor.alerts")


class AlertDelivery:
    BATCH = 20

    def __init__(
        self, store: Store, settings: Settings, client: httpx.AsyncClient | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.alerts = settings.alerts
        self.interval = self.alerts.delivery_interval
        self._client = client
        self._owns_client = client is None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.alerts.send_timeout, follow_redirects=False, trust_env=True
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None

    async def run_once(self) -> int:
        """Send what is due; return how many were delivered."""
        # Past the lease, a claimed row is due again: longer than one POST can take.
        lease = 2 * self.alerts.send_timeout + 5.0
        claimed = await self.store.claim_alert_notifications(self.BATCH, lease)
        if not claimed:
            return 0
        results = await asyncio.gather(*(self._send(n) for n in claimed))
        return sum(results)

    async def _send(self, n: ClaimedNotification) -> bool:
        receiver = self.alerts.receiver(n.receiver)
        if receiver is None:
            await self._failed(n, "receiver no longer configured", give_up=True)
            return False
        request = build_request(receiver, n, self.settings.database.schema_name)
        try:
            response = await self.client.post(
                request.url, content=request.body, headers=request.headers
            )
        except httpx.HTTPError as error:
            # The message, never the URL: a Slack URL is a credential.
            await self._failed(n, f"{type(error).__name__}: {error}"[:500])
            return False
        if not response.is_success:
            text = response.text[:200].strip()
            await self._failed(n, f"HTTP {response.status_code}" + (f": {text}" if text else ""))
            return False
        await self.store.mark_alert_notification_delivered(n.id, n.attempts)
        metrics.ALERT_NOTIFICATIONS.labels(n.receiver, "delivered").inc()
        return True

    async def _failed(self, n: ClaimedNotification, error: str, *, give_up: bool = False) -> None:
        alerts = self.alerts
        last = give_up or n.attempts >= alerts.max_attempts
        await self.store.reschedule_alert_notification(
            n.id,
            n.attempts,
            error,
            backoff=alerts.backoff,
            cap=alerts.backoff_cap,
            max_attempts=n.attempts if give_up else alerts.max_attempts,
        )
        metrics.ALERT_NOTIFICATIONS.labels(n.receiver, "gave_up" if last else "failed").inc()
        log.warning(
            "alert notification %d (%s %s) to %s failed on attempt %d: %s%s",
            n.id,
            n.transition,
            n.rule,
            n.receiver,
            n.attempts,
            error,
            "; giving up" if last else "",
        )


class BackgroundDelivery:
    """Runs `AlertDelivery.run_once()` in its own task, so a slow receiver never holds up
    the leader's other passes (rescue, reconcile) or dispatch: when a pass is due and the
    previous send is still going, this one is skipped."""

    def __init__(self, delivery: AlertDelivery) -> None:
        self.delivery = delivery
        self.interval = delivery.interval
        self._task: asyncio.Task[int] | None = None

    async def run_once(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.ensure_future(self._guarded())

    async def _guarded(self) -> int:
        try:
            return await self.delivery.run_once()
        except (DatabaseUnavailable, StatementRejected) as error:
            log.warning("alert delivery pass failed (%s); trying again next pass", error)
            return 0

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.delivery.close()
