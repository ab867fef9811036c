"""The math of a version-to-version diff: small pure functions on the parts of served answers (labels,
entity spans, vectors, orders, answer texts). Each task's `diff` (tasks/<task>.py) composes them into its
measures; nothing here knows a task's answer format."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from torchship.diff.record import Measure
from torchship.validate.scores import normalize_answer, token_f1

__all__ = [
    "NO_INPUTS",
    "EntityMatch",
    "EntitySpan",
    "answers_equal",
    "check_lengths",
    "confusion_counts",
    "cosines",
    "entity_f1",
    "match_entities",
    "mean",
    "measure",
    "nearest_neighbours",
    "neighbour_overlap",
    "rate",
    "set_overlap",
    "spearman_rho",
    "token_f1",
    "top_k_overlap",
    "vector_matrix",
]

# Why a rate or a mean has no value when a diff is given nothing to compare.
NO_INPUTS = "there are no inputs to compare"


def check_lengths(requests: Sequence[Any], old: Sequence[Any], new: Sequence[Any]) -> None:
    """One old and one new answer per request, or ValueError: a caller's mistake, not a user's."""
    if not len(requests) == len(old) == len(new):
        raise ValueError(f"{len(requests)} requests but {len(old)} old and {len(new)} new answers")


def mean(values: Iterable[float]) -> float | None:
    """The arithmetic mean (fsum, so long lists do not drift); None for no values."""
    values = list(values)
    return math.fsum(values) / len(values) if values else None


def rate(flags: Iterable[bool]) -> float | None:
    """The fraction of true flags; None for no flags."""
    return mean(float(flag) for flag in flags)


def measure(
    name: str,
    value: float | None,
    better: Literal["higher", "lower"],
    meaning: str,
    unmeasurable: str = NO_INPUTS,
) -> Measure:
    """A Measure; when its value is None, its meaning also says why (`unmeasurable`), so a reader of the
    summary never meets a bare "n/a"."""
    if value is None:
        meaning = f"{meaning} (not measurable: {unmeasurable})"
    return Measure(name=name, value=value, better=better, meaning=meaning)


# --- classification ---------------------------------------------------------------------------------------


def confusion_counts(old: Sequence[str], new: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """counts[i][j]: the inputs whose old label is labels[i] and new label labels[j]."""
    position = {label: i for i, label in enumerate(labels)}
    counts = [[0] * len(labels) for _ in labels]
    for old_label, new_label in zip(old, new, strict=True):
        counts[position[old_label]][position[new_label]] += 1
    return counts


# --- entity spans -----------------------------------------------------------------------------------------

# (type, start, end): an entity as matching sees it (character offsets, end exclusive).
EntitySpan = tuple[str, int, int]


@dataclass(frozen=True)
class EntityMatch:
    """How one input's old entities pair with its new ones: (old position, new position) pairs per kind,
    and the positions left over on each side."""

    unchanged: list[tuple[int, int]]
    relabelled: list[tuple[int, int]]  # the same span, another type
    respanned: list[tuple[int, int]]  # the same type, overlapping, other boundaries
    removed: list[int]  # old positions nothing new matched
    added: list[int]  # new positions nothing old matched

    @property
    def changed(self) -> bool:
        return bool(self.relabelled or self.respanned or self.removed or self.added)


def match_entities(old: Sequence[EntitySpan], new: Sequence[EntitySpan]) -> EntityMatch:
    """Pair each old entity with at most one new one, in three passes so that the closest pairing wins:
    the same (type, start, end) is unchanged; then the same (start, end) with another type is relabelled;
    then the same type over an overlapping span is respanned (the largest overlap first, ties to the earlier
    new entity). What stays unpaired was removed (old) or added (new)."""
    free_new = list(range(len(new)))
    free_old = list(range(len(old)))

    def pair(fits: Callable[[EntitySpan, EntitySpan], bool]) -> list[tuple[int, int]]:
        pairs = []
        for i in list(free_old):
            candidates = [j for j in free_new if fits(old[i], new[j])]
            if candidates:
                j = max(candidates, key=lambda j: (_overlap(old[i], new[j]), -j))
                pairs.append((i, j))
                free_old.remove(i)
                free_new.remove(j)
        return pairs

    unchanged = pair(lambda a, b: a == b)
    relabelled = pair(lambda a, b: a[1:] == b[1:])
    respanned = pair(lambda a, b: a[0] == b[0] and _overlap(a, b) > 0)
    return EntityMatch(unchanged, relabelled, respanned, removed=free_old, added=free_new)


def _overlap(a: EntitySpan, b: EntitySpan) -> int:
    """Characters two spans share (0 when they only touch or are apart)."""
    return max(0, min(a[2], b[2]) - max(a[1], b[1]))


def entity_f1(matched: int, old_count: int, new_count: int) -> float:
    """F1 of the new entities against the old ones from the exact matches: precision matched/new, recall
    matched/old, so F1 = 2·matched / (old + new); 1.0 when neither version found an entity."""
    if old_count + new_count == 0:
        return 1.0
    return 2 * matched / (old_count + new_count)


# --- vectors ----------------------------------------------------------------------------------------------


def vector_matrix(vectors: Sequence[Sequence[float]], which: str) -> np.ndarray:
    """The vectors of one version as rows of a float64 matrix; ValueError when they differ in dimension
    (one model always returns one dimension: anything else is a broken answer set)."""
    dimensions = {len(v) for v in vectors}
    if len(dimensions) > 1:
        raise ValueError(f"the {which} vectors differ in dimension: {sorted(dimensions)}")
    if not vectors:
        return np.zeros((0, 0))
    return np.asarray(vectors, dtype=np.float64)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1; a zero row stays zero (it has no direction, so its cosine with anything
    is 0)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def cosines(old: np.ndarray, new: np.ndarray) -> list[float]:
    """Per row, the cosine similarity of old[i] and new[i] (same shapes), clipped to [-1, 1] against rounding.
    Two zero vectors count as the same (1.0); a zero vector and a non-zero one as unrelated (0.0)."""
    values = np.clip(np.sum(_unit_rows(old) * _unit_rows(new), axis=1), -1.0, 1.0)
    both_zero = ~old.any(axis=1) & ~new.any(axis=1)
    return [float(v) for v in np.where(both_zero, 1.0, values)]


# Rows of the similarity matrix computed at once: bounds memory (about 32 MiB) for long input lists.
_SIMILARITY_CELLS = 1 << 22


def nearest_neighbours(vectors: np.ndarray, k: int) -> list[set[int]]:
    """For each row, the k other rows of highest cosine similarity (ties to the lower row number)."""
    n = len(vectors)
    if not 0 < k < n:
        raise ValueError(f"k must be between 1 and {n - 1} for {n} vectors, got {k}")
    unit = _unit_rows(vectors)
    step = max(1, _SIMILARITY_CELLS // n)
    neighbours: list[set[int]] = []
    for first in range(0, n, step):
        similarity = unit[first : first + step] @ unit.T
        rows = np.arange(len(similarity))
        similarity[rows, rows + first] = -np.inf  # a vector is not its own neighbour
        # A stable sort of the negated similarities keeps equal ones in row order.
        order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
        neighbours.extend({int(j) for j in row} for row in order)
    return neighbours


def neighbour_overlap(old: np.ndarray, new: np.ndarray, k: int) -> float:
    """Mean over inputs of |old neighbours ∩ new neighbours| / k: each version's k nearest neighbours
    computed within its own vectors, so the two versions need not share a dimension."""
    pairs = zip(nearest_neighbours(old, k), nearest_neighbours(new, k), strict=True)
    return math.fsum(len(a & b) / k for a, b in pairs) / len(old)


# --- orders and lists -------------------------------------------------------------------------------------


def spearman_rho(old_order: Sequence[Hashable], new_order: Sequence[Hashable]) -> float | None:
    """Spearman's rank correlation of two orders over the items both contain: the Pearson correlation of
    the items' ranks (each order restricted to the shared items). None with fewer than two shared items."""
    in_new = set(new_order)
    shared = [item for item in dict.fromkeys(old_order) if item in in_new]
    if len(shared) < 2:
        return None
    shared_set = set(shared)
    new_rank = {
        item: rank for rank, item in enumerate(i for i in dict.fromkeys(new_order) if i in shared_set)
    }
    x = np.arange(len(shared), dtype=np.float64)
    y = np.array([new_rank[item] for item in shared], dtype=np.float64)
    # Both are permutations of 0..n-1, so neither has zero variance.
    return float(np.corrcoef(x, y)[0, 1])


def top_k_overlap(old_order: Sequence[Hashable], new_order: Sequence[Hashable], k: int) -> float:
    """|top k of old ∩ top k of new| / k; k = 0 (an empty answer) scores 1.0 when both are empty, else 0.0."""
    if k == 0:
        return float(not old_order and not new_order)
    return len(set(old_order[:k]) & set(new_order[:k])) / k


def set_overlap(old_items: Iterable[Hashable], new_items: Iterable[Hashable]) -> float:
    """|old ∩ new| / the larger of the two sets' sizes; 1.0 when both are empty."""
    old_set, new_set = set(old_items), set(new_items)
    larger = max(len(old_set), len(new_set))
    return len(old_set & new_set) / larger if larger else 1.0


# --- answer texts -----------------------------------------------------------------------------------------


def answers_equal(old: str, new: str) -> bool:
    """Whether two answer texts are the same after SQuAD's normalization (case, punctuation, articles)."""
    return normalize_answer(old) == normalize_answer(new)
