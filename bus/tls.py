"""TLS for the bus: a deployment's own CA, the server certificate it signs, and the client
context that trusts only that CA.

The files live in the state directory's ``tls/`` (mode 0700): ``ca.crt``, ``ca.key``,
``server.crt``, ``server.key``. Private keys are created 0600 (``O_EXCL``, never widened)
and are never logged. A state directory with a ``tls/`` directory *has TLS*: a missing or
damaged file there is a ``TLSError``, never a quiet fall back to plaintext. ``cryptography``
is imported only when certificates are made, and ``ssl`` only when there is TLS, so the
CLI's quick path stays fast.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from bus.deployment import DeploymentError, StateDir

if TYPE_CHECKING:
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")
CA_DAYS = 3650
SERVER_DAYS = 825  # renew: delete server.crt and server.key, then create() again
_DNS_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


class TLSError(DeploymentError):
    """A TLS file of a state directory is missing, damaged or does not fit the others (a
    ``DeploymentError``: components that cannot start on it say so and exit)."""

    def __init__(self, where: Path | str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = str(where)  # the file, or the host name that cannot be certified
        self.problem = problem


def has_tls(state: StateDir) -> bool:
    """Whether the deployment uses TLS (its state directory has a ``tls/`` directory)."""
    return state.tls_dir.is_dir()


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` keeps the bus on this machine (no TLS needed)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: only "localhost" is sure to stay on this host
        return host == "localhost"


def _not_eof_noise(record: logging.LogRecord) -> bool:
    # nats-py's protocol answers eof_received() with True, which asyncio's TLS transport
    # ignores and reports at every close of a TLS connection: noise, not a fault.
    return not str(record.msg).startswith("returning true from eof_received()")


def client_context(state: StateDir) -> ssl.SSLContext | None:
    """A client context that trusts only the deployment's CA and checks the server's name;
    None when the deployment has no TLS."""
    if not has_tls(state):
        return None
    import ssl

    logging.getLogger("asyncio").addFilter(_not_eof_noise)  # adding it again is a no-op

    try:
        return ssl.create_default_context(cafile=str(state.ca_cert_path))
    except FileNotFoundError as exc:
        raise TLSError(state.ca_cert_path, "missing: run 'skyport init --tls'") from exc
    except (ssl.SSLError, OSError) as exc:
        raise TLSError(state.ca_cert_path, f"not a usable CA certificate ({exc})") from exc


def server_files(state: StateDir) -> tuple[Path, Path]:
    """The server's certificate and key files, checked to load and to belong together."""
    import ssl

    cert, key = state.server_cert_path, state.server_key_path
    for path in (cert, key):
        if not path.is_file():
            raise TLSError(path, "missing: run 'skyport init --tls'")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise TLSError(cert, f"does not load with {key.name} ({exc})") from exc
    return cert, key


def create(state: StateDir, hosts: Iterable[str] = ()) -> list[str]:
    """Make the CA and a server certificate signed by it, for loopback and ``hosts`` (names
    or IP addresses); return the names the server certificate is valid for.

    Idempotent: files that exist are kept as they are, so a host missing from the returned
    names needs a new server certificate (delete ``server.crt`` and ``server.key``, then
    create again: the existing CA signs it)."""
    names = _subject_names([*LOOPBACK_NAMES, *hosts])
    state.tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path, key_path = state.server_cert_path, state.server_key_path
    if cert_path.exists() and not key_path.exists():
        raise TLSError(key_path, f"missing beside {cert_path.name}: delete both to renew")
    if not cert_path.exists():
        ca_key = _private_key(state.ca_key_path)
        ca_cert = _ca_certificate(state, ca_key)
        cert = _server_certificate(ca_cert, ca_key, _private_key(key_path), names)
        _write_new(cert_path, _pem(cert), 0o644)
    return _names_of(cert_path)


def _subject_names(hosts: list[str]) -> list[str]:
    out: list[str] = []
    for host in hosts:
        try:
            name = str(ipaddress.ip_address(host.strip("[]")))
        except ValueError:
            if not _DNS_NAME.fullmatch(host) or len(host) > 253:
                raise TLSError(host, "not a host name or IP address") from None
            name = host.lower()
        if name not in out:
            out.append(name)
    return out


def _names_of(cert_path: Path) -> list[str]:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound) as exc:
        raise TLSError(cert_path, "not a PEM certificate with subject names") from exc
    ips = [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    return [*ips, *sans.get_values_for_type(x509.DNSName)]


def _private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The key at ``path``, made (0600, exclusively) if there is none."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if not path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),  # nats-server reads it unattended
        )
        if _write_new(path, pem, 0o600):
            return key
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise TLSError(path, "not an unencrypted PEM private key") from exc
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise TLSError(path, "not an elliptic-curve private key")
    return loaded


def _ca_certificate(state: StateDir, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """The CA certificate of ``key``, self-signed and written if there is none."""
    from cryptography import x509

    path = state.ca_cert_path
    if not path.exists():
        _write_new(path, _pem(_new_ca_certificate(key)), 0o644)
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as exc:
        raise TLSError(path, "not a PEM certificate") from exc
    if cert.public_key() != key.public_key():
        raise TLSError(path, f"does not match {state.ca_key_path.name}")
    return cert


def _new_ca_certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Sky Port deployment CA")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )


def _server_certificate(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    names: list[str],
) -> x509.Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Sky Port NATS")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _usage(cert_sign: bool) -> x509.KeyUsage:
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _pem(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _write_new(path: Path, data: bytes, mode: int) -> bool:
    """Write ``path`` whole or not at all, created with ``mode``; False if it appeared
    meanwhile (another ``create`` won: its file is kept)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # left by a crash of a process with our pid
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # unlike a rename, never replaces a file that is there
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True
