"""A store's TLS certificates: a private certificate authority (or the chain's, given as files),
the broker's and the web app's server certificate, and optional client certificates for MQTT
users.

    paths = write_store_certs(Path("certs"), "bj-chaoyang-01", hosts=["broker.local"],
                              clients=["bj-chaoyang-01-agent"])

Keys are ECDSA P-256 (every TLS 1.2+ client we talk to accepts them, and they are made in
microseconds); files holding a private key are written with mode 0600. Server certificates name
``localhost``, ``127.0.0.1`` and ``::1`` besides the hosts given, so loopback clients verify too.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from storeedge.errors import ConfigError

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey
LOOPBACK = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class StoreCerts:
    """Where ``write_store_certs`` put each file."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    ca_key: Path | None = None  # None when the chain's CA signed (its key stays where it was)
    clients: dict[str, tuple[Path, Path]] = field(default_factory=dict)  # name -> (cert, key)


def _name(common_name: str, store_id: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "storeedge"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, store_id),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _now() -> dt.datetime:
    # A minute back: a client whose clock runs slightly behind still accepts a fresh cert.
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)


def make_ca(store_id: str, days: int = 3650) -> tuple[PrivateKey, x509.Certificate]:
    """A self-signed CA for one store: it signs certificates, nothing else."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"storeedge {store_id} CA", store_id)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(_now()).not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(ca_key: PrivateKey, ca_cert: x509.Certificate, common_name: str, store_id: str, *,
          hosts: tuple[str, ...] = (), client: bool = False,
          days: int = 825) -> tuple[PrivateKey, x509.Certificate]:
    """A leaf certificate signed by the CA: a server's (``hosts`` as subject alternative names)
    or, with ``client``, a client's whose common name is its MQTT user name."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder().subject_name(_name(common_name, store_id))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now()).not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )
    if not client:
        names: list[x509.GeneralName] = []
        for host in dict.fromkeys((*hosts, *LOOPBACK)):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


def _pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_ca(cert_file: Path, key_file: Path) -> tuple[PrivateKey, x509.Certificate]:
    """The chain's CA from PEM files; ConfigError naming the file that is wrong."""
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(str(cert_file), "<file>", f"not a readable PEM certificate: {exc}") \
            from exc
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(str(key_file), "<file>",
                          f"not a readable unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(str(key_file), "<file>", "the CA key must be an EC key")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise ConfigError(str(key_file), "<file>", f"this key does not belong to {cert_file}")
    return key, cert


def write_store_certs(out: Path, store_id: str, *, hosts: list[str] | tuple[str, ...] = (),
                      clients: list[str] | tuple[str, ...] = (),
                      ca_cert_file: Path | None = None,
                      ca_key_file: Path | None = None) -> StoreCerts:
    """Write ``ca.crt`` (and ``ca.key`` when we made the CA), ``server.crt``/``server.key`` and
    ``clients/{name}.crt``/``.key`` under ``out``. With ``ca_cert_file`` and ``ca_key_file``
    the chain's CA signs and its key is not copied."""
    if (ca_cert_file is None) != (ca_key_file is None):
        raise ConfigError("<command line>", "--ca-cert/--ca-key", "give both or neither")
    ca_key_path: Path | None = None
    if ca_cert_file is not None and ca_key_file is not None:
        ca_key, ca_cert = load_ca(ca_cert_file, ca_key_file)
    else:
        ca_key, ca_cert = make_ca(store_id)
        ca_key_path = _write(out / "ca.key", _pem_key(ca_key), private=True)
    ca_path = _write(out / "ca.crt", _pem_cert(ca_cert))
    key, cert = issue(ca_key, ca_cert, hosts[0] if hosts else "localhost", store_id,
                      hosts=tuple(hosts))
    server_key = _write(out / "server.key", _pem_key(key), private=True)
    server_cert = _write(out / "server.crt", _pem_cert(cert))
    issued: dict[str, tuple[Path, Path]] = {}
    for name in clients:
        key, cert = issue(ca_key, ca_cert, name, store_id, client=True)
        issued[name] = (_write(out / "clients" / f"{name}.crt", _pem_cert(cert)),
                        _write(out / "clients" / f"{name}.key", _pem_key(key), private=True))
    return StoreCerts(ca_path, server_cert, server_key, ca_key_path, issued)
