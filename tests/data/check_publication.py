"""Independent checks of a publication by `imgbuild publish`, with other
people's code: securesystemslib verifies the DSSE provenance envelope,
`cryptography` the cosign-style image signature fetched with urllib from the
registry, spdx-tools validates the SPDX document, cyclonedx-python-lib the
CycloneDX one against its JSON schema, and oras reads the referrers index and
pulls the ONIE installer artifact.

usage: check_publication.py PULLED_DIR PUBLIC_KEY_PEM REGISTRY REPO IMAGE_DIGEST
Exits non-zero with a message on the first failure.
"""

import base64
import hashlib
import json
import sys
import urllib.request

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey


def fail(msg):
    print(f"check_publication: {msg}", file=sys.stderr)
    sys.exit(1)


def get(url, accept=None):
    req = urllib.request.Request(url)
    if accept:
        req.add_header("Accept", accept)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def main():
    pulled, pub_path, registry, repo, digest = sys.argv[1:6]
    pem = open(pub_path, "rb").read()
    public = serialization.load_pem_public_key(pem)
    spki = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    keyid = hashlib.sha256(spki).hexdigest()
    scheme = "ed25519" if isinstance(public, ed25519.Ed25519PublicKey) else "ecdsa-sha2-nistp256"

    # The provenance: a DSSE envelope securesystemslib verifies.
    env = Envelope.from_dict(json.load(open(f"{pulled}/provenance.intoto.json")))
    key = SSlibKey.from_crypto(public, keyid=keyid, scheme=scheme)
    env.verify([key], 1)
    if env.payload_type != "application/vnd.in-toto+json":
        fail(f"payloadType {env.payload_type}")
    st = json.loads(env.payload)
    if st["_type"] != "https://in-toto.io/Statement/v1":
        fail("not an in-toto Statement v1")
    if st["predicateType"] != "https://slsa.dev/provenance/v1":
        fail("not SLSA provenance v1")
    subjects = {s["digest"]["sha256"] for s in st["subject"]}
    if digest.removeprefix("sha256:") not in subjects:
        fail("the image digest is not a subject")
    for name in ["disk.raw", "sbom.spdx.json", "sbom.cdx.json"]:
        h = hashlib.sha256(open(f"{pulled}/{name}", "rb").read()).hexdigest()
        if h not in subjects:
            fail(f"{name} is not a subject")
    bd = st["predicate"]["buildDefinition"]
    if not bd["resolvedDependencies"] or not bd["externalParameters"]["lockHash"]:
        fail("buildDefinition lacks dependencies or the lock hash")

    # The cosign-style signature under the `sha256-<hex>.sig` tag.
    base = f"http://{registry}/v2/{repo}"
    tag = digest.replace(":", "-") + ".sig"
    sig_manifest = json.loads(get(f"{base}/manifests/{tag}", "application/vnd.oci.image.manifest.v1+json"))
    layer = sig_manifest["layers"][0]
    if layer["mediaType"] != "application/vnd.dev.cosign.simplesigning.v1+json":
        fail(f"signature layer type {layer['mediaType']}")
    payload = get(f"{base}/blobs/{layer['digest']}")
    if "sha256:" + hashlib.sha256(payload).hexdigest() != layer["digest"]:
        fail("signature payload does not match its digest")
    sig = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    if isinstance(public, ed25519.Ed25519PublicKey):
        public.verify(sig, payload)
    else:
        public.verify(sig, payload, ec.ECDSA(hashes.SHA256()))
    signed = json.loads(payload)["critical"]["image"]["docker-manifest-digest"]
    if signed != digest:
        fail(f"signature is for {signed}")

    # SPDX: spdx-tools parses and validates the document.
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    doc = parse_file(f"{pulled}/sbom.spdx.json")
    messages = validate_full_spdx_document(doc)
    if messages:
        fail("SPDX: " + "; ".join(m.validation_message for m in messages[:5]))

    # CycloneDX: the official 1.5 JSON schema (strict).
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    err = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(f"{pulled}/sbom.cdx.json").read())
    if err is not None:
        fail(f"CycloneDX: {err}")
    # oras (the ORAS Python client) reads the referrers tag index and pulls
    # the ONIE installer artifact by its title, as `oras pull` does.
    import tempfile

    import oras.client

    client = oras.client.OrasClient(hostname=registry, insecure=True)
    index = client.get_manifest(
        f"{registry}/{repo}:{digest.replace(':', '-')}",
        allowed_media_type=["application/vnd.oci.image.index.v1+json"],
    )
    kinds = {m.get("artifactType") for m in index["manifests"]}
    for want in ["application/spdx+json", "application/vnd.in-toto+json", "application/vnd.imgbuild.lock.v1+toml"]:
        if want not in kinds:
            fail(f"oras: {want} not among the referrers")
    onie = [m for m in index["manifests"] if m.get("artifactType") == "application/vnd.imgbuild.onie.installer.v1"]
    if len(onie) != 1:
        fail("oras: no ONIE installer artifact")
    with tempfile.TemporaryDirectory() as out:
        files = client.pull(target=f"{registry}/{repo}@{onie[0]['digest']}", outdir=out)
        if len(files) != 1:
            fail(f"oras pulled {files}")
        got = open(files[0], "rb").read()
        name = files[0].rsplit("/", 1)[-1]
        if got != open(f"{pulled}/{name}", "rb").read():
            fail(f"oras: {name} differs")
    print("check_publication: ok")


main()
