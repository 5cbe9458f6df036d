// The page at /: classify an image with the public v1 API and show its scores and class maps.
// Plain JS, no build step, no third-party code. Every API call goes through api(), which adds the
// API key (kept only in this page's memory) and turns error answers into readable messages.
// Map PNGs are fetched, not put in <img src>, so they too carry the key; they are shown through
// blob: URLs that are revoked when a new image replaces them.
"use strict";

(() => {
  const TOP_K = 5;
  const TILE_SIZE = 224; // px, long side of each class's overlay tile
  const LARGE_SIZE = 512; // px, long side of the enlarged map (the server keeps a 512 px preview)
  const $ = (id) => document.getElementById(id);

  const state = {
    key: "", // API key: never stored, never sent anywhere but this server
    image: null, // {blob, name}
    prediction: null,
    selected: null, // label shown large
    run: 0, // bumps on each classification: late answers of an older one are dropped
    largeRun: 0,
    urls: [], // blob: URLs of the current tiles
    largeUrl: null, // blob: URL of the enlarged map
    originalUrl: null,
  };

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // ---- talking to the API ----

  async function api(path, options = {}) {
    const headers = new Headers(options.headers || {});
    if (state.key) headers.set("Authorization", `Bearer ${state.key}`);
    let response;
    try {
      response = await fetch(path, { ...options, headers });
    } catch (err) {
      throw new ApiError(0, "The server did not answer. Is it still running?");
    }
    if (!response.ok) throw await apiError(response);
    return response;
  }

  async function apiError(response) {
    let detail = "";
    try {
      const body = await response.json(); // problem+json (detail) or {"error": ...}
      detail = body.detail || body.error || body.title || "";
    } catch (err) {
      detail = "";
    }
    const status = response.status;
    const retry = response.headers.get("Retry-After");
    let text;
    const because = detail ? `: ${detail}` : ".";
    if (status === 401 || status === 403) {
      text = state.key
        ? "The server did not accept this API key. Check it under \u201cAPI key\u201d above and try again."
        : "This server needs an API key. Enter it under \u201cAPI key\u201d above, then try again.";
    } else if (status === 413) {
      text = `That image is too large for this server${because}`;
    } else if (status === 400 || status === 415) {
      text = `That file is not an image the server can read${because}`;
    } else if (status === 503) {
      const wait = retry ? `try again in ${retry} s` : "try again in a moment";
      text = `The server is busy right now, ${wait}${because}`;
    } else if (status === 422) {
      text = `The server refused a setting${because}`;
    } else if (status === 404) {
      text = `Not found${because} Results expire after a while: pick the image again.`;
    } else {
      text = `The server answered with an error (${status})${because}`;
    }
    return new ApiError(status, text.trim());
  }

  // ---- messages ----

  function showMessage(text, kind = "error") {
    const box = $("message");
    box.textContent = text;
    box.className = `message ${kind}`;
    box.hidden = false;
  }

  function clearMessage() {
    $("message").hidden = true;
    $("message").textContent = "";
  }

  function showError(err) {
    showMessage(err instanceof ApiError ? err.message : `Something went wrong: ${err}`);
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      $("key-box").open = true;
      $("api-key").focus();
    }
  }

  // ---- model facts ----

  async function loadModel() {
    try {
      const body = await (await api("/v1/models")).json();
      const model = body.models[0];
      $("model-name").textContent = model.name;
      $("model-version").textContent = model.version;
      $("model-provider").textContent = `${model.device} (${model.execution_provider})`;
      $("model-accuracy").textContent =
        model.val_top1 == null ? "unknown" : `${(100 * model.val_top1).toFixed(2)} %`;
    } catch (err) {
      $("model-name").textContent = "unavailable";
      showError(err);
    }
  }

  // ---- samples ----

  async function loadSamples() {
    let samples;
    try {
      const response = await fetch("/static/samples/samples.json");
      samples = (await response.json()).samples;
    } catch (err) {
      return; // the page works without them
    }
    const box = $("samples");
    const lists = new Map(); // group name -> <ul>, in the manifest's order
    for (const sample of samples) {
      if (!lists.has(sample.group)) {
        const heading = document.createElement("h4");
        heading.textContent = sample.group;
        const list = document.createElement("ul");
        list.className = "samples";
        box.append(heading, list);
        lists.set(sample.group, list);
      }
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "sample";
      button.title = sample.title;
      button.dataset.file = sample.file;
      const img = document.createElement("img");
      img.src = `/static/samples/${sample.file}`;
      img.alt = "";
      img.width = 64;
      img.height = 64;
      const name = document.createElement("span");
      name.textContent = sample.label;
      button.append(img, name);
      button.setAttribute("aria-label", `Sample: ${sample.title}`);
      button.addEventListener("click", () => useSample(sample));
      item.append(button);
      lists.get(sample.group).append(item);
    }
  }

  async function useSample(sample) {
    try {
      const response = await fetch(`/static/samples/${sample.file}`);
      if (!response.ok) throw new Error(`sample ${sample.file}: ${response.status}`);
      await classify(await response.blob(), sample.title);
    } catch (err) {
      showError(err);
    }
  }

  // ---- classification ----

  function resolution() {
    return Number($("resolution").value);
  }

  async function classify(blob, name) {
    const run = ++state.run;
    state.image = { blob, name };
    clearMessage();
    showOriginal(blob, name);
    $("result").setAttribute("aria-busy", "true");
    $("placeholder").textContent = "Classifying\u2026";
    $("placeholder").hidden = false;
    $("answer").hidden = true;
    const form = new FormData();
    form.append("file", blob, name || "image");
    let prediction;
    try {
      const response = await api(`/v1/classify?top_k=${TOP_K}&resolution=${resolution()}`, {
        method: "POST",
        body: form,
      });
      prediction = await response.json();
    } catch (err) {
      if (run !== state.run) return;
      $("result").setAttribute("aria-busy", "false");
      $("placeholder").textContent = "No result: see the message above.";
      showError(err);
      return;
    }
    if (run !== state.run) return;
    state.prediction = prediction;
    state.selected = prediction.top[0].label;
    showAnswer(prediction);
    $("result").setAttribute("aria-busy", "false");
    if (window.matchMedia("(max-width: 899px)").matches) {
      $("result").scrollIntoView({ block: "start" }); // one column: the answer is below the inputs
    }
    await Promise.all([loadTiles(run), loadLarge()]);
  }

  function showOriginal(blob, name) {
    if (state.originalUrl) URL.revokeObjectURL(state.originalUrl);
    state.originalUrl = URL.createObjectURL(blob);
    const img = $("original-img");
    img.alt = `Your image: ${name}`;
    img.src = state.originalUrl;
    $("original-caption").textContent = name;
    $("original").hidden = false;
    img.decode().then(() => {
      img.classList.toggle("tiny", img.naturalWidth < 96 && img.naturalHeight < 96); // shown enlarged
      drawSeen();
    }, () => {
      // The browser cannot show it (not an image, or a format such as TIFF that the server may
      // still read): no broken picture, the classification answers for it.
      $("original").hidden = true;
      $("seen").hidden = true;
    });
  }

  function drawSeen() {
    const r = resolution();
    const canvas = $("seen-canvas");
    canvas.width = r;
    canvas.height = r;
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage($("original-img"), 0, 0, r, r);
    $("seen-caption").textContent =
      `Roughly what the network gets: the whole image squeezed to ${r}\u00d7${r} pixels.`;
    $("seen").hidden = false;
  }

  function percent(score) {
    const p = 100 * score;
    if (p >= 99.95) return "100 %";
    if (p >= 0.1) return `${p.toFixed(1)} %`;
    return "< 0.1 %";
  }

  function showAnswer(prediction) {
    const top = prediction.top[0];
    $("verdict").textContent = `It looks like a ${top.label} (${percent(top.score)} sure).`;
    const bars = $("bars");
    bars.replaceChildren();
    for (const entry of prediction.top) {
      const item = document.createElement("li");
      const label = document.createElement("span");
      label.className = "bar-label";
      label.textContent = entry.label;
      const track = document.createElement("span");
      track.className = "bar-track";
      track.setAttribute("aria-hidden", "true");
      const fill = document.createElement("span");
      fill.className = "bar-fill";
      fill.style.width = `${Math.max(0.5, 100 * entry.score)}%`;
      track.append(fill);
      const value = document.createElement("span");
      value.className = "bar-value";
      value.textContent = percent(entry.score);
      item.append(label, track, value);
      bars.append(item);
    }
    const t = prediction.timing_ms;
    const side = prediction.maps.shape[1];
    $("timings").textContent =
      `Input ${prediction.image.width}\u00d7${prediction.image.height}, run at ` +
      `${prediction.resolution}\u00d7${prediction.resolution} (maps ${side}\u00d7${side}). ` +
      `Server time: decode ${t.decode.toFixed(1)} ms, queue ${t.queue.toFixed(1)} ms, ` +
      `compute ${t.compute.toFixed(1)} ms (batch of ${prediction.batch_size}), ` +
      `total ${t.total.toFixed(1)} ms.`;
    $("placeholder").hidden = true;
    $("answer").hidden = false;
  }

  // ---- maps ----

  // What the two ends of each colormap look like, for the sentence that explains the tiles.
  const COLOUR_ENDS = {
    jet: ["red", "dark blue"],
    turbo: ["red", "dark blue"],
    viridis: ["yellow", "dark purple"],
    inferno: ["pale yellow", "black"],
    magma: ["pale yellow", "black"],
    gray: ["white", "black"],
  };

  function explainColours() {
    const [high, low] = COLOUR_ENDS[$("colormap").value];
    const scale =
      $("normalize").value === "global"
        ? `All tiles share one colour scale, so a class the network does not see stays ${low}.`
        : "Each tile is stretched to its own range: even a class at 0.1 % gets a bright spot.";
    $("maps-help").textContent =
      `Each tile is one class's confidence map over your image: ${high} is where the network sees ` +
      `that class most, ${low} where least. ${scale} Pick a tile to enlarge it.`;
  }

  function mapUrl(label, size, extra = "") {
    const p = state.prediction;
    const colormap = $("colormap").value;
    const normalize = $("normalize").value;
    return (
      `/v1/predictions/${p.id}/maps/${encodeURIComponent(label)}.png?size=${size}&overlay=true` +
      `&colormap=${colormap}&normalize=${normalize}${extra}`
    );
  }

  async function fetchImage(url) {
    const response = await api(url);
    return { objectUrl: URL.createObjectURL(await response.blob()), response };
  }

  function releaseMaps() {
    for (const url of state.urls) URL.revokeObjectURL(url);
    state.urls = [];
  }

  async function loadTiles(run) {
    const p = state.prediction;
    releaseMaps();
    const labels = Object.keys(p.scores).sort((a, b) => p.scores[b] - p.scores[a]);
    const list = $("tiles");
    list.replaceChildren();
    const jobs = labels.map(async (label) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "tile";
      button.dataset.label = label;
      button.setAttribute("aria-pressed", String(label === state.selected));
      const img = document.createElement("img");
      img.alt = `Where the network sees ${label} in your image (score ${percent(p.scores[label])})`;
      const caption = document.createElement("span");
      caption.className = "tile-caption";
      const name = document.createElement("strong");
      name.textContent = label;
      const score = document.createElement("span");
      score.textContent = percent(p.scores[label]);
      caption.append(name, score);
      button.append(img, caption);
      button.addEventListener("click", () => select(label));
      item.append(button);
      list.append(item);
      const { objectUrl } = await fetchImage(mapUrl(label, TILE_SIZE));
      state.urls.push(objectUrl);
      if (run === state.run) img.src = objectUrl;
    });
    try {
      await Promise.all(jobs);
    } catch (err) {
      if (run === state.run) showError(err);
    }
  }

  function select(label) {
    state.selected = label;
    for (const tile of document.querySelectorAll(".tile")) {
      tile.setAttribute("aria-pressed", String(tile.dataset.label === label));
    }
    loadLarge();
  }

  async function loadLarge() {
    const p = state.prediction;
    if (!p) return;
    const run = ++state.largeRun;
    const label = state.selected;
    const alpha = Number($("alpha").value) / 100;
    try {
      const { objectUrl, response } = await fetchImage(mapUrl(label, LARGE_SIZE, `&legend=true&alpha=${alpha}`));
      if (run !== state.largeRun) {
        URL.revokeObjectURL(objectUrl);
        return;
      }
      if (state.largeUrl) URL.revokeObjectURL(state.largeUrl);
      state.largeUrl = objectUrl;
      const img = $("large-img");
      img.src = objectUrl;
      img.alt = `Confidence map of ${label} over your image, with a colour bar; score ${percent(p.scores[label])}`;
      $("large-caption").textContent = `${label}: ${percent(p.scores[label])}`;
      const range = (response.headers.get("X-Map-Range") || "").split(",").map(Number);
      const scale = $("normalize").value === "global" ? "shared by all classes of this image" : `${label}'s own`;
      $("range").textContent =
        range.length === 2
          ? `Colour scale (${scale}): ${range[0].toFixed(2)} to ${range[1].toFixed(2)}, in logits.`
          : "";
    } catch (err) {
      if (run === state.largeRun) showError(err);
    }
  }

  function debounce(fn, ms) {
    let timer = 0;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  // ---- input: file picker, drop, paste ----

  function takeFile(file) {
    if (file) classify(file, file.name || "pasted image");
  }

  function wire() {
    const useKey = () => {
      const key = $("api-key").value.trim();
      if (key === state.key) return;
      state.key = key;
      clearMessage();
      loadModel();
    };
    $("api-key").addEventListener("change", useKey);
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault(); // the key never leaves the page except as a header to this server
      useKey();
      if (!state.prediction && state.image) classify(state.image.blob, state.image.name);
    });
    $("file").addEventListener("change", (event) => {
      takeFile(event.target.files[0]);
      event.target.value = ""; // picking the same file again still triggers a change
    });
    const drop = $("drop");
    for (const type of ["dragenter", "dragover"]) {
      drop.addEventListener(type, (event) => {
        event.preventDefault();
        drop.classList.add("over");
      });
    }
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      takeFile(event.dataTransfer.files[0]);
    });
    document.addEventListener("paste", (event) => {
      const files = event.clipboardData ? [...event.clipboardData.files] : [];
      if (files.length) {
        event.preventDefault();
        takeFile(files[0]);
      }
    });
    $("resolution").addEventListener("change", () => {
      if (state.image) classify(state.image.blob, state.image.name);
    });
    const loadLargeSoon = debounce(loadLarge, 150);
    $("alpha").addEventListener("input", (event) => {
      $("alpha-out").textContent = `${event.target.value} %`;
      loadLargeSoon();
    });
    for (const id of ["colormap", "normalize"]) {
      $(id).addEventListener("change", () => {
        explainColours();
        if (!state.prediction) return;
        loadTiles(state.run);
        loadLarge();
      });
    }
  }

  wire();
  loadModel();
  loadSamples();
})();
