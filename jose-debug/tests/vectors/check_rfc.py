#!/usr/bin/python3
"""Verify every vector in rfc.json with jwcrypto.

Run with the system interpreter (it has jwcrypto and cryptography):

    /usr/bin/python3 tests/vectors/check_rfc.py [path/to/rfc.json]

Prints "ok NAME" per vector that verifies/decrypts to the expected payload,
"FAIL NAME: reason" otherwise, and exits non-zero if anything failed.

jwcrypto 1.1 has no detached-payload argument for JWS verification, so for
vectors marked "detached" the expected payload is re-attached to the token
(RFC 7515 Appendix F) before verifying.  No vector currently needs any other
workaround.
"""
import base64
import json
import os
import sys

from jwcrypto import jwe, jwk, jws
from jwcrypto.common import json_decode

JWS_ALGS = ['HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512',
            'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512']
JWE_ALGS = list(jwe.default_allowed_algs) + ['RSA1_5']

REQUIRED = ('name', 'source', 'kind', 'serialization', 'token', 'key', 'payload', 'alg')


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode('ascii')


def b64u_decode(text):
    return base64.urlsafe_b64decode(text + '=' * (-len(text) % 4))


def headers_of(vec):
    """Return the list of JOSE headers (merged protected/unprotected) in the token."""
    tok = vec['token']
    ser = vec['serialization']
    if ser == 'compact':
        if not isinstance(tok, str):
            raise AssertionError('compact token must be a string')
        parts = tok.split('.')
        want = 3 if vec['kind'] == 'jws' else 5
        if len(parts) != want:
            raise AssertionError('compact token has %d parts, expected %d' % (len(parts), want))
        return [json.loads(b64u_decode(parts[0]))]
    if not isinstance(tok, dict):
        raise AssertionError('JSON serialization token must be an object')
    multi = 'signatures' if vec['kind'] == 'jws' else 'recipients'
    if (ser == 'general') != (multi in tok):
        raise AssertionError('serialization %r but %r member %s' % (
            ser, multi, 'present' if multi in tok else 'absent'))
    shared = {}
    if 'protected' in tok:
        shared.update(json.loads(b64u_decode(tok['protected'])))
    shared.update(tok.get('unprotected', {}))
    if ser == 'flattened':
        h = dict(shared)
        h.update(tok.get('header', {}))
        return [h]
    out = []
    for item in tok[multi]:
        h = dict(shared)
        if vec['kind'] == 'jws' and 'protected' in item:
            h.update(json.loads(b64u_decode(item['protected'])))
        h.update(item.get('header', {}))
        out.append(h)
    return out


def load_key(vec):
    if 'password' in vec:
        derived = {'kty': 'oct', 'k': b64u(vec['password'].encode('utf-8'))}
        if vec['key'] != derived:
            raise AssertionError('key does not match base64url(password)')
        return jwk.JWK(**derived)
    return jwk.JWK(**vec['key'])


def check_jws(vec, key):
    tok = vec['token']
    payload = vec['payload'].encode('utf-8')
    if vec.get('detached'):
        # RFC 7515 Appendix F: re-attach the detached content before verifying
        # (jwcrypto 1.1 has no detached_payload argument).
        if vec['serialization'] == 'compact':
            h, p, s = tok.split('.')
            if p != '':
                raise AssertionError('detached compact token has a payload')
            tok = '.'.join((h, b64u(payload), s))
        else:
            if 'payload' in tok:
                raise AssertionError('detached JSON token has a payload')
            tok = dict(tok, payload=b64u(payload))
    raw = tok if isinstance(tok, str) else json.dumps(tok)
    obj = jws.JWS()
    obj.allowed_algs = JWS_ALGS
    obj.deserialize(raw)
    obj.verify(key, alg=vec['alg'])
    if obj.payload != payload:
        raise AssertionError('payload mismatch: %r' % obj.payload)


def check_jwe(vec, key):
    tok = vec['token']
    raw = tok if isinstance(tok, str) else json.dumps(tok)
    obj = jwe.JWE()
    obj.allowed_algs = JWE_ALGS
    obj.deserialize(raw)
    try:
        obj.decrypt(key)
    except jwe.InvalidJWEData as e:
        raise AssertionError('decryption failed: %s' % e)
    if obj.plaintext != vec['payload'].encode('utf-8'):
        raise AssertionError('plaintext mismatch: %r' % obj.plaintext)


def check(vec):
    missing = [f for f in REQUIRED if f not in vec]
    if missing:
        raise AssertionError('missing fields %s' % missing)
    if vec['kind'] not in ('jws', 'jwe'):
        raise AssertionError('bad kind')
    if vec['serialization'] not in ('compact', 'flattened', 'general'):
        raise AssertionError('bad serialization')
    if vec['kind'] == 'jwe' and 'enc' not in vec:
        raise AssertionError('jwe vector without enc')
    hdrs = headers_of(vec)
    match = [h for h in hdrs if h.get('alg') == vec['alg']]
    if not match:
        raise AssertionError('no signature/recipient with alg %s (found %s)' % (
            vec['alg'], [h.get('alg') for h in hdrs]))
    if vec['kind'] == 'jwe' and match[0].get('enc') != vec['enc']:
        raise AssertionError('enc %s != header enc %s' % (vec['enc'], match[0].get('enc')))
    key = load_key(vec)
    if vec['kind'] == 'jws':
        check_jws(vec, key)
    else:
        check_jwe(vec, key)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'rfc.json')
    with open(path, encoding='utf-8') as f:
        vectors = json.load(f)
    names = [v.get('name') for v in vectors]
    failed = 0
    if len(names) != len(set(names)):
        print('FAIL duplicate vector names')
        failed += 1
    for vec in vectors:
        name = vec.get('name', '?')
        try:
            check(vec)
        except Exception as e:  # pylint: disable=broad-except
            failed += 1
            print('FAIL %s: %s: %s' % (name, type(e).__name__, e))
        else:
            print('ok %s' % name)
    print('%d/%d vectors verified' % (len(vectors) - failed, len(vectors)))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
