"""The order views with Django's test client, on SQLite or PostgreSQL (DJANGO_DB).

TransactionTestCase: the request's transaction really commits (or rolls back), so
what the embedded worker and the logbook see is what production would see.
"""

import os
import time
from typing import Any
from unittest import mock

from django.db import connection, transaction
from django.test import Client, TransactionTestCase

from celeryflow.contrib import django as celeryflow_django
from celeryflow.contrib.django import transaction as cf_transaction
from celeryflow.exceptions import NotFound
from shop.flows import order_flow
from shop.models import Order


def wait_for(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


class OrderFlowTests(TransactionTestCase):
    def setUp(self) -> None:
        self.client = Client(raise_request_exception=False)

    @classmethod
    def tearDownClass(cls) -> None:
        from celeryflow.persistence.backends import close_all
        from celeryflow.runtime.embedded import stop_worker

        stop_worker()
        close_all()  # the test database is dropped next: no pooled connection may remain
        super().tearDownClass()

    def poll(self, order_id: int, *states: str) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            doc = self.client.get(f"/orders/{order_id}/").json()
            return doc if doc["flow"] and doc["flow"]["state"] in states else None

        doc: dict[str, Any] = wait_for(done)
        last = self.client.get(f"/orders/{order_id}/").json()
        self.assertTrue(doc, f"order {order_id} never reached {states}: {last}")
        return doc

    def test_logbook_lives_in_the_project_database(self) -> None:
        backend = celeryflow_django.backend()
        self.assertTrue(cf_transaction.same_database(backend, "default"))
        self.assertIn(connection.settings_dict["NAME"].rsplit("/", 1)[-1], str(backend.url))
        tables = connection.introspection.table_names()
        self.assertIn("celeryflow_flows", tables)  # created by `migrate` (celeryflow's Django migration)

    def test_place_order_runs_the_flow_and_reports_its_state(self) -> None:
        response = self.client.post("/orders/", {"item": "book", "amount": 12}, content_type="application/json")
        self.assertEqual(response.status_code, 202, response.content)
        body = response.json()
        doc = self.poll(body["order"], "SUCCESS")
        self.assertEqual(doc["status"], "confirmed")
        self.assertEqual(doc["charge"], f"ch-{body['order']}-12")
        flow = doc["flow"]
        self.assertEqual(flow["id"], body["flow"])
        self.assertEqual(flow["atoms"], {"reserve": "SUCCESS", "charge": "SUCCESS", "confirm": "SUCCESS"})
        self.assertEqual(flow["results"]["charge"], f"ch-{body['order']}-12")
        self.assertEqual(flow["progress"], {"done": 3, "total": 3})

        generic = self.client.get(f"/flows/{body['flow']}/")
        self.assertEqual(generic.status_code, 200)
        self.assertEqual(generic.json()["state"], "SUCCESS")
        self.assertNotIn("results", generic.json())  # only when the URL pattern asks for them

    def test_declined_payment_is_compensated(self) -> None:
        response = self.client.post("/orders/", {"amount": 5, "decline": True}, content_type="application/json")
        self.assertEqual(response.status_code, 202)
        doc = self.poll(response.json()["order"], "REVERTED", "FAILURE")
        self.assertEqual(doc["flow"]["state"], "REVERTED")
        self.assertEqual(doc["status"], "cancelled")  # ReserveStock.revert ran
        self.assertIn("card declined", doc["flow"]["failures"]["charge"])
        self.assertEqual(doc["flow"]["atoms"]["confirm"], "PENDING")

    def test_rollback_leaves_nothing_and_sends_nothing(self) -> None:
        backend = celeryflow_django.backend()
        before = len(backend.list_flows(limit=None))
        with mock.patch.object(cf_transaction, "publish") as publish:
            response = self.client.post("/orders/", {"explode": True}, content_type="application/json")
        self.assertEqual(response.status_code, 500)
        self.assertEqual(Order.objects.count(), 0)
        self.assertEqual(len(backend.list_flows(limit=None)), before)  # the flow rolled back with the order
        publish.assert_not_called()

    def test_nothing_is_visible_or_sent_before_commit(self) -> None:
        backend = celeryflow_django.backend()
        with transaction.atomic():
            order = Order.objects.create(item="pen", amount=3)
            handle = celeryflow_django.submit(order_flow, store={"order_id": order.pk, "amount": 3})
            # the id is final at once, but other connections cannot see the flow yet
            self.assertEqual(len(handle.id), 36)
            with self.assertRaises(NotFound):
                backend.get_flow_details(handle.id)
            # this connection (the view's) sees it, started and waiting for its messages
            with connection.cursor() as cursor:
                cursor.execute("SELECT state FROM celeryflow_flows WHERE uuid = %s", [handle.id])
                self.assertEqual(cursor.fetchone()[0], "RUNNING")
            time.sleep(0.3)
            self.assertEqual(Order.objects.get(pk=order.pk).status, "new")  # no atom ran
        self.assertEqual(handle.wait(timeout=20)["confirmed"], True)
        self.assertEqual(Order.objects.get(pk=order.pk).status, "confirmed")

    def test_process_dies_after_commit_then_the_conductor_sends_it(self) -> None:
        from celeryflow import sweep
        from celeryflow.install import default_app

        with mock.patch.object(cf_transaction, "publish"):  # the "crash": committed, never sent
            response = self.client.post("/orders/", {"amount": 7}, content_type="application/json")
        self.assertEqual(response.status_code, 202)
        body = response.json()
        backend = celeryflow_django.backend()
        self.assertEqual(backend.get_flow_details(body["flow"]).state, "RUNNING")
        time.sleep(1.2)
        self.assertEqual(Order.objects.get(pk=body["order"]).status, "new")
        with mock.patch.dict(os.environ, {"CELERYFLOW_HEARTBEAT_TIMEOUT": "1"}):
            app = default_app()
            report = sweep.sweep_once(app, backend=backend)
        self.assertTrue(report, report)
        doc = self.poll(body["order"], "SUCCESS")
        self.assertEqual(doc["status"], "confirmed")

    def test_on_commit_false_sends_at_once(self) -> None:
        with transaction.atomic():
            order = Order.objects.create(item="cup", amount=4)
        handle = celeryflow_django.submit(order_flow, store={"order_id": order.pk, "amount": 4}, on_commit=False)
        self.assertEqual(handle.wait(timeout=20)["charge"], f"ch-{order.pk}-4")

    def test_unknown_flow_is_404(self) -> None:
        response = self.client.get("/flows/00000000-0000-0000-0000-000000000000/")
        self.assertEqual(response.status_code, 404)
        self.assertEqual(response.json()["error"], "not found")

    def test_manage_py_celeryflow_uses_the_project_logbook(self) -> None:
        from io import StringIO

        from click.testing import CliRunner

        from celeryflow.cli import cli

        handle = celeryflow_django.submit(order_flow, store={"order_id": 0, "amount": 1}, on_commit=False)
        handle.wait(timeout=20)
        url = celeryflow_django.logbook_url()
        result = CliRunner().invoke(cli, ["flows", "list", "--json"], env={"CELERYFLOW_BACKEND": url})
        self.assertIn(handle.id, result.output)
        out = StringIO()
        from django.core.management import call_command

        with mock.patch("sys.stdout", out), self.assertRaises(SystemExit) as exit_:
            call_command("celeryflow", "flows", "show", handle.id, "--json")
        self.assertEqual(exit_.exception.code, 0)
        self.assertIn('"state": "SUCCESS"', out.getvalue())
