"""The secrets of this process, and scrubbing them out of any text bound for a permanent record.

A process's secrets are the values of environment variables whose names look secret
(`SECRET_NAME`), the password of every URL in the environment that carries one (the store's
``QLCORE_DB_URL`` above all, in its userinfo or as a ``password=`` query parameter), and the
desk's 0600 secret files under the data folder (the audit key, the cookie secret).

`Scrubber` replaces each value with `REDACTED` in the forms a notebook or a message most likely
shows it in: as it is, JSON-escaped, reversed, with separators between its characters (spaces,
dashes, dots, newlines, escaped newlines: up to three between any two), in base64 and urlsafe
base64 (at all three byte alignments, so a value inside a longer encoded text is found too), in
hex (any case, bytes separated or prefixed by ``\\x``, ``0x`` or ``%``) and URL-encoded. Values
shorter than `MIN_DISGUISED` are only replaced as they are: their disguises would match ordinary
text. What it cannot catch is any other transformation (an encryption, a hash, a value split
across two records): a notebook must not be handed secrets it does not need.

Every path into a permanent record goes through here: the audit log (`AuditLog.record`), the
submission's and scheduled runs' errors, results and output notebooks, engine alerts and fault
messages, and store errors (`qlcore.store.errors.describe`).
"""
from __future__ import annotations

import base64
import functools
import json
import os
import re
import stat
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# A name that looks like a credential: of an environment variable (its value is a secret), a notebook
# parameter (refused: secrets travel through the environment), a command's payload key (refused).
# "pass" alone counts as a word of its own ("db_pass"), not inside one ("bypass", "passes").
SECRET_NAME = re.compile(
    r"passw(?:or)?d|passphrase|(?<![a-z])pass(?![a-z])|secret|token|api[_-]?key|private[_-]?key|credential",
    re.IGNORECASE,
)
REDACTED = "***"
MIN_SECRET = 4  # shorter values of secret-named variables are not worth blanking (flags, "1", "no")
MIN_DISGUISED = 6  # shorter values are only blanked as they are
# between two characters of a spaced-out value: up to three non-word characters, or escaped line
# breaks and tabs as a repr or JSON shows them ("b\nr\nk")
_SEP = r"(?:\\[nrt]|[\W_])"
_HEX_SEP = r"[\W_]{0,3}(?:0?[xX])?"  # between two bytes in hex: "70 61", "70:61", "\x70\x61", "%70%61"
_B64_SEP = r"\s{0,2}"  # base64 wrapped at a line length
# a hex digit in either case, spelled out: every branch of the scrubber's pattern then starts with a
# literal, and the regex engine skips positions no disguise can start at (an inline (?i:) stops that)
_HEX = {d: d if d.isdigit() else f"[{d}{d.upper()}]" for d in "0123456789abcdef"}
_MAX_FILE = 4096  # a secret file is small; anything larger under secrets/ is not one


def secret_values(environ: Mapping[str, str] | None = None, *, data_dir: Path | None = None) -> list[str]:
    """The secrets this process knows, longest first: secret-named variables, URL passwords, 0600 files."""
    env = os.environ if environ is None else environ
    found = {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET}
    for value in env.values():
        found.update(url_passwords(value))
    found.update(_secret_files(env, data_dir))
    return sorted((v for v in found if len(v) >= MIN_SECRET), key=lambda v: (-len(v), v))


def url_passwords(text: str) -> list[str]:
    """The password of `text` if it is a URL that carries one (decoded, and as written when encoded)."""
    if "://" not in text or ("@" not in text and "password" not in text.lower()):
        return []
    from sqlalchemy.engine import make_url

    try:
        url = make_url(text.strip())
    except Exception:  # not a URL after all
        return []
    found: list[str] = []
    if url.password:
        found.append(str(url.password))
        userinfo = text.strip().split("://", 1)[1].rsplit("@", 1)[0]
        if ":" in userinfo and "/" not in userinfo:
            found.append(userinfo.split(":", 1)[1])  # as written in the URL: percent-encoded, perhaps
    for key, value in url.query.items():
        if SECRET_NAME.search(key):
            found.extend([value] if isinstance(value, str) else list(value))
    return [v for v in found if v]


def _secret_files(env: Mapping[str, str], data_dir: Path | None) -> set[str]:
    """The stripped contents of the desk's small owner-only secret files (audit key, cookie secret)."""
    if data_dir is None:
        from qlcore.store.db import project_data_dir

        data_dir = Path(env["QLCORE_DATA_DIR"]).expanduser() if env.get("QLCORE_DATA_DIR") else project_data_dir()
    candidates = [data_dir / "cookie-secret"]
    if env.get("QLCORE_AUDIT_KEY_FILE"):
        candidates.append(Path(env["QLCORE_AUDIT_KEY_FILE"]))
    try:
        candidates.extend(p for p in (data_dir / "secrets").iterdir() if not p.name.startswith("."))
    except OSError:
        pass
    found = set()
    for path in candidates:
        try:
            st = path.stat()
            if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) & 0o077 or st.st_size > _MAX_FILE:
                continue
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if len(text) >= MIN_SECRET:
            found.add(text)
    return found


# --- the disguises ------------------------------------------------------------------------------------
def _spaced(value: str) -> str:
    # a gap never takes the character that follows it: with a secret of punctuation ("!!!!!!") the
    # gaps could otherwise share its characters in exponentially many ways before failing
    out = [re.escape(value[0])]
    for c in value[1:]:
        out.append(f"(?:(?!{re.escape(c)}){_SEP}){{0,3}}{re.escape(c)}")
    return "".join(out)


def _b64_core(data: bytes, offset: int, encode: Any) -> str:
    """The characters of `data`'s base64 that depend on `data` alone when it starts `offset` bytes into
    a longer input: what any base64 text containing `data` at that alignment contains."""
    text = encode(b"\0" * offset + data).decode()
    start = -(-8 * offset // 6)  # the first character made of `data`'s bits only
    end = (8 * (offset + len(data))) // 6  # after the last one
    return text[start:end]


def disguises(value: str) -> list[str]:
    """The regular expressions (as text) that find `value` and its common disguises."""
    exact = {value, json.dumps(value)[1:-1]}
    if len(value) < MIN_DISGUISED:
        return [re.escape(v) for v in sorted(exact, key=len, reverse=True)]
    data = value.encode()
    exact |= {urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}
    patterns = [re.escape(v) for v in sorted(exact, key=len, reverse=True)]
    patterns += [_spaced(value), _spaced(value[::-1])]
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for offset in range(3):
            core = _b64_core(data, offset, encode)
            if len(core) >= MIN_DISGUISED:
                patterns.append(_B64_SEP.join(re.escape(c) for c in core))
    patterns.append(_HEX_SEP.join("".join(_HEX[d] for d in f"{b:02x}") for b in data))
    return patterns


class Scrubber:
    """Replaces a fixed set of secrets, in all their disguises, with `REDACTED`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values = sorted({v for v in secrets if v}, key=lambda v: (-len(v), v))
        self.secrets: tuple[str, ...] = tuple(values)
        patterns = [p for v in values for p in disguises(v)]
        self._re = re.compile("|".join(patterns)) if patterns else None

    def __bool__(self) -> bool:
        return self._re is not None

    def found(self, text: str) -> bool:
        """Whether `text` holds any secret in any disguise."""
        return self._re is not None and self._re.search(text) is not None

    def text(self, text: str) -> str:
        """`text` with every secret, in every disguise, replaced."""
        if self._re is None or not text:
            return text
        for _ in range(4):  # a replacement can bring two pieces of a disguise together: look again
            text, n = self._re.subn(REDACTED, text)
            if not n:
                break
        return text

    def value(self, value: Any) -> Any:
        """A JSON-like value with every string in it (keys included) scrubbed; other values as they are."""
        if self._re is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            if value and all(isinstance(v, str) for v in value):
                # lines of one text (a traceback): a secret spread over several lines is found whole
                joined = "\n".join(value)
                clean = self.text(joined)
                return value if clean == joined else clean.split("\n")
            return [self.value(v) for v in value]
        return value

    def notebook(self, path: Path) -> bool:
        """Scrub every text of the notebook file at `path` (sources, outputs, metadata) in place; changed?"""
        if self._re is None:
            return False
        import nbformat

        nb = nbformat.read(os.fspath(path), as_version=4)  # multi-line texts joined, as the kernel wrote them
        clean = self.value(nb)
        if clean == nb:
            return False
        nbformat.write(nbformat.from_dict(clean), os.fspath(path))
        return True


@functools.lru_cache(maxsize=8)
def _compiled(secrets: tuple[str, ...]) -> Scrubber:
    return Scrubber(secrets)


def scrubber(environ: Mapping[str, str] | None = None, *, urls: Iterable[Any] = ()) -> Scrubber:
    """The scrubber of this process's secrets as they are now, and of the passwords of `urls` (the
    store a caller was handed, which need not be in the environment); compiled once per set of secrets."""
    extra = [p for u in urls for p in url_passwords(_plain(u)) if len(p) >= MIN_SECRET]
    return _compiled(tuple(sorted(set(secret_values(environ)) | set(extra))))


def _plain(url: Any) -> str:
    """A URL as text with its password (a SQLAlchemy `URL` prints it masked)."""
    render = getattr(url, "render_as_string", None)
    return render(hide_password=False) if render is not None else str(url)


def scrub(text: str) -> str:
    """`text` without this process's secrets."""
    return scrubber().text(text)


def scrub_value(value: Any) -> Any:
    """A JSON-like value without this process's secrets in any of its strings."""
    return scrubber().value(value)


__all__ = ["MIN_DISGUISED", "MIN_SECRET", "REDACTED", "SECRET_NAME", "Scrubber", "disguises", "scrub", "scrub_value",
           "scrubber", "secret_values", "url_passwords"]
