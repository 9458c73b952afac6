// AI Artist: an example client of the public protocol (see docs/protocol.md and the websocket guide).
//
//   1. POST /api/generate {prompt, ...}          -> {session_id, position}
//   2. on /ws send {type: "subscribe", session_id, previews, after_seq?}
//   3. receive generation_queued / started / progress / preview / complete / error / cancelled,
//      each with a per-session `seq` that grows by one.
//
// When the socket drops (network, server restart) the client reconnects with exponential backoff and
// subscribes again with `after_seq` = the last seq it saw, so the server replays only what was missed.
"use strict";

const RECONNECT_FIRST_MS = 500;
const RECONNECT_MAX_MS = 10000;
const PING_EVERY_MS = 25000;
const LOG_LIMIT = 200;
const STORAGE_KEY = "ai-artist-test-session";

const $ = (id) => document.getElementById(id);
const state = {
  socket: null,
  reconnectDelay: RECONNECT_FIRST_MS,
  reconnectTimer: null,
  pingTimer: null,
  sessionId: null,
  lastSeq: 0,
  previews: true,
  imagesShown: false,
};

// With server.api_keys set, this page is opened as /test/websocket?token=KEY (or after the studio's
// sign-in, whose session cookie the browser sends along): the key goes to /ws as `?token=` and to the
// REST calls as `Authorization: Bearer`.
const TOKEN = new URLSearchParams(location.search).get("token");
const AUTH_HEADERS = TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {};

// -- connection -----------------------------------------------------------------------------------

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = TOKEN ? `?token=${encodeURIComponent(TOKEN)}` : "";
  return `${scheme}//${location.host}/ws${query}`;
}

function connect() {
  clearTimeout(state.reconnectTimer);
  showConnection("connecting", "Connecting…");
  const socket = new WebSocket(socketUrl());
  state.socket = socket;

  socket.onopen = () => {
    state.reconnectDelay = RECONNECT_FIRST_MS;
    showConnection("connected", "Connected");
    send({ type: "ping" });
    state.pingTimer = setInterval(() => send({ type: "ping" }), PING_EVERY_MS);
    if (state.sessionId) subscribe(state.sessionId, state.lastSeq);  // resume where we left off
  };
  socket.onmessage = (event) => handleMessage(JSON.parse(event.data));
  socket.onclose = (event) => {
    clearInterval(state.pingTimer);
    if (state.socket !== socket) return;
    const seconds = (state.reconnectDelay / 1000).toFixed(1);
    showConnection("disconnected", `Disconnected (${event.code}); retrying in ${seconds} s`);
    log(`socket closed (${event.code}${event.reason ? ": " + event.reason : ""})`, "error");
    scheduleReconnect();
  };
  socket.onerror = () => {};  // onclose follows and handles the retry
}

function scheduleReconnect() {
  const jitter = Math.random() * 0.2 * state.reconnectDelay;
  state.reconnectTimer = setTimeout(connect, state.reconnectDelay + jitter);
  state.reconnectDelay = Math.min(state.reconnectDelay * 2, RECONNECT_MAX_MS);
}

function send(message) {
  if (!state.socket || state.socket.readyState !== WebSocket.OPEN) return false;
  state.socket.send(JSON.stringify(message));
  if (message.type !== "ping") log("→ " + JSON.stringify(message), "out");
  return true;
}

function subscribe(sessionId, afterSeq) {
  const message = { type: "subscribe", session_id: sessionId, previews: state.previews };
  if (afterSeq > 0) message.after_seq = afterSeq;
  send(message);
}

function showConnection(kind, text) {
  $("connection").className = `status ${kind}`;
  $("connection-text").textContent = text;
}

// -- messages from the server ---------------------------------------------------------------------

function handleMessage(message) {
  if (message.type === "pong") return;
  log("← " + summarize(message), message.type.endsWith("error") ? "error" : "in");
  if (message.session_id && message.session_id !== state.sessionId) return;
  if (typeof message.seq === "number") {
    if (message.seq <= state.lastSeq && message.type !== "subscribed") return;  // already applied
    state.lastSeq = message.seq;
    remember();
  }
  switch (message.type) {
    case "subscribed":
      showStatus(describeStatus(message.status));
      if (["completed", "failed", "cancelled"].includes(message.status) && !state.imagesShown) loadJob();
      break;
    case "generation_queued":
      showStatus(`Queued (position ${message.position})`);
      break;
    case "generation_started":
      showStatus(`Generating with ${message.model}`);
      showProgress(0, message.total_steps);
      break;
    case "generation_progress":
      showStatus(message.message);
      showProgress(message.step, message.total_steps, message.eta_seconds);
      break;
    case "generation_preview":
      $("preview").src = message.image_url || message.image;
      $("preview").hidden = state.imagesShown;
      break;
    case "generation_complete":
      showStatus("Complete");
      showProgress(1, 1);
      showImages(message.image_urls);
      break;
    case "generation_error":
      showStatus(`Error: ${message.error}`);
      break;
    case "generation_cancelled":
      showStatus("Cancelled");
      break;
    case "error":
      showStatus(`Error: ${message.error}`);
      break;
  }
}

function summarize(message) {
  const copy = { ...message };
  if (typeof copy.image === "string" && copy.image.length > 60) copy.image = copy.image.slice(0, 40) + "…";
  return JSON.stringify(copy);
}

function describeStatus(status) {
  return { queued: "Queued", running: "Generating…", completed: "Complete", failed: "Failed", cancelled: "Cancelled" }[status] || status;
}

// -- generating -----------------------------------------------------------------------------------

async function generate(event) {
  event.preventDefault();
  const body = {
    prompt: $("prompt").value,
    negative_prompt: $("negative-prompt").value,
    num_inference_steps: Number($("steps").value),
    guidance_scale: Number($("guidance").value),
    num_images: Number($("num-images").value),
  };
  state.previews = $("previews").checked;
  $("generate").disabled = true;
  try {
    const response = await fetch("/api/generate", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...AUTH_HEADERS },
      body: JSON.stringify(body),
    });
    const data = await response.json();
    log(`POST /api/generate → ${response.status} ${JSON.stringify(data)}`, response.ok ? "in" : "error");
    if (!response.ok) {
      showStatus(`Rejected: ${describeDetail(data.detail)}`);
      return;
    }
    startFollowing(data.session_id);
  } catch (error) {
    showStatus(`Could not reach the server: ${error}`);
  } finally {
    $("generate").disabled = false;
  }
}

function startFollowing(sessionId) {
  if (state.sessionId) send({ type: "unsubscribe", session_id: state.sessionId });
  state.sessionId = sessionId;
  state.lastSeq = 0;
  state.imagesShown = false;
  remember();
  $("images").replaceChildren();
  $("preview").hidden = true;
  showProgress(0, 1);
  showStatus("Submitted");
  subscribe(sessionId, 0);
}

function describeDetail(detail) {
  if (Array.isArray(detail)) return detail.map((d) => `${d.loc.slice(1).join(".")}: ${d.msg}`).join("; ");
  return String(detail);
}

async function loadJob() {
  // A client that missed the terminal message (e.g. the server restarted) reads the job over REST.
  const response = await fetch(`/api/jobs/${state.sessionId}`, { headers: AUTH_HEADERS });
  if (!response.ok) return;
  const job = await response.json();
  if (job.status === "completed") {
    showProgress(1, 1);
    showImages(job.image_urls);
  } else if (job.error) {
    showStatus(`${describeStatus(job.status)}: ${job.error}`);
  }
}

// -- view -----------------------------------------------------------------------------------------

function showStatus(text) {
  $("job-status").textContent = text;
}

function showProgress(step, total, etaSeconds) {
  const percent = total ? Math.min(100, Math.round((100 * step) / total)) : 0;
  $("progress-bar").style.width = `${percent}%`;
  document.querySelector(".progress").setAttribute("aria-valuenow", String(percent));
  const eta = etaSeconds ? ` · about ${Math.ceil(etaSeconds)} s left` : "";
  $("job-step").textContent = total > 1 ? `step ${Math.min(step, total)}/${total}${eta}` : `${percent}%`;
}

function showImages(urls) {
  state.imagesShown = true;
  $("preview").hidden = true;
  $("images").replaceChildren(
    ...urls.map((url) => {
      const link = document.createElement("a");
      link.href = url;
      link.target = "_blank";
      const image = document.createElement("img");
      image.src = url;
      image.alt = "generated image";
      link.append(image);
      return link;
    }),
  );
}

function log(text, kind = "") {
  const item = document.createElement("li");
  item.className = kind;
  item.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $("log").append(item);
  while ($("log").children.length > LOG_LIMIT) $("log").firstChild.remove();
  item.scrollIntoView({ block: "nearest" });
}

function remember() {
  localStorage.setItem(STORAGE_KEY, JSON.stringify({ sessionId: state.sessionId, lastSeq: state.lastSeq }));
}

function restore() {
  // A reloaded page keeps following its last job: subscribe replays a snapshot of where it stands.
  try {
    const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || "null");
    if (saved && saved.sessionId) state.sessionId = saved.sessionId;
  } catch (error) {
    localStorage.removeItem(STORAGE_KEY);
  }
}

$("steps").addEventListener("input", () => ($("steps-value").textContent = $("steps").value));
$("guidance").addEventListener("input", () => ($("guidance-value").textContent = $("guidance").value));
$("generate-form").addEventListener("submit", generate);
$("clear-log").addEventListener("click", () => $("log").replaceChildren());
restore();
connect();
