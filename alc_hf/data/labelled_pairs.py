"""The one rule every reader of labelled (query, label) pairs applies — the pairs files, BEIR qrels and the
DeepMatcher / WDC tables alike: a pair marked both relevant and not relevant is an error naming both places, and an
exact repeat of a pair (same query, same label, same mark) counts once, with a logged warning that says how many
rows were repeated and where the first one is."""

from __future__ import annotations

import logging
from collections.abc import Callable

from alc_hf.core.query_labels import RaggedIds
from alc_hf.data.formats import DataFormatError

__all__ = ["LabelledPairs"]

logger = logging.getLogger(__name__)

_MARK = {True: "relevant", False: "not relevant"}


class LabelledPairs:
    """Per-query positives and negatives gathered from (query, label, relevant) rows in reading order.

    Queries are numbered in order of first appearance (``query_keys``). ``locate(row)`` names the place of a row
    number (``file:line``) in messages; ``marks`` names the two marks in them: ``("relevant", "not relevant")`` for
    relevance columns and qrels, ``("label 1", "label 0")`` for match tables."""

    def __init__(self, locate: Callable[[int], str], marks: tuple[str, str] | None = None) -> None:
        self.locate = locate
        self.marks = {True: marks[0], False: marks[1]} if marks else _MARK
        self.query_keys: list[str] = []
        self._query_index: dict[str, int] = {}
        self._positives: list[list[int]] = []
        self._negatives: list[list[int]] = []
        self._first_row: dict[tuple[int, int], tuple[bool, int]] = {}
        self.num_repeated = 0
        self._first_repeat: tuple[int, int] | None = None  # (repeating row, row it repeats)

    def add(self, row: int, query_key: str, label: int, label_key: str, relevant: bool) -> int:
        """Record row ``row``; return the query's number (``len(query_keys) - 1`` when the row brought it).

        Raises:
            DataFormatError: the pair was marked the other way on an earlier row (both places named).
        """
        query = self._query_index.get(query_key)
        if query is None:
            query = self._query_index[query_key] = len(self.query_keys)
            self.query_keys.append(query_key)
            self._positives.append([])
            self._negatives.append([])
        earlier_relevant, earlier_row = self._first_row.setdefault((query, label), (relevant, row))
        if earlier_relevant != relevant:
            raise DataFormatError(
                f"{self.locate(row)}: query {query_key!r} and label {label_key!r} marked {self.marks[relevant]}, but "
                f"{self.locate(earlier_row)} marks them {self.marks[earlier_relevant]}: one pair cannot be both"
            )
        if earlier_row == row:
            (self._positives if relevant else self._negatives)[query].append(label)
        else:
            self.num_repeated += 1
            if self._first_repeat is None:
                self._first_repeat = (row, earlier_row)
        return query

    def warn_repeats(self, source: str) -> None:
        """Log how many rows repeated an earlier (query, label, mark) row and were counted once, if any."""
        if self._first_repeat is not None:
            row, earlier = self._first_repeat
            logger.warning(
                "%s: %d row(s) repeat an earlier (query, label) pair with the same mark and count once; the first "
                "is %s, a repeat of %s",
                source,
                self.num_repeated,
                self.locate(row),
                self.locate(earlier),
            )

    def positives(self) -> RaggedIds:
        return RaggedIds.from_lists(self._positives)

    def negatives(self) -> RaggedIds:
        return RaggedIds.from_lists(self._negatives)
