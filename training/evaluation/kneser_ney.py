"""A character n-gram model with interpolated modified Kneser-Ney smoothing (Chen & Goodman 1998), in numpy.

The baseline a neural model has to beat: counts of every character n-gram of the training text, nothing learned.

Counting without Python dictionaries: every n-gram gets a dense id, its rank among the distinct n-grams of its
order, so an n-gram of order n is the integer `id(its first n-1 characters) * V + last character`. Sorting those
integers (numpy's sort, vectorised) groups equal n-grams and, because the prefix id is the high part, groups the
n-grams of one context together; the ids of order n are then the ranks in that sorted array. Nothing is hashed,
so two n-grams never share a count, whatever the order or the size of the alphabet.

The probability of character w after context h, at the highest order N (raw counts c) and at each lower order
(continuation counts: how many distinct characters precede the n-gram):

    p_n(w | h) = (max(c(hw) - D(c(hw)), 0) + gamma(h) * p_{n-1}(w | h')) / c(h.)     when h was seen
    p_n(w | h) = p_{n-1}(w | h')                                                     otherwise
    gamma(h)   = D1 * N1(h.) + D2 * N2(h.) + D3+ * N3+(h.)
    p_0(w)     = 1 / V

with h' the context without its first character, N_k(h.) the number of characters seen after h exactly k times
(k or more for 3+), and the three discounts of each order estimated from that order's counts of counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HELD_OUT_FRACTION = 0.1  # the end of the training text on which the order is chosen
MAX_ORDER = 16


def text_codes(text: str, alphabet: np.ndarray) -> np.ndarray:
    """Each character's index in `alphabet` (sorted code points); characters outside it raise ValueError."""
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    codes = np.searchsorted(alphabet, points)
    if len(points) and (codes.max() >= len(alphabet) or not np.array_equal(alphabet[codes], points)):
        raise ValueError("the text has characters outside the n-gram model's alphabet")
    return codes


def alphabet_of(*texts: str) -> np.ndarray:
    """The sorted code points of every character in the texts: the symbols the model spreads probability over."""
    points = [np.unique(np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32)) for t in texts if t]
    if not points:
        raise ValueError("an n-gram model needs some text")
    return np.unique(np.concatenate(points)).astype(np.int64)


def _sort_with_positions(values: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted values, the permutation that sorts them), for non-negative values below `bound`.

    Packing value and position into one int64 and sorting that is several times faster than np.argsort.
    """
    position_bits = max(1, (len(values) - 1).bit_length())
    if bound.bit_length() + position_bits <= 63:
        packed = np.sort((values << position_bits) | np.arange(len(values), dtype=np.int64))
        return packed >> position_bits, packed & ((1 << position_bits) - 1)
    order = np.argsort(values)
    return values[order], order


def _distinct(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For sorted values: the distinct values, how often each occurs, and each element's rank among them."""
    new = np.empty(len(sorted_values), dtype=bool)
    new[:1] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, len(sorted_values)))
    return sorted_values[starts], counts, np.cumsum(new) - 1


def _lookup(keys: np.ndarray, queries: np.ndarray, bound: int) -> np.ndarray:
    """Index of each query in the sorted `keys`, -1 where absent or where the query is negative."""
    out = np.full(len(queries), -1, dtype=np.int64)
    valid = np.flatnonzero(queries >= 0)
    if not len(valid) or not len(keys):
        return out
    # searchsorted over sorted queries walks the keys once instead of jumping around them
    ordered, order = _sort_with_positions(queries[valid], bound)
    found = np.minimum(np.searchsorted(keys, ordered), len(keys) - 1)
    hit = keys[found] == ordered
    out[valid[order[hit]]] = found[hit]
    return out


def _discounts(counts: np.ndarray) -> np.ndarray:
    """D(0..3) for one order from its counts of counts (Chen & Goodman's estimates, kept inside (0, k])."""
    n = [int(np.count_nonzero(counts == k)) for k in (1, 2, 3, 4)]
    y = n[0] / (n[0] + 2 * n[1]) if n[0] + 2 * n[1] else 0.5
    out = np.zeros(4)
    for k in (1, 2, 3):
        estimate = k - (k + 1) * y * n[k] / n[k - 1] if n[k - 1] else 0.5 * k
        out[k] = min(float(k), max(0.1, estimate))  # never 0: unseen characters keep some probability
    return out


@dataclass
class _Level:
    """Counts of one order and one kind (raw, or continuation) with what each context needs."""
    counts: np.ndarray  # per n-gram id
    discounts: np.ndarray  # D(0), D(1), D(2), D(3+)
    totals: np.ndarray  # per context id: c(h.)
    gammas: np.ndarray  # per context id: D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)

    @classmethod
    def build(cls, counts: np.ndarray, prefixes: np.ndarray, contexts: int) -> "_Level":
        discounts = _discounts(counts)
        discount_of = discounts[np.minimum(counts, 3)]
        return cls(counts, discounts, np.bincount(prefixes, weights=counts, minlength=contexts),
                   np.bincount(prefixes, weights=discount_of, minlength=contexts))

    def step(self, context_ids: np.ndarray, gram_ids: np.ndarray, lower: np.ndarray) -> np.ndarray:
        """p_n for each query from p_{n-1} (`lower`); ids are -1 where unseen."""
        has_context = context_ids >= 0
        safe = np.where(has_context, context_ids, 0)
        totals = np.where(has_context, self.totals[safe], 0.0)
        c = np.where(gram_ids >= 0, self.counts[np.maximum(gram_ids, 0)], 0)
        numerator = np.maximum(c - self.discounts[np.minimum(c, 3)], 0.0) + self.gammas[safe] * lower
        return np.where(totals > 0, numerator / np.where(totals > 0, totals, 1.0), lower)


class _Orders:
    """The n-gram tables of a text, one order at a time (so the order can be chosen while they are built)."""

    def __init__(self, codes: np.ndarray, vocab: int) -> None:
        self.codes = codes
        self.vocab = vocab
        self.keys: list[np.ndarray] = []  # per order: sorted distinct (prefix id * V + last code)
        self.raw: list[_Level] = []
        self.continuation: list[_Level] = []  # order n's, filled when order n + 1 is built
        self._positions: np.ndarray | None = None  # id of the n-gram starting at each position, latest order

    @property
    def order(self) -> int:
        return len(self.keys)

    def _contexts(self, n: int) -> int:
        return 1 if n == 1 else len(self.keys[n - 2])

    def add_order(self) -> bool:
        """Count the next order; False when the text is too short for it."""
        n, codes, vocab = self.order + 1, self.codes, self.vocab
        if len(codes) < n:
            return False
        if n == 1:
            grams, bound = codes, vocab
        else:
            previous = self._positions
            grams = previous[: len(codes) - n + 1] * vocab + codes[n - 1:]
            bound = len(self.keys[-1]) * vocab
            # continuation counts of order n - 1: distinct characters seen before each (n-1)-gram
            preceded = np.sort(previous[1: len(codes) - n + 2] * vocab + codes[: len(codes) - n + 1])
            pairs, _, _ = _distinct(preceded)
            follow = np.bincount(pairs // vocab, minlength=len(self.keys[-1]))
            self.continuation.append(_Level.build(follow, self.keys[-1] // vocab, self._contexts(n - 1)))
        ordered, order = _sort_with_positions(grams, bound)
        keys, counts, ranks = _distinct(ordered)
        positions = np.empty(len(grams), dtype=np.int64)
        positions[order] = ranks
        self._positions = positions
        self.keys.append(keys)
        self.raw.append(_Level.build(counts, keys // vocab, self._contexts(n)))
        return True

    def query_ids(self, codes: np.ndarray, orders: int, known: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """For a text: per order n, the id of the n-gram starting at each position (-1 if never seen).
        `known`: the ids of the lower orders, already looked up."""
        ids: list[np.ndarray] = list(known or [])
        for n in range(len(ids) + 1, orders + 1):
            if len(codes) < n:
                ids.append(np.zeros(0, dtype=np.int64))
                continue
            if n == 1:
                grams = codes.copy()
            else:
                previous = ids[-1][: len(codes) - n + 1]
                grams = np.where(previous >= 0, previous * self.vocab + codes[n - 1:], -1)
            ids.append(_lookup(self.keys[n - 1], grams, self._contexts(n) * self.vocab))
        return ids


def _ids_at(ids: list[np.ndarray], n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(context id, n-gram id) of order n for predicting each of `length` characters (-1 before the text
    is long enough)."""
    grams = np.full(length, -1, dtype=np.int64)
    grams[n - 1:] = ids[n - 1][: max(0, length - n + 1)]
    if n == 1:
        return np.zeros(length, dtype=np.int64), grams
    contexts = np.full(length, -1, dtype=np.int64)
    contexts[n - 1:] = ids[n - 2][: max(0, length - n + 1)]
    return contexts, grams


class KneserNeyModel:
    """A fitted character model of one order over a fixed alphabet."""

    def __init__(self, tables: _Orders, order: int, alphabet: np.ndarray) -> None:
        if order > tables.order:
            raise ValueError(f"only {tables.order} orders counted, asked for {order}")
        self.tables = tables
        self.order = order
        self.alphabet = alphabet

    @classmethod
    def fit(cls, text: str, order: int, alphabet: np.ndarray | None = None) -> "KneserNeyModel":
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        alphabet = alphabet_of(text) if alphabet is None else alphabet
        tables = _Orders(text_codes(text, alphabet), len(alphabet))
        # order N needs continuation counts of order N-1, which come with order N's counts
        while tables.order < order and tables.add_order():
            pass
        return cls(tables, min(order, tables.order), alphabet)

    def _probabilities(self, ids_at) -> np.ndarray:
        """Probability of each queried character; `ids_at(n)` gives (context ids, n-gram ids) of order n."""
        tables = self.tables
        p = None
        for n in range(1, self.order + 1):
            contexts, grams = ids_at(n)
            if p is None:
                p = np.full(len(grams), 1.0 / tables.vocab)
            level = tables.raw[n - 1] if n == self.order else tables.continuation[n - 1]
            p = level.step(contexts, grams, p)
        return p

    def log_probs(self, text: str) -> np.ndarray:
        """Natural log-probability of each character of `text`, each given the characters before it in `text`."""
        codes = text_codes(text, self.alphabet)
        ids = self.tables.query_ids(codes, self.order)
        return np.log(self._probabilities(lambda n: _ids_at(ids, n, len(codes))))

    def nats_per_char(self, text: str) -> float:
        return float(-self.log_probs(text).mean()) if text else float("nan")

    def distribution(self, context: str) -> np.ndarray:
        """p(w | context) for every character w of the alphabet, in alphabet order."""
        history = context[-(self.order - 1):] if self.order > 1 else ""
        codes = text_codes(history, self.alphabet)
        vocab = len(self.alphabet)
        # each candidate is the history followed by that character; score only the last position
        candidates = np.concatenate([np.tile(codes, (vocab, 1)), np.arange(vocab)[:, None]], axis=1)
        per_row = [self.tables.query_ids(row, self.order) for row in candidates]
        last = len(history)

        def ids_at(n: int) -> tuple[np.ndarray, np.ndarray]:
            pairs = [_ids_at(ids, n, last + 1) for ids in per_row]
            return np.array([c[last] for c, _ in pairs]), np.array([g[last] for _, g in pairs])

        return self._probabilities(ids_at)


def choose_order(text: str, alphabet: np.ndarray, max_order: int = MAX_ORDER,
                 held_out: float = HELD_OUT_FRACTION) -> tuple[int, dict[int, float]]:
    """The order whose model, counted on the first part of `text`, best predicts its last `held_out` part.

    Orders are tried upward and the search stops two orders after the held-out figure last improved.
    Returns the order and the held-out nats/char of every order tried.
    """
    cut = int(len(text) * (1 - held_out))
    fit_text, check_text = text[:cut], text[cut:]
    if not fit_text or not check_text:
        raise ValueError("the training text is too short to choose an n-gram order (--no-baselines skips the "
                         "ladder)")
    tables = _Orders(text_codes(fit_text, alphabet), len(alphabet))
    check = text_codes(check_text, alphabet)
    figures: dict[int, float] = {}
    lower = np.full(len(check), 1.0 / len(alphabet))  # continuation-count chain up to order n - 1
    ids: list[np.ndarray] = []
    while tables.order < max_order and tables.add_order():
        n = tables.order
        ids = tables.query_ids(check, n, known=ids)
        if n > 1:
            lower = tables.continuation[n - 2].step(*_ids_at(ids, n - 1, len(check)), lower)
        figures[n] = float(-np.log(tables.raw[n - 1].step(*_ids_at(ids, n, len(check)), lower)).mean())
        best = min(figures, key=figures.get)
        if n - best >= 2:
            break
    return min(figures, key=figures.get), figures
