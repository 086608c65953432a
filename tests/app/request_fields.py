"""The fields of a POST /generate body as the issue specifies them: the tests' own copy of the contract, kept apart
from app/schema.py so that a field dropped or renamed there fails a test."""

REQUEST_FIELDS = (
    "prompt",
    "max_new_tokens",
    "max_length",
    "max_seq_len",
    "temperature",
    "top_k",
    "top_p",
    "repetition_penalty",
    "seed",
    "stop",
    "num_return_sequences",
    "model",
    "details",
    "stream",
    "return_full_text",
)
LENGTH_ALIASES = ("max_new_tokens", "max_length", "max_seq_len")
