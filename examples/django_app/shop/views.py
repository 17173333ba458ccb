import json

from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from shop.jobs import conveyor, send_receipt
from shop.models import Order


@require_POST
def place_order(request: HttpRequest) -> JsonResponse:
    """Save the order and enqueue its receipt in one transaction: both or neither."""
    try:
        body = json.loads(request.body)
        email, total_cents = str(body["email"]), int(body["total_cents"])
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": "send JSON with email and total_cents"}, status=400)
    with transaction.atomic():
        order = Order.objects.create(email=email, total_cents=total_cents)
        job_id = conveyor.enqueue(
            send_receipt, {"order_id": order.id, "email": email}, connection=connection
        )
    return JsonResponse({"order_id": order.id, "receipt_job": str(job_id)}, status=201)
