"""The page ``anovit serve`` shows at ``/``: pick or drop images, see each verdict, score and overlay.

One self-contained HTML document (inline CSS and script, no CDN, no network beyond the server).
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>anovit inspection</title>
<link rel="icon" href="data:,">
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
  header { background: #1d2330; color: #fff; padding: 12px 20px; display: flex; gap: 16px; align-items: center; }
  header h1 { font-size: 18px; margin: 0; font-weight: 600; }
  main { padding: 16px 20px; }
  #drop { border: 2px dashed #8a94a6; border-radius: 10px; padding: 28px; text-align: center; background: #fff; }
  #drop.over { border-color: #2b6cb0; background: #ebf4ff; }
  #error { color: #b42318; margin: 10px 0; white-space: pre-wrap; }
  #results { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 14px; margin-top: 16px; }
  .result { background: #fff; border-radius: 10px; padding: 12px; box-shadow: 0 1px 3px rgba(0,0,0,.12); }
  .result .pics { display: flex; gap: 8px; }
  .result figure { margin: 0; flex: 1; }
  .result img { width: 100%; image-rendering: pixelated; border-radius: 4px; background: #ddd; }
  .result figcaption { font-size: 12px; color: #5b6577; }
  .verdict { font-weight: 700; padding: 2px 8px; border-radius: 6px; }
  .verdict.anomalous { background: #fee4e2; color: #b42318; }
  .verdict.normal { background: #dcfae6; color: #067647; }
  .meta { display: flex; gap: 12px; align-items: baseline; margin-bottom: 8px; flex-wrap: wrap; }
  .name { font-weight: 600; overflow-wrap: anywhere; }
  small { color: #5b6577; }
</style>
</head>
<body>
<header><h1>anovit inspection</h1>
  <label>run <select id="run"></select></label>
  <small id="about"></small>
</header>
<main>
  <div id="drop">Drop images here or <input type="file" id="file" accept="image/*" multiple></div>
  <div id="status"></div>
  <div id="error"></div>
  <div id="results"></div>
</main>
<script>
"use strict";
const runSelect = document.getElementById("run");
const results = document.getElementById("results");
const statusLine = document.getElementById("status");
const errorLine = document.getElementById("error");
let runs = [];

function showAbout() {
  const run = runs.find(r => r.name === runSelect.value);
  if (!run) return;
  document.getElementById("about").textContent =
    `${run.model}, ${run.image_size} px, ${run.backend}; image threshold ${run.thresholds.image.toPrecision(4)}, ` +
    `pixel threshold ${run.thresholds.pixel.toPrecision(4)}`;
}

async function loadRuns() {
  const response = await fetch("/v1/runs");
  runs = (await response.json()).runs;
  for (const run of runs) {
    const option = document.createElement("option");
    option.value = option.textContent = run.name;
    runSelect.appendChild(option);
  }
  showAbout();
  document.body.dataset.ready = "1";
}

function card(file, item) {
  const div = document.createElement("div");
  div.className = "result";
  div.dataset.verdict = item.verdict;
  const meta = document.createElement("div");
  meta.className = "meta";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = item.name;
  const verdict = document.createElement("span");
  verdict.className = "verdict " + item.verdict;
  verdict.textContent = item.verdict;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = `score ${item.score.toPrecision(4)} (threshold ${item.thresholds.image.toPrecision(4)})`;
  const area = document.createElement("small");
  const share = (100 * item.anomalous_fraction).toFixed(1);
  area.textContent = `${share} % of ${item.width} x ${item.height} px above the pixel threshold`;
  meta.append(name, verdict, score, area);
  const pics = document.createElement("div");
  pics.className = "pics";
  const panels = [[URL.createObjectURL(file), "image"], [item.overlay, "overlay (green = pixel threshold)"]];
  for (const [src, caption] of panels) {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = src;
    img.alt = caption;
    const figcaption = document.createElement("figcaption");
    figcaption.textContent = caption;
    figure.append(img, figcaption);
    pics.appendChild(figure);
  }
  div.append(meta, pics);
  return div;
}

async function score(files) {
  if (!files.length) return;
  errorLine.textContent = "";
  statusLine.textContent = `scoring ${files.length} image(s) ...`;
  const form = new FormData();
  for (const file of files) form.append("images", file, file.name);
  const url = `/v1/runs/${encodeURIComponent(runSelect.value)}/predict?overlay=png`;
  const response = await fetch(url, {method: "POST", body: form});
  const body = await response.json();
  if (!response.ok) {
    errorLine.textContent = body.error;
    statusLine.textContent = "";
    return;
  }
  body.images.forEach((item, i) => results.prepend(card(files[i], item)));
  statusLine.textContent = `${body.images.length} image(s) scored`;
  document.body.dataset.scored = String(results.children.length);
}

document.getElementById("file").addEventListener("change", event => score([...event.target.files]));
runSelect.addEventListener("change", showAbout);
const drop = document.getElementById("drop");
drop.addEventListener("dragover", event => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", event => {
  event.preventDefault();
  drop.classList.remove("over");
  score([...event.dataTransfer.files].filter(f => f.type.startsWith("image/")));
});
loadRuns().catch(err => { errorLine.textContent = "cannot list the runs: " + err; });
</script>
</body>
</html>
"""
