"""examples/nginx/stemedb.conf in a real nginx in front of a real stemedb-api.

nginx runs in the foreground with its prefix, pid file, logs and temporary files
in a temporary directory, listening on free loopback ports only. The test uses a
self-signed certificate made with openssl for 127.0.0.1.
"""

import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from claims import expected_hash, signed, text
from node import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "nginx", "stemedb.conf")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

pytestmark = pytest.mark.skipif(
    not os.access(NGINX, os.X_OK) or shutil.which("openssl") is None,
    reason="nginx and openssl are needed (make deps installs them)")


def make_certificate(directory):
    cert = os.path.join(directory, "stemedb.crt")
    key = os.path.join(directory, "stemedb.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


def site_config(api_port, https_port, http_port, cert, key):
    """Return the example with loopback ports and the test certificate."""
    with open(EXAMPLE) as f:
        config = f.read()
    replacements = [
        (r"server 127\.0\.0\.1:18180;", f"server 127.0.0.1:{api_port};"),
        (r"listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
        (r"listen 80;", f"listen 127.0.0.1:{http_port};"),
        (r"\n\s*listen \[::\]:\d+( ssl)?;", ""),
        (r"/etc/nginx/tls/stemedb\.crt", cert),
        (r"/etc/nginx/tls/stemedb\.key", key),
    ]
    for pattern, replacement in replacements:
        config, count = re.subn(pattern, replacement, config)
        assert count >= 1, f"pattern {pattern!r} not found in {EXAMPLE}"
    return config


def main_config(prefix, site_path):
    return f"""daemon off;
worker_processes 1;
user root;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {site_path};
}}
"""


def wait_listening(port, process, prefix, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    with open(os.path.join(prefix, "error.log")) as f:
        raise AssertionError(f"nginx is not listening on {port}:\n{f.read()}")


@pytest.fixture(scope="module")
def front(shared_node, tmp_path_factory):
    """Start nginx with the example config; yield (https_port, cafile, http_port)."""
    prefix = str(tmp_path_factory.mktemp("nginx"))
    cert, key = make_certificate(prefix)
    https_port, http_port = free_port(), free_port()
    site_path = os.path.join(prefix, "stemedb.conf")
    with open(site_path, "w") as f:
        f.write(site_config(shared_node.port, https_port, http_port, cert, key))
    conf_path = os.path.join(prefix, "nginx.conf")
    with open(conf_path, "w") as f:
        f.write(main_config(prefix, site_path))

    process = subprocess.Popen([NGINX, "-p", prefix, "-e", os.path.join(prefix, "error.log"),
                                "-c", conf_path], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_listening(https_port, process, prefix)
        yield https_port, cert, http_port
    finally:
        process.terminate()
        process.wait(timeout=15)


def tls13_context(cafile):
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


def https_request(front, method, path, body=None):
    """Return (status, body, TLS version) of one request through nginx."""
    port, cafile, _ = front
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=20,
                                             context=tls13_context(cafile))
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode(), connection.sock.version()
    finally:
        connection.close()


def test_signed_write_and_read_over_tls13(front):
    claim = signed(1, "nginx/tls", "capital", text("Sucre"))
    status, body, version = https_request(front, "POST", "/v1/assert", json.dumps(claim))
    assert version == "TLSv1.3", f"negotiated {version}"
    assert status == 201, f"POST /v1/assert through nginx: {status} {body}"
    digest = json.loads(body)["hash"]
    assert digest == expected_hash(claim), body

    status, body, _ = https_request(front, "GET", f"/v1/assertions/{digest}")
    assert status == 200, f"GET through nginx: {status} {body}"
    assert json.loads(body)["object"]["value"] == "Sucre", body


def test_keepalive_serves_several_requests(front):
    port, cafile, _ = front
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=20,
                                             context=tls13_context(cafile))
    try:
        for i in range(3):
            connection.request("GET", "/v1/health")
            response = connection.getresponse()
            body = response.read().decode()
            assert response.status == 200, f"request {i}: {response.status} {body}"
    finally:
        connection.close()


def test_tls12_client_rejected(front):
    port, cafile, _ = front
    context = ssl.create_default_context(cafile=cafile)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError) as error:
            context.wrap_socket(raw, server_hostname="127.0.0.1")
    assert "version" in str(error.value).lower(), f"handshake error: {error.value}"


@pytest.mark.parametrize("path", [
    "/v1/admin/compact",
    "/v1/admin/backup",
    "//v1/admin/compact",
    "/v1/./admin/compact",
    "/v1%2Fadmin/compact",
    "/v1/%61dmin/compact",
    "/metrics",
    "/metrics?name=x",
])
def test_admin_and_metrics_forbidden(front, path):
    status, body, _ = https_request(front, "POST" if "admin" in path else "GET", path)
    assert status == 403, f"{path} through nginx: {status} {body}"
    assert json.loads(body)["error"]["code"] == "forbidden", body


def test_plain_http_redirects(front):
    _, _, http_port = front
    connection = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
    try:
        connection.request("GET", "/v1/health")
        response = connection.getresponse()
        assert response.status == 301, f"plain HTTP: {response.status}"
        location = response.getheader("Location")
        assert location.startswith("https://"), f"Location: {location}"
    finally:
        connection.close()
