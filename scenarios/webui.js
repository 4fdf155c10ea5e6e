// wsbench in Locust's web UI: what its tables cannot show (scenarios/webui.py serves this).
//
// - a strip on every tab with the generator self-check verdict and the stored sessions'
//   reports (links);
// - under the "Latency (microseconds)" tab's table, the percentile spectrum of each request name;
// - under the "Server" tab's table, the target's open connections, memory per connection,
//   RSS and CPU over time.
// Everything is polled from the /wsbench/ JSON routes every 2 s, as Locust polls its own.
(function () {
  "use strict";
  const POLL_MS = 2000;
  const COLOURS = ["#1976d2", "#d32f2f", "#388e3c", "#f57c00", "#7b1fa2", "#0097a7"];
  const SVG = "http://www.w3.org/2000/svg";

  function currentTab() {
    return new URLSearchParams(window.location.search).get("tab") || "";
  }

  async function fetchJson(path) {
    const reply = await fetch(path, { cache: "no-store" });
    if (!reply.ok) throw new Error(path + ": " + reply.status);
    return reply.json();
  }

  function el(tag, attrs, text) {
    const node = tag.startsWith("svg:")
      ? document.createElementNS(SVG, tag.slice(4))
      : document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // The strip: fixed at the bottom right, above Locust's own page.
  const strip = el("div", { id: "wsbench-strip", role: "status" });
  strip.style.cssText =
    "position:fixed;right:12px;bottom:12px;z-index:1300;max-width:min(720px,90vw);" +
    "padding:8px 12px;border-radius:4px;font:13px/1.4 Roboto,Helvetica,Arial,sans-serif;" +
    "background:#fff;color:#222;box-shadow:0 1px 4px rgba(0,0,0,.35)";
  const verdict = el("div", { id: "wsbench-verdict" }, "Generator: not measured yet");
  const reports = el("div", { id: "wsbench-sessions" });
  strip.append(verdict, reports);

  async function refreshStrip() {
    try {
      const generator = await fetchJson("/wsbench/generator");
      verdict.textContent = "Generator: " + generator.verdict;
      verdict.style.color = generator.bound ? "#b71c1c" : "#1b5e20";
      verdict.dataset.bound = generator.bound ? "1" : "0";
    } catch (error) {
      verdict.textContent = "Generator: " + error.message;
    }
    try {
      const found = await fetchJson("/wsbench/sessions");
      reports.replaceChildren();
      for (const session of found.sessions.slice(-3)) {
        const line = el("div", { class: "wsbench-session" });
        let text = "Session " + session.session + ": " + session.state;
        if (session.status) text += " (" + session.status + ")";
        line.append(text);
        if (session.run_dir) line.append(" · " + session.run_dir);
        if (session.report_url) {
          line.append(" · ");
          line.append(el("a", { href: session.report_url, target: "_blank",
                                class: "wsbench-report" }, "report"));
        }
        reports.append(line);
      }
    } catch (error) {
      reports.textContent = "";
    }
  }

  // A line chart: series of [x, y] points, optional log axes, labelled ticks.
  function chart(series, opts) {
    const W = 880, H = 260, L = 64, R = 170, T = 24, B = 40;  // the legend in R
    const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img",
                                class: "wsbench-chart", "aria-label": opts.title });
    svg.style.maxWidth = W + "px";
    svg.append(el("svg:text", { x: L, y: 16, "font-size": 14, fill: "currentColor" },
                  opts.title));
    const points = series.flatMap((s) => s.points);
    if (!points.length) return svg;
    const fy = opts.ylog ? (v) => Math.log10(Math.max(v, 1)) : (v) => v;
    const xs = points.map((p) => p[0]), ys = points.map((p) => fy(p[1]));
    const x0 = opts.xmin ?? Math.min(...xs), x1 = Math.max(...xs, x0 + 1e-9);
    const y0 = opts.ylog ? Math.floor(Math.min(...ys)) : 0;
    const y1 = opts.ylog ? Math.ceil(Math.max(...ys, y0 + 1)) : Math.max(...ys) * 1.1 || 1;
    const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
    const sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
    const axis = { stroke: "currentColor", "stroke-opacity": 0.3 };
    svg.append(el("svg:line", { x1: L, y1: H - B, x2: W - R, y2: H - B, ...axis }));
    svg.append(el("svg:line", { x1: L, y1: T, x2: L, y2: H - B, ...axis }));
    const yticks = opts.ylog
      ? Array.from({ length: y1 - y0 + 1 }, (_, i) => y0 + i)
      : [0, 0.25, 0.5, 0.75, 1].map((f) => y0 + f * (y1 - y0));
    for (const y of yticks) {
      const label = opts.ylog ? Number(10 ** y).toLocaleString() : opts.yfmt(y);
      svg.append(el("svg:text", { x: L - 6, y: sy(y) + 4, "text-anchor": "end",
                                  "font-size": 11, fill: "currentColor" }, label));
      svg.append(el("svg:line", { x1: L, y1: sy(y), x2: W - R, y2: sy(y), ...axis,
                                  "stroke-opacity": 0.1 }));
    }
    for (const [x, label] of opts.xticks(x0, x1)) {
      svg.append(el("svg:text", { x: sx(x), y: H - B + 16, "text-anchor": "middle",
                                  "font-size": 11, fill: "currentColor" }, label));
    }
    svg.append(el("svg:text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle",
                                "font-size": 12, fill: "currentColor" }, opts.xlabel));
    series.forEach((s, i) => {
      const colour = COLOURS[i % COLOURS.length];
      const d = s.points.map((p, k) => (k ? "L" : "M") + sx(p[0]).toFixed(1) + " " +
                             sy(fy(p[1])).toFixed(1)).join(" ");
      svg.append(el("svg:path", { d, fill: "none", stroke: colour, "stroke-width": 2 }));
      svg.append(el("svg:text", { x: W - R + 12, y: T + 16 * (i + 1), "font-size": 12,
                                  fill: colour }, s.name));
    });
    return svg;
  }

  // Percentiles as "nines": 90 % -> 1, 99 % -> 2, ..., as HdrHistogram plots spectra.
  const nines = (p) => -Math.log10(Math.max(1 - p / 100, 1e-6));
  const ninesTicks = () => [[0, "0%"], [1, "90%"], [2, "99%"], [3, "99.9%"], [4, "99.99%"],
                            [5, "99.999%"], [6, "max"]];

  function latencyCharts(data) {
    const series = Object.entries(data.spectrum).map(([name, points]) => ({
      name, points: points.map(([p, v]) => [nines(p), v]),
    }));
    return [chart(series, { title: "Percentile spectrum (µs, log scale)", ylog: true, xmin: 0,
                            xlabel: "percentile", xticks: ninesTicks })];
  }

  function serverCharts(data) {
    const samples = data.samples || [];
    const pick = (key, scale) => samples.filter((s) => s[key] !== null && s[key] !== undefined)
      .map((s) => [s.t_s, s[key] * scale]);
    const timeTicks = (x0, x1) => [0, 0.25, 0.5, 0.75, 1].map((f) => {
      const x = x0 + f * (x1 - x0);
      return [x, x.toFixed(0) + " s"];
    });
    const common = { xlabel: "time since wsbench ui started", xticks: timeTicks };
    const int = (y) => Math.round(y).toLocaleString();
    const one = (y) => y.toFixed(1);
    return [
      chart([{ name: "open connections", points: pick("connections", 1) }],
            { ...common, title: "Open connections", yfmt: int }),
      chart([{ name: "KiB per connection", points: pick("bytes_per_connection", 1 / 1024) }],
            { ...common, title: "Memory per connection (KiB, RSS above idle)", yfmt: one }),
      chart([{ name: "RSS MiB", points: pick("rss_bytes", 1 / 2 ** 20) },
             { name: "CPU % of a core", points: pick("cpu_pct", 1) }],
            { ...common, title: "Target RSS (MiB) and CPU (% of a core)", yfmt: int }),
    ];
  }

  const CHARTS = {
    "wsbench-latency": ["/wsbench/latency", latencyCharts],
    "wsbench-server": ["/wsbench/server", serverCharts],
  };

  async function refreshCharts() {
    const tab = currentTab();
    const wanted = CHARTS[tab];
    let box = document.getElementById("wsbench-charts");
    if (!wanted) {
      if (box) box.remove();
      return;
    }
    // Under the tab's table: Locust renders it in a MUI table container.
    const table = document.querySelector("#root .MuiTableContainer-root");
    if (!table) return;
    if (!box || box.previousElementSibling !== table) {
      if (box) box.remove();
      box = el("div", { id: "wsbench-charts" });
      box.style.cssText = "margin:16px 0 96px;display:grid;gap:16px";
      table.after(box);
    }
    box.dataset.tab = tab;
    try {
      const data = await fetchJson(wanted[0]);
      box.replaceChildren(...wanted[1](data));
    } catch (error) {
      box.textContent = error.message;
    }
  }

  function start() {
    document.body.append(strip);
    refreshStrip();
    setInterval(refreshStrip, POLL_MS);
    setInterval(refreshCharts, POLL_MS);
    // A tab change re-renders the table at once: draw as soon as it appears.
    new MutationObserver(() => {
      const box = document.getElementById("wsbench-charts");
      const table = document.querySelector("#root .MuiTableContainer-root");
      if (CHARTS[currentTab()] && table && (!box || box.previousElementSibling !== table ||
                                            box.dataset.tab !== currentTab())) {
        refreshCharts();
      }
    }).observe(document.getElementById("root"), { childList: true, subtree: true });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
