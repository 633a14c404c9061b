// The explorer's page. It only asks the server (the JSON/PNG API) and draws what comes back:
// every image and number is computed by minivae; here we map clicks to latent points.
"use strict";

const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];
const $ = (id) => document.getElementById(id);
let info = null, plane = null, picked = null, point = null;
let decodeBusy = false, decodeWanted = null;

function status(text) { $("status").textContent = text || ""; }

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function planeQuery() {
  if (info.latent === 2 || $("axes-mode").value === "pca") return "axes=pca&hold=0";
  const i = Number($("axis-i").value) - 1, j = Number($("axis-j").value) - 1;
  return `axes=${i},${j}&hold=${encodeURIComponent($("hold").value)}`;
}

function labelQuery() { return info.conditional ? `&label=${$("label").value}` : ""; }

// Plane coordinates <-> canvas pixels.
function toPixel(u, v) {
  const c = $("plane"), [[u0, u1], [v0, v1]] = plane.range;
  return [(u - u0) / (u1 - u0) * c.width, (1 - (v - v0) / (v1 - v0)) * c.height];
}
function toPlane(x, y) {
  const c = $("plane"), [[u0, u1], [v0, v1]] = plane.range;
  return [u0 + x / c.width * (u1 - u0), v0 + (1 - y / c.height) * (v1 - v0)];
}
function latentOf(u, v) { return plane.origin.map((o, k) => o + u * plane.basis[0][k] + v * plane.basis[1][k]); }

function draw() {
  const c = $("plane"), ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  ctx.strokeStyle = "#ddd";
  const [ox, oy] = toPixel(0, 0);
  ctx.beginPath(); ctx.moveTo(ox, 0); ctx.lineTo(ox, c.height); ctx.moveTo(0, oy); ctx.lineTo(c.width, oy); ctx.stroke();
  for (const [u, v, label] of plane.points) {
    const [x, y] = toPixel(u, v);
    ctx.fillStyle = label === null ? "#555" : COLOURS[label % COLOURS.length];
    ctx.globalAlpha = 0.6;
    ctx.fillRect(x - 2, y - 2, 4, 4);
  }
  ctx.globalAlpha = 1;
  drawLabelNames(ctx);
  if (picked && picked.plane.ellipse) {
    const [x, y] = toPixel(...picked.plane.mean), [a, b] = picked.plane.ellipse.radii;
    const [u0, u1] = plane.range[0], [v0, v1] = plane.range[1];
    const sx = c.width / (u1 - u0), sy = c.height / (v1 - v0), t = picked.plane.ellipse.angle;
    ctx.strokeStyle = "#c0392b"; ctx.lineWidth = 2; ctx.beginPath();
    for (let s = 0; s <= 64; s++) {  // the ellipse mean ± 2 sd, drawn point by point in plane units
      const w = 2 * Math.PI * s / 64, du = a * Math.cos(w) * Math.cos(t) - b * Math.sin(w) * Math.sin(t);
      const dv = a * Math.cos(w) * Math.sin(t) + b * Math.sin(w) * Math.cos(t);
      ctx.lineTo(x + du * sx, y - dv * sy);
    }
    ctx.stroke(); ctx.lineWidth = 1;
  }
  if (picked) {
    const [x, y] = toPixel(...picked.plane.mean);
    ctx.fillStyle = "#c0392b"; ctx.beginPath(); ctx.arc(x, y, 4, 0, 2 * Math.PI); ctx.fill();
  }
  if (point) {
    const [x, y] = toPixel(...point);
    ctx.strokeStyle = "#000"; ctx.beginPath();
    ctx.moveTo(x - 8, y); ctx.lineTo(x + 8, y); ctx.moveTo(x, y - 8); ctx.lineTo(x, y + 8); ctx.stroke();
  }
}

// Each label's name at the mean of its points, in its colour with a white halo: colours
// alone can be hard to tell apart (5 and 7 of the ten, or on a grey projector).
function drawLabelNames(ctx) {
  const sums = new Map();
  for (const [u, v, label] of plane.points) {
    if (label === null) continue;
    const s = sums.get(label) || [0, 0, 0];
    sums.set(label, [s[0] + u, s[1] + v, s[2] + 1]);
  }
  const centres = [];
  ctx.font = "bold 18px sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
  ctx.lineWidth = 4; ctx.strokeStyle = "#fff";
  for (const [label, [su, sv, n]] of [...sums.entries()].sort((a, b) => a[0] - b[0])) {
    const [x, y] = toPixel(su / n, sv / n);
    ctx.strokeText(String(label), x, y);
    ctx.fillStyle = COLOURS[label % COLOURS.length];
    ctx.fillText(String(label), x, y);
    centres.push([label, Math.round(x), Math.round(y)]);
  }
  ctx.lineWidth = 1;
  $("plane").dataset.labelCentres = JSON.stringify(centres);  // what was drawn where (the browser test reads it)
}

// One decode request at a time; while it runs, only the latest wanted point is kept.
function decode(z) {
  decodeWanted = z;
  if (decodeBusy) return;
  decodeBusy = true;
  const img = $("decoded"), text = z.map((v) => v.toFixed(4)).join(",");
  decodeWanted = null;
  img.onload = img.onerror = () => {
    decodeBusy = false;
    img.dataset.z = text;
    if (decodeWanted) decode(decodeWanted);
  };
  img.src = `/api/decode?z=${text}${labelQuery()}`;
  $("decoded-z").textContent = `z = (${z.map((v) => v.toFixed(2)).join(", ")})`;
}

function moveTo(event) {
  const c = $("plane"), box = c.getBoundingClientRect();
  point = toPlane((event.clientX - box.left) * c.width / box.width, (event.clientY - box.top) * c.height / box.height);
  draw();
  decode(latentOf(...point));
}

async function loadPlane() {
  try {
    plane = await getJSON(`/api/plane?${planeQuery()}`);
    $("plane-description").textContent = `plane: ${plane.description}`;
    status("");
    if (picked) await pick(picked.index);
    draw();
  } catch (err) { status(err.message); }
}

function show(id, value) {
  $(id).textContent = value === undefined || value === null ? "–" : value.toFixed(3);
  $(id).dataset.value = value === undefined || value === null ? "" : String(value);
}

async function pick(index) {
  try {
    picked = await getJSON(`/api/encode?index=${index}&${planeQuery()}`);
  } catch (err) { status(err.message); return; }
  status("");
  $("index").value = index;
  for (const t of document.querySelectorAll("#thumbs img")) t.classList.toggle("chosen", Number(t.dataset.index) === index);
  $("original").src = `/api/image?index=${index}`;
  const label = picked.label !== null && info.conditional ? `&label=${picked.label}` : "";
  $("reconstruction").src = `/api/decode?z=${picked.mean.join(",")}${label}`;
  show("recon", picked.recon); show("kl", picked.kl); show("neg-elbo", picked.neg_elbo);
  show("log-px", picked.log_likelihood);
  if (picked.log_likelihood_refused) $("log-px").title = picked.log_likelihood_refused;
  draw();
}

function nearestPoint(event) {
  const c = $("plane"), box = c.getBoundingClientRect();
  const x = (event.clientX - box.left) * c.width / box.width, y = (event.clientY - box.top) * c.height / box.height;
  let best = -1, bestDistance = 36;  // within 6 pixels
  plane.points.forEach(([u, v], k) => {
    const [px, py] = toPixel(u, v), d = (px - x) ** 2 + (py - y) ** 2;
    if (d < bestDistance) { best = k; bestDistance = d; }
  });
  return best;
}

async function start() {
  try { info = await getJSON("/api/info"); } catch (err) { status(err.message); return; }
  const m = info.metrics || {};
  $("run").textContent = `${info.run}: ${info.model} on ${info.data}, ${info.latent}-D latent, ` +
    `${info.test_examples} test images` + (m.test_neg_elbo !== undefined ? `, test −ELBO ${m.test_neg_elbo.toFixed(2)}` : "");
  if (!info.probabilistic) $("kl").parentElement.hidden = $("neg-elbo").parentElement.hidden = true;
  $("log-px-name").textContent = info.log_likelihood ? `ln p(x), importance-sampled, k=${info.k}` : "ln p(x) (not reported)";
  if (info.latent === 2) $("plane-controls").querySelectorAll("label:not(#label-box)").forEach((e) => (e.hidden = true));
  for (const id of ["axis-i", "axis-j"]) $(id).max = info.latent;
  if (info.conditional) {
    $("label-box").hidden = false;
    for (let c = 0; c < info.num_classes; c++) $("label").add(new Option(String(c), String(c)));
    $("label").onchange = () => point && decode(latentOf(...point));
  }
  for (const id of ["index", "from", "to"]) $(id).max = info.test_examples - 1;
  if (info.num_classes) {  // the label colours of the dots
    for (let c = 0; c < info.num_classes; c++) {
      const item = document.createElement("span"), swatch = document.createElement("i");
      swatch.style.background = COLOURS[c % COLOURS.length];
      item.append(swatch, `label ${c}`);
      $("legend").appendChild(item);
    }
  }
  $("steps").max = info.max_steps;
  for (let k = 0; k < Math.min(24, info.test_examples); k++) {
    const img = new Image();
    img.src = `/api/image?index=${k}`; img.dataset.index = k; img.alt = `test image ${k}`;
    img.onclick = () => pick(k);
    $("thumbs").appendChild(img);
  }
  for (const id of ["axes-mode", "axis-i", "axis-j", "hold"]) $(id).onchange = loadPlane;
  let dragging = false;
  const c = $("plane");
  c.onmousedown = (e) => { dragging = true; moveTo(e); };
  c.onmousemove = (e) => dragging && moveTo(e);
  window.onmouseup = () => (dragging = false);
  c.ondblclick = (e) => { const k = nearestPoint(e); if (k >= 0) pick(k); };
  $("pick").onclick = () => pick(Number($("index").value));
  $("interp").onclick = () => {
    $("strip").src = `/api/interpolate?from=${$("from").value}&to=${$("to").value}&steps=${$("steps").value}`;
  };
  $("strip").onerror = async () => {  // an error answer is JSON: show its one line
    try { await getJSON($("strip").src); } catch (err) { status(err.message); }
  };
  await loadPlane();
  point = [0, 0]; draw(); decode(latentOf(0, 0));
  await pick(0);
  $("interp").onclick();
  document.body.dataset.ready = "1";
}

start();
