// Reading the shared settings form and showing errors next to the field they belong to.

const NUMBER_FIELDS = ["temperature", "max_new_tokens", "top_k", "top_p", "repetition_penalty", "seed"];

// Live values next to the sliders.
export function bindSliderOutputs(form) {
  for (const name of ["temperature", "max_new_tokens"]) {
    const input = form.elements[name];
    const output = document.getElementById(`${name}-value`);
    const show = () => { output.textContent = input.value; };
    input.addEventListener("input", show);
    show();
  }
}

export function clearErrors(form) {
  for (const slot of form.querySelectorAll("[data-error-for]")) slot.textContent = "";
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  form.querySelector("#form-error").textContent = "";
}

// Shows `message` under the control for `field` (opening "Advanced" if it is hidden there), or above
// the buttons when no control matches. `controlFor` maps an API field to a control id (Compare has two models).
export function showError(form, field, message, controlFor = (name) => name) {
  const id = field ? controlFor(field) : null;
  const input = id ? form.querySelector(`#${CSS.escape(id)}`) : null;
  const slot = id ? form.querySelector(`[data-error-for="${CSS.escape(id)}"]`) : null;
  if (!input || !slot) {
    form.querySelector("#form-error").textContent = message;
    return;
  }
  slot.textContent = message;
  input.setAttribute("aria-invalid", "true");
  const details = input.closest("details");
  if (details) details.open = true;
  input.focus({ preventScroll: false });
}

// The request fields from the form. Empty optional inputs are left out so the server's defaults apply.
// Returns [body, errors]: errors are [field, message] pairs the browser itself can tell (not a number).
export function readSettings(form) {
  const body = { prompt: form.elements.prompt.value };
  const errors = [];
  for (const name of NUMBER_FIELDS) {
    const input = form.elements[name];
    if (input.validity && input.validity.badInput) {
      errors.push([name, `${input.labels[0].textContent.trim()} must be a number.`]);
      continue;
    }
    if (input.value.trim() === "") continue;
    body[name] = Number(input.value);
  }
  return [body, errors];
}
