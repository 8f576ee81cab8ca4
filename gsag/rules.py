"""What values a setting accepts beyond its type: a range, a set of choices, list lengths.

One `Rule` per config key lives in `gsag.config.RULES`; the command-line options build theirs
with `gsag.commands.bounded`. Every float must be finite and every int fit a C int, whatever
the rule says, so no value reaches torch, NumPy or the OS unchecked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: The largest int any setting takes (a C int: what torch and the OS accept everywhere).
INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class Rule:
    """The values of one setting: numbers within [low, high] (ends open when asked), one of
    `choices`, lists of one of `lengths` (any length when empty), in order when `increasing`;
    a string must be one of `words` (or, with `sums`, several of them joined by `+`)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] = ()
    lengths: tuple[int, ...] = ()
    nonempty: bool = False
    increasing: bool = False
    words: tuple[str, ...] = ()
    sums: bool = False
    hint: str = ""  # what the value means, said after a refusal

    def text(self) -> str:
        """The rule in words, e.g. "in (0, 1]", ">= 0", "one of sgd, adamw"."""
        parts = [self._value_text()]
        if self.lengths:
            parts.append(f"a list of {' or '.join(map(str, self.lengths))} values")
        if self.nonempty:
            parts.append("at least one value")
        if self.increasing:
            parts.append("in increasing order")
        return ", ".join(p for p in parts if p) or "finite"

    def _value_text(self) -> str:
        number = self._number_text()
        if not self.words:
            return number
        words = f"one of {', '.join(self.words)}" if len(self.words) > 1 else self.words[0]
        if self.sums:
            words += ", or a sum of them joined by +"
        return f"{number}, or {words}" if number else words

    def _number_text(self) -> str:
        if self.choices:
            return f"one of {', '.join(map(str, self.choices))}"
        if self.low is not None and self.high is not None:
            left, right = "(["[not self.low_open], ")]"[not self.high_open]
            return f"in {left}{_num(self.low)}, {_num(self.high)}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {_num(self.low)}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {_num(self.high)}"
        return ""

    def problem(self, value: Any) -> str | None:
        """Why `value` breaks the rule ("must be in (0, 1]"), or None when it is fine."""
        if isinstance(value, (list, tuple)):
            if (self.lengths and len(value) not in self.lengths) or (self.nonempty and not value):
                return f"must be {self.text()}"
            bad = [item for item in value if self._item_problem(item)]
            if bad:
                return f"holds {bad[0]!r}; each value {self._item_problem(bad[0])}"
            if self.increasing and list(value) != sorted(value):
                return f"must be {self.text()}"
            return None
        return self._item_problem(value)

    def _item_problem(self, value: Any) -> str | None:
        if non_finite(value):
            return f"must be a finite number {self._value_text()}".rstrip()
        if self.choices:
            return None if value in self.choices else f"must be {self._value_text()}"
        if isinstance(value, str) and self.words:
            names = [n.strip() for n in value.split("+")] if self.sums else [value]
            known = all(n in self.words for n in names)
            return None if known else f"must be {self._value_text()}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None  # strings and flags: only their type is checked (by the caller)
        low, high = self.low, self.high
        if (low is not None and (value <= low if self.low_open else value < low)) or (
            high is not None and (value >= high if self.high_open else value > high)
        ):
            return f"must be {self._value_text()}"
        if isinstance(value, int) and abs(value) > INT_MAX:
            return f"must be at most {INT_MAX} (2**31-1)"
        return None


def non_finite(value: Any) -> bool:
    """True when `value` is, or holds (in lists and dicts, at any depth), a NaN or infinity."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(non_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(non_finite(v) for v in value)
    return False


def _num(x: float) -> str:
    if x == INT_MAX:
        return "2**31-1"
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else str(x)
