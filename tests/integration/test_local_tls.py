"""HTTPS for the standalone API (cli/tls.py): a CA made per data folder, clients trusting it."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from cli.client import BayportClient
from cli.stack import local_stack
from cli.tls import local_tls


def test_the_ca_is_made_once_and_the_server_certificate_names_this_machine(
    tmp_path: Path,
) -> None:
    first = local_tls(tmp_path / "tls")
    for key in (first.key_file, tmp_path / "tls" / "ca-key.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(first.cert_file.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(a) for a in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}

    ca = first.ca_file.read_bytes()
    server = first.cert_file.read_bytes()
    again = local_tls(tmp_path / "tls")
    assert again.ca_file.read_bytes() == ca and again.cert_file.read_bytes() == server

    first.cert_file.write_text("not a certificate")  # unreadable: made again, same CA
    renewed = local_tls(tmp_path / "tls")
    assert renewed.ca_file.read_bytes() == ca
    assert renewed.cert_file.read_bytes() != server
    context = ssl.create_default_context(cafile=str(renewed.ca_file))
    context.load_cert_chain(renewed.cert_file, renewed.key_file)  # the key fits the chain


def test_the_standalone_api_serves_https_to_clients_that_trust_its_ca(
    tmp_path: Path, redis_url: str
) -> None:
    with local_stack(
        data_dir=tmp_path / "bayport",
        overrides={"BAYPORT_BROKER_URL": redis_url},
        start_workers=False,
        tls=True,
    ) as stack:
        assert stack.url.startswith("https://127.0.0.1:")
        assert stack.ca_file == tmp_path / "bayport" / "tls" / "ca.pem"
        trust = ssl.create_default_context(cafile=str(stack.ca_file))
        trusted = httpx.get(f"{stack.url}/healthz", verify=trust)
        assert trusted.status_code == 200
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{stack.url}/healthz")  # the system's CAs don't know this one
        localhost = stack.url.replace("127.0.0.1", "localhost")
        assert httpx.get(f"{localhost}/healthz", verify=trust).status_code == 200
        with pytest.raises(httpx.HTTPError):  # plain HTTP is not served
            httpx.get(stack.url.replace("https://", "http://") + "/healthz")
        # requests (the TensorBay SDK's client) trusts it through REQUESTS_CA_BUNDLE.
        import requests

        with pytest.MonkeyPatch.context() as env:
            env.setenv("REQUESTS_CA_BUNDLE", str(stack.ca_file))
            assert requests.get(f"{stack.url}/healthz", timeout=10).status_code == 200
        # And Bayport's own CLI client through SSL_CERT_FILE.
        with pytest.MonkeyPatch.context() as env:
            env.setenv("SSL_CERT_FILE", str(stack.ca_file))
            client = BayportClient(stack.url, stack.access_key)
            try:
                assert client.request("GET", "/v1/datasets") == []
            finally:
                client.close()
