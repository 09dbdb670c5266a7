"""Run by test_adapters.py in a subprocess (Django settings are process-wide).

A minimal Django project mounts the flow view with ``login_required(django_view(...))``:
anonymous users are sent to the login page, a logged-in user sees the flows, and the
logged-in user (the host's auth) authorises actions. argv: logbook URL, flow id.
"""

from __future__ import annotations

import sys

import django
from django.conf import settings


def main(url: str, flow_id: str) -> None:
    settings.configure(
        DEBUG=False, SECRET_KEY="test", ALLOWED_HOSTS=["testserver"], ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"],
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware",
                    "django.contrib.auth.middleware.AuthenticationMiddleware"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        LOGIN_URL="/login/",
    )
    django.setup()
    from django.contrib.auth.decorators import login_required
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client
    from django.urls import re_path

    from celeryflow.web.wsgi import FlowWSGI, django_view

    flows = login_required(django_view(FlowWSGI(backend=url, prefix="/ops/flows", actions=True, host_auth=True)))
    globals()["urlpatterns"] = [re_path(r"^ops/flows(?P<rest>/.*)?$", flows)]
    call_command("migrate", verbosity=0)
    client = Client()
    anonymous = client.get("/ops/flows/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/"), anonymous
    client.force_login(User.objects.create_user("alice", password="pw"))
    listing = client.get("/ops/flows/")
    assert listing.status_code == 200, listing.status_code
    assert flow_id in listing.content.decode() and 'href="/ops/flows/static/app.css"' in listing.content.decode()
    page = client.get(f"/ops/flows/{flow_id}")
    assert page.status_code == 200 and "place-order" in page.content.decode()
    confirm = client.get(f"/ops/flows/{flow_id}/action/revert")
    assert confirm.status_code == 200 and b'id="confirm-form"' in confirm.content, confirm.content[:500]
    print("django mount OK")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
