// The report page's script (embedded into report.html by components/analysis/report_html.py): the metric
// selector and the per-question drill-down. The data is a gzip-compressed, base64-encoded JSON block in
// the page (components/analysis/drilldown.py), unpacked with the browser's DecompressionStream: nothing is
// fetched. When the page is ready, <body data-ready="1" data-ready-ms="..."> (ms since navigation started);
// a failure is shown on the page and in data-error.
"use strict";
(() => {
  const PAGE = 50;
  const $ = (sel, el = document) => el.querySelector(sel);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  let data = null;
  const state = {metric: "", text: "", a: 0, b: 1, outcome: "all", sort: "order", page: 0, open: -1};

  function showMetric(metric) {
    state.metric = metric;
    document.querySelectorAll("[data-metric]").forEach((el) => { el.hidden = el.dataset.metric !== metric; });
    document.querySelectorAll(".metric-name").forEach((el) => { el.textContent = metric; });
    if (data) { state.page = 0; render(); }
  }

  async function unpack(text) {
    const bytes = Uint8Array.from(atob(text.trim()), (c) => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return JSON.parse(await new Response(stream).text());
  }

  const metricIndex = () => Math.max(0, data.metrics.indexOf(state.metric));
  // score of cell c on question q by the chosen metric, 0..1, or null when the cell did not answer it
  function score(c, q) {
    const v = data.scores[c][metricIndex()][q];
    return v === null || v === undefined ? null : v / 1000;
  }
  const right = (c, q) => { const s = score(c, q); return s === null ? null : s >= data.correct_at; };
  const rightCount = (q) => data.cells.reduce((n, _, c) => n + (right(c, q) ? 1 : 0), 0);

  function matches(q) {
    if (state.text) {
      const t = state.text;
      const hay = [data.questions[q], ...data.gold[q], ...data.answers.map((a) => a[q] || "")].join("\n").toLowerCase();
      if (!hay.includes(t)) return false;
    }
    if (state.outcome === "all") return true;
    const ra = right(state.a, q), rb = right(state.b, q);
    if (ra === null || rb === null) return false;
    return {a_wrong_b_right: !ra && rb, a_right_b_wrong: ra && !rb, both_wrong: !ra && !rb,
            both_right: ra && rb, differ: ra !== rb}[state.outcome];
  }

  function ordered() {
    const rows = [];
    for (let q = 0; q < data.ids.length; q++) if (matches(q)) rows.push(q);
    const by = {
      order: null,
      hardest: (x, y) => rightCount(x) - rightCount(y) || x - y,
      easiest: (x, y) => rightCount(y) - rightCount(x) || x - y,
      a_score: (x, y) => (score(state.a, x) ?? -1) - (score(state.a, y) ?? -1) || x - y,
      b_score: (x, y) => (score(state.b, x) ?? -1) - (score(state.b, y) ?? -1) || x - y,
      question: (x, y) => data.questions[x].localeCompare(data.questions[y]) || x - y,
    }[state.sort];
    return by ? rows.sort(by) : rows;
  }

  function answerCell(c, q) {
    const a = data.answers[c][q];
    if (a === null || a === undefined) return '<td class="missing">not asked</td>';
    const cls = right(c, q) ? "right" : "wrong";
    return `<td class="${cls}" data-cell="${c}" title="${esc(a)}">${esc(a || "(empty)")}</td>`;
  }

  function renderTable() {
    const rows = ordered();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    const shown = rows.slice(state.page * PAGE, (state.page + 1) * PAGE);
    $("#qtable tbody").innerHTML = shown.map((q) =>
      `<tr data-q="${q}" data-id="${esc(data.ids[q])}"${q === state.open ? ' class="open"' : ""}>` +
      `<td>${q + 1}</td><td title="${esc(data.questions[q])}">${esc(data.questions[q])}</td>` +
      `<td title="${esc(data.gold[q].join(" | "))}">${esc(data.gold[q].join(" | "))}</td>` +
      data.cells.map((_, c) => answerCell(c, q)).join("") + "</tr>").join("");
    const first = rows.length ? state.page * PAGE + 1 : 0;
    $("#qcount").textContent = `${rows.length} of ${data.ids.length} questions; showing ${first}–` +
      `${state.page * PAGE + shown.length} (page ${state.page + 1} of ${pages})`;
    $("#prev").disabled = state.page === 0;
    $("#next").disabled = state.page >= pages - 1;
  }

  function passageList(c, q) {
    const ps = data.passages[c] ? data.passages[c][q] : null;
    if (!ps) return '<p class="muted">no context (closed book)</p>';
    if (!ps.length) return '<p class="muted">no passage shown</p>';
    return "<ol>" + ps.map(([title, flags, s]) => {
      const badges = flags < 0 ? '<span class="badge unknown">flags unknown</span>' :
        ((flags & 1) ? '<span class="badge gold">gold passage</span>' : "") +
        ((flags & 2) ? '<span class="badge has-answer">holds an answer</span>' : "");
      return `<li class="passage" data-gold="${flags >= 0 && (flags & 1) ? 1 : 0}" ` +
        `data-answer="${flags >= 0 && (flags & 2) ? 1 : 0}"><b>${esc(data.titles[title] || "(untitled)")}</b>` +
        `${s === null || s === undefined ? "" : ` <span class="muted">score ${esc(s)}</span>`}${badges}</li>`;
    }).join("") + "</ol>";
  }

  function renderDetail() {
    const box = $("#detail");
    const q = state.open;
    if (q < 0) { box.hidden = true; return; }
    box.hidden = false;
    box.dataset.q = q;
    const cards = data.cells.map((cell, c) => {
      const a = data.answers[c][q];
      const link = cell.url ? ` <a href="${esc(cell.url)}" target="_blank" rel="noopener">${cell.link_kind === "task" ? "task" : "folder"}</a>` : "";
      if (a === null || a === undefined) {
        return `<div class="card" data-cell="${c}"><h4>${esc(cell.label)}${link}</h4><p class="muted">not asked this question</p></div>`;
      }
      const ok = right(c, q);
      const scores = data.metrics.map((m, i) => `${m} ${(data.scores[c][i][q] / 1000).toFixed(3)}`).join(" · ");
      return `<div class="card ${ok ? "right" : "wrong"}" data-cell="${c}" data-right="${ok ? 1 : 0}">` +
        `<h4>${esc(cell.label)}${link}</h4><div class="answer">${esc(a || "(empty)")}</div>` +
        `<div class="muted">${ok ? "right" : "wrong"} by ${esc(state.metric)} · ${esc(scores)}</div>` +
        passageList(c, q) + "</div>";
    }).join("");
    box.innerHTML = `<h3>Question ${q + 1}: ${esc(data.questions[q])}</h3>` +
      `<p>Gold answers: <b class="gold-answers">${esc(data.gold[q].join(" | "))}</b>` +
      `${data.has_gold[q] ? "" : ' <span class="muted">(no gold passage for this question)</span>'}` +
      ` <button id="close-detail" type="button">close</button></p><div class="cards">${cards}</div>`;
  }

  // Paired bootstrap CI of mean(B) - mean(A) over the questions both cells answered (seeded: stable).
  function pairedCI(diffs, samples = 1000) {
    let seed = 12345;
    const rand = () => { seed |= 0; seed = (seed + 0x6D2B79F5) | 0; let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
    const n = diffs.length, means = new Float64Array(samples);
    for (let s = 0; s < samples; s++) {
      let sum = 0;
      for (let i = 0; i < n; i++) sum += diffs[Math.floor(rand() * n)];
      means[s] = sum / n;
    }
    means.sort();
    return [means[Math.floor(0.025 * (samples - 1))], means[Math.ceil(0.975 * (samples - 1))]];
  }

  function renderCompare() {
    const a = state.a, b = state.b, diffs = [];
    let gained = 0, lost = 0, sa = 0, sb = 0;
    for (let q = 0; q < data.ids.length; q++) {
      const x = score(a, q), y = score(b, q);
      if (x === null || y === null) continue;
      diffs.push(y - x); sa += x; sb += y;
      const rx = x >= data.correct_at, ry = y >= data.correct_at;
      if (!rx && ry) gained++;
      if (rx && !ry) lost++;
    }
    const box = $("#compare");
    if (!diffs.length || a === b) {
      box.innerHTML = a === b ? "Pick two different cells as A and B to compare them." : "A and B share no question.";
      return;
    }
    const n = diffs.length, [lo, hi] = pairedCI(diffs), f = (v) => v.toFixed(3);
    box.innerHTML = `<b>B − A</b> in ${esc(state.metric)} over the ${n} questions both answered: ` +
      `<b id="cmp-diff">${f(sb / n - sa / n)}</b> [${f(lo)}, ${f(hi)}] (paired bootstrap, 95%, computed here) · ` +
      `A ${f(sa / n)}, B ${f(sb / n)} · <a href="#" data-outcome="a_wrong_b_right">gained by B: <b id="cmp-gained">${gained}</b></a>` +
      ` · <a href="#" data-outcome="a_right_b_wrong">lost by B: <b id="cmp-lost">${lost}</b></a>`;
  }

  function render() { renderTable(); renderDetail(); renderCompare(); }

  function setOutcome(value) { state.outcome = value; $("#outcome").value = value; state.page = 0; render(); }

  function init() {
    const options = data.cells.map((c, i) => `<option value="${i}">${esc(c.label)}</option>`).join("");
    $("#cell-a").innerHTML = options;
    $("#cell-b").innerHTML = options;
    state.a = 0; state.b = Math.min(1, data.cells.length - 1);
    $("#cell-a").value = state.a; $("#cell-b").value = state.b;
    $("#qtable thead tr").innerHTML = '<th class="qnum">#</th><th class="qtext">question</th><th class="qgold">gold</th>' +
      data.cells.map((c, i) => `<th data-cell="${i}" title="${esc(c.label)}">${esc(c.label)}</th>`).join("");
    $("#qfilter").addEventListener("input", (e) => { state.text = e.target.value.trim().toLowerCase(); state.page = 0; render(); });
    $("#outcome").addEventListener("change", (e) => setOutcome(e.target.value));
    $("#qsort").addEventListener("change", (e) => { state.sort = e.target.value; state.page = 0; render(); });
    $("#cell-a").addEventListener("change", (e) => { state.a = +e.target.value; state.page = 0; render(); });
    $("#cell-b").addEventListener("change", (e) => { state.b = +e.target.value; state.page = 0; render(); });
    $("#prev").addEventListener("click", () => { state.page--; renderTable(); });
    $("#next").addEventListener("click", () => { state.page++; renderTable(); });
    $("#qtable tbody").addEventListener("click", (e) => {
      const tr = e.target.closest("tr[data-q]");
      if (!tr) return;
      state.open = +tr.dataset.q; renderTable(); renderDetail();
      $("#detail").scrollIntoView({block: "nearest"});
    });
    $("#detail").addEventListener("click", (e) => {
      if (e.target.id === "close-detail") { state.open = -1; renderTable(); renderDetail(); }
    });
    $("#compare").addEventListener("click", (e) => {
      const a = e.target.closest("a[data-outcome]");
      if (a) { e.preventDefault(); setOutcome(a.dataset.outcome); }
    });
    render();
  }

  function checkImages() {
    const imgs = [...document.images];
    document.body.dataset.imagesOk = imgs.filter((i) => i.complete && i.naturalWidth > 0).length + "/" + imgs.length;
  }

  document.addEventListener("DOMContentLoaded", async () => {
    const select = $("#metric");
    select.addEventListener("change", () => showMetric(select.value));
    showMetric(select.value);
    try {
      const block = $("#drilldown-data");
      if (block) { data = await unpack(block.textContent); init(); }
      document.body.dataset.readyMs = String(Math.round(performance.now()));  // since navigation started
      document.body.dataset.ready = "1";
    } catch (err) {
      document.body.dataset.error = String(err);
      $("#qcount").textContent = "The per-question data could not be read: " + err;
      throw err;
    }
  });
  window.addEventListener("load", checkImages);
})();
