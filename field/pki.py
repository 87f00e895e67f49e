"""A small certificate authority for a site: the CA, the broker's server certificate, and
client certificates for nodes and edges.

Built on the `cryptography` library. Tests use it to make throw-away certificates; a
site can use it for a first CA (`urbansense creds ca`), though a city would normally
issue from its own PKI: the broker and the nodes only need PEM files either way.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# P-256 keys: small enough for an ESP32's mbedTLS handshake (RSA-2048 costs it seconds).
_CURVE = ec.SECP256R1()


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "urbansense"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class CertificateAuthority:
    """A CA whose key and certificate live in a folder (ca.pem, ca.key)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.files = CertFiles(self.folder / "ca.pem", self.folder / "ca.key")

    @classmethod
    def create(cls, folder: Path, name: str = "urbansense site CA", days: int = 3650) -> CertificateAuthority:
        ca = cls(folder)
        key = ec.generate_private_key(_CURVE)
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        _write(ca.files.key, _key_pem(key), private=True)
        _write(ca.files.cert, cert.public_bytes(serialization.Encoding.PEM))
        return ca

    def _load(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = x509.load_pem_x509_certificate(self.files.cert.read_bytes())
        key = serialization.load_pem_private_key(self.files.key.read_bytes(), password=None)
        return cert, key  # type: ignore[return-value]

    def issue(
        self, common_name: str, out_dir: Path, server_names: list[str] | None = None, days: int = 825
    ) -> CertFiles:
        """Issue a certificate. With server_names it is a server certificate for those DNS
        names / IP addresses; without, a client certificate whose CN is the identity
        (the broker maps it to the username with `use_identity_as_username`)."""
        ca_cert, ca_key = self._load()
        key = ec.generate_private_key(_CURVE)
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server_names:
            alt: list[x509.GeneralName] = []
            for name in server_names:
                try:
                    alt.append(x509.IPAddress(ipaddress.ip_address(name)))
                except ValueError:
                    alt.append(x509.DNSName(name))
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        files = CertFiles(Path(out_dir) / f"{common_name}.pem", Path(out_dir) / f"{common_name}.key")
        _write(files.key, _key_pem(key), private=True)
        _write(files.cert, cert.public_bytes(serialization.Encoding.PEM))
        return files
