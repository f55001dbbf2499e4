"""Pulumi mocks that compute what the random and tls providers compute, for real: generated passwords,
ECDSA keys, a CA and the certificates it signs. The offline plan (tools.plan) shows stand-ins for
these; the e2e stack runs on them, so TLS between the services and SCRAM logins are the real thing.

Only what this program asks of the two providers (tls 5 / random 4 semantics): PrivateKey (ECDSA P-256),
SelfSignedCert, CertRequest, LocallySignedCert with subject, DNS names, validity and allowed uses;
RandomPassword (letters and digits when `special` is false) and RandomBytes.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import string
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tools.plan import PlanMocks, reveal

_EXTENDED_USES = {"server_auth": ExtendedKeyUsageOID.SERVER_AUTH, "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH}
_KEY_USES = {
    "digital_signature": "digital_signature",
    "key_encipherment": "key_encipherment",
    "cert_signing": "key_cert_sign",
    "crl_signing": "crl_sign",
}


def _password(length: int, special: bool) -> str:
    alphabet = string.ascii_letters + string.digits + ("!#$%&*()-_=+[]{}<>:?" if special else "")
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _private_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    return pem.decode()


def _load_key(pem: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _name(subject: dict[str, Any] | None) -> x509.Name:
    subject = subject or {}
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, str(subject["commonName"]))]
    if subject.get("organization"):
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(subject["organization"])))
    return x509.Name(attributes)


def _certificate(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    signing_key: ec.EllipticCurvePrivateKey,
    inputs: dict[str, Any],
    dns_names: list[str],
) -> str:
    """A certificate as the tls provider builds one from `allowedUses`, `isCaCertificate`,
    `validityPeriodHours` and the DNS names."""
    now = datetime.datetime.now(datetime.UTC)
    uses = set(inputs.get("allowedUses") or [])
    is_ca = bool(inputs.get("isCaCertificate"))
    key_usage = {flag: False for flag in ("content_commitment", "data_encipherment", "key_agreement")}
    key_usage.update({"encipher_only": False, "decipher_only": False})
    key_usage.update({attribute: use in uses for use, attribute in _KEY_USES.items()})
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=float(inputs["validityPeriodHours"])))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(**key_usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    extended = [_EXTENDED_USES[use] for use in sorted(uses) if use in _EXTENDED_USES]
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in dns_names]), critical=False
        )
    return builder.sign(signing_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _self_signed(inputs: dict[str, Any]) -> dict[str, Any]:
    key = _load_key(inputs["privateKeyPem"])
    name = _name(inputs.get("subject"))
    return {"certPem": _certificate(name, key.public_key(), name, key, inputs, list(inputs.get("dnsNames") or []))}


def _cert_request(inputs: dict[str, Any]) -> dict[str, Any]:
    key = _load_key(inputs["privateKeyPem"])
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(inputs.get("subject")))
    if inputs.get("dnsNames"):
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in inputs["dnsNames"]]), critical=False
        )
    return {"certRequestPem": builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()}


def _locally_signed(inputs: dict[str, Any]) -> dict[str, Any]:
    request = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
    ca = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
    public_key = request.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    try:
        san = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns_names = []
    signing_key = _load_key(inputs["caPrivateKeyPem"])
    return {"certPem": _certificate(request.subject, public_key, ca.subject, signing_key, inputs, dns_names)}


def real_outputs(type_: str, inputs: dict[str, Any]) -> dict[str, Any] | None:
    """What the provider would compute for a resource of `type_`, or None for the types it does not own."""
    if type_ == "random:index/randomPassword:RandomPassword":
        return {"result": _password(int(inputs["length"]), bool(inputs.get("special", True)))}
    if type_ == "random:index/randomBytes:RandomBytes":
        raw = secrets.token_bytes(int(inputs["length"]))
        return {"base64": base64.b64encode(raw).decode(), "hex": raw.hex()}
    if type_ == "tls:index/privateKey:PrivateKey":
        return {"privateKeyPem": _private_key_pem()}
    if type_ == "tls:index/selfSignedCert:SelfSignedCert":
        return _self_signed(inputs)
    if type_ == "tls:index/certRequest:CertRequest":
        return _cert_request(inputs)
    if type_ == "tls:index/locallySignedCert:LocallySignedCert":
        return _locally_signed(inputs)
    return None


class RealMocks(PlanMocks):
    """The plan's mocks, with the secrets and certificates computed for real. A resource registered again
    with the same inputs gets what it got the first time, as a provider keeps its outputs in the state: a
    second plan made with the same mocks is an update of the first, not a new stack."""

    def __init__(self) -> None:
        super().__init__()
        self._kept: dict[tuple[str, str, str], dict[str, Any]] = {}

    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        inputs = reveal(dict(args.inputs))
        key = (args.typ, args.name, json.dumps(inputs, sort_keys=True, default=str))
        if key not in self._kept:
            computed = real_outputs(args.typ, inputs)
            if computed is None:
                return super().new_resource(args)
            self._kept[key] = computed
        return f"{args.name}-id", {**args.inputs, **self._kept[key]}
