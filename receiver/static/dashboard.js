// imagedock's dashboard: counters from /stats, the newest jobs from /jobs, kept live by the job
// log's Server-Sent Events on /log. The bearer token lives in sessionStorage, never in a URL, and
// all text from the API reaches the page through textContent.
"use strict";

const TOKEN_KEY = "imagedock.token";
const LIMIT = 50; // rows in the table
const PRESIGN = 600; // seconds a thumbnail's URL stays valid
const STATS_EVERY = 5000;
const COALESCE = 250; // log entries this close together cost one request per job
const BACKOFF = [1000, 30000]; // the stream's first wait before reconnecting, and its longest
// A timeline's clock shows milliseconds: a job's steps are that close together.
const CLOCK = new Intl.DateTimeFormat([], {
  hourCycle: "h23",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  fractionalSecondDigits: 3,
});

const $ = (selector) => document.querySelector(selector);
const rows = $("#jobs tbody");
const models = new Set();
const pending = new Set(); // refs named by log entries, not yet re-read
let token = null;
let session = null; // an AbortController: logging out cancels every request at once
let timers = [];
let flushTimer = null;
let selected = null; // the ref whose timeline is shown
let noticeTimer = null;
let listings = 0; // lists asked for: only the latest one's answer is shown

class Unauthorized extends Error {}

async function request(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    signal: session.signal,
    headers: { Authorization: `Bearer ${token}`, ...options.headers },
  });
  if (response.status === 401) throw new Unauthorized("wrong token");
  if (!response.ok) throw new Error(`${path} answered ${response.status}`);
  return response;
}

async function api(path, options) {
  return (await request(path, options)).json();
}

// Runs a task of the session: a cancelled one is quiet, a refused token logs out, anything
// else is shown to the person (never thrown at the console).
function quietly(task) {
  return task.catch((error) => {
    if (error instanceof Unauthorized) logOut(error.message);
    else if (error.name !== "AbortError") notify(error.message);
  });
}

function notify(message) {
  $("#notice").textContent = message;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => ($("#notice").textContent = ""), 8000);
}

function element(tag, className = "", textContent = "", properties = {}) {
  return Object.assign(document.createElement(tag), { className, textContent, ...properties });
}

// Session.

async function logIn(candidate) {
  stop();
  token = candidate;
  session = new AbortController();
  try {
    const response = await request("/stats");
    showStats(await response.json());
    sessionStorage.setItem(TOKEN_KEY, token);
    start(response.headers.get("Date"));
  } catch (error) {
    if (error.name === "AbortError") return;
    logOut(error.message);
  }
}

function start(serverDate) {
  $("#token").value = "";
  $("#login-error").hidden = true;
  show(true);
  // Follow the log from a second before the server's clock, not from "now": entries made while
  // the list loads are replayed (re-reading a job is harmless) instead of missed.
  const since = (Date.parse(serverDate) || Date.now()) - 1000;
  quietly(follow(`${since}-0`, session.signal));
  quietly(loadJobs());
  timers = [setInterval(() => quietly(refreshStats()), STATS_EVERY), setInterval(showAges, 1000)];
}

function stop() {
  session?.abort();
  timers.forEach(clearInterval);
  clearTimeout(flushTimer);
  flushTimer = null;
  pending.clear();
}

function logOut(message = "") {
  stop();
  sessionStorage.removeItem(TOKEN_KEY);
  token = selected = null;
  rows.replaceChildren();
  $("#timeline").hidden = true;
  show(false);
  $("#login-error").textContent = message;
  $("#login-error").hidden = !message;
}

function show(loggedIn) {
  for (const id of ["#dashboard", "#logout", "#live"]) $(id).hidden = !loggedIn;
  $("#login").hidden = loggedIn;
  setLive(false);
}

function setLive(live) {
  $("#live").textContent = live ? "live" : "connecting";
  $("#live").classList.toggle("on", live);
}

// Counters.

async function refreshStats() {
  showStats(await api("/stats"));
}

function showStats(stats) {
  for (const cell of document.querySelectorAll("[data-stat]")) {
    cell.textContent = stats[cell.dataset.stat] ?? "–";
  }
  const reasons = Object.entries(stats.webhooksRejected ?? {});
  const items = reasons.map(([reason, count]) => element("li", "", `${reason}: ${count}`));
  $("#rejected").replaceChildren(...(items.length ? items : [element("li", "none", "none")]));
  $("#redrive").disabled = !stats.deadLetters;
  const spent = Object.entries(stats.creditsByCaller ?? {}).map(([caller, n]) => `${caller} ${n}`);
  const today = Object.entries(stats.creditsToday ?? {}).map(([caller, n]) => `${caller} ${n} today`);
  $("#credits").textContent = [...spent, ...today].join(", ");
}

async function redrive() {
  const { redriven } = await api("/events/redrive", { method: "POST" });
  notify(`${redriven} dead-lettered event${redriven === 1 ? "" : "s"} sent again`);
  await refreshStats();
}

// The jobs table.

async function loadJobs() {
  const listing = ++listings;
  const query = new URLSearchParams({ limit: LIMIT, presign: PRESIGN });
  for (const [name, select] of [["status", "#status-filter"], ["model", "#model-filter"]]) {
    if ($(select).value) query.set(name, $(select).value);
  }
  const { jobs } = await api(`/jobs?${query}`);
  if (listing !== listings) return; // the filters changed while it loaded
  rows.replaceChildren(...jobs.map((job) => renderRow(job)));
  jobs.forEach(noteModel);
}

function upsert(job) {
  noteModel(job);
  const old = rows.querySelector(`tr[data-ref="${CSS.escape(job.ref)}"]`);
  if (old && Number(old.dataset.updated) > job.updatedAt) return; // a slower, older answer
  const status = $("#status-filter").value;
  const model = $("#model-filter").value;
  if ((status && job.status !== status) || (model && job.model !== model)) {
    old?.remove();
  } else if (old) {
    old.replaceWith(renderRow(job, old));
  } else {
    const older = [...rows.rows].find((row) => Number(row.dataset.created) < job.createdAt);
    rows.insertBefore(renderRow(job), older ?? null);
    while (rows.rows.length > LIMIT) rows.lastElementChild.remove();
  }
}

function renderRow(job, old = null) {
  const row = element("tr", job.ref === selected ? "selected" : "");
  const { ref, status, createdAt: created, updatedAt: updated } = job;
  Object.assign(row.dataset, { ref, status, created, updated });
  row.tabIndex = 0;
  const badge = element("td", "status");
  badge.append(element("span", "badge", status));
  const age = element("td", "age", ago(created));
  const caller = element("td", "caller", job.caller);
  // What made the job: its model, and past the default route, the route and action too.
  const made = job.action ? `${job.model} ${job.action}` : job.model;
  const model = element("td", "model", made, { title: `${job.operation}: ${made}` });
  const prompt = element("td", "prompt", job.prompt, { title: job.prompt });
  const reason = element("td", "reason", job.error ?? "");
  row.append(badge, age, caller, model, prompt, thumbnails(job, old), reason);
  return row;
}

function thumbnails(job, old) {
  const keys = job.objects.map((stored) => stored.key).join(" ");
  const kept = old?.querySelector("td.images");
  if (kept?.dataset.keys === keys) return kept; // a fresh presigned URL would only reload them
  const cell = element("td", "images");
  cell.dataset.keys = keys;
  for (const stored of job.objects.filter((each) => each.url)) {
    cell.append(preview(stored));
  }
  return cell;
}

// A file as its kind is best seen: an image as a thumbnail, a video, a track or a stem as a
// player that loads only its metadata until it is played, each with a link to the file.
function preview(stored) {
  const link = element("a", "", "", { href: stored.url, target: "_blank", rel: "noopener" });
  const name = `${stored.kind ?? "image"} ${stored.index}`;
  if (stored.kind === "video" || stored.kind === "audio" || stored.kind === "stem") {
    const tag = stored.kind === "video" ? "video" : "audio";
    const player = element(tag, `player ${tag}`, "", {
      src: stored.url, controls: true, preload: "metadata", title: name,
    });
    const figure = element("span", "media");
    link.textContent = `${stored.kind === "audio" ? "track" : stored.kind} ↗`;
    figure.append(player, link);
    return figure;
  }
  link.append(element("img", `thumb ${stored.kind ?? "image"}`, "", { src: stored.url, alt: name }));
  return link;
}

function noteModel(job) {
  if (!job.model || models.has(job.model)) return;
  models.add(job.model);
  const option = element("option", "", job.model);
  const later = [...$("#model-filter").options].find((each) => each.value > job.model);
  $("#model-filter").insertBefore(option, later ?? null);
}

function ago(seconds) {
  const elapsed = Math.max(0, Math.round(Date.now() / 1000 - seconds));
  if (elapsed < 60) return `${elapsed} s ago`;
  if (elapsed < 3600) return `${Math.floor(elapsed / 60)} min ago`;
  if (elapsed < 86400) return `${Math.floor(elapsed / 3600)} h ago`;
  return `${Math.floor(elapsed / 86400)} d ago`;
}

function showAges() {
  for (const row of rows.rows) {
    row.querySelector(".age").textContent = ago(Number(row.dataset.created));
  }
}

// A job's timeline.

async function showTimeline(ref) {
  const { entries } = await api(`/jobs/${encodeURIComponent(ref)}/log`);
  if (ref !== selected) return; // another row was clicked meanwhile
  $("#timeline-ref").textContent = ref;
  $("#timeline tbody").replaceChildren(...entries.map(timelineRow));
  $("#timeline").hidden = false;
}

function timelineRow(entry) {
  const row = element("tr");
  row.dataset.event = entry.event;
  const detail = Object.entries(entry.detail)
    .map(([name, value]) => `${name}=${typeof value === "string" ? value : JSON.stringify(value)}`)
    .join(" ");
  row.append(
    element("td", "time", CLOCK.format(entry.ts * 1000)),
    element("td", "actor", entry.actor),
    element("td", "event", entry.event),
    element("td", "detail", detail, { title: detail }),
  );
  return row;
}

function select(row) {
  selected = row.dataset.ref;
  rows.querySelector("tr.selected")?.classList.remove("selected");
  row.classList.add("selected");
  quietly(showTimeline(selected));
}

// The live log. EventSource cannot send an Authorization header, so the stream is read with
// fetch, and reconnects (with Last-Event-ID, after a growing pause) are this loop's own.

async function follow(lastId, signal) {
  let pause = BACKOFF[0];
  while (!signal.aborted) {
    try {
      const headers = { Accept: "text/event-stream", "Last-Event-ID": lastId };
      const response = await request("/log", { headers });
      setLive(true);
      pause = BACKOFF[0];
      for await (const event of serverEvents(response.body)) {
        lastId = event.id || lastId;
        if (event.type === "entry") onEntry(JSON.parse(event.data));
      }
    } catch (error) {
      if (error instanceof Unauthorized || signal.aborted) throw error;
    }
    setLive(false);
    await new Promise((resolve) => {
      setTimeout(resolve, pause);
      signal.addEventListener("abort", resolve, { once: true }); // logging out ends the pause
    });
    pause = Math.min(pause * 2, BACKOFF[1]);
  }
}

// The event-stream format: `field: value` lines, a blank line ends an event, a line starting
// with `:` is a comment (the server's heartbeat). Lines end in LF or CRLF.
async function* serverEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { id: "", type: "message", data: [] };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      const lines = (buffer + value).split(/\r?\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "" && event.data.length) yield { ...event, data: event.data.join("\n") };
        if (line === "") event = { id: "", type: "message", data: [] };
        if (line === "" || line.startsWith(":")) continue;
        const [field, ...rest] = line.split(":");
        const text = rest.join(":").replace(/^ /, "");
        if (field === "data") event.data.push(text);
        else if (field === "id") event.id = text;
        else if (field === "event") event.type = text;
      }
    }
  } finally {
    // Stops the download when the reader leaves early; a stream that already ended or failed
    // refuses to be cancelled, which changes nothing.
    reader.cancel().catch(() => {});
  }
}

function onEntry(entry) {
  if (!entry.ref) return; // about no job in the ledger, such as a webhook for an unknown job
  pending.add(entry.ref);
  flushTimer ??= setTimeout(() => quietly(flush()), COALESCE);
}

async function flush() {
  flushTimer = null;
  const refs = [...pending];
  pending.clear();
  await Promise.all([refreshStats(), ...refs.map(refreshJob)]);
}

async function refreshJob(ref) {
  upsert(await api(`/jobs/${encodeURIComponent(ref)}?presign=${PRESIGN}`));
  if (ref === selected) await showTimeline(ref);
}

// Wiring.

$("#login").addEventListener("submit", (event) => {
  event.preventDefault();
  logIn($("#token").value);
});
$("#logout").addEventListener("click", () => logOut());
$("#redrive").addEventListener("click", () => quietly(redrive()));
for (const id of ["#status-filter", "#model-filter"]) {
  $(id).addEventListener("change", () => quietly(loadJobs()));
}
rows.addEventListener("click", (event) => {
  const row = event.target.closest("tr[data-ref]");
  if (row) select(row);
});
rows.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && event.target.matches("tr[data-ref]")) select(event.target);
});
// Leaving the page ends the stream quietly; coming back to it from the history resumes.
addEventListener("pagehide", stop);
addEventListener("pageshow", (event) => event.persisted && token && logIn(token));

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) logIn(saved);
