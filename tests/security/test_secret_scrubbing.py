"""Attacks on the secrets of the desk: a notebook, a strategy or a message that prints them, disguised.

Secrets planted in the environment (a broker key in a secret-named variable, the store's password
in ``QLCORE_DB_URL``) are printed, recorded and raised by a real notebook under ``qlcore submit``
and by a scheduled run, written into an audit entry and raised by a strategy in a paper engine; the
permanent records afterwards (the submission, the run, the output notebooks, the audit log, the
engine's events, alerts and status, the store's bytes) must not give back any form of them: as
they are, reversed, spaced out, base64 at any alignment, hex or URL-encoded.
"""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import nbformat
import pytest
import signed
from hypothesis import given, settings
from hypothesis import strategies as st
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from signed_jobs import add_user, approved_job
from sqlalchemy import select
from sqlalchemy.engine import make_url

from qlcore.audit.log import AuditLog
from qlcore.ops.runs import execute_run, list_runs
from qlcore.ops.submissions import get_submission, list_submissions
from qlcore.store.db import connect
from qlcore.store.errors import describe, safe_url
from qlcore.store.scrub import REDACTED, Scrubber, scrubber, secret_values
from qlcore.store.tables import engine_status, events
from qlcore.strategies.base import Strategy

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "brk-7Qx9Zp4wK2Lm"
DB_PASSWORD = "pa55word-Hq8v3"
PLANTED = {"QLCORE_BROKER_API_KEY": API_KEY,
           "QLCORE_DB_URL": f"postgresql+psycopg://desk:{DB_PASSWORD}@127.0.0.1:9/qlcore"}

# the disguises an attacker prints: the same source runs in the notebooks and in this test
FORMS = '''
import base64, json, urllib.parse

def forms(s):
    b = s.encode()
    return {
        "exact": s, "reversed": s[::-1], "spaced": " ".join(s), "dashed": "-".join(s), "dotted": ".".join(s),
        "lines": "\\n".join(s), "reversed spaced": " ".join(s[::-1]), "json": json.dumps({"k": s}),
        "base64": base64.b64encode(b).decode(),
        "base64 at 1": base64.b64encode(b"x" + b + b"yz").decode(),
        "base64 at 2": base64.b64encode(b"xy" + b + b"z").decode(),
        "urlsafe base64 at 1": base64.urlsafe_b64encode(b"\\xfb" + b + b"\\xff").decode(),
        "hex": b.hex(), "HEX": b.hex().upper(), "hex bytes": ":".join(f"{c:02x}" for c in b),
        "escaped hex": "".join(f"\\\\x{c:02x}" for c in b), "url-encoded": urllib.parse.quote(s, safe=""),
        "percent-encoded": "".join(f"%{c:02X}" for c in b),
    }
'''
_ns: dict[str, Any] = {}
exec(FORMS, _ns)
forms = _ns["forms"]


# --- the oracle: can a secret be read back out of a text? ----------------------------------------------
def _b64_leaks(text: str, secret: bytes) -> bool:
    for alphabet, decode in ((r"[A-Za-z0-9+/]{8,}", base64.b64decode), (r"[A-Za-z0-9_-]{8,}", base64.urlsafe_b64decode)):
        for run in re.findall(alphabet, text):
            for shift in range(4):
                chunk = run[shift:]
                chunk = chunk[: len(chunk) - len(chunk) % 4]
                if chunk and secret in decode(chunk):
                    return True
    return False


def _hex_leaks(text: str, secret: bytes) -> bool:
    digits = re.sub(r"\\x|0x|[^0-9A-Fa-f]", "", text)
    return any(secret in bytes.fromhex(digits[i:i + (len(digits) - i) // 2 * 2]) for i in (0, 1))


def leaks(text: str, secret: str) -> list[str]:
    """Which forms of `secret` can be found in `text` (planted forms as written, JSON-escaped or in a repr, any
    base64 alignment, hex digits however separated, percent-decoding)."""
    found = [name for name, form in forms(secret).items()
             if name != "json" and any(f in text for f in (form, json.dumps(form)[1:-1], repr(form)[1:-1]))]
    if _b64_leaks(text, secret.encode()):
        found.append("base64 (decoded)")
    if _hex_leaks(text, secret.encode()):
        found.append("hex (decoded)")
    if "%" in text and secret in urllib.parse.unquote(text):
        found.append("url-decoded")
    return found


def all_leaks(text: str) -> dict[str, list[str]]:
    return {s: found for s in (API_KEY, DB_PASSWORD) if (found := leaks(text, s))}


def notebook_texts(path: Path) -> str:
    """Every string of a notebook as the kernel wrote it (lines joined), and the file's raw text."""
    strings: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            strings.append(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                strings.append(str(k))
                walk(v)
        elif isinstance(value, list):
            if all(isinstance(v, str) for v in value):
                strings.append("\n".join(value))
            for v in value:
                walk(v)

    walk(nbformat.read(os.fspath(path), as_version=4))
    return "\n".join(strings) + "\n" + path.read_text()


def store_bytes(folder: Path, pattern: str) -> str:
    return b"".join(p.read_bytes() for p in folder.glob(pattern)).decode("latin-1")


def audit_texts(url: str) -> tuple[str, list[Any]]:
    entries = AuditLog(url).entries()
    texts = [f"{e.actor}\n{e.subject}\n{e.details}\n" + json.dumps(e.data, ensure_ascii=False) for e in entries]
    return "\n".join(texts) + "\n" + "\n".join(_strings(e.data) for e in entries), entries


def _strings(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\n".join(_strings(v) for v in value.values())
    if isinstance(value, list):
        return "\n".join(_strings(v) for v in value)
    return ""


NOTEBOOK_BODY = FORMS + '''
import os
from qlcore.research.notebook import record
from sqlalchemy.engine import make_url
key = os.environ["QLCORE_BROKER_API_KEY"]
# the first store URL with a password (a scheduled run's QLCORE_DB_URL is the store it is recorded in)
urls = [v for k, v in sorted(os.environ.items()) if k.endswith("_URL") and "://" in v]
password = next(make_url(u).password for u in urls if make_url(u).password)
for secret in (key, password):
    for name, form in forms(secret).items():
        print(name, form)
record("leak", {"key": forms(key), "password": forms(password), "urls": urls})
'''
RAISE = ('raise RuntimeError("broker refused " + " | ".join(forms(key).values()) + " store said "'
         ' + " | ".join(forms(password).values()))\n')


def write_notebook(path: Path) -> Path:
    params = new_code_cell("x = 1\n")
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[new_markdown_cell("# leaky"), params, new_code_cell(NOTEBOOK_BODY), new_code_cell(RAISE)])
    nbformat.write(nb, path)
    return path


# --- the scrubber ---------------------------------------------------------------------------------------
def test_the_planted_forms_are_found_by_the_oracle_before_scrubbing():
    for name, form in forms(API_KEY).items():
        assert leaks(f"text before {form} text after", API_KEY), name  # the oracle sees every planted form


@pytest.mark.parametrize("name", sorted(forms(API_KEY)))
def test_every_disguise_of_a_secret_is_scrubbed_inside_ordinary_text(name):
    form = forms(API_KEY)[name]
    clean = Scrubber([API_KEY]).text(f"the broker said: {form} (retrying)")
    assert leaks(clean, API_KEY) == []
    assert REDACTED in clean and clean.startswith("the broker said: ") and clean.endswith(" (retrying)")


def test_a_secret_base64_encoded_inside_a_longer_text_is_found_at_every_alignment():
    scrub = Scrubber([API_KEY])
    for before in range(6):
        for after in range(4):
            data = os.urandom(before) + API_KEY.encode() + os.urandom(after)
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                clean = scrub.text("blob=" + encode(data).decode())
                assert leaks(clean, API_KEY) == [], (before, after)


def test_short_values_are_scrubbed_only_as_they_are():
    scrub = Scrubber(["k3y5"])
    assert scrub.text("k3y5 and 5y3k and k 3 y 5") == "*** and 5y3k and k 3 y 5"


def test_ordinary_text_is_left_as_it_is():
    scrub = Scrubber([API_KEY, DB_PASSWORD])
    ordinary = [
        "order O-17 filled 100 IBM @ 131.25; fee 1.00",
        "cell 3: RuntimeError: boom: told to fail",
        json.dumps({"equity": "100123.45", "hash": "9f" * 32, "ids": ["O-1", "O-2"]}),
        base64.b64encode(bytes(range(256))).decode(),
        "Traceback (most recent call last):\n  File \"<cell>\", line 1\n    raise ValueError('x')\n",
        "brk-7Qx9 Zp4w",  # half a secret is not the secret
    ]
    for text in ordinary:
        assert scrub.text(text) == text


SECRET_CHARS = st.characters(blacklist_categories=("Cs", "Cc"))


@settings(max_examples=150)
@given(secret=st.text(SECRET_CHARS, min_size=6, max_size=24), before=st.text(max_size=40),
       after=st.text(max_size=40), name=st.sampled_from(sorted(forms("abcdef"))))
def test_no_disguise_of_a_random_secret_survives_in_random_text(secret, before, after, name):
    clean = Scrubber([secret]).text(before + forms(secret)[name] + after)
    assert leaks(clean, secret) == []


@settings(max_examples=150)
@given(secret=st.text("abcdefghijklm0123456789", min_size=8, max_size=24),
       text=st.text("nopqrstuvwxyzNOPQRSTUVWXYZ \n,.;:!?()[]{}'\"<>", max_size=200))
def test_text_without_the_secret_is_unchanged(secret, text):
    assert Scrubber([secret]).text(text) == text


def test_the_process_secrets_are_the_secret_named_variables_and_every_url_password(tmp_path):
    env = {**PLANTED, "QLCORE_TEST_PG_URL": "postgresql+psycopg://u:pg-S3cret%40x@h/db",
           "BACKUP_URL": "https://ops:backup-Pw-991@backups.example/x", "PLAIN_URL": "postgresql://u@h/db",
           "FEED_URL": "postgresql+psycopg://u@h/db?password=q-Pa55-7", "DB_PASS": "hunter22",
           "BYPASS_RISK": "nothing-secret", "QLCORE_DATA_DIR": str(tmp_path)}
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "audit.key").write_text("ab" * 32 + "\n")
    (tmp_path / "secrets" / "audit.key").chmod(0o600)
    (tmp_path / "secrets" / "readable").write_text("not-a-secret-file")  # others may read it: not a secret file
    (tmp_path / "secrets" / "readable").chmod(0o644)
    values = set(secret_values(env))
    assert {API_KEY, DB_PASSWORD, "pg-S3cret@x", "pg-S3cret%40x", "backup-Pw-991", "q-Pa55-7", "hunter22",
            "ab" * 32} <= values
    assert "nothing-secret" not in values and "not-a-secret-file" not in values


def test_a_store_url_is_shown_and_described_without_its_password():
    url = f"postgresql+psycopg://desk:{DB_PASSWORD}@127.0.0.1:9/qlcore?password={DB_PASSWORD}&sslmode=require"
    assert DB_PASSWORD not in safe_url(url) and "sslmode=require" in safe_url(url)

    class Refused(Exception):
        pass

    said = describe(Refused(f"connection to {url} failed: connection refused"), url)
    assert all_leaks(said) == {} and "no PostgreSQL server answers" in said


# --- every path into a permanent record -------------------------------------------------------------------
def test_a_notebook_under_qlcore_submit_leaves_no_form_of_a_secret_in_any_record(tmp_path, monkeypatch):
    monkeypatch.setenv("QLCORE_DATA_DIR", str(tmp_path / "data"))  # the audit key the submission used
    nb = write_notebook(tmp_path / "leaky.ipynb")
    url = f"sqlite:///{tmp_path / 'q.db'}"
    add_user(tmp_path / "data", "alice")  # the author, with her signing key in the data folder
    env = {**os.environ, **PLANTED, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "qlcore.cli", "submit", str(nb), "--user", "alice", "--db", url],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr  # the notebook's last cell raises
    (sub,) = list_submissions(db=url)
    sub = get_submission(sub.id, db=url)
    assert sub.status == "failed" and sub.error.startswith("cell 3: RuntimeError: broker refused ")
    assert REDACTED in sub.error and sub.results is not None and REDACTED in json.dumps(sub.results)
    assert set(sub.results["leak"]["key"]) == set(forms(API_KEY))  # the notebook did get the secrets

    assert all_leaks(sub.error) == {}
    assert all_leaks(json.dumps(sub.results)) == {} and all_leaks(_strings(sub.results)) == {}
    output = Path(sub.output_path)
    assert output.is_file() and all_leaks(notebook_texts(output)) == {}
    assert "broker refused" in notebook_texts(output)  # the archive still shows what happened
    audited, entries = audit_texts(url)
    assert "submission.failed" in [e.action for e in entries] and all_leaks(audited) == {}
    assert AuditLog(url).verify().ok
    assert all_leaks(store_bytes(tmp_path, "q.db*")) == {}  # the database and its WAL, byte for byte
    assert all_leaks(done.stdout + done.stderr) == {}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_scheduled_run_leaves_no_form_of_a_secret_in_its_record_archive_or_audit(backend, tmp_path, monkeypatch,
                                                                                     request):
    monkeypatch.setenv("QLCORE_BROKER_API_KEY", API_KEY)
    monkeypatch.setenv("QLCORE_AUDIT_ANCHORS", str(tmp_path / "anchors"))
    if backend == "sqlite":  # the run's QLCORE_DB_URL is its SQLite file: the password is another store's
        url = f"sqlite:///{tmp_path / 'q.db'}"
        monkeypatch.setenv("QLCORE_REPLICA_URL", PLANTED["QLCORE_DB_URL"])
    else:  # the run's own store, password and all, handed to the notebook as QLCORE_DB_URL
        url = make_url(request.getfixturevalue("pg_url")).set(password=DB_PASSWORD).render_as_string(
            hide_password=False)
        monkeypatch.setenv("QLCORE_DB_URL", url)
    nb = write_notebook(tmp_path / "leaky.ipynb")
    approved_job(tmp_path, nb, "leaky", db=url)  # submitted by alice, approved by bob: signed, copied
    run = execute_run("leaky", schedules_dir=tmp_path / "schedules", db=url, data_dir=tmp_path)
    assert run.status == "failed" and run.failing_cell == 3 and "broker refused" in run.error
    assert all_leaks(run.error) == {} and all_leaks(repr(list_runs(db=url))) == {}
    output = Path(run.output_path)
    assert all_leaks(notebook_texts(output)) == {} and REDACTED in output.read_text()
    audited, entries = audit_texts(url)
    assert "job.run_failed" in [e.action for e in entries] and all_leaks(audited) == {}
    assert AuditLog(url).verify().ok
    if backend == "sqlite":
        assert all_leaks(store_bytes(tmp_path, "q.db*")) == {}
    assert not list((tmp_path / "runs" / ".work").glob("*"))  # the run's folder (stderr, outcome) is gone


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_audit_entry_keeps_no_form_of_a_secret_and_still_verifies(backend, tmp_path, monkeypatch, request):
    for name, value in PLANTED.items():
        monkeypatch.setenv(name, value)
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'q.db'}"
    else:  # the store's own password, given with its URL only (not in the environment)
        url = make_url(request.getfixturevalue("pg_url")).set(password="pg-Only-In-The-Url-77").render_as_string(
            hide_password=False)
    monkeypatch.setenv("QLCORE_AUDIT_ANCHORS", str(tmp_path / "anchors"))
    log = AuditLog(url)
    details = {"note": forms(API_KEY), "nested": [{"why": list(forms(DB_PASSWORD).values())}],
               forms(API_KEY)["exact"]: "a key that is a secret", "url": PLANTED["QLCORE_DB_URL"], "qty": 10,
               "store": url}
    log.record(f"user:{API_KEY}", "note.added", f"notes/{DB_PASSWORD}", details)
    audited, entries = audit_texts(url)
    assert all_leaks(audited) == {} and leaks(audited, "pg-Only-In-The-Url-77") == []
    (entry,) = entries
    assert entry.actor == f"user:{REDACTED}" and entry.subject == f"notes/{REDACTED}"
    assert entry.data["qty"] == 10 and entry.data[REDACTED] == "a key that is a secret"
    assert entry.data["url"] == f"postgresql+psycopg://desk:{REDACTED}@127.0.0.1:9/qlcore"
    assert AuditLog(url).verify().ok
    if backend == "sqlite":
        assert all_leaks(store_bytes(tmp_path, "q.db*")) == {}


class LeakyStrategy(Strategy):
    """Raises with the broker key, disguised, on its first bar."""

    name = "leaky"

    def on_bar(self, bar: Any) -> None:
        key = os.environ["QLCORE_BROKER_API_KEY"]
        raise RuntimeError("broker refused " + " | ".join(forms(key).values()))


def test_an_engine_alert_event_and_status_keep_no_form_of_a_secret(tmp_path, monkeypatch):
    from qlcore.engine.service import EngineConfig, EngineService

    for name, value in PLANTED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("QLCORE_AUDIT_ANCHORS", str(tmp_path / "anchors"))
    monkeypatch.setenv("QLCORE_STRATEGY_MODULES", __name__)  # the leaky strategy's module, registered
    url = f"sqlite:///{tmp_path / 'q.db'}"
    engine = EngineService(EngineConfig(engine_id="t", url=url, venue_path=tmp_path / "venue.sqlite",
                                        symbols=("AAPL",), speed=1000.0, command_poll_s=0.0))
    engine.start()
    try:
        queue = signed.queue(url)
        cid = queue.submit("quant", "strategy.deploy",
                           {"strategy_id": "leaky", "strategy": f"{__name__}:LeakyStrategy"}, target="t")
        for _ in range(6):
            engine.step()
        engine.alert("error", "broker", f"login refused for key {API_KEY} on {PLANTED['QLCORE_DB_URL']}")
        engine._beat(force=True)
        deployed = queue.status(cid)
    finally:
        engine.shutdown()
    failed = [a for a in engine.alerts if a["source"] == "strategies"]
    assert failed and "leaky FAILED" in failed[0]["message"] and "broker refused" in failed[0]["message"]
    assert all_leaks(json.dumps(engine.alerts)) == {} and all_leaks(deployed.reason or "") == {}
    with connect(url).connect() as conn:
        stored = [r.payload for r in conn.execute(select(events.c.payload))]
        status = [r.snapshot for r in conn.execute(select(engine_status.c.snapshot))]
    assert any("broker refused" in p for p in stored) and all_leaks("\n".join(stored)) == {}
    assert any("login refused for key ***" in s for s in status) and all_leaks("\n".join(status)) == {}
    audited, _ = audit_texts(url)
    assert "broker refused" in audited and all_leaks(audited) == {}
    assert all_leaks(store_bytes(tmp_path, "q.db*")) == {}


def test_the_scrubber_of_the_process_follows_its_environment(monkeypatch):
    monkeypatch.delenv("QLCORE_BROKER_API_KEY", raising=False)
    before = scrubber()
    monkeypatch.setenv("QLCORE_BROKER_API_KEY", API_KEY)
    assert API_KEY not in before.secrets and API_KEY in scrubber().secrets


def test_a_secret_of_punctuation_is_scrubbed_without_blowing_up_on_a_long_text():
    secret = "!-" * 10
    near_misses = ("!-" * 9 + "!a") * 500  # every position almost matches
    assert Scrubber([secret]).text(near_misses) == near_misses
    assert Scrubber([secret]).text("x " + " ".join(secret) + " y") == f"x {REDACTED} y"
