"""Web view test helpers: the Tornado app in a thread on an ephemeral port, a headless Chromium."""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeryflow.web import WebConfig

REPO = Path(__file__).resolve().parents[2]
#: set to a directory (docs/img) to write the pages' screenshots there
SCREENSHOTS = os.environ.get("CELERYFLOW_WEB_SCREENSHOTS")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in ("CELERYFLOW_BACKEND", "CELERYFLOW_BROKER_URL", "CELERYFLOW_APP", "CELERYFLOW_WEB_ACTIONS",
                "CELERYFLOW_WEB_TOKEN", "CELERYFLOW_WEB_BASIC_AUTH"):
        monkeypatch.delenv(key, raising=False)
    install_module: Any = importlib.import_module("celeryflow.install")
    previous = install_module._installed
    yield
    install_module._installed = previous


class Served:
    """``make_app(config)`` on its own IOLoop thread; ``url`` is the server's root."""

    def __init__(self, config: WebConfig) -> None:
        self.config = config
        self.port = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="celeryflow-web", daemon=True)

    def _run(self) -> None:
        try:
            from tornado.httpserver import HTTPServer
            from tornado.ioloop import IOLoop
            from tornado.netutil import bind_sockets

            from celeryflow.web.server import make_app

            asyncio.set_event_loop(asyncio.new_event_loop())
            self.loop = IOLoop.current()
            sockets = bind_sockets(0, "127.0.0.1")
            self.port = sockets[0].getsockname()[1]
            self.server = HTTPServer(make_app(self.config))
            self.server.add_sockets(sockets)
            self.loop.add_callback(self._ready.set)
            self.loop.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Served:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the web view did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        def stop() -> None:
            self.server.stop()
            self.loop.stop()

        self.loop.add_callback(stop)
        self._thread.join(10)


@pytest.fixture
def serve() -> Iterator[Any]:
    started: list[Served] = []

    def start(config: WebConfig) -> Served:
        served = Served(config).start()
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def _chromium() -> tuple[str, str] | None:
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Selenium (Debian's chromium + chromium-driver)."""
    found = _chromium()
    if found is None or importlib.util.find_spec("selenium") is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("browser tests need chromium, chromium-driver (apt) and selenium (pip install -e '.[test]')")
        pytest.skip("chromium / chromium-driver / selenium not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=found[1]), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str, *, full: bool = True) -> None:
    """Write ``<name>.png`` into $CELERYFLOW_WEB_SCREENSHOTS (docs/img) when that is set."""
    if not SCREENSHOTS:
        return
    target = Path(SCREENSHOTS)
    if not target.is_absolute():
        target = REPO / target
    target.mkdir(parents=True, exist_ok=True)
    if full:
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, min(max(int(height) + 40, 700), 2400))
    driver.save_screenshot(str(target / f"{name}.png"))
    driver.set_window_size(1400, 1000)
