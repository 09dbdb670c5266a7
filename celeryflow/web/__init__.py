"""A live, read-only flow view beside Flower, and flow metrics for alerting.

Three ways to run the same pages (see docs/operations.md):

* ``celeryflow web`` serves them alone (:func:`celeryflow.web.server.make_app`);
* ``celeryflow flower`` starts Flower with them mounted and a "Flows" entry in its
  navigation (:func:`celeryflow.web.flower.mount`);
* :class:`celeryflow.web.wsgi.FlowWSGI` mounts them in a Django or Flask project,
  behind its authentication.

Metrics in the Prometheus text format: ``/metrics`` on the same server, or
:class:`celeryflow.web.metrics.FlowMetrics` as a library call.
"""

from __future__ import annotations

from celeryflow.web.config import ACTIONS, WebConfig
from celeryflow.web.core import FlowWeb, Request, Response

__all__ = ["ACTIONS", "FlowWeb", "Request", "Response", "WebConfig"]
