"""`qlcore serve --ssl-certfile/--ssl-keyfile`: HTTPS and wss with the given certificate, and cookies
that a browser never sends over plain HTTP."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from desk_doors import QLCORE, add_users, serve


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def test_serve_over_tls_sets_secure_cookies(tmp_path: Path, requirement) -> None:
    requirement(shutil.which("openssl") is not None, "the openssl command makes the test's certificate")
    cert, key = _self_signed(tmp_path)
    add_users(tmp_path, ("tina",))
    with serve(tmp_path, "--ssl-certfile", str(cert), "--ssl-keyfile", str(key), scheme="https",
               verify=str(cert)) as desk:
        s = desk.session()
        form = s.get(f"{desk.base}/login", timeout=30)
        assert "Secure" in form.headers["Set-Cookie"]  # the XSRF cookie too
        answer = desk.post_login(s, "tina", "tina-trader-pw")
        assert answer.status_code == 302
        cookie = answer.headers["Set-Cookie"]
        assert cookie.startswith("user=") and "Secure" in cookie and "HttpOnly" in cookie
        page = s.get(f"{desk.base}/control", timeout=60)
        assert page.status_code == 200 and page.headers["Strict-Transport-Security"].startswith("max-age=")
        assert f"wss://localhost:{desk.port}" in page.headers["Content-Security-Policy"]
        ws = desk.websocket(desk.page_token(s), s.cookies["user"])
        try:
            assert '"ACK"' in ws.recv()
        finally:
            ws.close()


def test_a_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not needed: refused before it is read\n")
    done = subprocess.run([str(QLCORE), "serve", "--ssl-certfile", str(cert), "--no-browser"], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "QLCORE_DATA_DIR": str(tmp_path)})
    assert done.returncode == 2 and "--ssl-certfile and --ssl-keyfile go together" in done.stderr
