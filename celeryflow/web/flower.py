"""The flow view inside Flower: its pages beside Flower's, a "Flows" entry in Flower's navigation.

:func:`mount` adds the view's Tornado handler to Flower's URL table (before Flower's
catch-all 404) and wraps Flower's template loader so ``navbar.html`` gains a
"Flows" link. Reads go through Flower's own authentication (``--basic-auth``,
``--auth`` OAuth): a request Flower would refuse, the flow pages refuse too. Call
it before Flower builds its application; ``celeryflow flower`` does, then runs
``celery flower`` with the remaining arguments.
"""

from __future__ import annotations

import os
from typing import Any

import tornado.template
import tornado.web

from celeryflow.web.core import FlowWeb
from celeryflow.web.server import FlowHandler

_NAV_ITEM = ('<li class="nav-item"><a class="nav-link{%% if handler.request.path.startswith(%r) %%} active{%% end %%}"'
             ' href="%s/" id="celeryflow-nav">Flows</a></li>')


class NavLoader(tornado.template.Loader):
    """Flower's template loader with a "Flows" entry appended to the primary navigation."""

    def __init__(self, root_directory: str, link: str, **kwargs: Any) -> None:
        super().__init__(root_directory, **kwargs)
        self.link = link

    def _create_template(self, name: str) -> tornado.template.Template:
        if name != "navbar.html":
            return super()._create_template(name)
        with open(os.path.join(self.root, name), "rb") as f:
            text = f.read().decode("utf-8")
        item = _NAV_ITEM % (self.link, self.link)
        at = text.find("</ul>")
        text = text[:at] + item + text[at:] if at >= 0 else text
        return tornado.template.Template(text, name=name, loader=self)


def flower_gate(handler: tornado.web.RequestHandler) -> Any:
    """Flower's authentication for the flow pages: the user, or None once it has answered."""
    from flower.views import BaseHandler

    try:
        user = BaseHandler.get_current_user(handler)
    except tornado.web.HTTPError as exc:
        if exc.status_code != 401:
            raise
        handler.set_status(401)
        handler.set_header("WWW-Authenticate", 'Basic realm="flower"')
        handler.finish("Access denied")
        return None
    if not user:
        handler.redirect(handler.get_login_url())
        return None
    options = getattr(handler.application, "options", None)
    if user is True:
        # True: no OAuth; basic auth (if configured) passed, which authenticates a person
        return "flower basic auth" if getattr(options, "basic_auth", None) else True
    return user


def mount(web: FlowWeb, *, url_prefix: str = "") -> None:
    """Add the flow view to Flower's URL table and navigation (idempotent).

    Args:
        web: the view; its ``config.prefix`` must already include Flower's ``url_prefix``.
        url_prefix: Flower's ``--url_prefix`` (Flower prepends it to every handler it has).
    """
    import flower.urls as flower_urls

    handlers: list[Any] = flower_urls.handlers
    if any(getattr(h, "name", None) == "celeryflow-flows" for h in handlers):
        return
    own = web.config.prefix
    pattern = own[len("/" + url_prefix.strip("/")):] if url_prefix.strip("/") else own
    spec = tornado.web.url(rf"{pattern}(/.*)?", FlowHandler, {"web": web, "gate": flower_gate},
                           name="celeryflow-flows")
    catch_all = next((i for i, h in enumerate(handlers) if isinstance(h, tuple) and h[0] == r".*"), len(handlers))
    handlers.insert(catch_all, spec)
    settings = flower_urls.settings
    settings["template_loader"] = NavLoader(settings["template_path"], own)


__all__ = ["NavLoader", "flower_gate", "mount"]
