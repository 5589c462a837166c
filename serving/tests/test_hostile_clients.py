"""Slow, silent and oversized clients against the real server (started as `make serve` starts
it): they cannot starve the service, and each gets a bounded wait and a clear answer."""

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from serving import gunicorn_conf
from serving.schema import FEATURES

from .server import Server

VOL, PRICE = FEATURES
QUERY = f"/predict?{VOL}=12345&{PRICE}=25"
TRICKLING = 100
SILENT = 100
ANSWER_WITHIN_S = 1.0


@contextmanager
def hostile_connections(server: Server, trickling: int, silent: int) -> Iterator[list]:
    """Hold ``trickling`` connections that send a request line and headers a byte at a time,
    and ``silent`` ones that send nothing; yield the sockets."""
    stop = threading.Event()
    held: list[socket.socket] = []
    try:
        for _ in range(trickling):
            conn = socket.create_connection((server.host, server.port), timeout=5)
            conn.sendall(f"GET {QUERY} HTTP/1.1\r\nHost: {server.host}\r\nX-Slow: ".encode())
            held.append(conn)
        for _ in range(silent):
            held.append(socket.create_connection((server.host, server.port), timeout=5))

        def trickle() -> None:
            while not stop.wait(0.2):
                for conn in held[:trickling]:
                    try:
                        conn.send(b"a")
                    except OSError:
                        pass

        threading.Thread(target=trickle, daemon=True).start()
        time.sleep(0.3)  # let the server take them all in
        yield held
    finally:
        stop.set()
        for conn in held:
            conn.close()


def _still_open(conn: socket.socket) -> bool:
    conn.setblocking(False)
    try:
        return conn.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True  # nothing to read, not closed
    except OSError:
        return False
    finally:
        conn.setblocking(True)


def _timed_get(server: Server, path: str, timeout: float) -> tuple[int | str, float]:
    start = time.perf_counter()
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        status: int | str = response.status
    except OSError as exc:
        status = type(exc).__name__
    finally:
        conn.close()
    return status, time.perf_counter() - start


def check_answers_under_attack(server: Server, requests: int = 10) -> list[tuple]:
    """With :data:`TRICKLING` + :data:`SILENT` hostile connections held, time ``requests``
    well-formed ``GET /predict`` and as many ``GET /health``; each must be 200 within
    :data:`ANSWER_WITHIN_S`. Stops at the first failure (the old setup fails them all)."""
    timings = []
    with hostile_connections(server, TRICKLING, SILENT) as held:
        for path in [QUERY, "/health"] * requests:
            status, seconds = _timed_get(server, path, timeout=2 * ANSWER_WITHIN_S)
            timings.append((path.split("?")[0], status, round(seconds, 3)))
            if status != 200 or seconds >= ANSWER_WITHIN_S:
                break
        still_open = sum(_still_open(conn) for conn in held)
    assert all(status == 200 and s < ANSWER_WITHIN_S for _, status, s in timings), timings
    assert len(timings) == 2 * requests
    # The requests were answered while the hostile connections were held, not after.
    assert still_open >= 0.9 * len(held), f"only {still_open} of {len(held)} still open"
    return timings


def test_slow_and_silent_clients_do_not_starve_the_service(gunicorn_server: Server) -> None:
    check_answers_under_attack(gunicorn_server)


def _raw(server: Server, data: bytes, timeout: float) -> tuple[bytes, float]:
    """Send ``data``, then read until the server closes; the bytes read and the seconds taken."""
    start = time.perf_counter()
    with socket.create_connection((server.host, server.port), timeout=timeout) as conn:
        conn.sendall(data)
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except TimeoutError:
            received += b"<client timeout>"
        except ConnectionResetError:
            pass
    return received, time.perf_counter() - start


def test_slow_requests_get_bounded_waits(gunicorn_server: Server) -> None:
    header_limit, body_limit = gunicorn_conf.keepalive, gunicorn_conf.timeout
    host = gunicorn_server.host.encode()
    cases = {
        "silent": b"",
        "half headers": b"GET /health HTTP/1.1\r\nHost: " + host + b"\r\n",
        "half body": b"POST /predict HTTP/1.1\r\nHost: " + host + b"\r\n"
        b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"vol',
    }
    results: dict[str, tuple[bytes, float]] = {}

    def run(name: str) -> None:
        results[name] = _raw(gunicorn_server, cases[name], timeout=body_limit + 10)

    threads = [threading.Thread(target=run, args=(name,)) for name in cases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for name in ("silent", "half headers"):  # closed without an answer, after keepalive
        received, seconds = results[name]
        assert received == b"", (name, received)
        assert header_limit - 0.5 < seconds < header_limit + 3, (name, seconds)
    received, seconds = results["half body"]
    assert body_limit - 0.5 < seconds < body_limit + 3, seconds
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), received
    assert json.loads(body) == {
        "error": f"request timeout: the request body was not received within {body_limit} s"
    }


def test_oversized_request_lines_and_headers_are_refused(gunicorn_server: Server) -> None:
    host = b"Host: " + gunicorn_server.host.encode() + b"\r\n"
    line_limit = gunicorn_conf.limit_request_line
    long_line = b"GET /predict?" + b"a" * line_limit + b" HTTP/1.1\r\n" + host + b"\r\n"
    received, _ = _raw(gunicorn_server, long_line, timeout=10)
    assert received.startswith(b"HTTP/1.1 400 "), received[:200]
    assert b"Request Line is too large" in received

    many = b"".join(b"X-%d: 1\r\n" % i for i in range(gunicorn_conf.limit_request_fields + 1))
    received, _ = _raw(gunicorn_server, b"GET /health HTTP/1.1\r\n" + host + many + b"\r\n", 10)
    assert received.startswith(b"HTTP/1.1 431 "), received[:200]

    big = b"X-Big: " + b"a" * gunicorn_conf.limit_request_field_size + b"\r\n"
    received, _ = _raw(gunicorn_server, b"GET /health HTTP/1.1\r\n" + host + big + b"\r\n", 10)
    assert received.startswith(b"HTTP/1.1 431 "), received[:200]


def test_kept_alive_connections_are_served_then_closed(gunicorn_server: Server) -> None:
    """Many clients that keep their connection open after an answer are each answered, and
    closed once idle for keepalive seconds."""
    conns = []
    for _ in range(200):
        conn = http.client.HTTPConnection(gunicorn_server.host, gunicorn_server.port, timeout=5)
        conn.request("GET", QUERY)
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        conns.append(conn)
    status, seconds = _timed_get(gunicorn_server, "/health", timeout=5)
    assert status == 200 and seconds < ANSWER_WITHIN_S
    time.sleep(gunicorn_conf.keepalive + 1.5)
    assert not any(_still_open(conn.sock) for conn in conns)
    for conn in conns:
        conn.close()
