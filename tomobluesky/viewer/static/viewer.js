// The viewer page. Everything that comes from the catalogue is data: it goes into the page
// only through textContent and element properties, and into URLs only through
// encodeURIComponent. (The Content-Security-Policy also forbids inline script.)
"use strict";

let current = null, events = null;
const $ = (id) => document.getElementById(id);
const scanUrl = (uid, rest) => `/api/scans/${encodeURIComponent(uid)}/${rest}`;

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
async function api(url) {
  const r = await fetch(url, {credentials: "same-origin"});
  if (r.status === 401) {
    const body = await r.json().catch(() => ({}));
    needLogin(body.error);
    return null;
  }
  return r;
}

async function loadScans() {
  const r = await api("/api/scans");
  if (!r) return;
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    $("scans").replaceChildren(el("div", body.error || `error ${r.status}`, "failed"));
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

function refreshLive(uid, md) {
  $("live").hidden = false;
  const t = Date.now();
  for (const name of ["axial", "vertical_x", "vertical_y"]) {
    $("live-" + name).src = scanUrl(uid, `live/${name}.png?t=${t}`);
  }
  $("status").textContent = `${md.projections} projections, ${Number(md.angle_coverage_deg).toFixed(1)}° covered, ` +
    `centre ${Number(md.center).toFixed(1)}, lag ${Number(md.lag_s).toFixed(3)} s`;
}

async function showVolume(uid) {
  const r = await api(scanUrl(uid, "volume"));
  if (!r || !r.ok || uid !== current) return;
  const info = await r.json();
  if (info.metadata.status === "failed") {
    $("status").replaceChildren(el("span", `reconstruction failed: ${info.metadata.reason ?? "no reason given"}`,
                                   "failed"));
    return;
  }
  $("volume").hidden = false;
  $("slice").max = info.shape[0] - 1;
  $("slice").value = Math.floor(info.shape[0] / 2);  // start in the middle of the sample
  $("status").textContent = `volume ${info.shape.join("×")}, centre ${Number(info.metadata.center).toFixed(2)} ` +
    `(${info.metadata.status})`;
  drawSlice();
}

function drawSlice() {
  if (!current) return;
  $("slice-label").textContent = $("slice").value;
  // size: the server sends the coarsest pyramid level still this sharp, not a 2048² slice for a screen
  const query = new URLSearchParams({size: "1024", low: $("low").value, high: $("high").value});
  $("volume-slice").src = scanUrl(current, `volume/${encodeURIComponent($("slice").value)}.png?${query}`);
}

function select(uid) {
  current = uid;
  if (events) events.close();
  $("title").textContent = `scan ${uid}`;
  $("live").hidden = true; $("volume").hidden = true; $("status").textContent = "";
  document.querySelectorAll("#scans div").forEach(d => d.classList.toggle("selected", d.dataset.uid === uid));
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

let isPublic = false;

async function start() {
  for (const id of ["slice", "low", "high"]) $(id).addEventListener("input", drawSlice);
  $("login").addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await fetch("/login", {method: "POST", headers: {"Content-Type": "application/json"},
                                     body: JSON.stringify({key: $("key").value}), credentials: "same-origin"});
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      $("login-error").textContent = body.error || `login failed (${r.status})`;
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
    current = null;
    $("title").textContent = "Select a scan";
    $("live").hidden = true; $("volume").hidden = true; $("status").textContent = "";
    needLogin("");
  });
  isPublic = Boolean((await (await fetch("/api/session")).json()).public);
  await loadScans();
  setInterval(() => { if ($("login").hidden) loadScans(); }, 3000);
  const wanted = new URLSearchParams(location.search).get("scan");
  if (wanted) select(wanted);
}

start();
