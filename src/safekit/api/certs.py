"""The cluster CA and each node's HTTPS certificate.

The CA's private key is derived from the cluster key (HKDF-SHA256, domain-separated), so every node
that holds the cluster key computes the same CA without a distribution step, and a node is trusted
by its peers exactly when it holds the cluster key - the same root of trust as the heartbeats
(ARCHITECTURE rule 5). Each node then signs its own certificate (a fresh P-256 key, the node's name
and its cluster.xml addresses as subject alternative names). An operator who wants their own PKI
puts `tls.crt`/`tls.key` (and `trust.pem` for `safekit -H`) in /etc/safekit/api instead.

This module imports `cryptography`, which costs safekitd about 8 MiB resident: the daemon runs it
as a child process (`python -m safekit.api.certs`) at start and after a reload that changes the
node's addresses (the running server then loads the new pair, ADR 0050), never in-process.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from safekit.api.files import ApiFiles
from safekit.host import persist
from safekit.host.paths import Paths
from safekit.membership import clusterkey

# Order of the P-256 group: a private scalar is in [1, n-1].
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_CA_INFO = b"safekit api cluster CA v1"
_CA_NOT_BEFORE = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
_CA_NOT_AFTER = datetime.datetime(2125, 1, 1, tzinfo=datetime.UTC)
NODE_CERT_DAYS = 825
RENEW_BEFORE_DAYS = 30


def ca_private_key(cluster_key: bytes) -> ec.EllipticCurvePrivateKey:
    clusterkey.check_key(cluster_key)
    material = HKDF(algorithm=hashes.SHA256(), length=48, salt=None, info=_CA_INFO).derive(cluster_key)
    scalar = int.from_bytes(material, "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def ca_name(cluster_key: bytes) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "safekit"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"safekit cluster CA {clusterkey.fingerprint(cluster_key)}"
            ),
        ]
    )


def ca_certificate(cluster_key: bytes) -> x509.Certificate:
    """The cluster CA certificate: same name, key and validity on every node of the cluster."""
    key = ca_private_key(cluster_key)
    name = ca_name(cluster_key)
    public = key.public_key()
    serial = int.from_bytes(hashes_digest(cluster_key)[:16], "big") >> 1 or 1
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(serial)
        .not_valid_before(_CA_NOT_BEFORE)
        .not_valid_after(_CA_NOT_AFTER)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def hashes_digest(cluster_key: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"safekit api CA serial v1\x00" + cluster_key)
    return digest.finalize()


def node_certificate(
    cluster_key: bytes, node: str, addresses: Sequence[str], node_key: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    ca_key = ca_private_key(cluster_key)
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(node), x509.DNSName("localhost")]
    for addr in [*addresses, "127.0.0.1"]:
        ip = x509.IPAddress(ipaddress.ip_address(addr))
        if ip not in names:
            names.append(ip)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)]))
        .issuer_name(ca_name(cluster_key))
        .public_key(node_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=NODE_CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _current_is_good(files: ApiFiles, cluster_key: bytes, node: str, addresses: Sequence[str]) -> bool:
    """node.crt exists, is signed by this cluster's CA, names this node and exactly its addresses
    (those of cluster.xml: a reload that moves one issues it again, ADR 0050), is not expiring."""
    try:
        cert = x509.load_pem_x509_certificate(files.node_cert.read_bytes())
        key = serialization.load_pem_private_key(files.node_key.read_bytes(), password=None)
    except (OSError, ValueError):
        return False
    ca_public = ca_private_key(cluster_key).public_key()
    try:
        ca_public.verify(
            cert.signature,
            cert.tbs_certificate_bytes,
            ec.ECDSA(cert.signature_hash_algorithm or hashes.SHA256()),
        )
    except Exception:
        return False
    if key.public_key() != cert.public_key():
        return False
    remaining = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    if remaining < datetime.timedelta(days=RENEW_BEFORE_DAYS):
        return False
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    have = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    # exactly this node's addresses (and the loopback): an address the node left is not kept
    wanted = {str(ipaddress.ip_address(a)) for a in [*addresses, "127.0.0.1"]}
    return node in san.get_values_for_type(x509.DNSName) and have == wanted


def ensure(files: ApiFiles, cluster_key: bytes, node: str, addresses: Sequence[str]) -> bool:
    """Write ca.crt, and node.crt/node.key when missing or stale; True when something was written."""
    files.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_pem = ca_certificate(cluster_key).public_bytes(serialization.Encoding.PEM)
    changed = False
    try:
        current_ca = files.ca_cert.read_bytes()
    except FileNotFoundError:
        current_ca = b""
    if not _same_ca(current_ca, cluster_key):
        persist.write_bytes(files.ca_cert, ca_pem, mode=0o644)
        changed = True
    if not _current_is_good(files, cluster_key, node, addresses):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = node_certificate(cluster_key, node, addresses, key)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        persist.write_bytes(files.node_key, key_pem, mode=0o600)
        persist.write_bytes(files.node_cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        changed = True
    return changed


def _same_ca(pem: bytes, cluster_key: bytes) -> bool:
    if not pem:
        return False
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return False
    return bool(
        cert.subject == ca_name(cluster_key) and cert.public_key() == ca_private_key(cluster_key).public_key()
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m safekit.api.certs --node NAME [ADDRESS...]`: what safekitd runs at start and
    after a cluster.xml reload that changes this node's addresses."""
    parser = argparse.ArgumentParser(prog="safekit.api.certs")
    parser.add_argument("--node", required=True)
    parser.add_argument("addresses", nargs="*")
    args = parser.parse_args(argv)
    paths = Paths.from_env()
    files = ApiFiles.from_paths(paths)
    try:
        key = clusterkey.load_key(paths.cluster_key)
    except clusterkey.ClusterKeyError as exc:
        print(f"safekit.api.certs: {exc}", file=sys.stderr)
        return 1
    os.umask(0o077)
    changed = ensure(files, key, args.node, args.addresses)
    print("written" if changed else "unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
