"""How a config value appears in an error message: short, escaped, and never key material.

Every problem that quotes a value the operator (or a slice author) wrote renders it with `shown`: control
characters, NUL bytes and newlines come out escaped (`repr`), long strings and deep or long containers are
cut (with the full length said), and text that looks like a private key is not shown at all.
"""

from __future__ import annotations

import reprlib
import unicodedata
from typing import Any

KEY_MARKERS = ("-----BEGIN", "-----END", "PRIVATE KEY", "b3BlbnNzaC1rZXktdjE")
"""Text that only key material carries (PEM armour; `openssh-key-v1` in base64 opens every OpenSSH key)."""
MAX_PATH_TEXT = 1024
"""No file path an operator writes is longer; longer text in a path field is pasted content."""
MAX_SHOWN = 60
"""Characters of a long string that an error shows."""
KEY_SHOWN = "(text that looks like a private key, not shown)"


def looks_like_key(text: str) -> bool:
    """True for text that carries key material (PEM armour or an OpenSSH key body)."""
    return any(marker in text for marker in KEY_MARKERS)


def looks_like_pasted_key(text: str) -> bool:
    """True for a path field's value that is key text rather than a path: armour, several lines, or longer
    than any path."""
    return looks_like_key(text) or "\n" in text or len(text) > MAX_PATH_TEXT


class _Repr(reprlib.Repr):
    def __init__(self, limit: int = MAX_SHOWN) -> None:
        super().__init__()
        self.limit = limit
        self.maxlevel = 3
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 6
        self.maxlong = 40
        self.maxother = MAX_SHOWN

    def repr_str(self, x: str, level: int) -> str:
        if looks_like_key(x):
            return KEY_SHOWN
        if len(x) <= self.limit:
            return repr(x)
        return f"{x[: self.limit]!r}... ({len(x)} characters)"

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 1000:  # past what str() converts (and what anyone means)
            return f"(an integer of about {int(x.bit_length() * 0.30103)} digits)"
        return super().repr_int(x, level)

    def repr_bytes(self, x: bytes, level: int) -> str:
        return self.repr_str(x.decode("utf-8", "replace"), level)


_REPR = _Repr()
_PATH_REPR = _Repr(MAX_PATH_TEXT)


def shown(value: Any) -> str:
    """`value` as an error shows it (see the module docstring)."""
    try:
        return _REPR.repr(value)
    except Exception:  # a value whose repr fails is still named
        return f"(a {type(value).__name__} value)"


def shown_path(path: Any) -> str:
    """A file path as an error shows it: whole up to `MAX_PATH_TEXT` characters, else like `shown`."""
    return _PATH_REPR.repr(str(path))


def terminal_safe(text: str) -> str:
    """Text from a guest or a host fit for the reader's terminal: carriage returns dropped, newline and tab
    kept, every other control character (C0, DEL, C1) shown in caret notation (`^[`) or as `\\u0085`, so
    escape sequences in it never reach the terminal."""
    out = []
    for ch in text:
        if ch == "\r":
            continue
        if ch in "\n\t" or unicodedata.category(ch) != "Cc":
            out.append(ch)
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append("^" + chr((ord(ch) + 0x40) & 0x7F))
        else:
            out.append(f"\\u{ord(ch):04x}")
    return "".join(out)
