"""A link's impairment (`links[].netem`): the value types with their units, and the whole set as one model.

Each value is text with its unit, as `tc` writes it: times `20ms`, `500us`, `1s`; rates `10mbit`, `512kbit`,
`1gbit`; probabilities `1%`, `0.5%`. `Netem` holds them as numbers (microseconds, kbit/s, percent) and knows
which qdisc carries them: `rate` alone is a `tbf`, anything else a `netem` (with its own `rate` when both).
Every rule and its message is written once here; the config (`components.slice_rules`) and the resource spec
(`vocabulary.specs.LinkShapeSpec`) both use it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, StrictStr, model_validator

from vocabulary.shown import shown

TIME_UNITS = {"us": 1, "ms": 1000, "s": 1_000_000}
RATE_UNITS = {"kbit": 1, "mbit": 1000, "gbit": 1_000_000}
MAX_TIME_US = 60_000_000
"""A minute: longer than any delay a lab link needs."""
MIN_RATE_KBIT = 8
MAX_RATE_KBIT = 100_000_000
"""100gbit."""
KEYS = ("delay", "jitter", "loss", "rate", "corrupt", "duplicate", "reorder")
PERCENT_KEYS = ("loss", "corrupt", "duplicate", "reorder")
NetemOnlyKey = Literal["delay", "jitter", "loss", "corrupt", "duplicate", "reorder"]
NETEM_ONLY_KEYS: tuple[NetemOnlyKey, ...] = ("delay", "jitter", "loss", "corrupt", "duplicate", "reorder")
"""The keys only a `netem` qdisc carries (a `rate` alone is a `tbf`)."""
NEEDS_DELAY = ("jitter", "reorder")
"""netem varies a delay (jitter) and sends some packets ahead of the delayed ones (reorder): both need one."""

_TIME = re.compile(r"^([0-9]{1,9})(us|ms|s)$")
_RATE = re.compile(r"^([0-9]{1,9})(kbit|mbit|gbit)$")
_PERCENT = re.compile(r"^([0-9]{1,3}(?:\.[0-9]{1,4})?)%$")


def time_us(text: str) -> int:
    """`20ms` -> 20000; ValueError naming the value otherwise."""
    m = _TIME.fullmatch(text)
    us = int(m.group(1)) * TIME_UNITS[m.group(2)] if m else 0
    if m is None or not 0 < us <= MAX_TIME_US:
        raise ValueError(
            f"must be a time above 0 and at most 60s, a whole number with its unit (us, ms, s) like "
            f"'20ms', got {shown(text)}"
        )
    return us


def rate_kbit(text: str) -> int:
    """`10mbit` -> 10000; ValueError naming the value otherwise."""
    m = _RATE.fullmatch(text)
    kbit = int(m.group(1)) * RATE_UNITS[m.group(2)] if m else 0
    if m is None or not MIN_RATE_KBIT <= kbit <= MAX_RATE_KBIT:
        raise ValueError(
            f"must be a rate from {MIN_RATE_KBIT}kbit to 100gbit, a whole number with its unit (kbit, mbit, "
            f"gbit) like '10mbit', got {shown(text)}"
        )
    return kbit


def percent(text: str) -> float:
    """`1%` -> 1.0; ValueError naming the value otherwise."""
    m = _PERCENT.fullmatch(text)
    value = float(m.group(1)) if m else 0.0
    if m is None or not 0 < value <= 100:
        raise ValueError(
            f"must be a percentage above 0 and at most 100 (up to 4 decimals) like '1%' or '0.5%', "
            f"got {shown(text)}"
        )
    return value


def _time(text: str) -> str:
    time_us(text)
    return text


def _rate(text: str) -> str:
    rate_kbit(text)
    return text


def _percent(text: str) -> str:
    percent(text)
    return text


Duration = Annotated[StrictStr, AfterValidator(_time)]
Rate = Annotated[StrictStr, AfterValidator(_rate)]
Percent = Annotated[StrictStr, AfterValidator(_percent)]


def format_time(us: int) -> str:
    """The shortest exact text of a time: 100000 -> `100ms`."""
    for unit in ("s", "ms"):
        if us % TIME_UNITS[unit] == 0:
            return f"{us // TIME_UNITS[unit]}{unit}"
    return f"{us}us"


def format_rate(kbit: int) -> str:
    for unit in ("gbit", "mbit"):
        if kbit % RATE_UNITS[unit] == 0:
            return f"{kbit // RATE_UNITS[unit]}{unit}"
    return f"{kbit}kbit"


def format_percent(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".") + "%"


class NetemInput(BaseModel):
    """`links[].netem` as written: every key optional, at least one; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    delay: Duration | None = None
    """Added to every packet, each way (the round trip gets twice the delay)."""
    jitter: Duration | None = None
    """Random variation of the delay (needs `delay`)."""
    loss: Percent | None = None
    rate: Rate | None = None
    corrupt: Percent | None = None
    duplicate: Percent | None = None
    reorder: Percent | None = None
    """Packets sent at once, ahead of the delayed ones (needs `delay`)."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = [f"{key}: needs delay (netem varies or reorders a delay)" for key in NEEDS_DELAY
                    if getattr(self, key) is not None and self.delay is None]  # fmt: skip
        if all(getattr(self, key) is None for key in KEYS):
            problems.append(f"(netem): set at least one of {', '.join(KEYS)}, or remove the key")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def numbers(self) -> Netem:
        """The same set as numbers."""
        return Netem(
            delay_us=time_us(self.delay) if self.delay else None,
            jitter_us=time_us(self.jitter) if self.jitter else None,
            rate_kbit=rate_kbit(self.rate) if self.rate else None,
            **{f"{k}_pct": percent(v) for k in PERCENT_KEYS if (v := getattr(self, k)) is not None},
        )


class Netem(BaseModel):
    """A link's impairment as numbers; `qdisc` says which root qdisc carries it."""

    model_config = ConfigDict(frozen=True)
    delay_us: int | None = None
    jitter_us: int | None = None
    rate_kbit: int | None = None
    loss_pct: float | None = None
    corrupt_pct: float | None = None
    duplicate_pct: float | None = None
    reorder_pct: float | None = None

    @property
    def qdisc(self) -> str:
        """`tbf` for a rate alone, `netem` for anything else."""
        netem_only = ("delay_us", "jitter_us", *(f"{k}_pct" for k in PERCENT_KEYS))
        return "netem" if any(getattr(self, f) is not None for f in netem_only) else "tbf"

    def shown(self) -> dict[str, Any]:
        """The set as the config writes it (canonical units), for outputs and tables."""
        out: dict[str, Any] = {}
        if self.delay_us is not None:
            out["delay"] = format_time(self.delay_us)
        if self.jitter_us is not None:
            out["jitter"] = format_time(self.jitter_us)
        for key in PERCENT_KEYS:
            if (value := getattr(self, f"{key}_pct")) is not None:
                out[key] = format_percent(value)
        if self.rate_kbit is not None:
            out["rate"] = format_rate(self.rate_kbit)
        return out


def summary(shown_set: dict[str, Any]) -> str:
    """`delay 100ms loss 1% rate 10mbit`: a link's impairment on one line."""
    return " ".join(f"{k} {shown_set[k]}" for k in KEYS if k in shown_set)
