"""``celeryflow graph``: draw a flow (from the logbook, or from a factory) with Graphviz."""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

import click

from celeryflow.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_UNREACHABLE,
    backend_option,
    fail,
    guarded,
    import_modules,
    imports_option,
    open_backend,
)
from celeryflow.exceptions import ConfigurationError, NotFound


def _is_factory_ref(source: str) -> bool:
    module, sep, attr = source.partition(":")
    return bool(sep and module and attr and all(part.isidentifier() for part in module.split(".")))


def _from_factory(source: str, args: str | None, kwargs: str | None) -> Any:
    from celeryflow import compiler
    from celeryflow.flow import Flow

    module_name, _, attr = source.partition(":")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: modules in the current directory
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"Cannot import {module_name!r}: {exc}", exc) from exc
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise NotFound(f"{module_name!r} has no {attr!r}")
    try:
        call_args = json.loads(args) if args else []
        call_kwargs = json.loads(kwargs) if kwargs else {}
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"--args/--kwargs must be JSON: {exc}") from exc
    flow = target if isinstance(target, Flow) else target(*call_args, **call_kwargs)
    if not isinstance(flow, Flow):
        raise ConfigurationError(f"{source} returned {type(flow).__name__}, not a flow")
    return compiler.compile(flow), None


@click.command()
@click.argument("source", metavar="FLOW_ID|MODULE:FACTORY")
@click.option("--output", "-o", default=None, metavar="FILE",
              help="Write to FILE (.svg, .png, .pdf or .dot); default: DOT source on stdout.")
@click.option("--format", "-T", "fmt", type=click.Choice(["svg", "png", "pdf", "dot"]), default=None,
              help="Output format (default: from the -o extension).")
@click.option("--args", "factory_args", default=None, metavar="JSON",
              help="Factory positional arguments (a JSON list).")
@click.option("--kwargs", "factory_kwargs", default=None, metavar="JSON",
              help="Factory keyword arguments (a JSON object).")
@click.option("--no-legend", is_flag=True, help="Leave out the colour legend.")
@click.option("--explain", "explain", is_flag=True,
              help="Print a dry explanation instead: execution steps (what runs in parallel) and, with --fails, "
                   "the compensation order.")
@click.option("--fails", default=None, metavar="ATOM",
              help="With --explain: what is compensated, in which order, if ATOM fails.")
@backend_option
@imports_option
@guarded
def graph(source: str, output: str | None, fmt: str | None, factory_args: str | None, factory_kwargs: str | None,
          no_legend: bool, explain: bool, fails: str | None, backend_url: str | None, imports: str | None) -> None:
    """Draw a flow: atoms coloured by state, execution order, compensation order.

    SOURCE is a flow id (or unique prefix) from the logbook, or MODULE:FACTORY, a
    function returning a flow (or a flow object) to draw before it ever ran.
    """
    from celeryflow import graphing

    if fails is not None and not explain:
        fail("--fails goes with --explain", EXIT_BAD_INPUT)

    import_modules(imports)
    if _is_factory_ref(source):
        comp, view = _from_factory(source, factory_args, factory_kwargs)
    else:
        from celeryflow.cli.flows import resolve_id
        from celeryflow.contrib import snapshot

        backend = open_backend(backend_url)
        view = snapshot.load_flow(backend, resolve_id(backend, source))
        comp = view.compilation
        if comp is None:
            fail(f"flow {view.uuid} has no compiled spec in the logbook; it cannot be drawn", EXIT_BAD_INPUT)
    if explain:
        _explain(comp, fails, output)
        return
    dot = graphing.flow_graph(comp, view, legend=not no_legend)
    if output is None:
        if fmt not in (None, "dot"):
            fail("images need -o FILE (only DOT source goes to stdout)", EXIT_BAD_INPUT)
        click.echo(dot.source)
        return
    try:
        path = graphing.render(dot, output, fmt)
    except graphing.GraphvizMissing as exc:
        fail(str(exc), EXIT_UNREACHABLE)
    except graphing.GraphError as exc:
        fail(str(exc), EXIT_BAD_INPUT if "Unknown graph format" in str(exc) else 1)
    click.echo(f"wrote {path} ({path.stat().st_size} bytes, {len(comp.atoms)} atoms)")


def _explain(comp: Any, fails: str | None, output: str | None) -> None:
    from celeryflow.testing.explanation import explain

    if fails is not None and fails not in comp.atoms:
        fail(f"flow {comp.flow_name!r} has no atom {fails!r}; its atoms are: {', '.join(comp.order)}", EXIT_BAD_INPUT)
    text = explain(comp, fails=fails).text()
    if output is None:
        click.echo(text)
        return
    from pathlib import Path

    Path(output).write_text(text + "\n", encoding="utf-8")
    click.echo(f"wrote {output}")
