// lamap view: a Leaflet map of a store's LAI tiles, a date selector, a legend, the source
// layer as a toggle, and a click that charts the pixel's time series. No external request.
"use strict";

const state = { info: null, date: null, lai: null, source: null, marker: null };

function rgb(c) { return `rgb(${c[0]}, ${c[1]}, ${c[2]})`; }

function drawLegend(info) {
  const [low, high] = info.range;
  const stops = info.ramp.map(([v, c]) => `${rgb(c)} ${(100 * (v - low)) / (high - low)}%`);
  document.getElementById("legend-bar").style.background =
    `linear-gradient(to right, ${stops.join(", ")})`;
  const ticks = document.getElementById("legend-ticks");
  for (let v = low; v <= high; v += 2) {
    const span = document.createElement("span");
    span.textContent = String(v);
    ticks.appendChild(span);
  }
  document.getElementById("swatch-observed").style.background = rgb(info.source_colours["1"]);
  document.getElementById("swatch-filled").style.background = rgb(info.source_colours["2"]);
}

function tileLayer(layer, date, opacity) {
  const layerObj = L.tileLayer(`/tiles/${layer}/${date}/{z}/{x}/{y}.png`, {
    maxZoom: 20, tileSize: 256, opacity: opacity, keepBuffer: 0, updateWhenZooming: false,
  });
  layerObj.on("loading", () => { document.body.dataset.tiles = "loading"; });
  layerObj.on("load", () => {
    const busy = [state.lai, state.source].some((l) => l && l.isLoading());
    if (!busy) { document.body.dataset.tiles = "loaded"; }
  });
  return layerObj;
}

function showDate(map, date) {
  state.date = date;
  document.body.dataset.tiles = "loading";
  if (state.lai) { map.removeLayer(state.lai); }
  state.lai = tileLayer("lai", date, 1.0).addTo(map);
  if (state.source) { map.removeLayer(state.source); state.source = null; }
  if (document.getElementById("source-toggle").checked) {
    state.source = tileLayer("source", date, 0.85).addTo(map);
  }
}

function chart(result) {
  const box = document.getElementById("chart");
  box.hidden = false;
  box.dataset.series = JSON.stringify(result.series || []);
  box.dataset.x = String(result.x);
  box.dataset.y = String(result.y);
  box.innerHTML = "";
  const title = document.createElement("h2");
  if (!result.inside) {
    title.textContent = "outside the store";
    box.appendChild(title);
    return;
  }
  title.textContent = `LAI at x ${result.x.toFixed(0)}, y ${result.y.toFixed(0)} m`;
  box.appendChild(title);
  box.appendChild(seriesSvg(result.series, state.info));
}

function seriesSvg(series, info) {
  const ns = "http://www.w3.org/2000/svg";
  const w = 360, h = 150, left = 28, bottom = 20, top = 6;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", h);
  const [low, high] = info.range;
  const times = series.map((p) => Date.parse(p.date));
  const t0 = Math.min(...times), t1 = Math.max(...times);
  const xOf = (t) => left + (t1 > t0 ? ((t - t0) / (t1 - t0)) * (w - left - 10) : (w - left) / 2);
  const yOf = (v) => top + (1 - (v - low) / (high - low)) * (h - top - bottom);
  const add = (name, attrs) => {
    const el = document.createElementNS(ns, name);
    for (const [k, v] of Object.entries(attrs)) { el.setAttribute(k, v); }
    svg.appendChild(el);
    return el;
  };
  for (let v = low; v <= high; v += 2) {
    add("line", { x1: left, x2: w - 10, y1: yOf(v), y2: yOf(v), stroke: "#ddd" });
    add("text", { x: 2, y: yOf(v) + 4, "font-size": 10 }).textContent = String(v);
  }
  const known = series.map((p, i) => [p, times[i]]).filter(([p]) => p.lai !== null);
  if (known.length > 1) {
    add("polyline", { fill: "none", stroke: "#555",
      points: known.map(([p, t]) => `${xOf(t)},${yOf(p.lai)}`).join(" ") });
  }
  series.forEach((p, i) => {
    const x = xOf(times[i]);
    if (p.lai === null) {
      add("text", { x: x - 3, y: h - bottom + 2, "font-size": 10, fill: "#999" }).textContent = "×";
      return;
    }
    const colour = rgb(info.source_colours[String(p.source)] || [0, 0, 0]);
    add("circle", { cx: x, cy: yOf(p.lai), r: 4, stroke: colour, "stroke-width": 2,
      fill: p.source === 1 ? colour : "white", class: `point source-${p.source}` })
      .appendChild(document.createElementNS(ns, "title")).textContent =
        `${p.date}: ${p.lai} (${p.source === 1 ? "observed" : "filled"})`;
  });
  add("text", { x: left, y: h - 4, "font-size": 10 }).textContent =
    `${series[0].date} … ${series[series.length - 1].date}  ● observed  ○ filled  × none`;
  return svg;
}

async function main() {
  const info = await (await fetch("/api/info")).json();
  state.info = info;
  drawLegend(info);
  const map = L.map("map", { fadeAnimation: false, zoomAnimation: false,
    attributionControl: false });
  const [w, s, e, n] = info.data_bounds;
  map.fitBounds([[s, w], [n, e]]);
  const select = document.getElementById("date");
  for (const date of info.dates) {
    const option = document.createElement("option");
    option.value = date; option.textContent = date;
    select.appendChild(option);
  }
  select.value = info.dates[info.dates.length - 1];
  select.addEventListener("change", () => showDate(map, select.value));
  document.getElementById("source-toggle").addEventListener("change", () => showDate(map, state.date));
  showDate(map, select.value);
  map.on("click", async (event) => {
    const { lat, lng } = event.latlng;
    if (state.marker) { map.removeLayer(state.marker); }
    state.marker = L.circleMarker(event.latlng, { radius: 5, color: "#d00" }).addTo(map);
    const result = await (await fetch(`/api/point?lon=${lng}&lat=${lat}`)).json();
    result.lon = lng; result.lat = lat;
    chart(result);
    document.body.dataset.clicked = `${lng},${lat}`;
  });
  window.lamapMap = map;
  document.body.dataset.ready = "1";
}

main();
