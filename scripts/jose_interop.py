# jose_interop.py: jwcrypto as the independent JOSE peer for Strongroom's interop tests (makes and opens JWS/JWE tokens).
"""Command-line bridge to jwcrypto so Rust tests can check Strongroom's JOSE
module against an independent implementation in both directions.

Subcommands (each prints one line on stdout; errors go to stderr, exit 1):

  make-jws   --jwk JSON --claims JSON [--kid KID]
             Signs the claims (EdDSA) with the private OKP JWK; header
             {"alg":"EdDSA","typ":"JWT","kid":...}, kid from --kid or the JWK.
             Prints the compact JWS.
  verify-jws --jwk JSON --token TOKEN [--expect-kid KID]
             Verifies with the public OKP JWK, EdDSA only. Prints the claims
             as JSON.
  make-jwe   --alg dir|A256KW --key-hex HEX64 --plaintext-hex HEX [--kid KID] [--cty CTY]
             Encrypts with enc A256GCM. Prints the compact JWE.
  open-jwe   --key-hex HEX64 --token TOKEN [--alg dir|A256KW]
             Decrypts, accepting only dir/A256KW (or just --alg) with A256GCM.
             Prints the plaintext as hex.
  thumbprint --jwk JSON
             Prints the RFC 7638 SHA-256 thumbprint of the JWK.

Needs the jwcrypto package (pip install jwcrypto).
"""

import argparse
import json
import sys

from jwcrypto import jwe, jwk, jws
from jwcrypto.common import base64url_encode

KEY_ALGS = ("dir", "A256KW")
CONTENT_ENC = "A256GCM"


def oct_key(key_hex):
    raw = bytes.fromhex(key_hex)
    if len(raw) != 32:
        raise ValueError("key must be 32 bytes (64 hex digits)")
    return jwk.JWK(kty="oct", k=base64url_encode(raw))


def okp_key(jwk_json):
    key = jwk.JWK.from_json(jwk_json)
    if key.get("kty") != "OKP" or key.get("crv") != "Ed25519":
        raise ValueError("JWK must be an OKP Ed25519 key")
    return key


def make_jws(args):
    key = okp_key(args.jwk)
    kid = args.kid or key.get("kid")
    header = {"alg": "EdDSA", "typ": "JWT"}
    if kid:
        header["kid"] = kid
    claims = json.loads(args.claims)
    token = jws.JWS(json.dumps(claims, separators=(",", ":")).encode())
    token.add_signature(key, None, protected=json.dumps(header, separators=(",", ":")))
    return token.serialize(compact=True)


def verify_jws(args):
    key = okp_key(args.jwk)
    token = jws.JWS()
    token.allowed_algs = ["EdDSA"]
    token.deserialize(args.token)
    token.verify(key, alg="EdDSA")
    header = token.jose_header
    if header.get("alg") != "EdDSA":
        raise ValueError("unexpected alg")
    if args.expect_kid is not None and header.get("kid") != args.expect_kid:
        raise ValueError("unexpected kid")
    return json.dumps(json.loads(token.payload), separators=(",", ":"), sort_keys=True)


def make_jwe(args):
    header = {"alg": args.alg, "enc": CONTENT_ENC}
    if args.kid:
        header["kid"] = args.kid
    if args.cty:
        header["cty"] = args.cty
    token = jwe.JWE(bytes.fromhex(args.plaintext_hex), protected=json.dumps(header, separators=(",", ":")))
    token.add_recipient(oct_key(args.key_hex))
    return token.serialize(compact=True)


def open_jwe(args):
    algs = [args.alg] if args.alg else list(KEY_ALGS)
    token = jwe.JWE(algs=algs + [CONTENT_ENC])
    token.deserialize(args.token, key=oct_key(args.key_hex))
    header = token.jose_header
    if header.get("alg") not in algs or header.get("enc") != CONTENT_ENC:
        raise ValueError("unexpected alg or enc")
    return token.payload.hex()


def thumbprint(args):
    return jwk.JWK.from_json(args.jwk).thumbprint()


def parser():
    p = argparse.ArgumentParser(description="jwcrypto peer for Strongroom's JOSE interop tests")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("make-jws", help="sign claims with an Ed25519 private JWK")
    s.add_argument("--jwk", required=True)
    s.add_argument("--claims", required=True)
    s.add_argument("--kid")
    s.set_defaults(run=make_jws)

    s = sub.add_parser("verify-jws", help="verify an EdDSA JWS and print its claims")
    s.add_argument("--jwk", required=True)
    s.add_argument("--token", required=True)
    s.add_argument("--expect-kid")
    s.set_defaults(run=verify_jws)

    s = sub.add_parser("make-jwe", help="encrypt with dir or A256KW and A256GCM")
    s.add_argument("--alg", required=True, choices=KEY_ALGS)
    s.add_argument("--key-hex", required=True)
    s.add_argument("--plaintext-hex", required=True)
    s.add_argument("--kid")
    s.add_argument("--cty")
    s.set_defaults(run=make_jwe)

    s = sub.add_parser("open-jwe", help="decrypt a dir or A256KW / A256GCM JWE and print the plaintext hex")
    s.add_argument("--key-hex", required=True)
    s.add_argument("--token", required=True)
    s.add_argument("--alg", choices=KEY_ALGS)
    s.set_defaults(run=open_jwe)

    s = sub.add_parser("thumbprint", help="RFC 7638 thumbprint of a JWK")
    s.add_argument("--jwk", required=True)
    s.set_defaults(run=thumbprint)
    return p


def main():
    args = parser().parse_args()
    try:
        print(args.run(args))
    except Exception as e:  # one line naming the failure kind; never the token
        print(f"{args.command}: {type(e).__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
