// The class maps of one prediction: a tile per class (ordered by score) and one class enlarged
// with its colour bar. Map PNGs are fetched, not put in <img src>, so they carry the API key;
// they are shown through blob: URLs, revoked when newer maps replace them.
import { $, ApiError, api, showError } from "./api.js";

const TILE_SIZE = 224; // px, long side of each class's overlay tile
const LARGE_SIZE = 512; // px, long side of the enlarged map (the server keeps a 512 px preview)

const state = {
  prediction: null,
  selected: null, // the label shown large
  generation: 0, // bumps with each prediction: tiles of an older one are dropped
  largeRun: 0, // bumps with each enlarged map asked for: only the latest is shown
  urls: [], // blob: URLs of the current tiles
  largeUrl: null, // blob: URL of the enlarged map
};

export function percent(score) {
  const p = 100 * score;
  if (p >= 99.95) return "100 %";
  if (p >= 0.1) return `${p.toFixed(1)} %`;
  return "< 0.1 %";
}

// What the two ends of each colormap look like, for the sentence that explains the tiles.
const COLOUR_ENDS = {
  jet: ["red", "dark blue"],
  turbo: ["red", "dark blue"],
  viridis: ["yellow", "dark purple"],
  inferno: ["pale yellow", "black"],
  magma: ["pale yellow", "black"],
  gray: ["white", "black"],
};

export function explainColours() {
  const [high, low] = COLOUR_ENDS[$("colormap").value];
  const normalize = $("normalize").value;
  let text;
  if (normalize === "weighted") {
    text =
      `Each tile is one class's map over your image. Its colour is the class's score times its ` +
      `probability at each location, from 0 (${low}) to 1 (${high}): the same scale for every ` +
      `class, and never above the class's score, so a class the network does not pick stays ${low}.`;
  } else if (normalize === "posterior") {
    text =
      `Each tile is one class's map over your image. Its colour is the probability of that class ` +
      `at each location, from 0 (${low}) to 1 (${high}), as if the whole image looked like that ` +
      `spot: at each location the classes add up to 1, and a class the network does not pick ` +
      `can still be ${high} where it wins a small patch.`;
  } else if (normalize === "global") {
    text =
      `Each tile is one class's raw map (logits) over your image, on one range shared by all ` +
      `classes: ${high} is the highest value of any class, ${low} the lowest. A spot where every ` +
      `class is high is ${high} on every tile, even for a class the network does not pick.`;
  } else {
    text =
      `Each tile is one class's raw map (logits) over your image, stretched to its own range: ` +
      `${high} is that map's highest value, ${low} its lowest, so even a class at 0.1 % gets a ` +
      `${high} spot.`;
  }
  $("maps-help").textContent = `${text} Pick a tile to enlarge it.`;
}

/** The sentence under the enlarged map, from the headers that say what its colours mean. */
function describeScale(label, headers) {
  const range = (headers.get("X-Map-Range") || "").split(",").map(Number);
  if (range.length !== 2 || range.some(Number.isNaN)) return "";
  const [high, low] = COLOUR_ENDS[$("colormap").value];
  const ends = `${low} ${range[0].toFixed(2)}, ${high} ${range[1].toFixed(2)}`;
  if (headers.get("X-Map-Normalize") === "weighted") {
    return `Colour: ${label}'s score times its probability at each location (${low} 0, ${high} 1).`;
  }
  if (headers.get("X-Map-Units") === "probability") {
    return `Colour: the probability of ${label} at each location (${low} 0, ${high} 1).`;
  }
  const shared = headers.get("X-Map-Normalize") === "global";
  const scale = shared ? "one range shared by all classes of this image" : `${label}'s own range`;
  return `Colour: ${label}'s map in logits, on ${scale} (${ends}).`;
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

const PARALLEL_FETCHES = 3; // the server renders maps in a small lane: ask politely
const TRIES = 3;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A map PNG as an object URL; a busy server (503) is asked again after its Retry-After. */
async function fetchImage(url) {
  for (let attempt = 1; ; attempt++) {
    try {
      const response = await api(url);
      return { objectUrl: URL.createObjectURL(await response.blob()), response };
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 503 || attempt >= TRIES) throw err;
      await sleep(1000 * Math.max(err.retryAfter, 0.5));
    }
  }
}

/** Run async tasks with at most `limit` in flight, in order. */
async function runLimited(tasks, limit) {
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) await tasks[next++]();
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
}

function releaseMaps() {
  for (const url of state.urls) URL.revokeObjectURL(url);
  state.urls = [];
}

export async function loadTiles() {
  const p = state.prediction;
  if (!p) return;
  const run = ++state.generation;
  releaseMaps();
  const labels = Object.keys(p.scores).sort((a, b) => p.scores[b] - p.scores[a]);
  const list = $("tiles");
  list.replaceChildren();
  const jobs = labels.map((label) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "tile";
    button.dataset.label = label;
    button.setAttribute("aria-pressed", String(label === state.selected));
    const img = document.createElement("img");
    img.alt = `Map of ${label} over your image (score ${percent(p.scores[label])})`;
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
    return async () => {
      if (run !== state.generation) return; // a newer image replaced these tiles
      const { objectUrl } = await fetchImage(mapUrl(label, TILE_SIZE));
      state.urls.push(objectUrl);
      if (run === state.generation) img.src = objectUrl;
    };
  });
  try {
    await runLimited(jobs, PARALLEL_FETCHES);
  } catch (err) {
    if (run === state.generation) showError(err);
  }
}

function select(label) {
  state.selected = label;
  for (const tile of document.querySelectorAll(".tile")) {
    tile.setAttribute("aria-pressed", String(tile.dataset.label === label));
  }
  loadLarge();
}

export async function loadLarge() {
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
    $("range").textContent = describeScale(label, response.headers);
  } catch (err) {
    if (run === state.largeRun) showError(err);
  }
}

/** Show the maps of a new prediction, its top class enlarged. */
export function showMaps(prediction) {
  state.prediction = prediction;
  state.selected = prediction.top[0].label;
  return Promise.all([loadTiles(), loadLarge()]);
}
