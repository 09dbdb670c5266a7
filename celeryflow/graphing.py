"""Flow graphs with Graphviz: atoms coloured by state, execution edges, compensation order.

::

    from celeryflow import graphing
    dot = graphing.flow_graph(compilation, view)        # a graphviz.Digraph
    graphing.render(dot, "flow.svg")                     # .svg / .png / .pdf / .dot

``celeryflow graph FLOW_ID -o flow.png`` draws a flow from the logbook (with its
atoms' states); ``celeryflow graph module:factory -o flow.svg`` draws a flow
before it ever ran.

Each atom is a box (a retry controller is a hexagon) filled by its state. Solid
arrows are the execution order (ordering and data dependencies); dashed arrows
carry a decider. The ``↩ n`` badge is the **compensation order**: when the flow
failed, atom ``↩ 1`` is reverted first, then ``↩ 2``..., atoms with the same
number may be reverted in parallel. For a flow that was actually compensated,
the badges give the order the logbook recorded; otherwise the order celeryflow
would use (reverse dependency order).

Rendering to an image needs the ``dot`` program (Debian/Ubuntu:
``apt-get install graphviz``); ``.dot`` output needs nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celeryflow import states
from celeryflow.exceptions import CeleryflowError

if TYPE_CHECKING:
    import graphviz

    from celeryflow.compiler import Compilation
    from celeryflow.contrib.snapshot import FlowView

#: fill colour, font colour per state
STATE_COLORS: Mapping[str, tuple[str, str]] = {
    states.PENDING: ("#ffffff", "#555555"),
    states.RUNNING: ("#ffe066", "#000000"),
    states.SUCCESS: ("#b7e4c7", "#000000"),
    states.FAILURE: ("#f28482", "#000000"),
    states.REVERTING: ("#d0a2f7", "#000000"),
    states.REVERTED: ("#a9d6e5", "#000000"),
    states.REVERT_FAILURE: ("#9d0208", "#ffffff"),
    states.RETRYING: ("#ffb703", "#000000"),
    states.IGNORE: ("#e9ecef", "#888888"),
}
FORMATS = ("svg", "png", "pdf", "dot")


class GraphError(CeleryflowError):
    """The graph could not be rendered (unknown format, Graphviz failed)."""


class GraphvizMissing(GraphError):
    """Graphviz's ``dot`` program is not installed (needed for images, not for ``.dot``)."""


def compensation_steps(comp: Compilation, view: FlowView | None = None) -> dict[str, int]:
    """``{atom: step}``: the order atoms are (or would be) reverted in, from 1.

    For a flow the logbook shows reverted, the recorded order (1, 2, 3...). Otherwise
    the planned order: an atom is reverted after everything that depends on it, so
    sinks come first; atoms with the same step may be reverted in parallel.
    """
    if view is not None and view.reverted_order:
        return {name: i for i, name in enumerate(dict.fromkeys(view.reverted_order), 1)}
    executed = None
    if view is not None and view.state in (states.REVERTING, states.REVERTED, states.FAILURE):
        executed = {n for n, a in view.atoms.items() if a.state in (states.SUCCESS, states.FAILURE, states.REVERTING)}
    step: dict[str, int] = {}
    for name in reversed(comp.order):
        atom = comp.atoms[name]
        if atom.kind != "task" or (executed is not None and name not in executed):
            continue
        after = [step[s] for s in comp.descendants(name) if s in step]
        step[name] = 1 + max(after, default=0)
    return step


def _label(name: str, kind: str, state: str | None, extra: list[str], revert_step: int | None) -> str:
    def esc(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    rows = [f"<B>{esc(name)}</B>"]
    if kind == "retry":
        rows.append("<I>retry controller</I>")
    details = [d for d in ([state] if state else []) + extra if d]
    if details:
        rows.append(f'<FONT POINT-SIZE="10">{esc(" · ".join(details))}</FONT>')
    if revert_step is not None:
        rows.append(f'<FONT POINT-SIZE="10" COLOR="#9d0208">↩ {revert_step}</FONT>')
    return "<" + "<BR/>".join(rows) + ">"


def flow_graph(comp: Compilation, view: FlowView | None = None, *, title: str | None = None,
               legend: bool = True) -> graphviz.Digraph:
    """A Graphviz digraph of a compiled flow, coloured by ``view``'s atom states if given."""
    try:
        import graphviz
    except ImportError as exc:  # pragma: no cover - an extra
        raise GraphError("Flow graphs need the graphviz package: pip install 'celeryflow[graph]'") from exc

    heading = title or (f"{comp.flow_name}  [{view.state}]  {view.uuid}" if view else comp.flow_name)
    # nohtml: the graphviz package emits a string that looks like HTML ("<b>x</b>") unquoted, as an
    # HTML-like label, which makes invalid DOT (or markup) of a flow's name; flow names are text
    dot = graphviz.Digraph(name=graphviz.nohtml(comp.flow_name), graph_attr={
        "label": graphviz.nohtml(heading), "labelloc": "t", "fontname": "Helvetica", "fontsize": "16", "rankdir": "TB",
        "compound": "true", "nodesep": "0.4", "ranksep": "0.5",
    }, node_attr={"fontname": "Helvetica", "shape": "box", "style": "rounded,filled", "margin": "0.15,0.08"},
        edge_attr={"color": "#495057", "arrowsize": "0.8"})
    steps = compensation_steps(comp, view)

    # group atoms by their innermost flow (a cluster per subflow; root atoms unclustered)
    groups: dict[tuple[int, str], list[str]] = {}
    root_index = min((a.flow_index for a in comp.atoms.values()), default=0)
    for name in comp.order:
        atom = comp.atoms[name]
        groups.setdefault((atom.flow_index, atom.flow), []).append(name)

    def add_node(target: Any, name: str) -> None:
        atom = comp.atoms[name]
        state = None
        extra: list[str] = []
        if view is not None and name in view.atoms:
            av = view.atoms[name]
            state = av.state
            if av.seconds is not None and av.state not in (states.PENDING, states.IGNORE):
                extra.append(_seconds(av.seconds))
            if av.attempts > 1 and av.state in (states.SUCCESS, states.FAILURE, states.RUNNING):
                extra.append(f"{av.attempts} tries")
            if av.failure is not None:
                extra.append("failed: " + (av.failure.exception_type_names or ("?",))[0].rsplit(".", 1)[-1])
        fill, font = STATE_COLORS.get(state or states.PENDING, STATE_COLORS[states.PENDING])
        attrs = {"fillcolor": fill, "fontcolor": font}
        if atom.kind == "retry":
            attrs.update(shape="hexagon", style="filled")
        if state == states.IGNORE:
            attrs["style"] = "rounded,filled,dashed"
        failed = view is not None and name in view.atoms and view.atoms[name].failure is not None
        if failed or state in (states.FAILURE, states.REVERT_FAILURE):
            attrs.update(penwidth="2.5", color="#d00000")
        target.node(_node_id(name), label=_label(name, atom.kind, state, extra, steps.get(name)), **attrs)

    for (index, flow_name), names in groups.items():
        if index == root_index:
            for name in names:
                add_node(dot, name)
            continue
        with dot.subgraph(name=f"cluster_{index}") as sub:
            sub.attr(label=flow_name, style="rounded,dashed", color="#adb5bd", fontname="Helvetica",
                     fontsize="12")
            for name in names:
                add_node(sub, name)

    for name in comp.order:
        atom = comp.atoms[name]
        decided = {d.pred: d for d in atom.deciders}
        for pred in atom.preds:
            if pred in decided:
                d = decided[pred]
                dot.edge(_node_id(pred), _node_id(name), style="dashed",
                         label=f"decider{'' if d.depth == 'ALL' else ' (' + d.depth + ')'}", fontsize="9")
            else:
                dot.edge(_node_id(pred), _node_id(name))

    if legend:
        _legend(dot, view is not None, bool(steps))
    return dot


def _seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.0f}ms"
    return f"{value:.1f}s" if value < 120 else f"{value / 60:.1f}m"


def _node_id(name: str) -> str:
    # an opaque id: names may contain ":" (a port in DOT) and any other character
    return "atom_" + name.encode().hex()


def _legend(dot: Any, with_states: bool, with_steps: bool) -> None:
    with dot.subgraph(name="cluster_legend") as leg:
        leg.attr(label="legend", style="rounded", color="#dee2e6", fontname="Helvetica", fontsize="10")
        shown = list(STATE_COLORS) if with_states else [states.PENDING]
        cells = "".join(
            f'<TD BGCOLOR="{STATE_COLORS[s][0]}"><FONT COLOR="{STATE_COLORS[s][1]}" POINT-SIZE="9">{s}</FONT></TD>'
            for s in shown
        )
        note = (
            f'<TR><TD COLSPAN="{len(shown)}"><FONT POINT-SIZE="9">↩ n: compensation order (same n: in parallel); '
            "dashed arrow: decider</FONT></TD></TR>"
            if with_steps else ""
        )
        leg.node("legend", shape="plaintext", style="", label=f'<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0">'
                 f"<TR>{cells}</TR>{note}</TABLE>>")


def render(dot: graphviz.Digraph, output: str | os.PathLike[str], fmt: str | None = None) -> Path:
    """Write the graph to ``output``; the format comes from ``fmt`` or the file extension.

    Raises:
        GraphError: unknown format, or the ``dot`` program is missing for an image format.
    """
    path = Path(output)
    fmt = (fmt or path.suffix.lstrip(".") or "svg").lower()
    if fmt == "gv":
        fmt = "dot"
    if fmt not in FORMATS:
        raise GraphError(f"Unknown graph format {fmt!r}: use one of {', '.join(FORMATS)} (by -o extension or --format)")
    if fmt == "dot":
        path.write_text(dot.source, encoding="utf-8")
        return path
    import graphviz

    try:
        data = dot.pipe(format=fmt)
    except graphviz.ExecutableNotFound as exc:
        raise GraphvizMissing(
            "Rendering images needs Graphviz's `dot` program, which is not installed "
            "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz); "
            "-o flow.dot works without it"
        ) from exc
    except graphviz.CalledProcessError as exc:
        raise GraphError(f"Graphviz failed to render {path}: {exc}") from exc
    path.write_bytes(data)
    return path


__all__ = ["FORMATS", "STATE_COLORS", "GraphError", "GraphvizMissing", "compensation_steps", "flow_graph", "render"]
