"""The view's HTML templates (Tornado templates: every ``{{ }}`` is HTML-escaped).

Kept as strings so the package needs no data files. Only two values are inserted
raw: the graph's SVG (Graphviz escapes the names it draws) and JSON for the page
script (``script_json`` escapes ``<``, ``>`` and ``&``).
"""

from __future__ import annotations

BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} · celeryflow</title>
<link rel="stylesheet" href="{{ prefix }}/static/app.css">
</head><body data-page="{{ page }}">
<nav class="cf-nav"><a class="cf-brand" href="{{ prefix }}/">celeryflow</a>
<a href="{{ prefix }}/">Flows</a><a href="{{ prefix }}/metrics">Metrics</a>
{% if flower_url is not None %}<a id="nav-flower" href="{{ flower_url }}/">Flower</a>{% end %}</nav>
<main>{% block body %}{% end %}</main>
<script src="{{ prefix }}/static/app.js"></script>
</body></html>"""

LIST = """{% extends "base.html" %}{% block body %}
<h1>Flows</h1>
<form class="cf-filters" method="get" action="{{ prefix }}/">
<label>state <select name="state" id="filter-state"><option value="">any</option>
{% for s in all_states %}<option value="{{ s }}"{% if s in chosen_states %} selected{% end %}>{{ s }}</option>{% end %}
</select></label>
<label>name <input name="name" id="filter-name" list="flow-names" value="{{ name or '' }}"></label>
<datalist id="flow-names">{% for n in names %}<option value="{{ n }}">{% end %}</datalist>
<label>search <input name="q" id="filter-q" value="{{ q or '' }}" placeholder="flow id or atom name"></label>
<button type="submit">Filter</button> <a href="{{ prefix }}/">clear</a>
</form>
<table class="cf-table" id="flows">
<thead><tr><th>state</th><th>name</th><th>id</th><th>age</th><th>duration</th><th>progress</th>
<th>running</th><th>failed atom</th></tr></thead><tbody>
{% for r in rows %}<tr data-flow="{{ r.uuid }}">
<td><span class="cf-state s-{{ r.state }}">{{ r.state }}</span></td>
<td><a href="{{ prefix }}/{{ r.uuid }}">{{ r.name }}</a></td>
<td class="cf-mono">{{ r.uuid[:8] }}</td><td>{{ ago(r.created_at) }}</td><td>{{ human(r.seconds) }}</td>
<td><progress max="{{ max(r.total, 1) }}" value="{{ r.done }}"></progress> {{ r.done }}/{{ r.total }}</td>
<td>{{ ", ".join(r.running) }}</td><td class="cf-failed">{{ ", ".join(r.failed) }}</td></tr>
{% end %}</tbody></table>
{% if not rows %}<p class="cf-empty">No flows match.</p>{% end %}
<p class="cf-pager">{% if cursor %}<a id="page-first" href="{{ first_url }}">← newest</a>{% end %}
{% if next_url %}<a id="page-next" href="{{ next_url }}">older →</a>{% end %}</p>
{% end %}"""

FLOW = """{% extends "base.html" %}{% block body %}
<h1><span id="flow-name">{{ view.name }}</span>
<span class="cf-state s-{{ view.state }}" id="flow-state">{{ view.state }}</span></h1>
<table class="cf-facts"><tr><th>id</th><td class="cf-mono">{{ view.uuid }}</td></tr>
<tr><th>progress</th><td id="flow-progress">{{ view.done }}/{{ view.total }} atoms done</td></tr>
<tr><th>epoch</th><td>{{ view.epoch }}</td></tr>
<tr><th>created</th><td>{{ stamp(view.created_at) }} ({{ ago(view.created_at) }})</td></tr>
<tr><th>took</th><td>{{ human(view.seconds) }}{% if not view.finished_at %} so far{% end %}</td></tr>
{% if view.owner %}<tr><th>driven by</th><td>{{ view.owner }}</td></tr>{% end %}
{% if store %}<tr><th>store</th><td class="cf-mono">{{ store }}</td></tr>{% end %}
</table>
{% if actions %}<div class="cf-actions">{% for a in actions %}
<a class="cf-button" id="action-{{ a }}" href="{{ prefix }}/{{ view.uuid }}/action/{{ a }}">{{ a }}</a>{% end %}
</div>{% end %}
<h2>Graph</h2>
{% if svg %}<div id="cf-graph" class="cf-graph">{% raw svg %}</div>
{% elif graph_note %}<p class="cf-note">{{ graph_note }}</p>{% end %}
{% if subflows %}<table class="cf-table" id="subflows"><thead><tr><th>subflow</th><th>atoms</th><th>states</th>
</tr></thead><tbody>{% for sf in subflows %}<tr><td><a href="?flow={{ url_escape(sf[0]) }}">{{ sf[0] }}</a></td>
<td>{{ sf[1] }}</td><td>{{ sf[2] }}</td></tr>{% end %}</tbody></table>{% end %}
{% if view.reverted_order %}<p id="compensation">compensation order: {{ " → ".join(view.reverted_order) }}</p>{% end %}
<h2>Atoms{% if atom_filter %} in {{ atom_filter }}{% end %}</h2>
<table class="cf-table" id="atoms"><thead><tr><th>#</th><th>atom</th><th>kind</th><th>state</th>
<th>attempts</th><th>worker</th><th>started</th><th>took</th><th>progress</th><th>inputs</th>
<th>result / failure</th><th>tasks</th></tr></thead><tbody>
{% for row in atom_rows %}<tr data-atom="{{ row['name'] }}">
<td>{{ row['n'] }}</td><td>{{ row['name'] }}</td><td>{{ row['kind'] }}</td>
<td class="cf-atom-state"><span class="cf-state s-{{ row['state'] }}">{{ row['state'] }}</span></td>
<td>{{ row['attempts'] }}</td><td>{{ row['worker'] }}</td><td>{{ row['started'] }}</td><td>{{ row['took'] }}</td>
<td class="cf-atom-progress">{{ row['progress'] }}</td><td class="cf-mono">{{ row['inputs'] }}</td>
<td class="cf-mono{% if row['failed'] %} cf-failed{% end %}">{{ row['outcome'] }}</td>
<td>{% if row['flower'] %}<a href="{{ row['flower'] }}">Flower</a>{% end %}
{% for label, url in row['tasks'] %} <a class="cf-task" href="{{ url }}">{{ label }}</a>{% end %}</td></tr>{% end %}
</tbody></table>
<p class="cf-pager">{% if atoms_prev %}<a href="{{ atoms_prev }}">← previous atoms</a>{% end %}
{% if atoms_next %}<a id="atoms-next" href="{{ atoms_next }}">next atoms →</a>{% end %}</p>
{% if failures %}<h2>Failures</h2><div id="failures">{% for f in failures %}
<div class="cf-failure"><h3>{{ f[0] }} <small>({{ f[1] }})</small></h3><p class="cf-failed">{{ f[2] }}</p>
{% if f[3] %}<pre>{{ f[3] }}</pre>{% end %}</div>{% end %}</div>{% end %}
{% for h in histories %}<h2>Retry history of {{ h[0] }}</h2><table class="cf-table retry-history">
<thead><tr><th>attempt</th><th>value</th><th>failures</th></tr></thead><tbody>
{% for n, value, fails in h[1] %}<tr><td>{{ n }}</td><td class="cf-mono">{{ value }}</td>
<td class="cf-failed">{{ fails }}</td></tr>{% end %}</tbody></table>{% end %}
<h2>Timeline</h2><table class="cf-table" id="timeline"><thead><tr><th>at</th><th>epoch</th><th>what</th>
<th>transition</th><th>by</th><th>details</th></tr></thead><tbody>
{% for e in events %}<tr><td>{{ stamp(e.at, True) }}</td><td>{{ e.epoch }}</td>
<td>{{ e.kind }} {{ e.atom or "(flow)" }}</td><td>{{ e.old_state or "" }} → {{ e.new_state or "" }}</td>
<td>{{ e.worker or "" }}</td><td class="cf-mono">{{ brief(e.details) if e.details else "" }}</td></tr>{% end %}
</tbody></table>
{% if events_older %}<p class="cf-pager"><a href="{{ events_older }}">older events →</a></p>{% end %}
<script type="application/json" id="cf-config">{% raw config_json %}</script>
{% end %}"""

CONFIRM = """{% extends "base.html" %}{% block body %}
<h1>{{ action }} flow <span>{{ view.name }}</span>?</h1>
<p>Flow <span class="cf-mono">{{ view.uuid }}</span> is
<span class="cf-state s-{{ view.state }}">{{ view.state }}</span>.
{{ explain }}</p>
<form method="post" action="{{ prefix }}/{{ view.uuid }}/action/{{ action }}" id="confirm-form">
<input type="hidden" name="confirm" value="{{ signature }}">
<button type="submit" id="confirm">Yes, {{ action }}</button> <a href="{{ prefix }}/{{ view.uuid }}">cancel</a>
</form>{% end %}"""

MESSAGE = """{% extends "base.html" %}{% block body %}
<h1 id="message-title">{{ heading }}</h1><p id="message">{{ message }}</p>
{% if back %}<p><a href="{{ back }}">back to the flow</a></p>{% end %}
{% end %}"""

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#212529;background:#fff}
main{padding:0 1.5rem 2rem}
.cf-nav{display:flex;gap:1.2rem;align-items:center;background:#1f2937;padding:.6rem 1.5rem}
.cf-nav a{color:#e5e7eb;text-decoration:none}.cf-brand{font-weight:700}
.cf-table{border-collapse:collapse;width:100%;margin:.5rem 0}
.cf-table th,.cf-table td{border-bottom:1px solid #dee2e6;padding:.3rem .5rem;text-align:left;vertical-align:top}
.cf-facts th{text-align:left;padding-right:1rem}.cf-mono{font-family:ui-monospace,monospace;font-size:12px;
word-break:break-all}
.cf-state{display:inline-block;padding:.05rem .45rem;border-radius:.6rem;font-size:12px;border:1px solid #ced4da}
.cf-failed{color:#b00020}.cf-filters{display:flex;gap:1rem;flex-wrap:wrap;align-items:end;margin:.5rem 0}
.cf-graph svg{max-width:100%;height:auto}.cf-pager a{margin-right:1rem}
.cf-button{display:inline-block;padding:.3rem .8rem;margin-right:.5rem;border:1px solid #6c757d;border-radius:.3rem;
text-decoration:none;color:#212529}
pre{background:#f8f9fa;padding:.6rem;overflow:auto;font-size:12px}
"""

JS = r"""
(function () {
  var el = document.getElementById('cf-config');
  if (!el) { return; }
  var cfg = JSON.parse(el.textContent), last = cfg.last_event, colors = cfg.colors;
  var states = cfg.atoms || {};
  function hex(s) {
    return Array.from(new TextEncoder().encode(s)).map(function (b) {
      return b.toString(16).padStart(2, '0'); }).join('');
  }
  var nodes = {}, rows = {};
  document.querySelectorAll('#cf-graph g.node').forEach(function (g) {
    var t = g.querySelector('title'); if (t) { nodes[t.textContent] = g; }
  });
  document.querySelectorAll('#atoms tr[data-atom]').forEach(function (tr) { rows[tr.dataset.atom] = tr; });
  function badge(span, state) { span.textContent = state; span.className = 'cf-state s-' + state; }
  function paint(name, state) {
    states[name] = state;
    var g = nodes['atom_' + hex(name)];
    if (g && colors[state]) {
      g.setAttribute('data-state', state);
      var shape = g.querySelector('path, polygon');
      if (shape) { shape.setAttribute('fill', colors[state][0]); }
      g.querySelectorAll('text').forEach(function (t) {
        t.setAttribute('fill', colors[state][1]);
        var parts = t.textContent.split(' \u00b7 ');
        if (colors[parts[0]]) { parts[0] = state; t.textContent = parts.join(' \u00b7 '); }
      });
    }
    var tr = rows[name];
    if (tr) { badge(tr.querySelector('.cf-atom-state span'), state); }
  }
  Object.keys(states).forEach(function (n) { paint(n, states[n]); });
  function poll() {
    fetch(cfg.changes_url + '?after=' + last, {credentials: 'same-origin'}).then(function (r) {
      if (!r.ok) { throw new Error(r.status); } return r.json();
    }).then(function (d) {
      last = d.last_event;
      Object.keys(d.atoms).forEach(function (n) { paint(n, d.atoms[n]); });
      Object.keys(d.progress).forEach(function (n) {
        var tr = rows[n]; if (tr) { tr.querySelector('.cf-atom-progress').textContent =
          Math.round(d.progress[n] * 100) + '%'; }
      });
      badge(document.getElementById('flow-state'), d.state);
      if (d.counts) { document.getElementById('flow-progress').textContent =
        d.counts.done + '/' + d.counts.total + ' atoms done'; }
      document.body.dataset.flowState = d.state;
      if (d.more) { poll(); } else if (cfg.terminal.indexOf(d.state) < 0) { setTimeout(poll, cfg.poll_ms); }
      else { document.body.dataset.live = 'done'; }
    }).catch(function () { setTimeout(poll, cfg.poll_ms * 3); });
  }
  document.body.dataset.flowState = cfg.state;
  setTimeout(poll, cfg.terminal.indexOf(cfg.state) < 0 ? cfg.poll_ms : 0);
}());
"""

TEMPLATES = {"base.html": BASE, "list.html": LIST, "flow.html": FLOW, "confirm.html": CONFIRM,
             "message.html": MESSAGE}

__all__ = ["CSS", "JS", "TEMPLATES"]
