"""Certificates and keys of one test bed, made with the ``cryptography`` library.

One CA signs: the kube-apiserver and kube-controller-manager serving certs, the Azure Key Vault fake's
serving cert, the admin client cert (CN=admin, O=system:masters) and the kube-apiserver's client cert for
kubelets (``kubectl logs`` on the optional node). A separate RSA key pair signs and verifies ServiceAccount
tokens. The optional node's certs are issued later from the same CA (:func:`load_issuer`, ``node_pki.py``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=30)
_LOOPBACK_NAMES = ("localhost", "*.localhost")
_LOOPBACK_IPS = ("127.0.0.1",)


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: CertPair
    apiserver: CertPair
    controller_manager: CertPair
    keyvault: CertPair
    admin: CertPair
    kubelet_client: CertPair
    sa_private_key: Path
    sa_public_key: Path


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _write_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class _Issuer:
    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert

    def issue(
        self, subject: x509.Name, *, server: bool, client: bool, dns: tuple[str, ...] = (), ips: tuple[str, ...] = ()
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_encipherment=False,
                    content_commitment=False,
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
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if dns or ips:
            sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
            sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())


def _make_ca() -> _Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = _name("vaultbundle-testbed-ca")
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
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
    return _Issuer(key, cert)


def create_pki(directory: Path) -> Pki:
    """Write a fresh CA, the certs signed by it and the ServiceAccount key pair into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)

    def save(name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> CertPair:
        pair = CertPair(directory / f"{name}.crt", directory / f"{name}.key")
        _write_cert(cert, pair.cert)
        _write_key(key, pair.key)
        return pair

    ca = _make_ca()
    ca_pair = save("ca", ca.key, ca.cert)
    apiserver = save(
        "apiserver",
        *ca.issue(
            _name("kube-apiserver"),
            server=True,
            client=False,
            dns=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ips=("127.0.0.1", "10.0.0.1"),
        ),
    )
    kcm = save(
        "controller-manager",
        *ca.issue(_name("kube-controller-manager"), server=True, client=False, dns=_LOOPBACK_NAMES, ips=_LOOPBACK_IPS),
    )
    keyvault = save(
        "keyvault",
        *ca.issue(_name("azure-keyvault-fake"), server=True, client=False, dns=_LOOPBACK_NAMES, ips=_LOOPBACK_IPS),
    )
    admin = save("admin", *ca.issue(_name("admin", "system:masters"), server=False, client=True))
    kubelet_client = save(
        "apiserver-kubelet-client",
        *ca.issue(_name("kube-apiserver-kubelet-client", "system:masters"), server=False, client=True),
    )

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_private = directory / "sa.key"
    sa_public = directory / "sa.pub"
    _write_key(sa_key, sa_private)
    sa_public.write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return Pki(ca_pair, apiserver, kcm, keyvault, admin, kubelet_client, sa_private, sa_public)


def load_pki(directory: Path) -> Pki:
    """The paths ``create_pki`` wrote into ``directory`` (not checked for existence)."""

    def pair(name: str) -> CertPair:
        return CertPair(directory / f"{name}.crt", directory / f"{name}.key")

    return Pki(
        pair("ca"),
        pair("apiserver"),
        pair("controller-manager"),
        pair("keyvault"),
        pair("admin"),
        pair("apiserver-kubelet-client"),
        directory / "sa.key",
        directory / "sa.pub",
    )


def load_issuer(directory: Path) -> _Issuer:
    """The CA that ``create_pki`` wrote into ``directory``, to issue more certs (the optional node's)."""
    key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{directory / 'ca.key'} is not the test bed's EC CA key")
    return _Issuer(key, x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes()))
