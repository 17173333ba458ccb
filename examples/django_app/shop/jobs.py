"""The shop's Conveyor app and tasks (`conveyor worker --app shop.jobs:conveyor`)."""

from typing import Any

from conveyor import Conveyor

# Reads DATABASE_URL, REDIS_URL, DATABASE_SCHEMA, ... from the environment.
conveyor = Conveyor()


@conveyor.task(queue="emails", name="shop.send_receipt")
def send_receipt(receipt: dict[str, Any]) -> None:
    print(f"receipt for order {receipt['order_id']} sent to {receipt['email']}")
