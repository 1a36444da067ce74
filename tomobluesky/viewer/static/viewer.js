// The viewer page. Everything that comes from the catalogue is data: it goes into the page
// only through textContent and element properties, and into URLs only through
// encodeURIComponent and URLSearchParams. (The Content-Security-Policy also forbids inline script.)
"use strict";

let current = null, events = null, isPublic = false, canControl = false;
const $ = (id) => document.getElementById(id);
const scanUrl = (uid, rest) => `/api/scans/${encodeURIComponent(uid)}/${rest}`;
const AXES = ["z", "y", "x"];
// a plane cutting `axis` shows these volume axes as its rows and columns (0 = z, 1 = y, 2 = x)
const PLANE_AXES = {z: [1, 2], y: [0, 2], x: [0, 1]};
// canvas size in device pixels: 512, or ?px=N (64..2048) to match a screen or a test
const PX = Math.min(2048, Math.max(64, Number(new URLSearchParams(location.search).get("px")) || 512));

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function needLogin(message) {
  $("login").hidden = false;
  $("logout").hidden = true;
  $("login-error").textContent = message || "";
  $("scans").replaceChildren(el("div", "log in to see scans"));
}

// fetch that shows the login form on 401 and returns null then
async function api(url, options) {
  const r = await fetch(url, {credentials: "same-origin", ...options});
  if (r.status === 401) {
    const body = await r.json().catch(() => ({}));
    needLogin(body.error);
    return null;
  }
  return r;
}

async function errorOf(r) {
  const body = await r.json().catch(() => ({}));
  return body.error || `error ${r.status}`;
}

async function loadScans() {
  const r = await api("/api/scans");
  if (!r) return;
  if (!r.ok) {
    $("scans").replaceChildren(el("div", await errorOf(r), "failed"));
    return;
  }
  const rows = await r.json();
  $("login").hidden = true;
  $("logout").hidden = isPublic;
  const items = rows.map((row) => {
    const uid = String(row.uid);
    const d = el("div");
    d.dataset.uid = uid;
    if (uid === current) d.className = "selected";
    const state = row.volume_status || (row.live ? "acquiring" : "raw only");
    d.append(el("b", `scan ${row.scan_id ?? "?"}`), " ", String(row.sample ?? ""), el("br"),
             el("small", `${uid.slice(0, 8)} · ${row.plan ?? "?"} · ${state}`));
    d.addEventListener("click", () => select(uid));
    return d;
  });
  $("scans").replaceChildren(...(items.length ? items : [el("div", "no scans yet")]));
}

// ---- live slices and steering them --------------------------------------------------------

const fmt = (v, digits) => (Number.isFinite(Number(v)) ? Number(v).toFixed(digits) : "?");

function refreshLive(uid, md) {
  $("live").hidden = false;
  const t = Date.now();
  for (const name of ["axial", "vertical_x", "vertical_y"]) {
    $("live-" + name).src = scanUrl(uid, `live/${name}.png?t=${t}`);
  }
  const source = md.center_source ?? md.center_method;
  $("live-center").textContent = `${fmt(md.center, 2)}` + (source ? ` (${source})` : "");
  $("live-row-shown").textContent = fmt(md.row, 0);
  $("status").textContent = `${md.projections} projections, ${fmt(md.angle_coverage_deg, 1)}° covered, ` +
    `lag ${fmt(md.lag_s, 3)} s` + (md.skipped ? `, ${md.skipped} frames skipped` : "");
  if (Array.isArray(md.detector_shape)) $("live-row").max = md.detector_shape[md.detector_shape.length - 2] - 1;
}

async function sendControl(e) {
  e.preventDefault();
  if (!current) return;
  const request = {};
  if ($("live-row").value !== "") request.row = Number($("live-row").value);
  if ($("live-center-input").value !== "") request.center = Number($("live-center-input").value);
  const r = await api(scanUrl(current, "live/control"), {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(request)});
  if (!r) return;
  if (!r.ok) {
    $("control-status").replaceChildren(el("span", await errorOf(r), "failed"));
    return;
  }
  const sent = (await r.json()).request;
  const parts = [];
  if (sent.row !== undefined) parts.push(`row ${sent.row}`);
  if (sent.center !== undefined) parts.push(`centre ${fmt(sent.center, 2)}`);
  $("control-status").textContent = `requested ${parts.join(", ")} (request ${sent.seq}): applied at the next preview`;
}

// ---- the volume: three planes, zoom and pan, contrast, profiles ---------------------------

let vol = null;  // {uid, shape, index: {z, y, x}, window: [lo, hi] | null, histogram}

function makePlane(axis) {
  const [ra, ca] = PLANE_AXES[axis];
  const plane = {axis, rows: vol.shape[ra], cols: vol.shape[ca], seq: 0, canvas: $("plane-" + axis),
                 overlay: $("overlay-" + axis), view: null, drawn: null};
  for (const c of [plane.canvas, plane.overlay]) { c.width = PX; c.height = PX; }
  fit(plane);
  return plane;
}

function fit(plane) {
  // level-0 voxels per canvas pixel: the whole plane fits the canvas
  const scale = Math.max(plane.rows / PX, plane.cols / PX);
  plane.view = {cr: plane.rows / 2, cc: plane.cols / 2, scale};
}

function visible(plane) {
  const {cr, cc, scale} = plane.view, half = (PX / 2) * scale;
  const r0 = Math.max(0, Math.floor(cr - half)), r1 = Math.min(plane.rows, Math.ceil(cr + half));
  const c0 = Math.max(0, Math.floor(cc - half)), c1 = Math.min(plane.cols, Math.ceil(cc + half));
  return [r0, r1, c0, c1];
}

// canvas pixel <-> level-0 plane coordinate (continuous: voxel p spans p..p+1)
const viewToCanvas = (view, r, c) => [PX / 2 + (c - view.cc) / view.scale, PX / 2 + (r - view.cr) / view.scale];
const toCanvas = (plane, r, c) => viewToCanvas(plane.view, r, c);
const toPlane = (plane, x, y) => [plane.view.cr + (y - PX / 2) * plane.view.scale,
                                  plane.view.cc + (x - PX / 2) * plane.view.scale];

// The axial plane of the scan named in the page's URL is asked for with the page itself, beside the
// session and the volume's description: the first image then costs one round trip to Tiled, not three.
// The server's defaults (middle slice, whole plane) are what the page would ask for first.
let firstPlane = null;  // {uid, response}
function prefetchAxial(uid) {
  firstPlane = {uid, response: fetch(scanUrl(uid, `plane/z.png?size=${PX}`), {credentials: "same-origin"})};
}

async function takePrefetched(plane, region, size) {
  const early = firstPlane;
  firstPlane = null;
  const whole = region[0] === 0 && region[1] === plane.rows && region[2] === 0 && region[3] === plane.cols;
  if (!early || early.uid !== vol.uid || plane.axis !== "z" || !whole || size !== PX || vol.window) return null;
  const r = await early.response.catch(() => null);
  if (!r || !r.ok || Number(r.headers.get("x-index")) !== vol.index.z) return null;
  return r;
}

async function drawPlane(plane) {
  const [r0, r1, c0, c1] = visible(plane);
  if (r1 <= r0 || c1 <= c0) {
    plane.canvas.getContext("2d").clearRect(0, 0, PX, PX);
    drawOverlay(plane);
    return;
  }
  // size: how many screen pixels the region spans, so the server picks the level that fits
  const size = Math.max(1, Math.floor(Math.max(r1 - r0, c1 - c0) / plane.view.scale + 1e-9));
  const query = new URLSearchParams({index: vol.index[plane.axis], region: `${r0},${r1},${c0},${c1}`, size});
  if (vol.window) { query.set("vmin", vol.window[0]); query.set("vmax", vol.window[1]); }
  const seq = ++plane.seq, uid = vol.uid, view = {...plane.view};
  const r = (await takePrefetched(plane, [r0, r1, c0, c1], size)) ??
            await api(scanUrl(uid, `plane/${plane.axis}.png?${query}`));
  if (!r || seq !== plane.seq || !vol || vol.uid !== uid) return;  // a newer request is on its way
  if (!r.ok) { $("position").replaceChildren(el("span", await errorOf(r), "failed")); return; }
  const level = Number(r.headers.get("x-level"));
  const [R0, R1, C0, C1] = r.headers.get("x-region").split(",").map(Number);
  const bitmap = await createImageBitmap(await r.blob());
  if (seq !== plane.seq) return;
  // placed for the view it was asked for (a pan since then is drawn by the next answer)
  const [x, y] = viewToCanvas(view, R0, C0), w = (C1 - C0) / view.scale, h = (R1 - R0) / view.scale;
  const g = plane.canvas.getContext("2d");
  g.imageSmoothingEnabled = false;
  g.clearRect(0, 0, PX, PX);
  g.drawImage(bitmap, x, y, w, h);
  plane.drawn = {level, region: [R0, R1, C0, C1], x, y, w, h, index: vol.index[plane.axis],
                 window: vol.window ? [...vol.window] : null, image: [bitmap.height, bitmap.width]};
  plane.canvas.dataset.view = JSON.stringify(plane.drawn);
  plane.canvas.dataset.draws = String(Number(plane.canvas.dataset.draws || 0) + 1);
  if (!window.firstPaint) window.firstPaint = performance.now();
  drawOverlay(plane);
}

// the cross-hair: where the other two planes cut this one
function drawOverlay(plane, line) {
  const g = plane.overlay.getContext("2d");
  g.clearRect(0, 0, PX, PX);
  const [ra, ca] = PLANE_AXES[plane.axis];
  const [x, y] = toCanvas(plane, vol.index[AXES[ra]] + 0.5, vol.index[AXES[ca]] + 0.5);
  g.strokeStyle = "rgba(255, 200, 0, 0.7)";
  g.beginPath(); g.moveTo(0, y); g.lineTo(PX, y); g.moveTo(x, 0); g.lineTo(x, PX); g.stroke();
  if (line) {
    g.strokeStyle = "#0f0";
    g.beginPath(); g.moveTo(...toCanvas(plane, line[0][0] + 0.5, line[0][1] + 0.5));
    g.lineTo(...toCanvas(plane, line[1][0] + 0.5, line[1][1] + 0.5)); g.stroke();
  }
}

function redraw(axes) { for (const a of axes) drawPlane(vol.planes[a]); }

function setIndex(axis, value) {
  const n = vol.shape[AXES.indexOf(axis)];
  vol.index[axis] = Math.min(n - 1, Math.max(0, Math.floor(value)));
  $("index-" + axis).value = vol.index[axis];
  $("label-" + axis).textContent = `${vol.index[axis]} / ${n - 1}`;
}

// the canvas pixel under a mouse event (the canvas may be shown larger or smaller than PX)
function eventPixel(plane, e) {
  const box = plane.overlay.getBoundingClientRect();
  return [(e.clientX - box.left) * PX / box.width, (e.clientY - box.top) * PX / box.height];
}

function clampToPlane(plane, [r, c]) {
  return [Math.min(plane.rows - 1, Math.max(0, r)), Math.min(plane.cols - 1, Math.max(0, c))];
}

// the planes are made per volume: each handler looks up the current one
function attachMouse(axis) {
  let down = null;
  const overlay = $("overlay-" + axis), planeNow = () => (vol ? vol.planes[axis] : null);
  overlay.addEventListener("wheel", (e) => {
    const plane = planeNow();
    if (!plane) return;
    e.preventDefault();
    const [x, y] = eventPixel(plane, e), [r, c] = toPlane(plane, x, y);
    const fitScale = Math.max(plane.rows / PX, plane.cols / PX);
    const scale = Math.min(fitScale * 2, Math.max(1 / 16, plane.view.scale * (e.deltaY < 0 ? 0.5 : 2)));
    // keep the voxel under the pointer where it is
    plane.view = {scale, cr: r - (y - PX / 2) * scale, cc: c - (x - PX / 2) * scale};
    drawPlane(plane);
  }, {passive: false});
  overlay.addEventListener("mousedown", (e) => {
    const plane = planeNow();
    if (!plane) return;
    const at = eventPixel(plane, e);
    down = {at, view: {...plane.view}, moved: false, start: toPlane(plane, ...at)};
  });
  overlay.addEventListener("mousemove", (e) => {
    const plane = planeNow();
    if (!plane) return;
    const [x, y] = eventPixel(plane, e), [r, c] = toPlane(plane, x, y);
    $("position").textContent = `${plane.axis} = ${vol.index[plane.axis]}, row ${Math.floor(r)}, column ${Math.floor(c)}`;
    if (!down) return;
    if (Math.hypot(x - down.at[0], y - down.at[1]) > 3) down.moved = true;
    if (!down.moved) return;
    if (profileMode()) {
      drawOverlay(plane, [clampToPlane(plane, down.start), clampToPlane(plane, [r, c])]);
    } else {
      plane.view = {...down.view, cr: down.view.cr - (y - down.at[1]) * down.view.scale,
                    cc: down.view.cc - (x - down.at[0]) * down.view.scale};
      drawPlane(plane);
    }
  });
  overlay.addEventListener("mouseup", (e) => {
    const plane = planeNow();
    if (!down || !plane) return;
    const [x, y] = eventPixel(plane, e), here = toPlane(plane, x, y), was = down;
    down = null;
    if (was.moved && profileMode()) {
      lineProfile(plane, clampToPlane(plane, was.start), clampToPlane(plane, here));
    } else if (!was.moved) {  // a click: move the other two planes here
      const [ra, ca] = PLANE_AXES[plane.axis];
      setIndex(AXES[ra], here[0]); setIndex(AXES[ca], here[1]);
      redraw([AXES[ra], AXES[ca]]);
      drawOverlay(plane);
    }
  });
  overlay.addEventListener("mouseleave", () => { down = null; });
}

const profileMode = () => document.querySelector("input[name=mode]:checked").value === "profile";

async function lineProfile(plane, start, end) {
  const floor = (p) => p.map((v) => Math.floor(v));
  const [a, b] = [floor(start), floor(end)];
  const size = Math.max(2, Math.floor(Math.hypot(b[0] - a[0], b[1] - a[1]) / plane.view.scale));
  const query = new URLSearchParams({axis: plane.axis, index: vol.index[plane.axis], start: a.join(","),
                                     end: b.join(","), size});
  const r = await api(scanUrl(vol.uid, `profile?${query}`));
  if (!r) return;
  if (!r.ok) { $("profile-text").replaceChildren(el("span", await errorOf(r), "failed")); return; }
  const profile = await r.json();
  drawOverlay(plane, [a, b]);
  plotProfile(profile.values);
  const finite = profile.values.filter((v) => v !== null);
  $("profile-text").textContent = `${plane.axis} = ${vol.index[plane.axis]}, (${a}) to (${b}): ` +
    `${profile.values.length} values from level ${profile.level}, ` +
    `${fmt(Math.min(...finite), 4)} to ${fmt(Math.max(...finite), 4)}`;
  $("profile").dataset.profile = JSON.stringify(profile);
}

function plotProfile(values) {
  const c = $("profile"), g = c.getContext("2d"), finite = values.filter((v) => v !== null);
  g.clearRect(0, 0, c.width, c.height);
  if (!finite.length) return;
  const lo = Math.min(...finite), hi = Math.max(...finite), span = hi > lo ? hi - lo : 1;
  g.strokeStyle = "#06c";
  g.beginPath();
  values.forEach((v, i) => {
    if (v === null) return;
    const x = 4 + (i / Math.max(1, values.length - 1)) * (c.width - 8), y = c.height - 4 - ((v - lo) / span) * (c.height - 8);
    if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
  });
  g.stroke();
}

// percentile p (0..100) of the histogram, linear within a bin
function percentile(h, p) {
  const total = h.counts.reduce((a, b) => a + b, 0), want = (p / 100) * total;
  let seen = 0;
  for (let i = 0; i < h.counts.length; i++) {
    if (seen + h.counts[i] >= want && h.counts[i] > 0) {
      return h.edges[i] + ((want - seen) / h.counts[i]) * (h.edges[i + 1] - h.edges[i]);
    }
    seen += h.counts[i];
  }
  return h.max;
}

function autoWindow() {
  const h = vol.histogram;
  if (!h || !h.counts.length) return;
  let lo = percentile(h, 1), hi = percentile(h, 99.5);
  if (!(hi > lo)) { lo = h.min; hi = h.max > h.min ? h.max : h.min + 1; }
  setWindow(lo, hi);
}

function setWindow(lo, hi) {
  vol.window = [lo, hi];
  $("vmin").value = String(lo); $("vmax").value = String(hi);
  drawHistogram();
  redraw(AXES);
}

function drawHistogram() {
  const h = vol.histogram, c = $("histogram"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  if (!h || !h.counts.length) return;
  const top = Math.log1p(Math.max(...h.counts)), x = (v) => ((v - h.min) / (h.max - h.min || 1)) * c.width;
  g.fillStyle = "#888";
  h.counts.forEach((n, i) => {
    const bar = (Math.log1p(n) / top) * (c.height - 2);
    g.fillRect(x(h.edges[i]), c.height - bar, Math.max(1, x(h.edges[i + 1]) - x(h.edges[i])), bar);
  });
  if (vol.window) {
    g.fillStyle = "rgba(0, 100, 255, 0.15)";
    g.fillRect(x(vol.window[0]), 0, x(vol.window[1]) - x(vol.window[0]), c.height);
  }
}

async function loadHistogram(uid) {
  const r = await api(scanUrl(uid, "histogram?bins=256"));
  if (!r || !vol || vol.uid !== uid) return;
  if (!r.ok) { $("histogram-text").replaceChildren(el("span", await errorOf(r), "failed")); return; }
  vol.histogram = await r.json();
  $("histogram-text").textContent = `histogram of level ${vol.histogram.level}` +
    (vol.histogram.slice_step > 1 ? ` (every ${vol.histogram.slice_step}th slice)` : "");
  autoWindow();
}

async function showVolume(uid) {
  if (vol && vol.uid === uid) return;  // already shown (asked at selection and again when the scan ends)
  const r = await api(scanUrl(uid, "volume"));
  if (!r || !r.ok || uid !== current || (vol && vol.uid === uid)) return;
  const info = await r.json();
  if (info.metadata.status === "failed") {
    $("status").replaceChildren(el("span", `reconstruction failed: ${info.metadata.reason ?? "no reason given"}`,
                                   "failed"));
    return;
  }
  if (info.metadata.status !== "complete") return;
  $("volume").hidden = false;
  vol = {uid, shape: info.shape, index: {}, window: null, histogram: null, planes: {}};
  $("status").textContent = `volume ${info.shape.join("×")} in ${info.levels.length} levels, ` +
    `centre ${fmt(info.metadata.center, 2)} (${info.metadata.status})`;
  AXES.forEach((axis, i) => {
    $("index-" + axis).max = info.shape[i] - 1;
    setIndex(axis, info.shape[i] / 2);  // start in the middle of the sample
  });
  for (const axis of AXES) vol.planes[axis] = makePlane(axis);
  // the axial plane alone first (two cores serve it fastest undisturbed), with its own contrast;
  // then the other two, then the histogram's window redraws all three
  await drawPlane(vol.planes.z);
  await Promise.all([drawPlane(vol.planes.y), drawPlane(vol.planes.x)]);
  await loadHistogram(uid);
}

async function select(uid) {
  current = uid;
  vol = null;
  if (events) events.close();
  $("title").textContent = `scan ${uid}`;
  $("live").hidden = true; $("volume").hidden = true; $("status").textContent = "";
  if (canControl) $("control-status").textContent = "";
  document.querySelectorAll("#scans div").forEach(d => d.classList.toggle("selected", d.dataset.uid === uid));
  await showVolume(uid);  // a finished scan's volume at once, before its event stream and the scan list
  if (uid !== current) return;
  const source = events = new EventSource(scanUrl(uid, "live/events"));
  source.addEventListener("update", (e) => { const md = JSON.parse(e.data); if (md.projections) refreshLive(uid, md); });
  source.addEventListener("done", () => { source.close(); showVolume(uid); loadScans(); });
  source.addEventListener("error", (e) => {
    // an "error" event from the server names the problem; a failed connection (unknown scan: 404,
    // no key: 401) closes the source, a dropped one reconnects by itself
    if (e.data) {
      source.close();
      const problem = JSON.parse(e.data);
      if (problem.status === 401) needLogin(problem.error);
      else $("status").replaceChildren(el("span", problem.error, "failed"));
    } else if (source.readyState === EventSource.CLOSED) {
      showVolume(uid).then(() => {
        if ($("volume").hidden && !$("status").textContent) {
          $("status").replaceChildren(el("span", `nothing to show for scan ${uid}`, "failed"));
        }
      });
    }
  });
}

async function start() {
  for (const axis of AXES) {
    $("index-" + axis).addEventListener("input", (e) => {
      if (!vol) return;
      setIndex(axis, Number(e.target.value));
      redraw([axis]);
      for (const other of AXES) if (other !== axis) drawOverlay(vol.planes[other]);
    });
  }
  for (const axis of AXES) attachMouse(axis);
  $("reset").addEventListener("click", () => { if (!vol) return; for (const a of AXES) fit(vol.planes[a]); redraw(AXES); });
  $("auto").addEventListener("click", () => { if (vol) autoWindow(); });
  for (const id of ["vmin", "vmax"]) {
    $(id).addEventListener("change", () => {
      const lo = Number($("vmin").value), hi = Number($("vmax").value);
      if (vol && Number.isFinite(lo) && Number.isFinite(hi) && lo < hi) setWindow(lo, hi);
      else $("histogram-text").replaceChildren(el("span", "the window needs two numbers, low < high", "failed"));
    });
  }
  $("control").addEventListener("submit", sendControl);
  $("login").addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await fetch("/login", {method: "POST", headers: {"Content-Type": "application/json"},
                                     body: JSON.stringify({key: $("key").value}), credentials: "same-origin"});
    if (!r.ok) {
      $("login-error").textContent = await errorOf(r);
      return;
    }
    $("key").value = "";
    $("login-error").textContent = "";
    await loadScans();
    if (current) select(current);
  });
  $("logout").addEventListener("click", async () => {
    await fetch("/logout", {method: "POST", credentials: "same-origin"});
    if (events) events.close();
    current = null; vol = null;
    $("title").textContent = "Select a scan";
    $("live").hidden = true; $("volume").hidden = true; $("status").textContent = "";
    needLogin("");
  });
  const wanted = new URLSearchParams(location.search).get("scan");
  if (wanted) prefetchAxial(wanted);
  const session = await (await fetch("/api/session")).json();
  isPublic = Boolean(session.public);
  canControl = Boolean(session.control);
  for (const id of ["live-row", "live-center-input", "live-apply"]) $(id).disabled = !canControl;
  if (!canControl) $("control-status").textContent = "this viewer cannot steer (started without --control-key-file)";
  if (wanted) await select(wanted);  // first: the list of scans can take longer than the scan asked for
  await loadScans();
  setInterval(() => { if ($("login").hidden) loadScans(); }, 3000);
}

start();
