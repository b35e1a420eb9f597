"""One certificate authority per cluster: serving certs for etcd and kube-apiserver, client certs
for the API server's etcd access and the admin kubeconfig, and the service-account key pair."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=365)
LOOPBACK_NAMES = ("localhost",)
# The first address of the service CIDR is the in-cluster `kubernetes` Service.
LOOPBACK_IPS = ("127.0.0.1", "::1", "10.0.0.1")


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def _write_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


class ClusterPKI:
    """Creates (once) and reads the certificates of one cluster under `directory`."""

    def __init__(self, directory: Path, cluster: str) -> None:
        self.directory = directory
        self.cluster = cluster
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        self.ca = CertPair(directory / "ca.crt", directory / "ca.key")
        if not self.ca.cert.exists():
            self._create_ca()

    def _create_ca(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        name = _name(f"fluidos-sensors-testbed-ca-{self.cluster}")
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
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
        _write_key(key, self.ca.key)
        self.ca.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _issue(
        self,
        stem: str,
        common_name: str,
        *,
        organization: str | None = None,
        server: bool = False,
        client: bool = False,
    ) -> CertPair:
        pair = CertPair(self.directory / f"{stem}.crt", self.directory / f"{stem}.key")
        if pair.cert.exists():
            return pair
        ca_key = serialization.load_pem_private_key(self.ca.key.read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(self.ca.cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organization))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if server:
            sans: list[x509.GeneralName] = [x509.DNSName(n) for n in LOOPBACK_NAMES]
            sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in LOOPBACK_IPS]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        _write_key(key, pair.key)
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return pair

    def etcd_server(self) -> CertPair:
        return self._issue("etcd-server", "etcd", server=True, client=True)

    def apiserver_etcd_client(self) -> CertPair:
        return self._issue("apiserver-etcd-client", "kube-apiserver-etcd-client", client=True)

    def apiserver_serving(self) -> CertPair:
        return self._issue("apiserver", "kube-apiserver", server=True)

    def rear_gateway_serving(self) -> CertPair:
        """The REAR gateway's HTTPS certificate (loopback names), signed by the cluster CA."""
        return self._issue("rear-gateway", "fluidos-sensors-rear-gateway", server=True)

    def mqtt_serving(self) -> CertPair:
        """An MQTT broker's TLS certificate (loopback names), signed by the cluster CA."""
        return self._issue("mqtt-broker", "fluidos-sensors-mqtt-broker", server=True)

    def admin_client(self) -> CertPair:
        # system:masters is bound to cluster-admin by the API server's bootstrap policy.
        return self._issue(
            "admin", "fluidos-sensors-admin", organization="system:masters", client=True
        )

    def service_account_keys(self) -> CertPair:
        """(public key, private key) that sign and verify service-account tokens."""
        pair = CertPair(self.directory / "sa.pub", self.directory / "sa.key")
        if not pair.key.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            _write_key(key, pair.key)
            pair.cert.write_bytes(
                key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
        return pair
