// Small inline-SVG charts, no dependencies.
// ConsoleCharts.lineChart({key, title, unit, max, cap, series: [{label, replica, quantile, points: [[t_ms, v]]}]},
//   since_ms, until_ms) -> <figure>: one line per series, coloured by replica and dashed by quantile (p50 solid,
//   p95 dashed, p99 dotted); a null value breaks the line. `max` fixes the axis top; without it the axis is scaled
//   to the data, never above `cap`.
// ConsoleCharts.radarChart({axes: [{key, title}], series: [{key, label, values: {axis: 0..10}}], max}) -> <figure>:
//   a spider chart, one polygon per series; the figure keeps the data it drew in figure.chartData.
(() => {
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#2f5bd3", "#1f8a4c", "#b7791f", "#c53030", "#6b46c1", "#0f7c8c"];
  const W = 420, H = 170, LEFT = 46, RIGHT = 10, TOP = 10, BOTTOM = 24;
  const DASH = { p50: "", p95: "5 3", p99: "1.5 2.5" };

  function svg(tag, attrs = {}, text = null) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== null) node.textContent = text;
    return node;
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= value) return m * power;
    return 10 * power;
  }

  function fmt(v) {
    if (v === null || v === undefined) return "–";
    const a = Math.abs(v);
    return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  }

  function clock(ms) {
    const d = new Date(ms);
    return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
  }

  function lineChart(chart, since, until) {
    const figure = document.createElement("figure");
    figure.className = "chart";
    figure.dataset.key = chart.key;
    const values = chart.series.flatMap((s) => s.points.map((p) => p[1]).filter((v) => v !== null));
    const latest = chart.series.map((s) => [...s.points].reverse().find((p) => p[1] !== null)).filter(Boolean);
    const caption = document.createElement("figcaption");
    const now = latest.length ? latest.map((p) => fmt(p[1])).join(" / ") : "–";
    caption.innerHTML = `<strong></strong> <span class="now"></span>`;
    caption.querySelector("strong").textContent = chart.title;
    caption.querySelector(".now").textContent = `${now} ${chart.unit}`;
    figure.append(caption);

    const scaled = niceMax(Math.max(0, ...values) * 1.1);
    const top = chart.max || (chart.cap ? Math.min(chart.cap, scaled) : scaled);
    figure.dataset.top = top;
    const x = (t) => LEFT + ((t - since) / Math.max(until - since, 1)) * (W - LEFT - RIGHT);
    const y = (v) => TOP + (1 - Math.min(v, top) / top) * (H - TOP - BOTTOM);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": chart.title });
    for (const frac of [0, 0.5, 1]) {
      const v = top * frac;
      root.append(svg("line", { x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v), class: "grid" }));
      root.append(svg("text", { x: LEFT - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, fmt(v)));
    }
    for (let i = 0; i <= 4; i += 1) {
      const t = since + ((until - since) * i) / 4;
      root.append(svg("text", { x: x(t), y: H - 6, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle",
        class: "tick" }, clock(t)));
    }
    const colorOf = (s, i) => COLORS[(s.quantile ? (s.replica ?? 0) : i) % COLORS.length];
    chart.series.forEach((s, i) => {
      const color = colorOf(s, i);
      const dash = DASH[s.quantile] || "";
      let run = [];
      const flush = () => {
        if (run.length > 1) {
          root.append(svg("polyline", { points: run.join(" "), fill: "none", stroke: color, "stroke-width": 1.6,
            "stroke-linejoin": "round", "stroke-dasharray": dash, class: "series", "data-label": s.label }));
        } else if (run.length === 1) {
          const [cx, cy] = run[0].split(",");
          root.append(svg("circle", { cx, cy, r: 2.5, fill: color, class: "series", "data-label": s.label }));
        }
        run = [];
      };
      for (const [t, v] of s.points) {
        if (v === null) flush();
        else run.push(`${x(t).toFixed(1)},${y(v).toFixed(1)}`);
      }
      flush();
    });
    if (!values.length) {
      root.append(svg("text", { x: (LEFT + W) / 2, y: H / 2, "text-anchor": "middle", class: "nodata" },
        "no samples yet"));
    }
    figure.append(root);
    if (chart.series.length > 1) {
      const legend = document.createElement("div");
      legend.className = "legend";
      chart.series.forEach((s, i) => {
        const item = document.createElement("span");
        item.style.setProperty("--c", colorOf(s, i));
        if (s.quantile) item.dataset.quantile = s.quantile;
        item.textContent = s.label;
        legend.append(item);
      });
      figure.append(legend);
    }
    return figure;
  }

  function radarChart(chart) {
    const figure = document.createElement("figure");
    figure.className = "chart radar";
    figure.chartData = chart;
    const size = 360, c = size / 2, R = 120, max = chart.max || 10;
    const n = chart.axes.length;
    const at = (i, v) => {
      const a = -Math.PI / 2 + (2 * Math.PI * i) / n;
      return [c + Math.cos(a) * R * (v / max), c + Math.sin(a) * R * (v / max)];
    };
    const root = svg("svg", { viewBox: `-70 0 ${size + 140} ${size}`, width: "100%", role: "img",
      "aria-label": chart.title || "spider chart" });
    for (const ring of [0.25, 0.5, 0.75, 1]) {
      const pts = chart.axes.map((_, i) => at(i, max * ring).map((v) => v.toFixed(1)).join(","));
      root.append(svg("polygon", { points: pts.join(" "), class: "grid", fill: "none" }));
    }
    chart.axes.forEach((axis, i) => {
      const [x, y] = at(i, max);
      root.append(svg("line", { x1: c, y1: c, x2: x, y2: y, class: "grid" }));
      const [lx, ly] = at(i, max * 1.16);
      root.append(svg("text", { x: lx, y: ly + 4, "text-anchor": Math.abs(lx - c) < 5 ? "middle" : lx < c ? "end"
        : "start", class: "axis-label" }, axis.title));
    });
    chart.series.forEach((s, i) => {
      const color = COLORS[i % COLORS.length];
      const pts = chart.axes.map((axis, j) => at(j, Math.max(0, Math.min(max, s.values[axis.key]))));
      root.append(svg("polygon", { points: pts.map((p) => p.map((v) => v.toFixed(1)).join(",")).join(" "),
        fill: color, "fill-opacity": s.highlight ? 0.25 : 0.08, stroke: color, "stroke-width": s.highlight ? 2.4 : 1.4,
        class: "series", "data-key": s.key }));
    });
    figure.append(root);
    const legend = document.createElement("div");
    legend.className = "legend";
    chart.series.forEach((s, i) => {
      const item = document.createElement("span");
      item.style.setProperty("--c", COLORS[i % COLORS.length]);
      item.textContent = s.label + (s.highlight ? " (recommended)" : "");
      legend.append(item);
    });
    figure.append(legend);
    return figure;
  }

  window.ConsoleCharts = { lineChart, radarChart };
})();
