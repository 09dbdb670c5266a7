"""A JSON view of a flow's state: ``GET <prefix>/<flow id>/``.

``{"id", "name", "state", "done", "progress": {"done", "total"}, "atoms": {name: state},
"failures": {atom: "Type: message"}, "created_at", "finished_at"}`` and, when the URL
pattern passes ``results=True``, ``"results"`` (secret-looking names masked).
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from celeryflow.exceptions import NotFound, StorageFailure


def flow_status(request: HttpRequest, flow_id: str, results: bool = False) -> JsonResponse:
    from celeryflow.contrib.django import status

    try:
        return JsonResponse(status(flow_id, results=results))
    except NotFound:
        return JsonResponse({"error": "not found", "id": flow_id}, status=404)
    except StorageFailure as exc:
        return JsonResponse({"error": f"logbook unavailable: {type(exc).__name__}"}, status=503)
