// The web chat page: a signed session, a long poll for the conversation, and sends
// that survive an unreachable server (the message stays, marked unsent, with a retry).
"use strict";

const SETTINGS = JSON.parse(document.getElementById("settings").textContent);
const T = SETTINGS.texts;
const log = document.getElementById("log");
const state = document.getElementById("state");
const box = document.getElementById("text");
const storeKey = "maxcore-webchat-" + SETTINGS.tenant;
const shown = new Set();      // sequence numbers already on the page
const pending = new Map();    // message id -> element typed here, not yet read back
let session = JSON.parse(localStorage.getItem(storeKey) || "null");
let sessionRequest = null;
let after = 0;

// Times follow the tenant's language; the visitor's own variant of that language
// (en-GB rather than en-US, say) refines the format.
const locale = (navigator.languages || [navigator.language])
  .find((l) => l && l.toLowerCase().split("-")[0] === SETTINGS.language) || SETTINGS.language;
const clock = new Intl.DateTimeFormat(locale, {hour: "2-digit", minute: "2-digit"});

box.placeholder = T.placeholder;
document.getElementById("send").setAttribute("aria-label", T.send);

function setTime(element, seconds) {
  let time = element.querySelector("time");
  if (!time) {
    time = document.createElement("time");
    element.appendChild(time);
  }
  const date = new Date(seconds * 1000);
  time.dateTime = date.toISOString();
  time.textContent = clock.format(date);
}

function bubble(from, text) {
  const div = document.createElement("div");
  div.className = "msg " + (from === "user" ? "user" : "assistant");
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  div.appendChild(body);
  log.appendChild(div);
  log.scrollTop = log.scrollHeight;
  return div;
}

function show(m) {
  if (shown.has(m.seq)) return;
  shown.add(m.seq);
  let div = m.id ? pending.get(m.id) : undefined;
  if (div) {
    // The bubble typed here becomes the conversation's own. One whose send was refused
    // (the server shows a message before the inbox takes it) stays marked until a retry
    // is accepted.
    pending.delete(m.id);
    div.classList.remove("sending");
  } else {
    div = bubble(m.from, m.text);
  }
  div.dataset.seq = m.seq;
  setTime(div, m.at);
}

function ensureSession() {
  if (session && session.expires_at * 1000 > Date.now()) return Promise.resolve(session);
  // One request for everyone waiting (the poll and a send may both ask at load).
  sessionRequest = sessionRequest || (async () => {
    try {
      const r = await fetch(`/chat/${SETTINGS.tenant}/session`, {method: "POST"});
      if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
      session = await r.json();
      localStorage.setItem(storeKey, JSON.stringify(session));
      return session;
    } finally {
      sessionRequest = null;
    }
  })();
  return sessionRequest;
}

function forgetSession() {
  session = null;
  localStorage.removeItem(storeKey);
}

function retryDelay(response, fallback) {
  const seconds = Number(response.headers.get("Retry-After"));
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : fallback;
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

async function poll() {
  // The first read answers at once (history, and "online"); the next ones wait.
  let wait = 0;
  while (true) {
    try {
      const s = await ensureSession();
      const r = await fetch(`/chat/${SETTINGS.tenant}/messages?after=${after}&wait=${wait}`,
        {headers: {Authorization: "Bearer " + s.token}});
      if (r.status === 401) { forgetSession(); continue; }
      if (!r.ok) throw Object.assign(new Error(r.statusText), {delay: retryDelay(r, 2000)});
      const data = await r.json();
      state.textContent = T.online;
      wait = 20;
      for (const m of data.messages) { show(m); after = Math.max(after, m.seq); }
    } catch (e) {
      state.textContent = T.offline;
      wait = 0;
      await sleep(e.delay || 2000);
    }
  }
}

function markUnsent(item, reason, canRetry) {
  const div = item.element;
  div.classList.remove("sending");
  div.classList.add("unsent");
  div.querySelectorAll(".note, .retry").forEach((e) => e.remove());
  const note = document.createElement("span");
  note.className = "note";
  note.textContent = reason ? T.unsent_because.replace("{reason}", () => reason) : T.unsent;
  div.appendChild(note);
  if (canRetry) {
    const retry = document.createElement("button");
    retry.type = "button";
    retry.className = "retry";
    retry.textContent = T.retry;
    retry.addEventListener("click", () => deliver(item));
    div.appendChild(retry);
  }
}

async function deliver(item) {
  const div = item.element;
  div.classList.remove("unsent");
  div.classList.add("sending");
  div.querySelectorAll(".note, .retry").forEach((e) => e.remove());
  let response;
  try {
    const s = await ensureSession();
    response = await fetch("/webhooks/webchat", {
      method: "POST",
      headers: {"Content-Type": "application/json", Authorization: "Bearer " + s.token},
      // The same id on every attempt: the server keeps one copy whatever reached it.
      body: JSON.stringify({text: item.text, id: item.id}),
    });
  } catch (e) {
    markUnsent(item, T.unreachable, true);
    return;
  }
  if (response.ok) {
    div.classList.remove("sending");
    return;
  }
  if (response.status === 401) forgetSession();
  const data = await response.json().catch(() => ({}));
  // Refusals of the message itself (400, 413) cannot succeed again; the rest may.
  const canRetry = response.status === 401 || response.status === 429 || response.status >= 500;
  markUnsent(item, data.error || response.statusText || String(response.status), canRetry);
}

function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
}

document.getElementById("form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = box.value.trim();
  if (!text) return;
  box.value = "";
  const item = {text, id: newId(), element: bubble("user", text)};
  setTime(item.element, Date.now() / 1000);
  pending.set(item.id, item.element);
  deliver(item);
});

box.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    document.getElementById("form").requestSubmit();
  }
});

poll();
