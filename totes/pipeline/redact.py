"""Passwords out of text: DSNs, error messages and log lines are shown without them.

Everything that can echo a DSN (a connection error, a stage's log line, the alert email,
the ``totes`` command's error line) passes its text through ``redact`` first. Pure
Python (no database driver): the transform Lambda, which ships no psycopg2, uses it too.

These shapes are recognised, wherever they appear in the text:

- libpq keyword/value: ``password=secret``, ``password=with\\ spaces`` or
  ``password='with \\'quotes\\' and spaces'`` (and ``PGPASSWORD=secret``)
- URIs: ``postgresql://user:secret@host/db`` and ``...?password=secret``
- JSON, as a secret holds it: ``"password": "secret"``, also within a JSON string
  (``\\"password\\": \\"secret\\"``) and as Python prints a dict (``'password': 'secret'``)

Redaction errs on the side of hiding too much: an unquoted value is hidden up to the next
white space, so a URI's query after the password goes too.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"

# Not only at a word's start: PGPASSWORD=, db_password= go too.
_KEYWORD = re.compile(r"""(password\s*=\s*)('(?:[^'\\]|\\.)*'?|(?:[^\s'\\]|\\.)+)""", re.I)
# The greedy \S* reaches the LAST '@' of the token: a raw '@' in a password hides no tail.
_USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s]*:)(\S*)@", re.IGNORECASE)
_JSON = re.compile(r"""(["']password["']\s*:\s*)(["'])(?:(?!\2)[^\\]|\\.)*\2?""", re.I)
# JSON inside a JSON string (an error's Cause in Step Functions): the quotes are escaped.
_ESCAPED_JSON = re.compile(r"""(\\"password\\"\s*:\s*\\")(?:(?!\\").)*(\\")?""", re.I)
_DSN_PASSWORD = re.compile(r"""\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|(?:[^\s'\\]|\\.)+)""", re.I)
# Shorter literals would hide ordinary words; every shape above is caught regardless.
MIN_LITERAL = 4


def _mask_keyword(match: re.Match[str]) -> str:
    value = match.group(2)
    return match.group(1) + (MASK if value not in ("", "''") else value)


def _mask_userinfo(match: re.Match[str]) -> str:
    return match.group(1) + (MASK if match.group(2) else "") + "@"


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with every password hidden: the known shapes, and each literal in ``secrets``
    (say, the password of the DSN a failed connection used) wherever it appears."""
    text = _KEYWORD.sub(_mask_keyword, text)
    text = _USERINFO.sub(_mask_userinfo, text)
    text = _ESCAPED_JSON.sub(lambda m: f'{m.group(1)}{MASK}\\"', text)
    text = _JSON.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}{m.group(2)}", text)
    for secret in secrets:
        if secret and len(secret) >= MIN_LITERAL:
            text = text.replace(secret, MASK)
    return text


def password_of(dsn: str) -> str | None:
    """The password a DSN carries (key/value or URI form), or None; never raises."""
    if re.match(r"\s*[a-z][a-z0-9+.-]*://", dsn, re.IGNORECASE):  # a URI, not key/value
        if match := re.search(r"""[?&]password=([^\s&]+)""", dsn, re.I):
            return unquote(match.group(1))
    elif match := _DSN_PASSWORD.search(dsn):
        value = match.group(1)
        return re.sub(r"\\(.)", r"\1", value[1:-1] if value.startswith("'") else value)
    if match := re.match(r"[a-z][a-z0-9+.-]*://[^:/@\s]*:([^@\s]*)@", dsn, re.IGNORECASE):
        return unquote(match.group(1)) or None
    return None


def redact_dsn(dsn: str) -> str:
    """A DSN as it may be shown: everything but its password."""
    return redact(str(dsn), password_of(str(dsn)))
