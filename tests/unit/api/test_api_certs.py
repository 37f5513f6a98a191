"""The cluster CA derived from the cluster key, and each node's certificate."""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509

from safekit.api import certs
from safekit.api.files import ApiFiles
from safekit.membership import clusterkey


def _files(tmp_path: Path) -> ApiFiles:
    return ApiFiles(directory=tmp_path / "api", audit_log=tmp_path / "audit.log")


def test_every_node_derives_the_same_ca_and_the_peers_certificate_verifies(tmp_path: Path) -> None:
    key = clusterkey.generate_key()
    n1, n2 = _files(tmp_path / "n1"), _files(tmp_path / "n2")
    assert certs.ensure(n1, key, "node1", ["198.18.0.1"])
    assert certs.ensure(n2, key, "node2", ["198.18.0.2"])
    # node1's CA file verifies node2's certificate (what a peer and `safekit -H` do).
    store = ssl.create_default_context(cafile=str(n1.ca_cert))
    ca = x509.load_pem_x509_certificate(n1.ca_cert.read_bytes())
    leaf = x509.load_pem_x509_certificate(n2.node_cert.read_bytes())
    leaf.verify_directly_issued_by(ca)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "node2" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["198.18.0.2", "127.0.0.1"]
    assert len(store.get_ca_certs()) == 1
    assert (n2.node_key.stat().st_mode & 0o777) == 0o600


def test_nothing_is_rewritten_until_the_key_or_the_addresses_change(tmp_path: Path) -> None:
    key = clusterkey.generate_key()
    files = _files(tmp_path)
    certs.ensure(files, key, "node1", ["198.18.0.1"])
    first = files.node_cert.read_bytes()
    assert not certs.ensure(files, key, "node1", ["198.18.0.1"])
    assert files.node_cert.read_bytes() == first
    assert certs.ensure(files, key, "node1", ["198.18.0.1", "198.18.1.1"])
    other = clusterkey.generate_key()
    assert certs.ensure(files, other, "node1", ["198.18.0.1"])
    leaf = x509.load_pem_x509_certificate(files.node_cert.read_bytes())
    leaf.verify_directly_issued_by(certs.ca_certificate(other))


def test_a_different_cluster_key_gives_a_different_ca() -> None:
    a, b = clusterkey.generate_key(), clusterkey.generate_key()
    assert certs.ca_private_key(a).public_key() != certs.ca_private_key(b).public_key()
    assert certs.ca_private_key(a).public_key() == certs.ca_private_key(a).public_key()
