"""Two views: place an order (starts a flow in the request's transaction) and report its state (JSON)."""

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from celeryflow.contrib import django as celeryflow_django
from celeryflow.exceptions import NotFound
from shop.flows import order_flow
from shop.models import Order


class Boom(RuntimeError):
    """Raised on request, after the submit: the request's transaction rolls back."""


@csrf_exempt
@require_POST
def place_order(request: HttpRequest) -> JsonResponse:
    data = json.loads(request.body or b"{}")
    order = Order.objects.create(item=data.get("item", "widget"), amount=int(data.get("amount", 10)))
    handle = celeryflow_django.submit(
        order_flow, store={"order_id": order.pk, "amount": order.amount, "decline": bool(data.get("decline"))},
        on_commit=True,
    )
    order.flow_id = handle.id
    order.save(update_fields=["flow_id"])
    if data.get("explode"):
        raise Boom("the view failed after submitting: everything rolls back")
    return JsonResponse({"order": order.pk, "flow": handle.id}, status=202)


@require_GET
def order_status(request: HttpRequest, order_id: int) -> JsonResponse:
    try:
        order = Order.objects.get(pk=order_id)
    except Order.DoesNotExist:
        return JsonResponse({"error": "no such order"}, status=404)
    try:
        flow = celeryflow_django.status(order.flow_id, results=True)
    except NotFound:
        flow = None
    return JsonResponse({"order": order.pk, "status": order.status, "charge": order.charge, "flow": flow})
