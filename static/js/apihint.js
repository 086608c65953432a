// The playground's "API" hint: the current settings as two curl lines, one for POST /generate and one for the
// OpenAI-compatible POST /v1/completions (same model, prompt and sampling options). Inserted as text, never HTML.

// A word for a POSIX shell: single-quoted, each ' written as '\''.
function shellQuote(text) {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

function curl(path, body) {
  return `curl -s ${window.location.origin}${path} -d ${shellQuote(JSON.stringify(body))}`;
}

// `body` is a /generate body (app/schema.py's GenerateRequest); the completion asks the same of /v1/completions.
export function curlLines(body) {
  const { max_new_tokens: maxTokens, details: _details, stream: _stream, ...options } = body;
  const completion = { ...options };
  if (maxTokens !== undefined) completion.max_tokens = maxTokens;
  return [curl("/generate", body), curl("/v1/completions", completion)];
}

export function bindApiHint(read, form, generateLine, completionLine) {
  const show = () => {
    const [generate, completions] = curlLines(read());
    generateLine.textContent = generate;
    completionLine.textContent = completions;
  };
  form.addEventListener("input", show);
  form.addEventListener("change", show);
  show();
}
