// Client for POST /generate with stream=true: reads the Server-Sent Events off a fetch() body.
// (EventSource cannot POST a JSON body, and fetch() lets Stop abort the request, which ends the generation.)

export class GenerationError extends Error {
  constructor(status, error, retryAfter = null) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.type = error.type || "error";
    this.field = error.field || null;
    this.retryAfter = retryAfter;
  }
}

async function errorFrom(response) {
  let error = { type: "http_error", message: `The server answered ${response.status} ${response.statusText}.` };
  try {
    const body = await response.json();
    if (body && body.error) error = body.error;
  } catch (_) {
    // not JSON (e.g. a proxy's error page): keep the generic message
  }
  return new GenerationError(response.status, error, response.headers.get("Retry-After"));
}

// The page's own token: when the server asks for API keys, the playground's requests carry this instead.
const PLAYGROUND_TOKEN = document.querySelector('meta[name="scriptorium-playground"]')?.content ?? "";

// Streams one generation. Calls onToken(event) per token event; resolves with the final "done" event.
export async function streamGeneration(body, { signal, onToken }) {
  const response = await fetch("/generate", {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      Accept: "text/event-stream",
      "X-Playground-Token": PLAYGROUND_TOKEN,
    },
    body: JSON.stringify({ ...body, stream: true }),
    signal,
  });
  if (!response.ok) throw await errorFrom(response);

  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let done = null;
  let yielded = performance.now();
  for (;;) {
    const { value, done: ended } = await reader.read();
    if (ended) break;
    buffer += value;
    let start = 0;
    let cut;
    while ((cut = buffer.indexOf("\n\n", start)) >= 0) {
      const block = buffer.slice(start, cut);
      start = cut + 2;
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (!data) continue;
      const event = JSON.parse(data);
      if (event.error) throw new GenerationError(200, event.error);
      if (event.done) done = event;
      else onToken(event);
      // A fast model can put thousands of events in one read; without a turn of the event loop now and then
      // the page would neither paint nor see a click on Stop until they were all handled.
      if (performance.now() - yielded > 50) {
        await new Promise((resolve) => setTimeout(resolve, 0));
        yielded = performance.now();
      }
    }
    buffer = buffer.slice(start);
  }
  if (!done) throw new GenerationError(0, { message: "The connection closed before the generation finished." });
  return done;
}

const FINISH_REASONS = {
  length: "reached max length",
  eos: "end of text",
  stop: "stop string",
  time_limit: "time limit",
};

// One line about a finished generation (its final "done" event), for people.
export function summaryText(done) {
  const reason = FINISH_REASONS[done.finish_reason] || done.finish_reason;
  return (
    `${done.generated_tokens} tokens · ${done.timing.tokens_per_second ?? "–"} tokens/s · ` +
    `finish: ${reason} · seed ${done.seed}`
  );
}
