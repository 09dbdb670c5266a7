"""HTML pages of the flow view: the flows list, a flow, a confirmation, a message.

The flow page reuses :mod:`celeryflow.graphing` (the drawing of ``celeryflow graph``)
and :mod:`celeryflow.contrib.snapshot` (the reads of ``celeryflow flows show``);
store values, inputs and results are masked as ``flows show`` masks them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, OrderedDict
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from tornado.escape import url_escape
from tornado.template import DictLoader

from celeryflow import graphing, states
from celeryflow.cli.common import human_seconds
from celeryflow.contrib import snapshot
from celeryflow.masking import mask_value
from celeryflow.persistence.tables import utcnow
from celeryflow.web import queries
from celeryflow.web.config import ACTIONS, WebConfig
from celeryflow.web.templates import CSS, TEMPLATES

if TYPE_CHECKING:
    from celeryflow.web.queries import FlowPage

_LOADER = DictLoader(TEMPLATES, autoescape="xhtml_escape")
_SVG_CACHE: OrderedDict[tuple[Any, ...], str] = OrderedDict()
_SVG_CACHE_SIZE = 64


def script_json(value: Any) -> str:
    """JSON safe to put inside a ``<script>`` element (no ``</script>``, no ``<!--``)."""
    return (json.dumps(value, default=str).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026"))


def brief(value: Any, width: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def ago(value: dt.datetime | None) -> str:
    return "-" if value is None else human_seconds((utcnow() - value).total_seconds()) + " ago"


def stamp(value: dt.datetime | None, precise: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:%H:%M:%S.%f}"[:-3] if precise else f"{value:%Y-%m-%d %H:%M:%S} UTC"


def render(config: WebConfig, template: str, **values: Any) -> bytes:
    values.setdefault("page", template.split(".")[0])
    return _LOADER.load(template).generate(
        prefix=config.prefix, flower_url=config.flower_url.rstrip("/") if config.flower_url is not None else None,
        ago=ago, human=human_seconds, stamp=stamp, brief=brief, url_escape=url_escape, max=max, **values,
    )


def css() -> str:
    """The stylesheet, with each state's badge in the colours of ``celeryflow graph``."""
    rules = "".join(f".s-{s}{{background:{fill};color:{font}}}" for s, (fill, font) in graphing.STATE_COLORS.items())
    return CSS + rules + ".s-SUSPENDED,.s-SUSPENDING{background:#cfe2ff}"


def list_html(config: WebConfig, page: FlowPage, *, chosen_states: list[str], name: str | None, q: str | None,
              cursor: str | None, names: list[str]) -> bytes:
    def url(**extra: Any) -> str:
        params = [("state", s) for s in chosen_states] + [(k, v) for k, v in (("name", name), ("q", q)) if v]
        params += [(k, v) for k, v in extra.items() if v]
        return f"{config.prefix}/" + ("?" + urlencode(params) if params else "")

    return render(config, "list.html", title="Flows", rows=page.rows, all_states=sorted(states.FLOW_STATES),
                  chosen_states=chosen_states, name=name, q=q, names=names, cursor=cursor, first_url=url(),
                  next_url=url(cursor=page.next_cursor) if page.next_cursor else None)


def _svg(view: snapshot.FlowView) -> str:
    """The flow's drawing as inline SVG (cached: the page script recolours it live)."""
    comp = view.compilation
    assert comp is not None
    key = (view.uuid, view.epoch, view.state, tuple(a.state for a in view.atoms.values()))
    if key in _SVG_CACHE:
        _SVG_CACHE.move_to_end(key)
        return _SVG_CACHE[key]
    dot = graphing.flow_graph(comp, view, legend=True)
    text = dot.pipe(format="svg").decode("utf-8")
    text = text[text.find("<svg"):]  # drop the XML prolog and doctype: inline in HTML
    _SVG_CACHE[key] = text
    if len(_SVG_CACHE) > _SVG_CACHE_SIZE:
        _SVG_CACHE.popitem(last=False)
    return text


def _inputs(view: snapshot.FlowView, name: str, is_masked: Any, results: dict[str, Any],
            save_as: dict[str, Any]) -> str:
    from celeryflow.runtime.args import resolve

    comp = view.compilation
    if comp is None or name not in comp.atoms:
        return ""
    atom = comp.atoms[name]
    try:
        kwargs = resolve(name, atom.exec_args, frozenset(atom.exec_args), atom.inject, view.store, atom.providers,
                         results, save_as)
    except Exception:  # a provider's result without the declared item: show what resolves
        kwargs = {}
    shown = {p: (snapshot.MASK if is_masked(atom.exec_args.get(p, p)) or is_masked(p)
                 else mask_value(snapshot.plain(v), is_masked, snapshot.MASK)) for p, v in kwargs.items()}
    return brief(shown, 160) if shown else ""


def _flower_link(config: WebConfig, flow_name: str, atom: str) -> str | None:
    if config.flower_url is None:
        return None
    shadow = f'"celeryflow: {flow_name} / {atom}"'
    return f"{config.flower_url.rstrip('/')}/tasks?name={quote(shadow)}"


def _task_links(config: WebConfig, tasks: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(label, URL of Flower's task page) for each Celery task that claimed the atom."""
    if config.flower_url is None:
        return []
    base = config.flower_url.rstrip("/")
    return [(f"{mode} {i}", f"{base}/task/{quote(task_id)}") for i, (mode, task_id) in enumerate(tasks, 1)]


def _atom_rows(config: WebConfig, view: snapshot.FlowView, names: list[str], start: int, is_masked: Any,
               tasks: dict[str, list[tuple[str, str]]] | None = None) -> list[dict]:
    results = {n: a.result for n, a in view.atoms.items() if a.state == states.SUCCESS}
    comp = view.compilation
    save_as = {n: a.save_as for n, a in comp.atoms.items()} if comp is not None else {}
    rows = []
    for i, name in enumerate(names, start + 1):
        a = view.atoms[name]
        failed = a.failure is not None or a.revert_failure is not None
        if a.failure is not None:
            outcome = a.failure.pformat()
        elif a.revert_failure is not None:
            outcome = "revert: " + a.revert_failure.pformat()
        elif a.state == states.SUCCESS:
            outcome = brief(view.masked_result(name, is_masked), 160)
        else:
            outcome = ""
        rows.append({
            "n": i, "name": name, "kind": a.kind, "state": a.state, "attempts": a.attempts, "worker": a.worker or "",
            "started": stamp(a.started_at, True) if a.started_at else "", "took": human_seconds(a.seconds),
            "progress": f"{round(a.progress * 100)}%" if a.progress else "", "failed": failed, "outcome": outcome,
            "inputs": _inputs(view, name, is_masked, results, save_as), "flower": _flower_link(config, view.name, name),
            "tasks": _task_links(config, (tasks or {}).get(name, [])),
        })
    return rows


def flow_html(config: WebConfig, view: snapshot.FlowView, *, last_event: int, events: list[queries.EventItem],
              atoms_page: int, atom_flow: str | None, is_masked: Any, can_act: bool,
              tasks: dict[str, list[tuple[str, str]]] | None = None) -> bytes:
    names = [n for n, a in view.atoms.items() if atom_flow is None or a.flow == atom_flow]
    per = config.atoms_per_page
    start = max(0, atoms_page) * per
    page_names = names[start:start + per]

    def atoms_url(page: int) -> str:
        params = {"atoms": str(page), **({"flow": atom_flow} if atom_flow else {})}
        return f"{config.prefix}/{view.uuid}?{urlencode(params)}"

    svg, note, subflows = None, None, []
    if view.compilation is None:
        note = "This flow has no compiled spec in the logbook: it cannot be drawn."
    elif view.total <= config.graph_limit:
        try:
            svg = _svg(view)
        except graphing.GraphError as exc:
            note = f"The graph cannot be drawn here: {exc}"
        except Exception as exc:  # graphviz missing or failing: the page still works
            note = f"The graph cannot be drawn here ({type(exc).__name__}: {exc}); install Graphviz's dot."
    if svg is None and view.total > config.graph_limit:
        note = (f"{view.total} atoms: too many to draw (limit {config.graph_limit}); subflows are collapsed "
                "below, pick one to list its atoms.")
    if view.total > config.graph_limit:
        by_flow: dict[str, Counter[str]] = {}
        for a in view.atoms.values():
            by_flow.setdefault(a.flow or view.name, Counter())[a.state] += 1
        subflows = [(f, sum(c.values()), ", ".join(f"{s} {n}" for s, n in sorted(c.items())))
                    for f, c in by_flow.items()]

    failures = [(a.name, "execute", a.failure.pformat(), a.failure.traceback_str)
                for a in view.atoms.values() if a.failure is not None]
    failures += [(a.name, "revert", a.revert_failure.pformat(), a.revert_failure.traceback_str)
                 for a in view.atoms.values() if a.revert_failure is not None]
    failures += [(n, "flow", f.pformat(), f.traceback_str) for n, f in view.failures.items() if n not in view.atoms]
    histories = [
        (a.name, [(i, brief(snapshot.plain(value)), "; ".join(f"{k}: {f.pformat()}" for k, f in fails.items()) or "-")
                  for i, (value, fails) in enumerate(a.history, 1)])
        for a in view.atoms.values() if a.kind == "retry" and a.history
    ]
    config_doc = {
        "id": view.uuid, "state": view.state, "last_event": last_event, "poll_ms": int(config.poll_seconds * 1000),
        "changes_url": f"{config.prefix}/{view.uuid}/api/changes",
        "terminal": sorted(states.FLOW_TERMINAL), "colors": {s: list(c) for s, c in graphing.STATE_COLORS.items()},
        "atoms": {n: view.atoms[n].state for n in (view.atoms if svg else page_names)},
    }
    actions = [a for a, allowed in ACTIONS.items() if view.state in allowed] if config.actions and can_act else []
    store = brief(view.masked_store(is_masked), 400) if view.store else ""
    return render(
        config, "flow.html", title=view.name, view=view, store=store, actions=actions, svg=svg, graph_note=note,
        subflows=subflows, atom_filter=atom_flow,
        atom_rows=_atom_rows(config, view, page_names, start, is_masked, tasks),
        atoms_prev=atoms_url(atoms_page - 1) if atoms_page > 0 else None,
        atoms_next=atoms_url(atoms_page + 1) if start + per < len(names) else None,
        failures=failures, histories=histories, events=events,
        events_older=(f"{config.prefix}/{view.uuid}?events_before={events[-1].id}" if len(events) >= 100 else None),
        config_json=script_json(config_doc),
    )


def confirm_html(config: WebConfig, view: snapshot.FlowView, action: str) -> bytes:
    explain = {
        "resume": "Resuming runs what is not done yet, from where the flow stopped.",
        "suspend": "Suspending starts no new atom; running atoms finish, then the flow is SUSPENDED.",
        "revert": "Reverting compensates every atom that executed, in reverse order.",
    }[action]
    return render(config, "confirm.html", title=f"{action} {view.name}", view=view, action=action, explain=explain,
                  signature=config.sign(view.uuid, action))


def message_html(config: WebConfig, heading: str, message: str, back: str | None = None) -> bytes:
    return render(config, "message.html", title=heading, heading=heading, message=message, back=back)


__all__ = ["confirm_html", "css", "flow_html", "list_html", "message_html", "script_json"]
