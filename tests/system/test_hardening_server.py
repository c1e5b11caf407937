"""The real server against slow, hung-up and cut-off clients."""

import socket
import time
import urllib.request

from digits.imaging.png import encode
from digits.training.report import phone_photo
from tests.helpers import SERVER_TIMEOUT_S


def raw_request(url: str, head: bytes, body: bytes, close_early: bool) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=SERVER_TIMEOUT_S + 5) as s:
        s.sendall(head + body)
        if close_early:
            return b""
        return s.recv(65536)


def test_clients_that_hang_up_while_their_number_is_read_leave_the_worker_free(server, seven):
    """The worker notices each hang-up once and drops that request: it never spins on the closed connection."""
    photo = phone_photo(seven)
    head = (f"POST /predict/number HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(photo)}\r\n\r\n").encode()  # fmt: skip
    for _ in range(4):
        raw_request(server, head, photo, close_early=True)
    for _ in range(3):
        with urllib.request.urlopen(server + "/healthz", timeout=5) as r:
            assert r.status == 200


def test_slowloris_upload_gets_408_from_the_real_server(server):
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
    start = time.monotonic()
    answer = raw_request(server, head, b"\x89PNG", close_early=False)
    assert answer.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - start < SERVER_TIMEOUT_S + 3


def test_incomplete_bodies_and_dropped_connections_leave_the_server_healthy(server, seven):
    png = encode(seven)
    head = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=zz\r\n"
        b"Content-Length: 5000\r\n\r\n"
    )
    for _ in range(20):
        raw_request(
            server,
            head,
            b'--zz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n' + png[:50],
            close_early=True,
        )
    with urllib.request.urlopen(server + "/healthz", timeout=5) as r:
        assert r.status == 200
    request = urllib.request.Request(server + "/predict", data=png, headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(request, timeout=5) as r:
        assert r.status == 200
        assert b'"digit":7' in r.read()
