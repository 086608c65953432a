import { GenerationError, streamGeneration, summaryText } from "./api.js";
import { bindSliderOutputs, clearErrors, readSettings, showError } from "./form.js";
import { TokenView, bindColouring } from "./tokens.js";

const form = document.getElementById("compare-form");
const generateButton = document.getElementById("generate");
const stopButton = document.getElementById("stop");
const tip = document.getElementById("token-tip");
const sides = ["a", "b"].map((side) => ({
  side,
  select: form.elements[`model_${side}`],
  name: document.getElementById(`name-${side}`),
  output: document.getElementById(`output-${side}`),
  stats: document.getElementById(`stats-${side}`),
  view: new TokenView(document.getElementById(`output-${side}`), tip),
}));

let controller = null;
bindSliderOutputs(form);

for (const s of sides) {
  const show = () => { s.name.textContent = s.select.value; };
  s.select.addEventListener("change", show);
  show();
}
bindColouring(document.getElementById("show-probabilities"), document.getElementById("colouring"),
  sides.map((s) => s.view));

async function run(s, body, signal) {
  s.view.reset(body.prompt);
  s.output.setAttribute("aria-busy", "true");
  s.stats.textContent = "Generating…";
  try {
    const done = await streamGeneration({ ...body, model: s.select.value }, {
      signal,
      onToken: (event) => {
        s.view.add(event.token);
        s.stats.textContent = `${s.view.count} tokens…`;
      },
    });
    s.view.flush();
    s.stats.textContent = summaryText(done);
  } catch (error) {
    s.stats.textContent = error.name === "AbortError" ? `Stopped after ${s.view.count} tokens.` : "";
    throw error;
  } finally {
    s.view.flush();
    s.output.setAttribute("aria-busy", "false");
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (controller) return;
  clearErrors(form);
  const [body, errors] = readSettings(form);
  if (errors.length) {
    for (const [field, message] of errors) showError(form, field, message);
    return;
  }
  body.details = true;
  controller = new AbortController();
  generateButton.disabled = true;
  stopButton.disabled = false;
  const results = await Promise.allSettled(sides.map((s) => run(s, body, controller.signal)));
  const shown = new Set();
  results.forEach((result, i) => {
    const error = result.reason;
    if (result.status === "fulfilled" || error.name === "AbortError") return;
    if (error instanceof GenerationError) {
      // Both sides usually fail the same way (same settings): say it once, next to the field.
      const key = `${error.field}:${error.message}`;
      if (shown.has(key)) return;
      shown.add(key);
      const retry = error.retryAfter ? ` Try again in ${error.retryAfter} s.` : "";
      showError(form, error.field, error.message + retry, (f) => (f === "model" ? `model_${sides[i].side}` : f));
    } else {
      showError(form, null, `Could not reach the server: ${error.message}`);
    }
  });
  controller = null;
  generateButton.disabled = false;
  stopButton.disabled = true;
});

stopButton.addEventListener("click", () => controller?.abort());
