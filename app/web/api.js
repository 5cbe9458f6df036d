// Calls to the v1 API and the messages their errors become. The API key lives only in this
// module's memory: never stored, sent only to this server as `Authorization: Bearer ...`.

export const $ = (id) => document.getElementById(id);

let apiKey = "";

export function setKey(key) {
  const changed = key !== apiKey;
  apiKey = key;
  return changed;
}

export class ApiError extends Error {
  constructor(status, message, retryAfter = 0) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter; // seconds, from a 503's Retry-After
  }
}

// ---- talking to the API ----

export async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiKey) headers.set("Authorization", `Bearer ${apiKey}`);
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
    text = apiKey
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
  return new ApiError(status, text.trim(), Number(retry) || 0);
}

// ---- messages ----

export function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = `message ${kind}`;
  box.hidden = false;
}

export function clearMessage() {
  $("message").hidden = true;
  $("message").textContent = "";
}

export function showError(err) {
  showMessage(err instanceof ApiError ? err.message : `Something went wrong: ${err}`);
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
    $("key-box").open = true;
    $("api-key").focus();
  }
}
