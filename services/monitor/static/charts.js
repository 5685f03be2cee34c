// The task page's charts, drawn with Plotly (served from the installed plotly package).
// Point clouds use WebGL traces; every series arrives already downsampled by the server.
// Each chart div gets data-points (markers or lines drawn) for tests and benchmarks.
//
// Plotly's bundle (4.8 MB) takes the browser most of a second to parse, so it is not a
// blocking script: the page asks for its data first, then loadPlotly() adds the bundle,
// and every chart waits for it (the points table does not); the history is previewed
// on a canvas meanwhile.
"use strict";

let plotlyLoading = null;
let plotlyHeld = null;
let plotlyRelease = () => {};
// Parsing the bundle holds the page's only thread for most of a second (seconds on a
// busy machine): a task page holds it back until its first render is drawn (the
// history's canvas preview and the points table), so an answer arriving meanwhile is
// not left waiting behind the parse. The bundle is preloaded: only its run waits.
// A history that could not be previewed releases it (it needs Plotly to be seen).
function holdPlotly() {
  if (!plotlyLoading) plotlyHeld = new Promise((resolve) => { plotlyRelease = resolve; });
}
function releasePlotly() { plotlyRelease(); }
function loadPlotly() {
  if (!plotlyLoading) {
    const gate = plotlyHeld || Promise.resolve();
    plotlyLoading = gate.then(() => new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = "assets/plotly.min.js";
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => reject(new Error("the chart library (assets/plotly.min.js) did not load"));
      document.head.append(script);
    }));
  }
  return plotlyLoading;
}

const Charts = (() => {
  const config = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["toImage", "lasso2d", "select2d"] };
  const margin = { l: 60, r: 20, t: 10, b: 40 };
  const marked = (div, n, extra) => { div.dataset.points = String(n); Object.assign(div.dataset, extra || {}); };

  // The history before Plotly's bundle is parsed: the same markers and best-so-far
  // line on a plain canvas (no hover, no zoom), replaced by the chart once Plotly is in.
  function preview(div, h) {
    const width = div.clientWidth, height = div.clientHeight;
    if (!width || !height) return false;
    const canvas = document.createElement("canvas");
    const ratio = window.devicePixelRatio || 1;
    canvas.width = width * ratio; canvas.height = height * ratio;
    canvas.style.width = width + "px"; canvas.style.height = height + "px";
    canvas.className = "preview";
    const g = canvas.getContext("2d");
    g.scale(ratio, ratio);
    const xs = h.x.concat(h.best_x), ys = h.y.concat(h.best_y).filter(Number.isFinite);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    const w = width - margin.l - margin.r, ht = height - margin.t - margin.b;
    const px = (x) => margin.l + (x1 > x0 ? ((x - x0) / (x1 - x0)) * w : w / 2);
    const py = (y) => margin.t + (y1 > y0 ? (1 - (y - y0) / (y1 - y0)) * ht : ht / 2);
    g.font = "12px sans-serif"; g.fillStyle = "#444"; g.strokeStyle = "#ccc";
    g.strokeRect(margin.l, margin.t, w, ht);
    g.fillText(fmt(y1), 4, margin.t + 10); g.fillText(fmt(y0), 4, margin.t + ht);
    g.fillText(fmt(x0), margin.l, height - margin.b + 14); g.fillText(fmt(x1), margin.l + w - 40, height - margin.b + 14);
    g.fillText("point index", margin.l + w / 2 - 30, height - 6);
    h.x.forEach((x, i) => {
      g.fillStyle = h.pruned[i] ? "#6e7781" : "rgba(9, 105, 218, 0.6)";
      g.fillRect(px(x) - 2, py(h.y[i]) - 2, 4, 4);
    });
    g.strokeStyle = "#cf222e"; g.lineWidth = 2; g.beginPath();
    h.best_x.forEach((x, i) => {
      if (i === 0) g.moveTo(px(x), py(h.best_y[i]));
      else { g.lineTo(px(x), py(h.best_y[i - 1])); g.lineTo(px(x), py(h.best_y[i])); }
    });
    g.stroke();
    div.append(canvas);
    div.dataset.preview = String(h.x.length);
    return true;
  }

  async function history(div, h, onZoom, onShown) {
    const previewed = !window.Plotly && !div.data && preview(div, h);
    if (previewed && onShown) onShown();
    if (!previewed) releasePlotly();
    await loadPlotly();
    for (const canvas of div.querySelectorAll(":scope > canvas.preview")) canvas.remove();
    const complete = [], pruned = [];
    h.x.forEach((x, i) => (h.pruned[i] ? pruned : complete).push(i));
    const pick = (idx, arr) => idx.map((i) => arr[i]);
    const traces = [
      { type: "scattergl", mode: "markers", name: "evaluated", x: pick(complete, h.x), y: pick(complete, h.y), text: pick(complete, h.ids), marker: { size: 5, color: "#0969da", opacity: 0.6 }, hovertemplate: "%{text}<br>index %{x}<br>loss %{y}<extra></extra>" },
      { type: "scattergl", mode: "lines", name: "best so far", x: h.best_x, y: h.best_y, line: { shape: "hv", color: "#cf222e", width: 2 }, hoverinfo: "skip" },
    ];
    if (pruned.length) traces.push({ type: "scattergl", mode: "markers", name: "pruned", x: pick(pruned, h.x), y: pick(pruned, h.y), text: pick(pruned, h.ids), marker: { size: 5, symbol: "x", color: "#6e7781" }, hovertemplate: "%{text} (pruned)<br>index %{x}<br>loss %{y}<extra></extra>" });
    const layout = { margin, xaxis: { title: { text: "point index" } }, yaxis: { title: { text: "loss" } }, legend: { orientation: "h", y: 1.1 }, uirevision: "history" };
    // Drawn again (a zoom's re-cut, a live update) with the same traces: only their
    // data is replaced, which Plotly redraws for less than a whole react.
    const same = div.data && div.data.length === traces.length && traces.every((t, i) => div.data[i].name === t.name);
    const drawn = same
      ? Plotly.restyle(div, { x: traces.map((t) => t.x), y: traces.map((t) => t.y), text: traces.map((t) => t.text || null) })
      : Plotly.react(div, traces, layout, config);
    marked(div, h.x.length, { total: String(h.total) });
    if (!previewed && onShown) drawn.then(onShown);
    if (!div.dataset.zoomHooked) {
      div.dataset.zoomHooked = "1";
      div.on("plotly_relayout", (e) => {
        const range = e["xaxis.range"] || (e["xaxis.range[0]"] !== undefined ? [e["xaxis.range[0]"], e["xaxis.range[1]"]] : null);
        if (range) onZoom(range);
        else if (e["xaxis.autorange"]) onZoom(null);
      });
    }
    return drawn;
  }

  function axisOf(p) {
    if (p.log) return { label: "log10 " + p.name, values: p.values.map((v) => (v === null || v <= 0 ? NaN : Math.log10(v))) };
    if (!p.categorical) return { label: p.name, values: p.values.map((v) => (v === null ? NaN : v)) };
    return { label: p.name, values: p.values, tickvals: p.labels.map((_, i) => i), ticktext: p.labels };
  }

  async function parallel(div, s) {
    await loadPlotly();
    const dims = s.params.map(axisOf);
    dims.push({ label: "loss", values: s.loss });
    const trace = { type: "parcoords", dimensions: dims, line: { color: s.loss, colorscale: "Viridis", reversescale: true, showscale: true } };
    const drawn = Plotly.react(div, [trace], { margin: { l: 60, r: 60, t: 40, b: 20 } }, config);
    marked(div, s.loss.length, { total: String(s.total) });
    return drawn;
  }

  async function slice(div, s, name) {
    await loadPlotly();
    const p = s.params.find((q) => q.name === name) || s.params[0];
    if (!p) { Plotly.purge(div); marked(div, 0); return Promise.resolve(); }
    const x = p.categorical ? p.values.map((v) => (v === null ? null : p.labels[v])) : p.values;
    const trace = { type: "scattergl", mode: "markers", x, y: s.loss, text: s.index.map((i) => "index " + i), marker: { size: 5, color: s.index, colorscale: "Blues", showscale: true, colorbar: { title: { text: "index" } } }, hovertemplate: "%{text}<br>" + p.name + " %{x}<br>loss %{y}<extra></extra>" };
    const drawn = Plotly.react(div, [trace], { margin, xaxis: { title: { text: p.name }, type: p.categorical ? "category" : p.log ? "log" : "-" }, yaxis: { title: { text: "loss" } } }, config);
    marked(div, s.loss.length, { total: String(s.total) });
    return drawn;
  }

  async function importance(div, imp) {
    await loadPlotly();
    const entries = Object.entries(imp.importances).sort((a, b) => a[1] - b[1]);
    const trace = { type: "bar", orientation: "h", x: entries.map((e) => e[1]), y: entries.map((e) => e[0]), marker: { color: "#0969da" }, hovertemplate: "%{y}: %{x:.3f}<extra></extra>" };
    const drawn = Plotly.react(div, [trace], { margin: { l: 120, r: 20, t: 10, b: 40 }, xaxis: { title: { text: "importance (fANOVA)" }, range: [0, 1] } }, config);
    marked(div, entries.length);
    return drawn;
  }

  async function curves(div, c) {
    await loadPlotly();
    const traces = c.curves.map((k) => ({ type: "scattergl", mode: "lines", name: "index " + k.index, x: k.steps, y: k.values, line: { width: 1, color: k.pruned_step === null ? "#0969da" : "#6e7781" }, opacity: k.pruned_step === null ? 0.8 : 0.5, hovertemplate: `index ${k.index}${k.pruned_step === null ? "" : " (pruned)"}<br>step %{x}<br>value %{y}<extra></extra>` }));
    const stops = c.curves.filter((k) => k.pruned_step !== null);
    if (stops.length) traces.push({ type: "scattergl", mode: "markers", name: "pruned", x: stops.map((k) => k.steps[k.steps.length - 1]), y: stops.map((k) => k.values[k.values.length - 1]), marker: { symbol: "x", size: 8, color: "#cf222e" }, hovertemplate: "pruned at step %{x}<extra></extra>" });
    const drawn = Plotly.react(div, traces, { margin, showlegend: false, xaxis: { title: { text: "step" } }, yaxis: { title: { text: "intermediate value" } } }, config);
    marked(div, c.curves.length, { pruned: String(stops.length), total: String(c.total) });
    return drawn;
  }

  async function pareto(div, p) {
    await loadPlotly();
    const col = (rows, i) => rows.loss.map((l) => l[i]);
    const traces = [
      { type: "scattergl", mode: "markers", name: "dominated", x: col(p.others, 0), y: col(p.others, 1), text: p.others.ids, marker: { size: 4, color: "#8c959f" }, hovertemplate: "%{text}<br>%{x}, %{y}<extra></extra>" },
      { type: "scattergl", mode: "markers", name: "Pareto front", x: col(p.front, 0), y: col(p.front, 1), text: p.front.ids, marker: { size: 7, color: "#cf222e" }, hovertemplate: "%{text}<br>%{x}, %{y}<extra></extra>" },
    ];
    const label = (i) => `objective ${i} (${p.directions[i]})`;
    const drawn = Plotly.react(div, traces, { margin, xaxis: { title: { text: label(0) } }, yaxis: { title: { text: label(1) } }, legend: { orientation: "h", y: 1.1 } }, config);
    marked(div, p.front.ids.length, { others: String(p.others.ids.length), total: String(p.total) });
    return drawn;
  }

  async function occupancy(div, sites) {
    await loadPlotly();
    const traces = [];
    for (const s of sites) {
      const x = s.occupancy.map((o) => new Date(o[0] * 1000));
      traces.push({ type: "scatter", mode: "lines+markers", name: s.id + " busy", x, y: s.occupancy.map((o) => o[1]), line: { shape: "hv" } });
      traces.push({ type: "scatter", mode: "lines+markers", name: s.id + " total", x, y: s.occupancy.map((o) => o[2]), line: { shape: "hv", dash: "dot" } });
    }
    marked(div, traces.reduce((n, t) => n + t.x.length, 0) / 2);
    // at least ten minutes of axis, ending at the last sample: one or two samples
    // would otherwise stretch a time axis of milliseconds across the chart
    const times = sites.flatMap((s) => s.occupancy.map((o) => o[0] * 1000));
    const xaxis = {};
    if (times.length) {
      const last = Math.max(...times);
      const first = Math.min(...times, last - 600000);
      xaxis.range = [new Date(first), new Date(last)];
    }
    return Plotly.react(div, traces, { margin, xaxis, yaxis: { title: { text: "GPU slots" }, rangemode: "tozero" }, legend: { orientation: "h", y: 1.1 } }, config);
  }

  const purge = (div) => { if (window.Plotly) Plotly.purge(div); };

  return { history, parallel, slice, importance, curves, pareto, occupancy, purge };
})();
