"""A stand-in for Kaggle on 127.0.0.1 that the real `kaggle` client talks HTTPS to.

The `kaggle` client (2.x) always calls `https://api.kaggle.com` and has no setting for another
endpoint, but it sends every request through `requests`, which honours `HTTPS_PROXY` and
`REQUESTS_CA_BUNDLE`. So the stand-in is an HTTPS proxy: it answers `CONNECT` for Kaggle's API
host and for the storage host Kaggle redirects downloads to, ends the TLS itself with a
certificate signed by a throwaway CA made for the test, and serves what Kaggle serves:

- `POST /v1/datasets.DatasetApiService/DownloadDataset` on `api.kaggle.com`: HTTP Basic
  authentication with the legacy username and key; 401 (JSON, as Kaggle answers) for other
  credentials; a 302 redirect to a signed storage URL for the dataset;
- `GET` of that URL on `storage.googleapis.com`: the zip, streamed with `Content-Length`, an
  `ETag` and `Accept-Ranges`; `Range` requests (the client's resume) get a 206. The first
  `cut_downloads` downloads send their `Content-Length` and then close the connection halfway;
  with `storage_status` set, storage refuses instead (403: an expired signed URL).

Nothing is forwarded anywhere: every other host and every plain-HTTP request is refused, so a
test that uses the stand-in cannot reach the network. What each request carried is recorded in
`seen` (the user name and whether the key matched, never the key).
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

API_HOST = "api.kaggle.com"
STORAGE_HOST = "storage.googleapis.com"
DOWNLOAD_PATH = "/v1/datasets.DatasetApiService/DownloadDataset"
ETAG = '"standin-archive-1"'
# Connections idle this long are closed, so that no handler thread outlives a test for long.
IDLE_SECONDS = 10.0


@dataclass(frozen=True)
class Seen:
    """One request the stand-in answered."""

    host: str
    method: str
    path: str
    user: str | None = None  # the Basic-auth user name, when there was one
    key_matched: bool | None = None  # whether the Basic-auth key was the expected one
    authorization: bool = False  # whether any Authorization header came with the request
    range: str | None = None
    status: int = 0
    cut: bool = False  # the body was cut off halfway


@dataclass
class Certificates:
    ca: Path  # what the client trusts (REQUESTS_CA_BUNDLE)
    chain: Path  # the server certificate for both hosts
    key: Path


def make_certificates(folder: Path) -> Certificates:
    """A throwaway CA and a certificate it signs for the API and storage hosts."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    validity = (now - dt.timedelta(hours=1), now + dt.timedelta(days=1))

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("etf-pipeline test CA"))
        .issuer_name(name("etf-pipeline test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(name(API_HOST))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(API_HOST), x509.DNSName(STORAGE_HOST)]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    certificates = Certificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    certificates.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    certificates.chain.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    certificates.key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificates


@dataclass
class KaggleStandin:
    """Kaggle's download API for one dataset, behind an HTTPS proxy on 127.0.0.1.

    Use as a context manager; `client_env()` is the environment that sends the `kaggle` client
    (and anything else that uses `requests`) to it.
    """

    folder: Path  # where the certificates go
    dataset: str  # owner/slug
    archive: bytes  # what a download returns
    username: str
    key: str
    cut_downloads: int = 0  # how many downloads (full or resumed) break off halfway
    storage_status: int | None = None  # what storage answers instead of the archive
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.certificates = make_certificates(self.folder)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(self.certificates.chain, self.certificates.key)
        self.last_modified = email.utils.formatdate(usegmt=True)

    @property
    def proxy_url(self) -> str:
        assert self._server is not None, "the stand-in is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def client_env(self) -> dict[str, str | None]:
        """Variables to set (None: to unset) so that `requests` goes through the stand-in and
        trusts its CA."""
        proxy = self.proxy_url
        env: dict[str, str | None] = {
            name: proxy for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
        }
        env.update({name: None for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")})
        env.update(REQUESTS_CA_BUNDLE=str(self.certificates.ca), CURL_CA_BUNDLE=None)
        return env

    def requests_to(self, host: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.host == host]

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def take_cut(self) -> bool:
        """Whether this download is one of those to break off (counts it)."""
        with self._lock:
            if self.cut_downloads > 0:
                self.cut_downloads -= 1
                return True
            return False

    def __enter__(self) -> KaggleStandin:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
        server.daemon_threads = True
        server.standin = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="kaggle-standin")
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)


class _ProxyHandler(BaseHTTPRequestHandler):
    """The proxy side: `CONNECT` to the two hosts becomes a TLS session served by the stand-in."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_SECONDS

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass  # requests are in `seen`; the default writes every line to stderr

    def do_CONNECT(self) -> None:  # noqa: N802 - the base class's naming
        host, _, port = self.path.rpartition(":")
        if host not in (API_HOST, STORAGE_HOST) or port != "443":
            self.send_error(403, "the Kaggle stand-in only answers Kaggle's API and storage")
            self.close_connection = True
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        standin: KaggleStandin = self.server.standin  # type: ignore[attr-defined]
        try:
            tunnel = standin.tls.wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError):
            self.close_connection = True
            return
        _TunnelHandler(tunnel, self.client_address, self.server)
        self.close_connection = True

    def refuse(self) -> None:
        self.send_error(502, "the Kaggle stand-in forwards nothing")
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_HEAD = refuse  # noqa: N815 - plain HTTP is never answered


class _TunnelHandler(BaseHTTPRequestHandler):
    """HTTP inside the TLS tunnel: Kaggle's API and storage."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_SECONDS

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    @property
    def standin(self) -> KaggleStandin:
        return self.server.standin  # type: ignore[attr-defined]

    def host(self) -> str:
        return (self.headers.get("Host") or "").split(":")[0]

    def send_json(self, status: int, payload: dict[str, object]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        host, path = self.host(), urlsplit(self.path).path
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        user, key_matched = self.basic_auth()
        seen = Seen(
            host,
            "POST",
            path,
            user=user,
            key_matched=key_matched,
            authorization="Authorization" in self.headers,
        )
        if host != API_HOST or path != DOWNLOAD_PATH:
            status = 404
            self.send_json(status, {"code": status, "message": "Not found"})
        elif not key_matched or user != self.standin.username:
            status = 401
            self.send_json(status, {"code": status, "message": "Unauthenticated"})
        else:
            request = json.loads(body or b"{}")
            owner, _, slug = self.standin.dataset.partition("/")
            if (request.get("ownerSlug"), request.get("datasetSlug")) != (owner, slug):
                status = 404
                self.send_json(status, {"code": status, "message": "Dataset not found"})
            else:
                status = 302
                self.send_response(status)
                self.send_header(
                    "Location",
                    f"https://{STORAGE_HOST}/kaggle-data-sets/1/{slug}.zip"
                    "?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature=standin",
                )
                self.send_header("Content-Length", "0")
                self.end_headers()
        self.standin.record(_with_status(seen, status))

    def do_GET(self) -> None:  # noqa: N802
        host, path = self.host(), urlsplit(self.path).path
        requested_range = self.headers.get("Range")
        seen = Seen(
            host,
            "GET",
            path,
            authorization="Authorization" in self.headers,
            range=requested_range,
        )
        if host != STORAGE_HOST or not path.startswith("/kaggle-data-sets/"):
            self.send_json(404, {"code": 404, "message": "Not found"})
            self.standin.record(_with_status(seen, 404))
            return
        if self.standin.storage_status is not None:
            status = self.standin.storage_status
            body = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>ExpiredToken</Code></Error>"
            self.send_response(status)
            self.send_header("Content-Type", "application/xml; charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.standin.record(_with_status(seen, status))
            return
        data = self.standin.archive
        start = 0
        if requested_range and self.headers.get("If-Range", ETAG) == ETAG:
            start = int(requested_range.removeprefix("bytes=").split("-")[0])
        body = data[start:]
        status = 206 if start else 200
        self.send_response(status)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Last-Modified", self.standin.last_modified)
        self.send_header("ETag", ETAG)
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        cut = self.standin.take_cut()
        self.standin.record(_with_status(seen, status, cut=cut))
        if not cut:
            self.wfile.write(body)
            return
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True
        try:  # the promised length is not reached: the client sees the connection end
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def basic_auth(self) -> tuple[str | None, bool | None]:
        """The Basic-auth user name and whether the key matched; (None, None) without it."""
        header = self.headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None, None
        try:
            user, _, key = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None, False
        return user, key == self.standin.key


def _with_status(seen: Seen, status: int, cut: bool = False) -> Seen:
    return Seen(**{**seen.__dict__, "status": status, "cut": cut})
