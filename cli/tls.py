"""A certificate for serving the standalone API over HTTPS on this machine.

Clients that only speak https (the TensorBay SDK among them) can then talk to a local Bayport:
a private CA is generated once per data folder, and it signs a server certificate for
`localhost`, `127.0.0.1` and `::1`. Point clients at the CA file (`REQUESTS_CA_BUNDLE` for
requests, `SSL_CERT_FILE` for httpx and most others): nothing is added to the system's trust
store, and the CA's key never leaves the folder (mode 0600).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_HOSTS = ("localhost",)
_ADDRESSES = ("127.0.0.1", "::1")
# The server certificate is made anew when less than this is left of it.
_RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class LocalTLS:
    ca_file: Path  # the CA certificate: what clients trust
    cert_file: Path  # the server's certificate chain
    key_file: Path  # the server's private key


def local_tls(folder: Path) -> LocalTLS:
    """The CA and server certificate kept in `folder`, made on first use (the server's is
    made again when it nears its end, signed by the same CA)."""
    folder.mkdir(parents=True, exist_ok=True)
    tls = LocalTLS(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    ca_key_file = folder / "ca-key.pem"
    if not (tls.ca_file.exists() and ca_key_file.exists()):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bayport local CA")])
        ca = (
            _builder(name, name, ca_key.public_key(), days=3650)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
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
            .sign(ca_key, hashes.SHA256())
        )
        _write_key(ca_key_file, ca_key)
        tls.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        tls.cert_file.unlink(missing_ok=True)
    if not tls.cert_file.exists() or _expiring(tls.cert_file):
        _sign_server(tls, ca_key_file)
    return tls


def _sign_server(tls: LocalTLS, ca_key_file: Path) -> None:
    ca = x509.load_pem_x509_certificate(tls.ca_file.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_file.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in _HOSTS]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in _ADDRESSES]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (
        _builder(subject, ca.subject, key.public_key(), days=397)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(tls.key_file, key)
    tls.cert_file.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, *, days: int
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _expiring(cert_file: Path) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except ValueError:
        return True
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    return left < _RENEW_BEFORE
