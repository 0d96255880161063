// The gateway's web page: a form that submits a story, a live view of it fed by Server-Sent
// Events, the finished book with its downloads, and a list of recent stories. Plain browser
// JavaScript with no build step and nothing fetched from another host.
"use strict";

(() => {
  const KEY_STORE = "storymesh.apiKey";
  const MAX_PLOT = 4000;
  const TOKEN_MARGIN_MS = 10_000; // renew a signed URL token this long before it expires
  const MAX_STREAM_RETRIES = 5;

  const $ = (id) => document.getElementById(id);
  const state = {
    key: sessionStorage.getItem(KEY_STORE) || "",
    keysRequired: false,
    token: null, // {value, expires (ms since epoch)}
    storyId: null,
    source: null,
    seen: new Set(), // event ids already shown: a re-opened stream may replay them
    retries: 0,
    chapters: 0,
    written: 0,
    painted: 0,
    done: false,
    afterKey: null, // what to do once the user gives a key
  };

  // --- talking to the gateway ------------------------------------------------------------

  class ApiError extends Error {
    constructor(code, message, status, retryAfter, details) {
      super(message);
      this.code = code;
      this.status = status;
      this.retryAfter = retryAfter;
      this.details = details || {};
    }
  }

  async function api(method, path, body, headers) {
    const init = { method, headers: { Accept: "application/json", ...(headers || {}) } };
    if (state.key) init.headers["X-API-Key"] = state.key;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (_) {
      throw new ApiError("offline", "the gateway cannot be reached", 0);
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const err = (data && data.error) || {};
      const retryAfter = err.retry_after ?? response.headers.get("Retry-After");
      const error = new ApiError(err.code || `http_${response.status}`,
        err.message || response.statusText, response.status, retryAfter, err);
      if (response.status === 401) {
        state.keysRequired = true;
        state.token = null;
      }
      throw error;
    }
    return data;
  }

  // An EventSource, an <img> or a link cannot send X-API-Key: with keys on, their URLs carry
  // a short-lived signed token the gateway issues for the key.
  async function token() {
    if (!state.key) return null;
    if (state.token && state.token.expires - TOKEN_MARGIN_MS > Date.now()) {
      return state.token.value;
    }
    const answer = await api("GET", "/token");
    const ttl = Number(answer.expires_in || 60) * 1000;
    state.token = { value: answer.token, expires: Date.now() + ttl };
    return answer.token;
  }

  async function signed(url) {
    if (/[?&]token=/.test(url)) return url; // the gateway signed it already
    const value = await token();
    if (!value) return url;
    const joiner = url.includes("?") ? "&" : "?";
    return `${url}${joiner}token=${encodeURIComponent(value)}`;
  }

  // --- errors in plain words ---------------------------------------------------------------

  function plainWords(error) {
    const message = String(error.message || "");
    const about = (word) => message.toLowerCase().includes(word);
    switch (error.code) {
      case "offline":
        return "The gateway cannot be reached. Check that it is running, then try again.";
      case "bad_request":
      case "validation":
        if (about("plot") && (about("empty") || about("required"))) {
          return "Please write a plot first: a sentence or two about what happens.";
        }
        return `That request was not accepted: ${message}`;
      case "too_large":
        if (about("plot")) {
          return `The plot is too long. Please keep it within ${MAX_PLOT.toLocaleString("en")} characters.`;
        }
        return `That is too long: ${message}`;
      case "unauthorized":
        return "That API key was not accepted. Please enter it again.";
      case "forbidden":
        return "This API key may not do that.";
      case "not_found":
        return "There is no such story here.";
      case "busy": {
        const wait = Number(error.retryAfter);
        return wait > 0
          ? `Too many books at once. Please try again in ${Math.ceil(wait)} seconds.`
          : "Too many books at once. Please try again in a moment.";
      }
      case "no_such_service":
      case "worker_lost":
      case "not_active":
        return noAuthor(message);
      case "shutting_down":
        return "The story mesh is shutting down. Please try again in a moment.";
      case "expired":
        return "The story mesh took too long to answer. Please try again.";
      default:
        return `Something went wrong in the gateway (${error.code}): ${message}`;
    }
  }

  function noAuthor(message) {
    const low = message.toLowerCase();
    for (const who of ["author", "illustrator", "publisher"]) {
      if (low.includes(who)) {
        return `No ${who} is running right now, so the book cannot be made. ` +
          "Start one (storymesh up) and try again.";
      }
    }
    if (low.includes("story")) {
      return "No story service is running right now. Start the mesh (storymesh up) and try again.";
    }
    return `A part of the story mesh is not running right now: ${message}`;
  }

  function show(element, text) {
    element.textContent = text;
    element.hidden = !text;
  }

  // --- the API key -------------------------------------------------------------------------

  function askForKey(then, why) {
    state.afterKey = then;
    $("key-panel").hidden = false;
    show($("key-error"), why || "");
    $("api-key").value = "";
    $("api-key").focus();
  }

  async function onKey(event) {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) {
      show($("key-error"), "Please enter your API key.");
      return;
    }
    state.key = key;
    state.token = null;
    try {
      await api("GET", "/stories?limit=1");
    } catch (error) {
      state.key = "";
      show($("key-error"), plainWords(error));
      return;
    }
    sessionStorage.setItem(KEY_STORE, key);
    $("key-panel").hidden = true;
    const then = state.afterKey;
    state.afterKey = null;
    refreshRecent();
    if (then) then();
  }

  // Run `action`; on 401 ask for the key and run it again once the key is given.
  async function withKey(action, onError) {
    try {
      return await action();
    } catch (error) {
      if (error.status === 401) {
        sessionStorage.removeItem(KEY_STORE);
        const hadKey = Boolean(state.key);
        state.key = "";
        askForKey(() => withKey(action, onError),
          hadKey ? plainWords(error) : "");
        return undefined;
      }
      if (onError) onError(error);
      else throw error;
      return undefined;
    }
  }

  // --- the mesh's state in the header ------------------------------------------------------

  async function refreshHealth() {
    let answer;
    try {
      const response = await fetch("/health", { headers: { Accept: "application/json" } });
      answer = await response.json();
    } catch (_) {
      show($("mesh-state"), "The gateway cannot be reached.");
      return;
    }
    const services = answer.services || {};
    const missing = Object.keys(services).filter((name) => !services[name].workers);
    const line = $("mesh-state");
    line.classList.toggle("degraded", missing.length > 0);
    if (!missing.length) {
      show(line, "The story mesh is ready.");
    } else {
      const names = missing.map((name) => name.replace(/^story\./, ""));
      show(line, `Not running right now: ${names.join(", ")}. Books wait until it starts.`);
    }
  }

  // --- the form ----------------------------------------------------------------------------

  function randomId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function formRequest() {
    const themes = $("themes").value.split(",").map((t) => t.trim()).filter(Boolean);
    return {
      plot: $("plot").value.trim(),
      themes,
      target_age: $("age").value,
      length: $("length").value,
      art_style: $("style").value,
      language: $("language").value,
    };
  }

  function formError(text) {
    show($("form-error"), text);
    $("plot").setAttribute("aria-invalid", text ? "true" : "false");
  }

  async function onSubmit(event) {
    event.preventDefault();
    const request = formRequest();
    if (!request.plot) {
      formError("Please write a plot first: a sentence or two about what happens.");
      $("plot").focus();
      return;
    }
    if (request.plot.length > MAX_PLOT) {
      formError(`The plot is too long (${request.plot.length.toLocaleString("en")} ` +
        `characters). Please keep it within ${MAX_PLOT.toLocaleString("en")}.`);
      $("plot").focus();
      return;
    }
    formError("");
    const button = $("submit");
    button.disabled = true;
    button.textContent = "Sending…";
    const idempotency = randomId(); // a retried POST returns the same story
    await withKey(async () => {
      const answer = await api("POST", "/stories", request, { "Idempotency-Key": idempotency });
      location.hash = `#/stories/${encodeURIComponent(answer.id)}`;
      refreshRecent();
    }, (error) => formError(plainWords(error)));
    button.disabled = false;
    button.textContent = "Write the book";
  }

  function onPlotInput() {
    const length = $("plot").value.length;
    $("plot-count").textContent = `${length.toLocaleString("en")} / ${MAX_PLOT.toLocaleString("en")}`;
    if ($("form-error").textContent && length) formError("");
  }

  // --- recent stories ----------------------------------------------------------------------

  const STATE_WORDS = {
    accepted: "waiting",
    pending: "waiting",
    running: "being written",
    publishing: "being bound",
    complete: "ready",
    failed: "failed",
    cancelled: "stopped",
    expired: "expired",
  };

  async function refreshRecent() {
    await withKey(async () => {
      const answer = await api("GET", "/stories?limit=20");
      const list = $("recent-list");
      list.replaceChildren();
      for (const story of answer.stories || []) {
        const id = story.id || story.corr;
        const item = document.createElement("li");
        const link = document.createElement("a");
        link.href = `#/stories/${encodeURIComponent(id)}`;
        link.className = "recent-link";
        if (id === state.storyId) link.setAttribute("aria-current", "true");
        const name = document.createElement("span");
        name.className = "recent-title";
        name.textContent = story.title || story.plot || id;
        const chip = document.createElement("span");
        chip.className = `chip chip-${story.status}`;
        chip.textContent = STATE_WORDS[story.status] || story.status;
        link.append(name, chip);
        item.append(link);
        list.append(item);
      }
      $("recent-empty").hidden = list.children.length > 0;
    }, (error) => show($("recent-empty"), plainWords(error)));
  }

  // --- the live view of one story ----------------------------------------------------------

  function closeStream() {
    if (state.source) state.source.close();
    state.source = null;
  }

  function resetStory(id) {
    closeStream();
    Object.assign(state, {
      storyId: id, seen: new Set(), retries: 0, chapters: 0, written: 0, painted: 0, done: false,
    });
    $("story").hidden = false;
    $("story").setAttribute("aria-busy", "true");
    $("story").classList.remove("is-complete", "is-failed");
    $("story-title").textContent = "A new story";
    show($("story-state"), "Waiting for the author…");
    show($("story-error"), "");
    $("cover").hidden = true;
    $("cover-img").removeAttribute("src");
    $("downloads").hidden = true;
    $("cancel").hidden = false;
    $("chapters").replaceChildren();
    setBars({ chapters: 0, chapters_written: 0, pictures_painted: 0 });
  }

  async function openStory(id) {
    if (id === state.storyId && state.source) return;
    resetStory(id);
    for (const link of document.querySelectorAll(".recent-link")) {
      const current = link.getAttribute("href") === `#/stories/${encodeURIComponent(id)}`;
      if (current) link.setAttribute("aria-current", "true");
      else link.removeAttribute("aria-current");
    }
    $("story-title").focus({ preventScroll: true });
    $("story").scrollIntoView({ behavior: "smooth", block: "start" });
    await connect();
  }

  async function connect() {
    const id = state.storyId;
    let url;
    try {
      url = await signed(`/stories/${encodeURIComponent(id)}/events`);
    } catch (error) {
      if (error.status === 401) askForKey(() => connect(), plainWords(error));
      else storyError(plainWords(error));
      return;
    }
    if (id !== state.storyId) return;
    const source = new EventSource(url);
    state.source = source;
    const handlers = { outline, chapter, picture, progress, publishing, complete, failed };
    for (const [name, handler] of Object.entries(handlers)) {
      source.addEventListener(name, (event) => {
        if (source !== state.source) return;
        if (event.lastEventId) {
          if (state.seen.has(event.lastEventId)) return;
          state.seen.add(event.lastEventId);
        }
        state.retries = 0;
        let data = {};
        try {
          data = JSON.parse(event.data || "{}");
        } catch (_) {
          data = {};
        }
        handler(data);
      });
    }
    source.addEventListener("error", () => onStreamError(source));
  }

  // The browser reconnects by itself (sending Last-Event-ID) while the stream is CONNECTING;
  // a CLOSED stream got an HTTP error: ask the gateway why, then open a fresh one.
  async function onStreamError(source) {
    if (source !== state.source || state.done) return;
    if (source.readyState !== EventSource.CLOSED) {
      show($("story-state"), "Connection lost; reconnecting…");
      return;
    }
    closeStream();
    try {
      await api("GET", `/stories/${encodeURIComponent(state.storyId)}`);
    } catch (error) {
      if (error.status === 401) {
        askForKey(() => connect(), plainWords(error));
      } else {
        storyError(plainWords(error));
      }
      return;
    }
    state.token = null; // an expired URL token is the usual reason
    state.retries += 1;
    if (state.retries > MAX_STREAM_RETRIES) {
      storyError("The live view stopped. Reload the page to try again.");
      return;
    }
    setTimeout(connect, 500 * state.retries);
  }

  // Every event carries the running totals; an event without them leaves the bars as they are.
  function setBars(data) {
    const chapters = Number(data.chapters) || state.chapters;
    if (chapters) state.chapters = chapters;
    if ("chapters_written" in data) state.written = Number(data.chapters_written) || 0;
    if ("pictures_painted" in data) state.painted = Number(data.pictures_painted) || 0;
    const written = state.written;
    const painted = state.painted;
    const pictures = state.chapters ? state.chapters + 1 : 0; // one per chapter and the cover
    const known = (n) => (n ? String(n) : "?");
    $("bar-chapters").max = Math.max(state.chapters, 1);
    $("bar-chapters").value = Math.min(written, state.chapters || 0);
    $("bar-chapters-text").textContent = `${written} of ${known(state.chapters)}`;
    $("bar-pictures").max = Math.max(pictures, 1);
    $("bar-pictures").value = Math.min(painted, pictures);
    $("bar-pictures-text").textContent = `${painted} of ${known(pictures)}`;
  }

  function setTitle(title) {
    if (!title) return;
    $("story-title").textContent = title;
    document.title = `${title}: storymesh`;
  }

  // The gateway numbers chapters 1..N, and pictures 1..N with 0 for the cover.
  function chapterSlot(number) {
    const list = $("chapters");
    while (list.children.length < number) {
      const node = $("chapter-template").content.firstElementChild.cloneNode(true);
      const n = list.children.length + 1;
      node.querySelector(".chapter-title").textContent = `Chapter ${n}`;
      node.dataset.chapter = String(n);
      list.append(node);
    }
    return list.children[number - 1];
  }

  function outline(data) {
    setTitle(data.title);
    setBars(data);
    if (state.chapters) chapterSlot(state.chapters);
    show($("story-state"), "The author is writing…");
  }

  function paragraphs(text) {
    return String(text).split(/\n\s*\n/).map((p) => p.trim()).filter(Boolean).map((p) => {
      const para = document.createElement("p");
      para.textContent = p;
      return para;
    });
  }

  async function chapter(data) {
    setBars(data);
    const number = Math.max(1, Number(data.index) || 1);
    const slot = chapterSlot(number);
    if (data.title) slot.querySelector(".chapter-title").textContent = data.title;
    let text = data.text;
    if (!text) text = await chapterText(number);
    slot.querySelector(".chapter-text").replaceChildren(...paragraphs(text || ""));
    slot.classList.add("has-text");
    show($("story-state"), `Chapter ${number} is written.`);
  }

  async function chapterText(number) {
    try {
      const answer = await api("GET",
        `/stories/${encodeURIComponent(state.storyId)}/chapters/${number}`);
      return answer.text || "";
    } catch (_) {
      return "";
    }
  }

  async function picture(data) {
    setBars(data);
    const url = data.url || `/stories/${encodeURIComponent(state.storyId)}/pictures/${data.index}.png`;
    const src = await signed(url);
    const number = Number(data.index) || 0;
    if (number === 0) {
      $("cover-img").src = src;
      $("cover-img").alt = `The cover of ${$("story-title").textContent}`;
      $("cover").hidden = false;
      return;
    }
    const slot = chapterSlot(number);
    const img = document.createElement("img");
    img.src = src;
    img.alt = `A picture for chapter ${number}`;
    img.loading = "lazy";
    slot.querySelector(".picture").replaceChildren(img);
    slot.classList.add("has-picture");
  }

  function progress(data) {
    setTitle(data.title);
    setBars(data);
  }

  function publishing(data) {
    setBars(data);
    show($("story-state"), "Binding the book…");
  }

  async function complete(data) {
    state.done = true;
    closeStream();
    setTitle(data.title);
    if (state.chapters) {
      setBars({ chapters_written: state.chapters, pictures_painted: state.chapters + 1 });
    }
    const id = encodeURIComponent(state.storyId);
    const links = data.links || {};
    for (const fmt of ["pdf", "html", "epub"]) {
      const link = $(`link-${fmt}`);
      link.href = await signed(links[fmt] || `/stories/${id}/book.${fmt}`);
      const formats = data.formats || Object.keys(links);
      link.hidden = formats.length > 0 && !formats.includes(fmt);
    }
    $("downloads").hidden = false;
    $("cancel").hidden = true;
    $("story").classList.add("is-complete");
    $("story").setAttribute("aria-busy", "false");
    show($("story-state"), "The book is ready. Read it here, or take it with you:");
    refreshRecent();
  }

  function failed(data) {
    state.done = true;
    closeStream();
    const status = data.status || "failed";
    $("story").classList.add("is-failed");
    $("story").setAttribute("aria-busy", "false");
    $("cancel").hidden = true;
    show($("story-state"), status === "cancelled" ? "This book was stopped." : "This book could not be made.");
    const error = data.error;
    const text = typeof error === "object" && error ? plainWords(error) : error;
    if (status !== "cancelled") show($("story-error"), text ? String(text) : "The story failed.");
    refreshRecent();
  }

  function storyError(text) {
    $("story").setAttribute("aria-busy", "false");
    show($("story-error"), text);
  }

  async function onCancel() {
    const id = state.storyId;
    await withKey(async () => {
      await api("DELETE", `/stories/${encodeURIComponent(id)}`);
      show($("story-state"), "Stopping…");
    }, (error) => storyError(plainWords(error)));
  }

  // --- routing: #/stories/ID opens a story, so a reload keeps it ---------------------------

  function route() {
    const match = /^#\/stories\/([^/]+)$/.exec(location.hash);
    if (match) openStory(decodeURIComponent(match[1]));
  }

  function start() {
    $("story-form").addEventListener("submit", onSubmit);
    $("key-form").addEventListener("submit", onKey);
    $("plot").addEventListener("input", onPlotInput);
    $("refresh").addEventListener("click", () => { refreshRecent(); refreshHealth(); });
    $("cancel").addEventListener("click", onCancel);
    window.addEventListener("hashchange", route);
    refreshHealth();
    refreshRecent().then(route);
    setInterval(refreshHealth, 20_000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
