"""Synapse's own key tooling (signedjson, PyNaCl) and OpenSSL (via cryptography), used by the
interop test to check `shim keys` against implementations other than ours.

  synapse_keys.py generate KEYFILE VERSION   write a Synapse signing key file, as Synapse does
  synapse_keys.py check KEYFILE DOC CONDUIT SERVER_NAME
      verify the key document's signature with signedjson, and that the PKCS#8 DER in Conduit's
      keypair value holds the same key, parsed by OpenSSL
"""
import base64
import json
import sys

import signedjson.key
import signedjson.sign
from cryptography.hazmat.primitives import serialization


def generate(path, version):
    key = signedjson.key.generate_signing_key(version)
    with open(path, "w") as f:
        signedjson.key.write_signing_keys(f, [key])


def check(path, doc_path, conduit_path, server_name):
    with open(path) as f:
        keys = signedjson.key.read_signing_keys(f)
    key = keys[0]
    verify_key = signedjson.key.get_verify_key(key)
    key_id = "%s:%s" % (key.alg, key.version)

    with open(doc_path) as f:
        doc = json.load(f)
    assert doc["server_name"] == server_name, doc["server_name"]
    published = signedjson.key.decode_verify_key_bytes(key_id, base64.b64decode(doc["verify_keys"][key_id]["key"] + "=="))
    assert published.encode() == verify_key.encode(), "published key differs"
    signedjson.sign.verify_signed_json(doc, server_name, verify_key)

    with open(conduit_path) as f:
        conduit = json.load(f)
    raw = base64.b64decode(conduit["keypair"])
    version, der = raw.split(b"\xff", 1)
    assert version.decode() == key.version, version
    private = serialization.load_der_private_key(der, password=None)
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert public == verify_key.encode(), "Conduit DER holds a different key"
    seed = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    assert seed == key.encode(), "Conduit DER holds a different seed"
    ssk = conduit["server_signingkeys"]
    assert ssk["verify_keys"][key_id]["key"] == doc["verify_keys"][key_id]["key"]
    print("ok", key_id)


if __name__ == "__main__":
    if sys.argv[1] == "generate":
        generate(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "check":
        check(*sys.argv[2:6])
    else:
        sys.exit("unknown mode " + sys.argv[1])
