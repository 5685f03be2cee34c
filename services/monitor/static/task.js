// The task (or study) page: header, charts, points table, point detail, jobs, artifacts.
// Everything is fetched as the server computed it (downsampled series, one page of
// points); the live stream says when to fetch again, one request per panel at a time.
"use strict";

const TaskPage = {
  id: null, detail: null, stop: null, zoom: null, onHistoryShown: null,
  sort: "index", cursors: [null], page: 0, nextCursor: null, artifactsAfter: null,

  params() {
    return { segment: $("t-segment").value || undefined, objective: $("t-objective").value || 0 };
  },

  async show(id) {
    const fresh = id !== this.id;
    this.id = id;
    if (fresh) {
      this.zoom = null; this.sort = "index"; this.cursors = [null]; this.page = 0; this.detail = null;
      $("points-filter").value = ""; $("point-card").hidden = true; $("log-tail").hidden = true;
      $("t-segment").replaceChildren(); $("t-objective").replaceChildren();
      for (const c of ["history", "parallel", "importance", "slice", "curves", "pareto"]) { Charts.purge($(c)); delete $(c).dataset.points; }
    }
    performance.clearMarks("hpo-first-render"); performance.clearMarks("hpo-interactive");
    const started = performance.now();
    // The header and the history go out together (no segment or objective yet: the
    // server takes the first, as the header will); the points table needs the header's
    // segment; Plotly's bundle runs once they are drawn (see holdPlotly).
    let shown;
    const historyShown = new Promise((resolve) => { shown = resolve; });
    this.onHistoryShown = shown;
    holdPlotly();
    const history = this.loadHistory().then(shown);
    let failed = null;
    try { await this.loadHeader(); } catch (e) { failed = e; }
    const points = failed ? null : this.loadPoints();
    const first = Promise.all([historyShown, points]);
    first.then(releasePlotly, releasePlotly);
    if (failed) {
      releasePlotly();
      await history;
      $("view-task").hidden = true;
      showError(failed.status === 404 ? `No task ${id} among yours.` : failed);
      Dash.marks.task = { missing: true };
      return;
    }
    await first;
    performance.mark("hpo-first-render");
    Dash.marks.firstRender = performance.now() - started;
    await history;  // drawn by Plotly: hover and zoom work
    performance.mark("hpo-interactive");
    this.refreshAll(true);
    this.stop = follow({ task: id }, (type, row) => { if (type === "changed") { this.header(row); this.refreshAll(false); } });
  },

  refreshAll(first) {
    if (!first) { this.loadHistory(); this.loadPoints(); }
    this.loadParallel(); this.loadSlices(); this.loadImportance(); this.loadCurves(); this.loadJobs();
    if (first) this.loadArtifacts(true);
    if (this.detail && this.detail.directions.length > 1) this.loadPareto();
  },

  async loadHeader() {
    const d = await api("tasks/" + encodeURIComponent(this.id));
    this.detail = d;
    clearError();
    $("t-name").textContent = d.name || "(no name)";
    $("t-id").textContent = d.id + (d.online ? "  ·  online study" : "") + (d.pruner ? "  ·  " + d.pruner : "");
    this.header(d);
    const seg = $("t-segment");
    if (seg.options.length !== d.segments.length) seg.replaceChildren(...d.segments.map((s) => el("option", { value: s.name }, s.name)));
    $("t-seg-box").hidden = d.segments.length < 2;
    const obj = $("t-objective");
    if (obj.options.length !== d.directions.length) obj.replaceChildren(...d.directions.map((dir, i) => el("option", { value: i }, `${i} (${dir})`)));
    $("t-obj-box").hidden = d.directions.length < 2;
    $("pareto-card").hidden = d.directions.length < 2;
    const sp = $("slice-param");
    if (sp.options.length !== d.params.length) sp.replaceChildren(...d.params.map((p) => el("option", { value: p }, p)));
    this.renderHead(d.params);
  },

  header(row) {
    if (!row || !row.id) return;
    $("t-status").replaceChildren(statusBadge(row));
    $("t-progress").replaceChildren(progressCell(row.progress));
    $("t-best").textContent = row.objectives > 1 ? "multi-objective" : "best loss " + fmt(row.best_loss);
  },

  loadHistory: panel(async function () {
    const p = TaskPage.params();
    const h = await api(`tasks/${encodeURIComponent(TaskPage.id)}/history`, { ...p, x0: TaskPage.zoom && TaskPage.zoom[0], x1: TaskPage.zoom && TaskPage.zoom[1] });
    const shown = TaskPage.onHistoryShown; TaskPage.onHistoryShown = null;
    await Charts.history($("history"), h, (range) => { TaskPage.zoom = range; TaskPage.loadHistory(); }, shown);
    $("history").dataset.renders = String(Number($("history").dataset.renders || 0) + 1);
    $("history-note").textContent = h.total > h.x.length ? `${h.x.length} of ${h.in_window} points shown (lowest and highest per bucket, every improvement)` : `${h.total} points`;
  }),

  loadParallel: panel(async function () {
    const s = await api(`tasks/${encodeURIComponent(TaskPage.id)}/parallel`, TaskPage.params());
    await Charts.parallel($("parallel"), s);
    $("parallel-note").textContent = s.total > s.loss.length ? `a sample of ${s.loss.length} of ${s.total} (the best tenth and a random draw)` : "";
  }),

  slices: null,
  loadSlices: panel(async function () {
    TaskPage.slices = await api(`tasks/${encodeURIComponent(TaskPage.id)}/slices`, TaskPage.params());
    await Charts.slice($("slice"), TaskPage.slices, $("slice-param").value);
    const s = TaskPage.slices;
    $("slice-note").textContent = s.total > s.loss.length ? `sample of ${s.loss.length} of ${s.total}` : "";
  }),

  loadImportance: panel(async function () {
    const imp = await api(`tasks/${encodeURIComponent(TaskPage.id)}/importance`, TaskPage.params());
    await Charts.importance($("importance"), imp);
    $("importance-note").textContent = Object.keys(imp.importances).length ? (imp.current ? "" : "(updating)") : "needs more evaluated points";
  }),

  loadCurves: panel(async function () {
    const c = await api(`tasks/${encodeURIComponent(TaskPage.id)}/intermediate`, { segment: TaskPage.params().segment });
    await Charts.curves($("curves"), c);
    $("curves-note").textContent = c.total ? `${c.curves.length} of ${c.total} curves, ${c.pruned} pruned (×)` : "no point reported intermediate values";
  }),

  loadPareto: panel(async function () {
    const p = await api(`tasks/${encodeURIComponent(TaskPage.id)}/pareto`, { segment: TaskPage.params().segment });
    await Charts.pareto($("pareto"), p);
    $("pareto-note").textContent = `${p.front.ids.length} on the front of ${p.total}`;
  }),

  renderHead(params) {
    const cols = ["index", "status", "loss", ...params, "attempts", "site", "seconds", "evaluated", "links"];
    const sortable = new Set(["index", "status", "loss", "attempts", "evaluated", ...params]);
    const key = this.sort.replace(/^-/, "");
    $("points-table").tHead.replaceChildren(el("tr", {}, ...cols.map((c) => el("th", {
      class: (sortable.has(c) ? "sortable" : "") + (c === key ? " sorted" + (this.sort.startsWith("-") ? " desc" : "") : ""),
      "data-col": c,
      onclick: sortable.has(c) ? () => { this.sort = this.sort === c ? "-" + c : c; this.cursors = [null]; this.page = 0; this.renderHead(params); this.loadPoints(); } : undefined,
    }, c))));
  },

  loadPoints: panel(async function () {
    const self = TaskPage;
    const filter = $("points-filter").value.trim();
    const page = await api(`tasks/${encodeURIComponent(self.id)}/points`, { sort: self.sort, filter, segment: self.params().segment, cursor: self.cursors[self.page], limit: 50 });
    self.nextCursor = page.next_cursor;
    const loss = (v) => (Array.isArray(v) ? v.map(fmt).join(", ") : fmt(v));
    $("points-table").tBodies[0].replaceChildren(...page.rows.map((r) => el("tr", { "data-point": r.id, onclick: () => self.openPoint(r.id) },
      el("td", {}, r.index), el("td", {}, r.status + (r.pruned_step !== null ? ` (pruned at ${r.pruned_step})` : "")), el("td", {}, loss(r.loss)),
      ...page.params.map((p) => el("td", {}, fmt(r.params[p]))), el("td", {}, r.attempts), el("td", {}, r.site || "–"), el("td", {}, fmt(r.seconds)), el("td", {}, when(r.evaluated)),
      el("td", {}, r.log_url ? el("a", { href: r.log_url, target: "_blank" }, "log") : "", " ", r.metrics_url ? el("a", { href: r.metrics_url }, "metrics") : ""))));
    $("points-note").textContent = `${page.total} match · page ${self.page + 1}`;
    $("points-prev").disabled = self.page === 0;
    $("points-next").disabled = !page.next_cursor;
    $("points-table").dataset.total = String(page.total);
    $("points-table").dataset.rows = String(page.rows.length);
    $("points-table").dataset.renders = String(Number($("points-table").dataset.renders || 0) + 1);
  }),

  async openPoint(pointId) {
    const d = await api(`tasks/${encodeURIComponent(this.id)}/points/${encodeURIComponent(pointId)}`);
    $("point-card").hidden = false;
    $("pd-id").textContent = pointId;
    const p = d.point;
    $("pd-body").replaceChildren(
      el("p", {}, `status ${p.status}, loss ${fmt(p.loss)}, attempts ${p.attempts}, preemptions ${p.preemptions}` + (p.error ? ` · last error: ${p.error}` : "")),
      el("p", {}, el("code", {}, JSON.stringify(p.params))),
      ...(Object.keys(d.metrics || {}).length ? [el("p", {}, "metrics: ", el("code", {}, Object.entries(d.metrics).map(([k, v]) => `${k}=${fmt(v)}`).join(" ")))] : []),
      el("h4", {}, "Attempts"),
      el("table", { class: "grid" }, el("tbody", {}, ...d.jobs.map((j) => el("tr", {}, el("td", {}, j.id), el("td", {}, j.status), el("td", {}, j.site || "–"), el("td", {}, j.host), el("td", {}, j.reason))))),
      el("h4", {}, "Artifacts"),
      artifactTable(d.artifacts));
    $("point-card").scrollIntoView({ block: "nearest" });
  },

  loadJobs: panel(async function () {
    const v = await api(`tasks/${encodeURIComponent(TaskPage.id)}/jobs`);
    $("jobs-counts").replaceChildren(...Object.entries(v.counts).map(([k, n]) => el("span", { class: "badge note" }, `${k} ${n}`)));
    $("jobs-table").tBodies[0].replaceChildren(...v.jobs.map((j) => el("tr", { "data-job": j.id },
      el("td", {}, el("code", {}, j.id)), el("td", {}, j.status), el("td", {}, j.attempt), el("td", {}, j.site || "–"), el("td", {}, j.host), el("td", {}, j.reason), el("td", {}, when(j.updated)),
      el("td", {}, el("button", { onclick: () => TaskPage.showLog(j.id) }, "log tail")))));
  }),

  async showLog(jobId) {
    const pre = $("log-tail");
    pre.hidden = false;
    try {
      const t = await api(`tasks/${encodeURIComponent(this.id)}/jobs/${encodeURIComponent(jobId)}/log`);
      pre.textContent = (t.truncated ? `… (last ${t.text.length} of ${t.size} bytes)\n` : "") + t.text;
    } catch (e) { pre.textContent = e.status === 404 ? "no log stored for " + jobId : e.message; }
  },

  async loadArtifacts(reset) {
    if (reset) { this.artifactsAfter = null; $("artifacts-table").tBodies[0].replaceChildren(); }
    const page = await api(`tasks/${encodeURIComponent(this.id)}/artifacts`, { kind: $("artifacts-kind").value, after: this.artifactsAfter, limit: 50 });
    this.artifactsAfter = page.next_after;
    $("artifacts-more").disabled = !page.next_after;
    $("artifacts-table").tBodies[0].append(...artifactRows(page.rows));
  },
};

function artifactRows(rows) {
  const verified = (v) => (v === null ? "checking" : v ? "verified" : "mismatch");
  return rows.map((a) => el("tr", { "data-artifact": a.id },
    el("td", {}, el("code", {}, a.point_id.split(".").slice(-1)[0])), el("td", {}, el("code", {}, a.job_id)), el("td", {}, a.kind), el("td", {}, a.name),
    el("td", {}, bytes(a.size)), el("td", { class: a.verified === false ? "health-failed" : "" }, verified(a.verified)), el("td", {}, el("a", { href: a.url, download: a.name }, "download"))));
}

function artifactTable(rows) {
  return el("table", { class: "grid" }, el("tbody", {}, ...artifactRows(rows)));
}

document.addEventListener("DOMContentLoaded", () => {
  $("points-filter").addEventListener("keydown", (e) => { if (e.key === "Enter") { TaskPage.cursors = [null]; TaskPage.page = 0; TaskPage.loadPoints(); } });
  $("points-next").addEventListener("click", () => { if (TaskPage.nextCursor) { TaskPage.cursors[++TaskPage.page] = TaskPage.nextCursor; TaskPage.loadPoints(); } });
  $("points-prev").addEventListener("click", () => { if (TaskPage.page > 0) { TaskPage.page--; TaskPage.loadPoints(); } });
  $("pd-close").addEventListener("click", () => { $("point-card").hidden = true; });
  $("slice-param").addEventListener("change", () => { if (TaskPage.slices) Charts.slice($("slice"), TaskPage.slices, $("slice-param").value); });
  $("artifacts-kind").addEventListener("change", () => TaskPage.loadArtifacts(true));
  $("artifacts-more").addEventListener("click", () => TaskPage.loadArtifacts(false));
  for (const id of ["t-segment", "t-objective"]) $(id).addEventListener("change", () => { TaskPage.zoom = null; TaskPage.cursors = [null]; TaskPage.page = 0; TaskPage.refreshAll(false); });
});
