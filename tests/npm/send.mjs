// Drives the official npm client (android-sms-gateway 3.0.0) against a running smsgw.
// Usage: node send.mjs BASE_URL LOGIN PASSWORD PHONE TEXT
// Prints one JSON line: {"sent": <send() result>, "state": <getState() result>,
// "requests": [{method, url}]}; on an HTTP error prints {"error": {status, body}} and exits 1.
import Client from "android-sms-gateway";

const [baseUrl, login, password, phone, text] = process.argv.slice(2);
if (!text) {
  console.error("usage: node send.mjs BASE_URL LOGIN PASSWORD PHONE TEXT");
  process.exit(2);
}

const requests = [];

class HttpError extends Error {
  constructor(status, body) {
    super(`HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function call(method, url, headers, body) {
  requests.push({ method, url });
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const raw = await response.text();
  const parsed = raw ? JSON.parse(raw) : null;
  if (!response.ok) {
    throw new HttpError(response.status, parsed);
  }
  return parsed;
}

// The client has no HTTP code of its own: it calls these five methods.
const httpClient = {
  get: (url, headers) => call("GET", url, headers),
  post: (url, body, headers) => call("POST", url, headers, body),
  put: (url, body, headers) => call("PUT", url, headers, body),
  patch: (url, body, headers) => call("PATCH", url, headers, body),
  delete: (url, headers) => call("DELETE", url, headers),
};

const client = new Client(login, password, httpClient, baseUrl);
try {
  const sent = await client.send({ message: text, phoneNumbers: [phone] });
  const state = await client.getState(sent.id);
  console.log(JSON.stringify({ sent, state, requests }));
} catch (error) {
  if (error instanceof HttpError) {
    console.log(JSON.stringify({ error: { status: error.status, body: error.body }, requests }));
    process.exit(1);
  }
  throw error;
}
