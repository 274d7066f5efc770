"""TLS on the public port, mutual TLS between the services, and a development PKI.

Settings (all paths to PEM files; see docs/security.md, "TLS and mutual TLS"):

- `WIKIMEM_TLS_CERT`, `WIKIMEM_TLS_KEY`: the orchestrator's public port speaks TLS with this certificate (chain) and
  key. The files are re-read when they change: new connections get the new certificate, no restart.
- `WIKIMEM_INTERNAL_CA`, `WIKIMEM_INTERNAL_CERT`, `WIKIMEM_INTERNAL_KEY`: the internal services (embedder, memory,
  reranker, reader) serve with this certificate and *require* a client certificate signed by the internal CA; the
  services that dial peers (orchestrator, memory) present the same certificate and check the peer's against the CA.
  `WIKIMEM_INTERNAL_SERVER_NAME` overrides the name checked in the peer's certificate (default: the dialled host).

`generate_dev_pki(dir)` writes a fresh internal CA and one certificate per service (what `wikimem serve` does at
start, and what tests use); the CA's private key is never written, so no one can issue more certificates later.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .config import ConfigError

log = logging.getLogger("wikimem.tls")

#: The only service with a public port; the others are internal.
PUBLIC_SERVICE = "orchestrator"
#: Certificates `generate_dev_pki` issues by default: the five services and the launcher (its health checks).
DEV_PKI_NAMES: tuple[str, ...] = ("embedder", "memory", "reranker", "reader", "orchestrator", "launcher")
#: Hosts every development certificate is valid for (loopback).
LOOPBACK_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class TlsConfig:
    """Which TLS a service uses; `TlsConfig()` is plaintext everywhere."""

    #: Certificate and key of the public (orchestrator) port; None: plaintext.
    public: KeyPair | None = None
    #: Internal CA, and this service's certificate and key; None: plaintext between services.
    internal_ca: Path | None = None
    internal: KeyPair | None = None
    #: Name to check in a peer's certificate instead of the dialled host (grpc.ssl_target_name_override).
    internal_server_name: str | None = None

    @property
    def mutual(self) -> bool:
        return self.internal is not None and self.internal_ca is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TlsConfig:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        public = _pair("WIKIMEM_TLS_CERT", get("WIKIMEM_TLS_CERT"), "WIKIMEM_TLS_KEY", get("WIKIMEM_TLS_KEY"))
        names = ("WIKIMEM_INTERNAL_CA", "WIKIMEM_INTERNAL_CERT", "WIKIMEM_INTERNAL_KEY")
        values = [get(name) for name in names]
        internal: KeyPair | None = None
        internal_ca: Path | None = None
        if any(values):
            missing = [name for name, value in zip(names, values, strict=True) if not value]
            if missing:
                raise ConfigError(
                    f"mutual TLS needs all of {', '.join(names)}; {', '.join(missing)} is not set "
                    "(set all three, or none for plaintext between services)"
                )
            internal_ca = _readable(names[0], Path(str(values[0])))
            internal = KeyPair(_readable(names[1], Path(str(values[1]))), _readable(names[2], Path(str(values[2]))))
        config = cls(public, internal_ca, internal, get("WIKIMEM_INTERNAL_SERVER_NAME"))
        config.validate()
        return config

    def validate(self) -> None:
        """Fail fast on a certificate that does not parse or a key that does not match it."""
        if self.public is not None:
            load_pair(self.public, "WIKIMEM_TLS_CERT/WIKIMEM_TLS_KEY")
        if self.internal is not None and self.internal_ca is not None:
            load_pair(self.internal, "WIKIMEM_INTERNAL_CERT/WIKIMEM_INTERNAL_KEY")
            try:
                x509.load_pem_x509_certificates(self.internal_ca.read_bytes())
            except ValueError as exc:
                raise ConfigError(f"WIKIMEM_INTERNAL_CA={self.internal_ca} is not a PEM certificate: {exc}") from None


def _readable(name: str, path: Path) -> Path:
    if not path.is_file() or not os.access(path, os.R_OK):
        raise ConfigError(f"{name}={path}: no such readable file")
    return path


def _pair(cert_name: str, cert: str | None, key_name: str, key: str | None) -> KeyPair | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        missing = cert_name if cert is None else key_name
        raise ConfigError(f"{missing} is not set; TLS needs both {cert_name} and {key_name}")
    return KeyPair(_readable(cert_name, Path(cert)), _readable(key_name, Path(key)))


def load_pair(pair: KeyPair, what: str) -> tuple[bytes, bytes]:
    """(key PEM, certificate chain PEM), checked: both parse and the key belongs to the first certificate."""
    try:
        cert_pem, key_pem = pair.cert.read_bytes(), pair.key.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {exc.filename}: {exc.strerror}") from None
    try:
        certificate = x509.load_pem_x509_certificates(cert_pem)[0]
    except ValueError as exc:
        raise ConfigError(f"{what}: {pair.cert} is not a PEM certificate: {exc}") from None
    try:
        private_key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what}: {pair.key} is not an unencrypted PEM private key: {exc}") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if private_key.public_key().public_bytes(encoding, public) != certificate.public_key().public_bytes(
        encoding, public
    ):
        raise ConfigError(f"{what}: the key {pair.key} does not belong to the certificate {pair.cert}")
    return key_pem, cert_pem


class ReloadingCertificate:
    """The certificate fetcher of `grpc.dynamic_ssl_server_credentials`: gRPC calls it at every new handshake; it
    re-reads the files when their size, mtime or inode changed and hands the new pair over. A half-written or
    mismatched pair (the key replaced before the certificate) is ignored until it is consistent; the old one stays.
    """

    def __init__(self, pair: KeyPair, client_ca: Path | None = None) -> None:
        self.pair = pair
        self.client_ca = client_ca
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self.reloads = 0
        self.initial = self._configuration()

    def _paths(self) -> list[Path]:
        return [self.pair.cert, self.pair.key, *([self.client_ca] if self.client_ca else [])]

    def _stat(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for path in self._paths():
            try:
                st = path.stat()
            except OSError:
                stamps.append((-1, -1, -1))
            else:
                stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(stamps)

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        key, chain = load_pair(self.pair, "TLS certificate")
        roots = self.client_ca.read_bytes() if self.client_ca is not None else None
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=roots)

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        stamp = self._stat()
        if stamp == self._stamp:
            return None
        with self._lock:
            if stamp == self._stamp:
                return None
            try:
                configuration = self._configuration()
            except (ConfigError, OSError) as exc:
                log.warning("certificate files changed but cannot be used yet; keeping the previous ones: %s", exc)
                return None
            self._stamp = stamp
            self.reloads += 1
        log.info("certificate reloaded", extra={"cert": str(self.pair.cert), "reloads": self.reloads})
        return configuration


def server_credentials(service: str, config: TlsConfig) -> grpc.ServerCredentials | None:
    """Credentials of `service`'s port: TLS on the public one, mutual TLS on internal ones; None for plaintext."""
    if service == PUBLIC_SERVICE:
        if config.public is None:
            return None
        fetcher = ReloadingCertificate(config.public)
        return grpc.dynamic_ssl_server_credentials(fetcher.initial, fetcher, require_client_authentication=False)
    if not config.mutual:
        return None
    assert config.internal is not None
    fetcher = ReloadingCertificate(config.internal, client_ca=config.internal_ca)
    return grpc.dynamic_ssl_server_credentials(fetcher.initial, fetcher, require_client_authentication=True)


def channel_credentials(config: TlsConfig) -> grpc.ChannelCredentials | None:
    """Client credentials for dialling an internal service: this service's certificate, checked against the CA."""
    if not config.mutual:
        return None
    assert config.internal is not None and config.internal_ca is not None
    key, chain = load_pair(config.internal, "WIKIMEM_INTERNAL_CERT/WIKIMEM_INTERNAL_KEY")
    return grpc.ssl_channel_credentials(
        root_certificates=config.internal_ca.read_bytes(), private_key=key, certificate_chain=chain
    )


def channel_options(config: TlsConfig) -> list[tuple[str, str]]:
    if config.mutual and config.internal_server_name:
        return [("grpc.ssl_target_name_override", config.internal_server_name)]
    return []


# --- development PKI -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DevPki:
    """A CA certificate and, per name, a certificate + key it signed (files 0600 in a 0700 directory)."""

    directory: Path
    ca: Path
    pairs: Mapping[str, KeyPair]

    def env(self, name: str) -> dict[str, str]:
        """The WIKIMEM_INTERNAL_* variables for the service (or client) `name`."""
        pair = self.pairs[name]
        return {
            "WIKIMEM_INTERNAL_CA": str(self.ca),
            "WIKIMEM_INTERNAL_CERT": str(pair.cert),
            "WIKIMEM_INTERNAL_KEY": str(pair.key),
        }

    def config(self, name: str) -> TlsConfig:
        return TlsConfig(internal_ca=self.ca, internal=self.pairs[name])


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    tmp.replace(path)


def _san(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "wikimem"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def new_ca(
    common_name: str = "wikimem internal CA", days: int = 3650
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    hosts: Sequence[str],
    days: int = 3650,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A certificate for `hosts`, usable as server and as client certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_san(hosts), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def write_pair(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate, cert_path: Path, key_path: Path) -> KeyPair:
    """Write a key (0600) and its certificate; the key first, so a reloading server never sees a new cert with an
    old key for long (and ignores the mismatch meanwhile)."""
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(key_path, key_pem)
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return KeyPair(cert_path, key_path)


def generate_dev_pki(
    directory: Path | str,
    names: Sequence[str] = DEV_PKI_NAMES,
    hosts: Sequence[str] = LOOPBACK_HOSTS,
    days: int = 3650,
) -> DevPki:
    """A fresh internal CA in `directory` (0700) and a certificate per name, valid for `hosts` and the name itself.

    Files: ca.pem, <name>.pem, <name>.key (0600). The CA key stays in memory only. Replaces any earlier set.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    ca_key, ca_cert = new_ca(days=days)
    ca_path = root / "ca.pem"
    _write_private(ca_path, ca_cert.public_bytes(serialization.Encoding.PEM))
    pairs: dict[str, KeyPair] = {}
    for name in names:
        key, cert = issue(ca_key, ca_cert, f"wikimem-{name}", [*hosts, name], days=days)
        pairs[name] = write_pair(key, cert, root / f"{name}.pem", root / f"{name}.key")
    return DevPki(root, ca_path, pairs)


def first_host(cert_path: Path) -> str | None:
    """The first DNS name (else IP) the certificate is valid for; what a client should check when it dials an IP."""
    try:
        cert = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return None
    dns = san.get_values_for_type(x509.DNSName)
    if dns:
        return str(dns[0])
    ips = san.get_values_for_type(x509.IPAddress)
    return str(ips[0]) if ips else None
