"""A throwaway PKI for the test control plane and for loopback HTTPS servers in tests.

Keys are ECDSA P-256: generating one takes microseconds where RSA-2048 takes tens of
milliseconds, and kube-apiserver accepts them everywhere, service-account signing included.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateAuthority", "KeyPair", "write_signing_key"]

_VALIDITY = datetime.timedelta(days=7)


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A certificate and its key, both PEM, written to ``cert_file`` and ``key_file``."""

    cert_pem: bytes
    key_pem: bytes
    cert_file: Path
    key_file: Path


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


class CertificateAuthority:
    """A self-signed CA that issues serving and client certificates into ``directory``."""

    __slots__ = ("_cert", "_key", "cert_file", "cert_pem", "directory", "name")

    def __init__(self, directory: Path, name: str = "kantaloupe-test-ca") -> None:
        self.directory = directory
        self.name = name
        self._key = _new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem = self._cert.public_bytes(serialization.Encoding.PEM)
        self.cert_file = directory / f"{name}.crt"
        _write(self.cert_file, self.cert_pem, private=False)
        _write(directory / f"{name}.key", _key_pem(self._key), private=True)

    def issue_server(
        self,
        name: str,
        *,
        dns_names: Sequence[str] = ("localhost",),
        ips: Sequence[str] = ("127.0.0.1",),
    ) -> KeyPair:
        """A serving certificate for ``dns_names`` and ``ips``, written as ``<name>.crt/.key``."""
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        return self._issue(
            name,
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]),
            [ExtendedKeyUsageOID.SERVER_AUTH],
            sans,
        )

    def issue_client(self, name: str, *, user: str, groups: Sequence[str] = ()) -> KeyPair:
        """A client certificate for Kubernetes user ``user`` (CN) in ``groups`` (O)."""
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
        return self._issue(name, x509.Name(attrs), [ExtendedKeyUsageOID.CLIENT_AUTH], [])

    def _issue(
        self,
        name: str,
        subject: x509.Name,
        usages: list[x509.ObjectIdentifier],
        sans: list[x509.GeneralName],
    ) -> KeyPair:
        key = _new_key()
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        pair = KeyPair(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            key_pem=_key_pem(key),
            cert_file=self.directory / f"{name}.crt",
            key_file=self.directory / f"{name}.key",
        )
        _write(pair.cert_file, pair.cert_pem, private=False)
        _write(pair.key_file, pair.key_pem, private=True)
        return pair


def write_signing_key(directory: Path, name: str) -> tuple[Path, Path]:
    """A key pair for signing service-account tokens: (private ``<name>.key``, public ``.pub``)."""
    key = _new_key()
    private, public = directory / f"{name}.key", directory / f"{name}.pub"
    _write(private, _key_pem(key), private=True)
    _write(
        public,
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        private=False,
    )
    return private, public
