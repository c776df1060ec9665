// Draws every chart of a page with uPlot from the JSON the server put beside it; formats axes for people.
"use strict";

const palette = ["#4f7cff", "#e4780c", "#2e9d57", "#d64545", "#a350d6", "#0f9fb3", "#8a6d3b", "#5b6678"];

function human(value) {
  if (value == null) return "";
  const size = Math.abs(value);
  for (const [limit, suffix] of [[1e9, "B"], [1e6, "M"], [1e3, "k"]]) {
    if (size >= limit) return (value / limit).toFixed(1) + suffix;
  }
  return size >= 10 || Number.isInteger(value) ? value.toFixed(0) : value.toPrecision(2);
}

function draw(figure) {
  const spec = JSON.parse(figure.querySelector(".chart-data").textContent);
  const target = figure.querySelector(".plot");
  const options = {
    width: Math.max(target.clientWidth, 480),
    height: 220,
    series: [{}].concat(spec.series.map((s, i) => ({
      label: s.label, stroke: palette[i % palette.length], width: 1.5, spanGaps: true,
      // measured values may be sparse (one call in a range): show each point; counts are dense
      points: { show: !spec.counts, size: 5 },
      value: (u, v) => (v == null ? "—" : human(v) + (spec.unit ? " " + spec.unit : "")),
    }))),
    axes: [{}, { values: (u, ticks) => ticks.map(human), size: 60 }],
    scales: { x: { time: true } },
  };
  const data = [spec.x].concat(spec.series.map((s) => s.values));
  new uPlot(options, data, target);
  figure.dataset.drawn = "true";
}

window.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("figure.chart").forEach(draw);
});
