"""``<out>/index.html``: every leaderboard of a folder on one static page.

One self-contained file (inline CSS and JavaScript, no network): the headline table of every
activation set of every board (``<out>/<name>.json``), sortable by any column (click its header),
filterable by board/set, architecture and verdict (also from the address:
``index.html?verdict=FAILS&arch=topk``); a click on a row opens that SAE's full scores
and the set's plots (relative links to ``<name>/<set>.png``, so the page stays small and its text
does not depend on PNG bytes). The page is built from the boards' JSON alone, so ``--check`` can
rebuild it and compare, whichever family was rendered last.
"""

from __future__ import annotations

import html as _html
import json
from pathlib import Path
from typing import Any, Mapping

from saebench_sanity.leaderboard import headline as H
from saebench_sanity.leaderboard import verdict as V

INDEX = "index.html"
#: keys a JSON file must have to count as a leaderboard
BOARD_KEYS = {"name", "rows", "sets", "modes", "command"}


def boards(out_dir: str | Path, override: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The leaderboards of ``out_dir``: every top-level ``*.json`` that is a board (other JSON
    files, and unreadable ones, are not boards), with ``override`` (name -> JSON text) in place of
    the file of that name; sorted by name."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(out_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and BOARD_KEYS <= set(data) and data.get("name") == path.stem:
            found[path.stem] = data
    for name, text in (override or {}).items():
        found[name] = json.loads(text)
    return [found[n] for n in sorted(found)]


def _full_rows(board: Mapping[str, Any], set_name: str, arch: str) -> list[list[str]]:
    """The Markdown's full-table rows of one SAE (scores with a direction), as text cells."""
    from saebench_sanity.leaderboard.render import fmt, fmt_bounds, fmt_stats, name_or_dash

    part = [r for r in board["rows"] if r.get("set") == set_name]
    names = H.labels(part)
    out = []
    for r in part:
        if r.get("arch") != arch or not r.get("direction"):
            continue
        verdict = str(r.get("verdict"))
        shown = f"{verdict} [{r.get('at_budget')}]" if verdict == V.UNDERTRAINED else verdict
        arrow = "↑" if r["direction"] == "higher" else "↓"
        out.append([f"{names[(r['metric'], r['score'])]} {arrow}", fmt(r.get("chance")),
                    *[fmt_stats(r, m) for m in board["modes"]], name_or_dash(r.get("baseline")),
                    fmt(r.get("diff")), fmt_bounds(r.get("lower"), r.get("upper")), shown, verdict])
    return out


def page_data(all_boards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the page's script draws: per board and set, the headline columns and rows (cells as
    ``[verdict, mark and verdict, numbers]``), each row's full scores, and the plot paths."""
    out = []
    for board in all_boards:
        sets = []
        for set_name in board["sets"]:
            cols, rows = H.table(board["rows"], set_name)
            if not rows:
                continue
            sets.append({
                "name": set_name,
                "columns": [{"title": c.title, "source": f"{c.metric}.{c.score}",
                             "arrow": "↑" if c.direction == "higher" else "↓"} for c in cols],
                "full_headers": ["score", "chance", *board["modes"], "baseline", "d", "bounds", "verdict"],
                "rows": [{"arch": r.arch, "fails": r.fails, "fails_text": r.fails_text,
                          "cells": [[r.cells[c.title].verdict, r.cells[c.title].label, r.cells[c.title].numbers]
                                    for c in cols],
                          "full": _full_rows(board, set_name, r.arch)} for r in rows],
                "plots": [f"{board['name']}/{set_name}.png", f"{board['name']}/{set_name}-modes.png"],
            })
        out.append({"name": board["name"], "command": board["command"], "markdown": f"{board['name']}.md",
                    "missing": board.get("missing") or [], "sets": sets})
    return out


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em auto;max-width:1400px;padding:0 1em;color:#222}
h1{font-size:1.5em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}h3{margin:1.2em 0 .4em}
code{background:#f4f4f4;padding:0 .25em;border-radius:3px}
#controls{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #eee;z-index:2}
#controls label{margin-right:1em}select{font:inherit}
table{border-collapse:collapse;margin:.3em 0 1em}th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
table.headline th{background:#f6f6f6;cursor:pointer;user-select:none}table.headline th:after{content:" \\2195";color:#aaa}
tr.sae{cursor:pointer}tr.sae:hover{background:#fafafa}tr.detail>td{background:#fcfcfc}
td.v b{font-weight:600}td.v small{color:#444}.v-BEATS{color:#1b7837}.v-FAILS{color:#b2182b;font-weight:600;background:#fdecea}
.v-INCONCLUSIVE{color:#8a6d00}.v-AT-CHANCE{color:#2166ac}.v-UNDERTRAINED{color:#6a51a3}
.v-L0-NOT-MATCHED{color:#2166ac}.v-SEEDS,.v-NO-DATA{color:#888}
table.full{font-size:12px}img{max-width:100%;border:1px solid #eee;margin:.3em 0}
.muted{color:#666}.fails{color:#b2182b;font-weight:600}
"""

SCRIPT = r"""
const DATA = JSON.parse(document.getElementById('board-data').textContent);
const ORDER = ["FAILS","INCONCLUSIVE","UNDERTRAINED","L0 NOT MATCHED","AT CHANCE","SEEDS","NO DATA","BEATS"];
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
}
const cls = v => 'v v-' + v.replace(/ /g, '-');
const root = document.getElementById('boards');
const archs = new Set(), verdicts = new Set(), sets = [];
for (const board of DATA) {
  root.append(el('h2', {}, 'Board: ' + board.name));
  root.append(el('p', {class: 'muted'}, 'Regenerate: ', el('code', {}, board.command), ' — full text: ',
                 el('a', {href: board.markdown}, board.markdown)));
  if (board.missing.length) root.append(el('p', {class: 'fails'}, 'Partial results: no record for ' + board.missing.join(', ')));
  for (const set of board.sets) {
    const key = board.name + ' / ' + set.name;
    sets.push(key);
    const sec = el('section', {'data-set': key});
    sec.append(el('h3', {}, key));
    const head = el('tr', {}, el('th', {}, 'SAE'));
    for (const c of set.columns) head.append(el('th', {title: c.source}, c.title + ' ' + c.arrow));
    head.append(el('th', {}, 'fails on'));
    const tbody = el('tbody');
    for (const r of set.rows) {
      archs.add(r.arch);
      const tr = el('tr', {class: 'sae', 'data-arch': r.arch, 'data-fails': r.fails ? '1' : '0'});
      tr.append(el('td', {}, r.arch));
      for (const [v, label, nums] of r.cells) {
        verdicts.add(v);
        tr.append(el('td', {class: cls(v), 'data-verdict': v}, el('b', {}, label), el('br'), el('small', {}, nums)));
      }
      tr.append(el('td', {class: r.fails ? 'fails' : 'muted'}, r.fails_text));
      const full = el('table', {class: 'full'});
      full.append(el('tr', {}, ...set.full_headers.map(h => el('th', {}, h))));
      for (const f of r.full) full.append(el('tr', {}, ...f.slice(0, -1).map((x, i) =>
        i === f.length - 2 ? el('td', {class: cls(f[f.length - 1]), 'data-full-verdict': f[f.length - 1]}, x) : el('td', {}, x))));
      const imgs = set.plots.map(p => el('a', {href: p}, el('img', {src: p, alt: p, loading: 'lazy'})));
      const det = el('tr', {class: 'detail', hidden: ''}, el('td', {colspan: String(set.columns.length + 2)},
        el('p', {}, 'Every score of ' + r.arch + ' on ' + set.name + ' (mean ± sd over seeds):'), full, ...imgs));
      tr.addEventListener('click', () => { det.hidden = !det.hidden; });
      tbody.append(tr, det);
    }
    const table = el('table', {class: 'headline'}, el('thead', {}, head), tbody);
    head.querySelectorAll('th').forEach((th, i) => th.addEventListener('click', () => sortBy(tbody, i, th)));
    sec.append(table);
    root.append(sec);
  }
}
function sortKey(td) {
  const v = td.getAttribute('data-verdict');
  return v ? String(ORDER.indexOf(v)).padStart(2, '0') + td.textContent : td.textContent;
}
function sortBy(tbody, i, th) {
  const asc = th.getAttribute('data-sort') !== 'asc';
  th.parentNode.querySelectorAll('th').forEach(h => h.removeAttribute('data-sort'));
  th.setAttribute('data-sort', asc ? 'asc' : 'desc');
  const pairs = [...tbody.querySelectorAll('tr.sae')].map(tr => [tr, tr.nextElementSibling]);
  pairs.sort((a, b) => { const x = sortKey(a[0].children[i]), y = sortKey(b[0].children[i]);
                         return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); });
  for (const [tr, det] of pairs) tbody.append(tr, det);
}
function fill(id, values) {
  const s = document.getElementById(id);
  for (const v of values) s.append(el('option', {value: v}, v));
  s.addEventListener('change', apply);
}
fill('f-set', sets); fill('f-arch', [...archs].sort());
fill('f-verdict', ORDER.filter(v => verdicts.has(v)));
// filters from the address too (index.html?verdict=FAILS&arch=topk), so a filtered view can be linked
const params = new URLSearchParams(location.search);
for (const [p, id] of [['set', 'f-set'], ['arch', 'f-arch'], ['verdict', 'f-verdict']])
  if (params.has(p)) document.getElementById(id).value = params.get(p);
function apply() {
  const fs = document.getElementById('f-set').value, fa = document.getElementById('f-arch').value,
        fv = document.getElementById('f-verdict').value;
  let shown = 0;
  document.querySelectorAll('section[data-set]').forEach(sec => {
    let any = false;
    sec.querySelectorAll('tr.sae').forEach(tr => {
      const ok = (!fs || sec.getAttribute('data-set') === fs) && (!fa || tr.getAttribute('data-arch') === fa) &&
                 (!fv || tr.querySelector('td[data-verdict="' + fv + '"]'));
      tr.hidden = !ok; if (!ok) tr.nextElementSibling.hidden = true;
      if (ok) { any = true; shown += 1; }
    });
    sec.hidden = !any;
  });
  document.getElementById('shown').textContent = shown + ' SAEs shown';
}
const counts = {};
document.querySelectorAll('table.headline td[data-verdict]').forEach(td => {
  const v = td.getAttribute('data-verdict'); counts[v] = (counts[v] || 0) + 1; });
const saes = document.querySelectorAll('tr.sae').length, failing = document.querySelectorAll('tr.sae[data-fails="1"]').length;
const summary = document.getElementById('summary');
summary.append(failing + ' of ' + saes + ' SAEs fail to beat a random baseline on a headline score. Headline cells: ');
ORDER.filter(v => counts[v]).forEach((v, i) => {
  if (i) summary.append(', ');
  summary.append(el('span', {class: cls(v), 'data-count': v}, v + ' ' + counts[v]));
});
apply();
"""


def index_html(out_dir: str | Path, override: Mapping[str, str] | None = None) -> str:
    """Text of ``<out_dir>/index.html`` over every board in ``out_dir`` (see :func:`boards`)."""
    data = page_data(boards(out_dir, override))
    # inside <script>, "</" would end the element early
    payload = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")).replace("</", "<\\/")
    marks = ", ".join(f"{H.MARK[lab]} {lab}" for lab in V.VERDICTS if H.MARK.get(lab))
    names = ", ".join(b["name"] for b in data) or "none"
    return "\n".join([
        "<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>saebench-sanity leaderboards</title>", f"<style>{CSS}</style>", "</head>", "<body>",
        "<h1>Do trained SAEs beat random baselines?</h1>",
        f'<p class="muted">Boards: {_html.escape(names)}. Each cell: the trained SAE\'s score (mean over seeds) vs '
        "the closest random baseline's, with the verdict; click a row for every score and the plots, a column "
        f"header to sort. Marks: {_html.escape(marks)}; UNDERTRAINED shows in brackets what it would read at equal "
        "budget. Written by <code>saebench leaderboard</code>; the rule is stated at the end of each board's "
        "Markdown file.</p>",
        '<p id="summary"></p>',
        '<div id="controls"><label>set <select id="f-set"><option value="">all</option></select></label>'
        '<label>architecture <select id="f-arch"><option value="">all</option></select></label>'
        '<label>verdict <select id="f-verdict"><option value="">any</option></select></label>'
        '<span id="shown" class="muted"></span></div>',
        "<noscript><p>This page draws its tables with JavaScript; without it, read the boards' Markdown files.</p></noscript>",
        '<div id="boards"></div>',
        f'<script type="application/json" id="board-data">{payload}</script>',
        f"<script>{SCRIPT}</script>", "</body>", "</html>", ""])
