"""Text that every database can store.

PostgreSQL refuses a NUL character in any text column (SQLite keeps it), and neither can
encode a lone surrogate (JSON's "\\ud800") as UTF-8. Strings the panel did not choose (what
LXD reports, what a request sent) pass through `storable` before they are written: the odd
characters become visible escapes, so the row is written and shows what was there.
"""

from __future__ import annotations

from typing import Any


def unstorable(text: str) -> bool:
    """True when a database would refuse the text as it is."""
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def storable(text: str) -> str:
    """The text with NUL as the four characters \\x00 and lone surrogates as \\udXXX."""
    if not unstorable(text):
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def storable_data(value: Any) -> Any:
    """The same for every string (keys included) inside JSON-like data."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(str(k)): storable_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_data(item) for item in value]
    return value


def unstorable_anywhere(value: Any) -> bool:
    """True when any string inside JSON-like data (keys included) is unstorable."""
    if isinstance(value, str):
        return unstorable(value)
    if isinstance(value, dict):
        return any(unstorable(str(k)) or unstorable_anywhere(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(unstorable_anywhere(item) for item in value)
    return False
