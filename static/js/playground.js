import { GenerationError, streamGeneration, summaryText } from "./api.js";
import { bindApiHint } from "./apihint.js";
import { bindSliderOutputs, clearErrors, readSettings, showError } from "./form.js";
import { TokenView, bindColouring } from "./tokens.js";

const form = document.getElementById("generate-form");
const generateButton = document.getElementById("generate");
const stopButton = document.getElementById("stop");
const copyButton = document.getElementById("copy");
const output = document.getElementById("output");
const stats = document.getElementById("stats");
const view = new TokenView(output, document.getElementById("token-tip"));

let controller = null;

// A model page links here with ?model=<name>.
const wanted = new URLSearchParams(window.location.search).get("model");
if (wanted && [...form.elements.model.options].some((option) => option.value === wanted)) {
  form.elements.model.value = wanted;
}
bindSliderOutputs(form);
bindApiHint(() => ({ ...readSettings(form)[0], model: form.elements.model.value }), form,
  document.getElementById("curl-generate"), document.getElementById("curl-completions"));

bindColouring(document.getElementById("show-probabilities"), document.getElementById("colouring"), [view],
  document.querySelectorAll(".legend[data-colouring]"));

function setBusy(busy) {
  generateButton.disabled = busy;
  stopButton.disabled = !busy;
  copyButton.disabled = busy || !view.text;
  output.setAttribute("aria-busy", String(busy));
}

function showSummary(done) {
  stats.replaceChildren(`${summaryText(done)} `);
  // The same seed and settings give the same text: one click puts the seed in the form.
  const reuse = document.createElement("button");
  reuse.type = "button";
  reuse.className = "link";
  reuse.textContent = "reuse seed";
  reuse.addEventListener("click", () => {
    form.elements.seed.value = String(done.seed);
    document.getElementById("advanced").open = true;
  });
  stats.append(reuse);
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
  body.model = form.elements.model.value;
  body.details = true; // per-token probabilities and alternatives, for the probability view
  controller = new AbortController();
  view.reset(body.prompt);
  setBusy(true);
  stats.textContent = "Generating…";
  // On a phone the output sits below the form: bring it into view as the tokens start arriving.
  output.scrollIntoView({ block: "nearest", behavior: "smooth" });
  try {
    const done = await streamGeneration(body, {
      signal: controller.signal,
      onToken: (event) => {
        view.add(event.token);
        stats.textContent = `${view.count} tokens…`;
      },
    });
    view.flush();
    showSummary(done);
  } catch (error) {
    if (error.name === "AbortError") {
      stats.textContent = `Stopped after ${view.count} tokens.`;
    } else if (error instanceof GenerationError) {
      const retry = error.retryAfter ? ` Try again in ${error.retryAfter} s.` : "";
      showError(form, error.field, error.message + retry);
      stats.textContent = view.count ? `Failed after ${view.count} tokens.` : "";
    } else {
      showError(form, null, `Could not reach the server: ${error.message}`);
      stats.textContent = "";
    }
  } finally {
    view.flush();
    controller = null;
    setBusy(false);
  }
});

stopButton.addEventListener("click", () => controller?.abort());

copyButton.addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(view.text);
    copyButton.textContent = "Copied";
  } catch (_) {
    // Clipboard API refused (e.g. plain http on a LAN address): select the text so Ctrl+C works.
    window.getSelection().selectAllChildren(output);
    copyButton.textContent = "Selected";
  }
  setTimeout(() => { copyButton.textContent = "Copy"; }, 1500);
});
