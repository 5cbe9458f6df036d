// The page at /: classify an image with the public v1 API and show its scores and class maps.
// Plain JS modules, no build step, no third-party code: api.js talks to the server (and holds the
// API key), maps.js shows the class maps, this module the input, the scores and the wiring.
import { $, api, clearMessage, setKey, showError } from "./api.js";
import { explainColours, loadLarge, loadTiles, percent, showMaps } from "./maps.js";

const TOP_K = 5;

const state = {
  image: null, // {blob, name}: the image shown, sent again when the resolution changes
  answered: false, // whether the image shown has a result
  run: 0, // bumps on each classification: late answers of an older one are dropped
  originalUrl: null, // blob: URL of the image shown
  models: [], // GET /v1/models: every loaded version, the default model first
  grpcPort: null, // GET /v1/models: the port the server answers gRPC on, null without gRPC
  model: null, // the one picked; null: the server's default (/v1/classify)
};

// ---- model facts and the model picker (shown when the server has more than one version) ----

// The page's words follow the picked model: its dataset, classes and native size come from its
// metadata (GET /v1/models), and the bundled samples (CIFAR-10 classes and photos) are offered
// only for a model with CIFAR-10's classes.
const CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
const RESOLUTION_STEPS = [1, 2, 4, 8]; // times the native size, up to MAX_RESOLUTION
const MAX_RESOLUTION = 256;

function isCifar10(model) {
  return model.classes.length === CIFAR10.length && model.classes.every((c, i) => c === CIFAR10[i]);
}

function describe(model) {
  const n = model.native_size;
  const k = model.classes.length;
  if (isCifar10(model)) return `CIFAR-10 (${n}\u00d7${n} photos of ${k} classes)`;
  const shown = model.classes.slice(0, 4).join(", ") + (k > 4 ? ", \u2026" : "");
  // A comma-set aside, so the sentence reads on into "classifies your image".
  const from = model.dataset ? `, data set \u201c${model.dataset}\u201d,` : "";
  return `${n}\u00d7${n} images of ${k} classes (${shown})${from}`;
}

function followModel(model) {
  $("model-dataset").textContent = describe(model);
  const n = model.native_size;
  $("native-size").textContent = String(n);
  const pick = $("resolution");
  const sizes = RESOLUTION_STEPS.map((f) => f * n).filter((r) => r <= Math.max(n, MAX_RESOLUTION));
  pick.replaceChildren(
    ...sizes.map((r, i) => {
      const option = new Option(`${r} \u00d7 ${r}${i === 0 ? " (trained size)" : ""}`, String(r));
      option.selected = i === 0;
      return option;
    })
  );
  const cifar = isCifar10(model);
  $("samples").hidden = !cifar;
  $("samples-title").hidden = !cifar;
  $("no-samples").hidden = cifar;
  $("no-samples").textContent = cifar
    ? ""
    : `The bundled samples are CIFAR-10 pictures; ${model.name} knows ${model.classes.join(", ")}: ` +
      "drop, pick or paste an image of one of those.";
}

// The gRPC client call for the picked model, on the port the server says it answers gRPC on
// (GET /v1/models: grpc_port); the box stays hidden when the server runs no gRPC.
function showClients(model) {
  $("clients").hidden = state.grpcPort == null;
  if (state.grpcPort == null) return;
  const n = model.native_size;
  const version = state.model ? `, model_version="${model.version}"` : "";
  $("grpc-snippet").textContent = [
    "import numpy as np",
    "import tritonclient.grpc as grpcclient",
    "",
    `client = grpcclient.InferenceServerClient("${location.hostname}:${state.grpcPort}")`,
    `pixels = np.zeros((1, ${n}, ${n}, 3), np.uint8)  # N x H x W x RGB`,
    `image = grpcclient.InferInput("image", list(pixels.shape), "UINT8")`,
    "image.set_data_from_numpy(pixels)",
    `result = client.infer("${model.name}", [image]${version})`,
    'print(result.as_numpy("scores"))  # one probability per class',
  ].join("\n");
}

function showModel(model) {
  followModel(model);
  showClients(model);
  $("model-version").textContent = model.version;
  $("model-provider").textContent = `${model.device} (${model.execution_provider})`;
  $("model-accuracy").textContent =
    model.val_top1 == null ? "unknown" : `${(100 * model.val_top1).toFixed(2)} %`;
}

function classifyPath() {
  const m = state.model;
  if (!m) return "/v1/classify";
  return `/v1/models/${encodeURIComponent(m.name)}/versions/${encodeURIComponent(m.version)}/classify`;
}

async function loadModel() {
  try {
    const body = await (await api("/v1/models")).json();
    state.models = body.models;
    state.grpcPort = body.grpc_port ?? null;
    const model = body.models[0];
    $("model-name").textContent = model.name;
    showModel(model);
    if (body.models.length > 1) {
      const pick = $("model-pick");
      pick.replaceChildren(
        ...body.models.map((m, i) => new Option(`${m.name} ${m.version}`, String(i)))
      );
      pick.hidden = false;
      $("model-name").hidden = true;
    }
    if ($("message").textContent.includes("busy")) clearMessage(); // it was starting up
  } catch (err) {
    $("model-name").textContent = "unavailable";
    showError(err);
    if (err.status === 503) setTimeout(loadModel, 1000 * Math.max(1, err.retryAfter)); // starting up
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
  state.answered = false;
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
    const response = await api(`${classifyPath()}?top_k=${TOP_K}&resolution=${resolution()}`, {
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
  state.answered = true;
  showAnswer(prediction);
  $("result").setAttribute("aria-busy", "false");
  if (window.matchMedia("(max-width: 899px)").matches) {
    $("result").scrollIntoView({ block: "start" }); // one column: the answer is below the inputs
  }
  await showMaps(prediction);
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
    if (!setKey($("api-key").value.trim())) return;
    clearMessage();
    loadModel();
  };
  $("api-key").addEventListener("change", useKey);
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault(); // the key never leaves the page except as a header to this server
    useKey();
    if (!state.answered && state.image) classify(state.image.blob, state.image.name);
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
  $("model-pick").addEventListener("change", (event) => {
    const index = Number(event.target.value);
    state.model = index === 0 ? null : state.models[index]; // the first is the server's default
    showModel(state.models[index]);
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
      loadTiles();
      loadLarge();
    });
  }
}

wire();
loadModel();
loadSamples();
