"""TLS to a vCenter is always verified, against the lab's vCenter simulator
(its certificate is signed by the lab's own CA, which the system does not
know): without the CA or a pinned fingerprint vmdr refuses before it logs in
and shows the fingerprint; with the right fingerprint it works; with another
one (a proxy, a swapped certificate) it refuses and says both."""

from __future__ import annotations

import dataclasses
import hashlib
import socket
import ssl
from urllib.parse import urlsplit

import pytest

from vmdr.lab.lab import Lab, vcenter_endpoint
from vmdr.providers.vsphere.errors import VSphereCertificateChanged, VSphereCertificateUntrusted
from vmdr.providers.vsphere.session import connect, disconnect, pin_for


def served_fingerprint(url: str) -> str:
    """What the simulator presents, read with a bare TLS handshake."""
    parts = urlsplit(url)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection((parts.hostname, parts.port)) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def test_no_ca_and_no_pin_is_refused_with_the_fingerprint(lab: Lab) -> None:
    endpoint = dataclasses.replace(vcenter_endpoint(lab.directory), ca_file=None)
    with pytest.raises(VSphereCertificateUntrusted) as err:
        connect(endpoint)
    want = served_fingerprint(endpoint.url)
    assert err.value.code == "VMDR-E0611" and want in err.value.message
    assert want in err.value.to_dict()["fix"]  # the fix says what to pin


def test_a_pinned_fingerprint_is_trusted_and_another_refused(lab: Lab) -> None:
    endpoint = dataclasses.replace(vcenter_endpoint(lab.directory), ca_file=None)
    want = served_fingerprint(endpoint.url)
    colons = ":".join(want[i : i + 2] for i in range(0, 64, 2)).upper()
    si = connect(dataclasses.replace(endpoint, fingerprint=colons))
    try:
        assert si.content.about.apiType in ("VirtualCenter", "HostAgent")
    finally:
        disconnect(si)
    other = hashlib.sha256(b"another certificate").hexdigest()
    with pytest.raises(VSphereCertificateChanged) as err:
        connect(dataclasses.replace(endpoint, fingerprint=other))
    assert err.value.code == "VMDR-E0612"
    assert other in err.value.message and want in err.value.message


def test_adding_trusts_on_first_use_only_when_asked(lab: Lab) -> None:
    url = vcenter_endpoint(lab.directory).url
    with pytest.raises(VSphereCertificateUntrusted):
        pin_for(url, first_use=False)
    assert pin_for(url, first_use=True) == served_fingerprint(url)
