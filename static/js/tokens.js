// The output view: generated tokens appended as text nodes (never HTML: a model can emit "<script>"), coloured when
// the probability view is on, either by probability (a tint from red to green) or, as GLTR does, by the token's
// rank among the model's predictions (top 10 / 100 / 1,000 / beyond), with its top alternatives in a tooltip.

const VISIBLE = { " ": "␣", "\n": "↵", "\t": "⇥" };

function visible(text) {
  return text === "" ? "∅" : text.replace(/[ \n\t]/g, (c) => VISIBLE[c]);
}

// GLTR's buckets: the class a token gets for its rank (1 = the model's most likely token).
export const RANK_BUCKETS = [[10, "rank-10"], [100, "rank-100"], [1000, "rank-1000"], [Infinity, "rank-beyond"]];
export const COLOURINGS = ["probability", "rank"];

function rankClass(rank) {
  return RANK_BUCKETS.find(([limit]) => rank <= limit)[1];
}

function percent(p) {
  if (p === null || p === undefined) return "?";
  return p >= 0.995 ? "100%" : p < 0.001 ? "<0.1%" : `${(p * 100).toFixed(p < 0.1 ? 1 : 0)}%`;
}

export class TokenView {
  constructor(container, tip) {
    this.container = container;
    this.tip = tip;
    this.text = "";
    this.colouring = null; // null (plain text), or one of COLOURINGS
    // Spans wait here and join the page once per animation frame: a fast model sends thousands of tokens a
    // second, and one DOM insertion each would keep the page too busy to answer Stop.
    this.pending = document.createDocumentFragment();
    this.frame = 0;
    container.addEventListener("mouseover", (e) => this.#point(e.target));
    container.addEventListener("focusin", (e) => this.#point(e.target));
    container.addEventListener("mouseleave", () => this.#hideTip());
    container.addEventListener("focusout", () => this.#hideTip());
    container.addEventListener("keydown", (e) => { if (e.key === "Escape") this.#hideTip(); });
  }

  reset(prompt) {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.pending = document.createDocumentFragment();
    this.container.replaceChildren();
    const promptSpan = document.createElement("span");
    promptSpan.className = "prompt-text";
    promptSpan.textContent = prompt;
    this.container.append(promptSpan);
    this.text = prompt;
    this.count = 0;
    this.#hideTip();
  }

  add(token) {
    this.count += 1;
    if (token.text === "") return; // held back while it might be the start of a stop string
    const span = document.createElement("span");
    span.className = "tok";
    if (token.rank) span.classList.add(rankClass(token.rank));
    span.textContent = token.text;
    const p = token.logprob === null ? null : Math.exp(token.logprob);
    span.tokenData = { ...token, p };
    if (p !== null) span.style.setProperty("--p", p.toFixed(3));
    if (this.colouring) span.tabIndex = 0;
    this.pending.append(span);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
    this.text += token.text;
  }

  // Puts every waiting token on the page now (at the end of a generation, before a message).
  flush() {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.container.append(this.pending);
  }

  message(text, className = "notice-text") {
    this.flush();
    const span = document.createElement("span");
    span.className = className;
    span.textContent = text;
    this.container.append(span);
  }

  // null shows plain text; "probability" or "rank" colours every token and lets it be focused for its tooltip.
  setColouring(colouring) {
    this.flush();
    this.colouring = colouring;
    this.container.classList.toggle("probabilities", colouring === "probability");
    this.container.classList.toggle("ranks", colouring === "rank");
    for (const span of this.container.querySelectorAll(".tok")) {
      if (colouring) span.tabIndex = 0;
      else span.removeAttribute("tabindex");
    }
    if (!colouring) this.#hideTip();
  }

  #point(target) {
    if (!this.colouring || !target.classList || !target.classList.contains("tok")) return;
    const data = target.tokenData;
    const tip = this.tip;
    tip.replaceChildren();
    const head = document.createElement("p");
    const strong = document.createElement("strong");
    strong.textContent = visible(data.text);
    head.append(strong, ` ${percent(data.p)}`);
    if (data.rank) head.append(` · rank ${data.rank.toLocaleString("en")}`);
    tip.append(head);
    if (data.alternatives && data.alternatives.length) {
      const list = document.createElement("ol");
      for (const alt of data.alternatives) {
        const item = document.createElement("li");
        const bar = document.createElement("span");
        bar.className = "bar";
        bar.style.setProperty("--p", String(alt.prob ?? 0));
        const label = document.createElement("code");
        label.textContent = visible(alt.text);
        item.append(bar, label, ` ${percent(alt.prob)}`);
        if (alt.id === data.id) item.className = "chosen";
        list.append(item);
      }
      tip.append(list);
    }
    tip.hidden = false;
    const box = target.getBoundingClientRect();
    const width = tip.offsetWidth;
    const left = Math.max(8, Math.min(window.scrollX + box.left, window.scrollX + document.documentElement.clientWidth - width - 8));
    tip.style.left = `${left}px`;
    tip.style.top = `${window.scrollY + box.bottom + 6}px`;
    target.setAttribute("aria-describedby", tip.id);
  }

  #hideTip() {
    this.tip.hidden = true;
  }
}

// Wires the page's "Show probabilities" checkbox and its "colour by" select to token views and legends (each
// legend's data-colouring names the colouring it explains).
export function bindColouring(toggle, select, views, legends = []) {
  const apply = () => {
    const colouring = toggle.checked ? select.value : null;
    for (const view of views) view.setColouring(colouring);
    for (const legend of legends) legend.hidden = legend.dataset.colouring !== colouring;
  };
  toggle.addEventListener("change", apply);
  select.addEventListener("change", apply);
  apply();
}
