#!/usr/bin/python3
"""Generate fresh JWS/JWE test tokens with jwcrypto (independent of the Rust code).

Run with the system interpreter (Debian 12: python3-jwcrypto 1.1, cryptography 38):

    /usr/bin/python3 tests/vectors/jwcrypto_tokens.py OUTDIR [--check]

Generates new keys on every run, writes the key files into OUTDIR and prints
ONE JSON document to stdout: a list of cases

    {"name": ..., "kind": "jws"|"jwe", "alg": ..., "enc": ... (JWE only),
     "token": <compact serialization>, "payload": <exact payload string>,
     "key": <path>|null, "wrong_key": <path>|null,
     "password_file": <path>, "wrong_password_file": <path>   (PBES2 only),
     "key_form": "pem-spki"|"pem-pkcs8"|"pem-pkcs1"|"pem-sec1"|"pem-cert"|
                 "jwk"|"jwks"|"jwk-private"|"password"}

"pem-pkcs1" is "RSA PUBLIC KEY" for JWS cases whose name does not end in
"-private" and "RSA PRIVATE KEY" otherwise (all JWE RSA keys are private).
"jwk" is a public JWK for RSA/EC/OKP and the oct JWK for HMAC/AES keys.
JWKS files hold three keys with distinct kids; the token's "kid" (when
present) names the right one, except for "-nokid" cases (no kid in the
header) and "-unknownkid" cases (kid not in the set; the right key is still
in the set).  The wrong-key JWKS holds the same two decoys plus a fresh wrong
key that carries the right key's kid, so picking by kid gets the wrong key.

With --check the tokens are verified/decrypted again with jwcrypto from the
key files re-read from disk, the payload is compared, every wrong key/password
is confirmed to fail, and coverage of algorithms/encodings/key forms is
asserted.  The summary goes to stderr; stdout still carries only the JSON.

jwcrypto 1.1 limitations (worked around):
  * PBES2 "p2c" is hard-coded to 8192 in jwcrypto's wrap(); putting "p2c" in
    the protected header makes add_recipient fail with 'Duplicate header', so
    the cases use jwcrypto's 8192.
  * export_to_pem only writes SPKI / PKCS#8; PKCS#1, SEC1 and the X.509
    certificate are written with cryptography directly.
  * JWK.from_pem cannot import X25519 keys (import_from_pyca knows only the
    Ed25519/Ed448 OKP classes), though export_to_pem writes them fine; --check
    loads an X25519 PKCS#8 PEM with cryptography and builds the JWK from the
    raw key bytes.
  * JWS.verify / JWE.decrypt take a single JWK, not a JWKSet, so --check
    selects the key by kid itself (trying every key when there is no match).
"""
import base64
import datetime
import json
import os
import sys
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, ed448, x25519, x448
from cryptography.x509.oid import NameOID
from jwcrypto import jwe, jwk, jws
from jwcrypto.common import json_encode

JWS_ALGS = ['HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512',
            'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']
JWE_ALGS = ['dir', 'A128KW', 'A192KW', 'A256KW',
            'A128GCMKW', 'A192GCMKW', 'A256GCMKW',
            'RSA-OAEP', 'RSA-OAEP-256',
            'ECDH-ES', 'ECDH-ES+A128KW', 'ECDH-ES+A192KW', 'ECDH-ES+A256KW',
            'PBES2-HS256+A128KW', 'PBES2-HS384+A192KW', 'PBES2-HS512+A256KW']
ENCS = ['A128GCM', 'A192GCM', 'A256GCM',
        'A128CBC-HS256', 'A192CBC-HS384', 'A256CBC-HS512']
ENC_KEY_BYTES = {'A128GCM': 16, 'A192GCM': 24, 'A256GCM': 32,
                 'A128CBC-HS256': 32, 'A192CBC-HS384': 48, 'A256CBC-HS512': 64}
KEY_FORMS = ['pem-spki', 'pem-pkcs8', 'pem-pkcs1', 'pem-sec1', 'pem-cert',
             'jwk', 'jwks', 'jwk-private', 'password']
PBES2_P2C = 8192  # hard-coded in jwcrypto 1.1 (jwa._Pbes2HsAesKw.wrap)

# Internal form -> (key_form reported, name suffix, file extension)
FORMS = {
    'spki':       ('pem-spki', 'pem-spki', 'pem'),
    'pkcs8':      ('pem-pkcs8', 'pem-pkcs8', 'pem'),
    'pkcs1-pub':  ('pem-pkcs1', 'pem-pkcs1', 'pem'),
    'pkcs1-priv': ('pem-pkcs1', 'pem-pkcs1-private', 'pem'),
    'sec1':       ('pem-sec1', 'pem-sec1', 'pem'),
    'cert':       ('pem-cert', 'pem-cert', 'pem'),
    'jwk':        ('jwk', 'jwk', 'jwk.json'),
    'jwk-private': ('jwk-private', 'jwk-private', 'jwk.json'),
    'jwks':       ('jwks', 'jwks', 'jwks.json'),
    'password':   ('password', 'password', 'txt'),
}
PEM_BEGIN = {
    'spki': b'-----BEGIN PUBLIC KEY-----',
    'pkcs8': b'-----BEGIN PRIVATE KEY-----',
    'pkcs1-pub': b'-----BEGIN RSA PUBLIC KEY-----',
    'pkcs1-priv': b'-----BEGIN RSA PRIVATE KEY-----',
    'sec1': b'-----BEGIN EC PRIVATE KEY-----',
    'cert': b'-----BEGIN CERTIFICATE-----',
}

# (alg, key type, form, kid mode, plain-text payload?)
#   key type: 'rsa' | curve name | ('oct', nbytes)
#   kid mode (jwks only): 'kid' | 'nokid' | 'unknownkid'
JWS_SPECS = [
    ('HS256', ('oct', 32), 'jwk', None, False),
    ('HS384', ('oct', 48), 'jwks', 'kid', False),
    ('HS512', ('oct', 64), 'jwk', None, True),
    ('HS256', ('oct', 32), 'jwks', 'nokid', False),
    ('HS512', ('oct', 64), 'jwks', 'unknownkid', False),
    ('RS256', 'rsa', 'spki', None, False),
    ('RS384', 'rsa', 'pkcs1-pub', None, False),
    ('RS512', 'rsa', 'cert', None, False),
    ('PS256', 'rsa', 'jwk', None, False),
    ('PS384', 'rsa', 'jwks', 'kid', False),
    ('PS512', 'rsa', 'pkcs8', None, True),
    ('RS256', 'rsa', 'pkcs1-priv', None, False),
    ('PS256', 'rsa', 'jwk-private', None, False),
    ('RS512', 'rsa', 'jwks', 'nokid', False),
    ('PS384', 'rsa', 'jwks', 'unknownkid', False),
    ('ES256', 'P-256', 'spki', None, False),
    ('ES384', 'P-384', 'sec1', None, False),
    ('ES512', 'P-521', 'cert', None, False),
    ('ES256', 'P-256', 'jwk', None, False),
    ('ES384', 'P-384', 'jwks', 'kid', False),
    ('ES512', 'P-521', 'pkcs8', None, False),
    ('ES256', 'P-256', 'cert', None, True),
    ('ES512', 'P-521', 'jwk-private', None, False),
    ('ES256', 'P-256', 'sec1', None, False),
    ('ES256', 'P-256', 'jwks', 'unknownkid', False),
    ('ES384', 'P-384', 'jwks', 'nokid', False),
    ('EdDSA', 'Ed25519', 'spki', None, False),
    ('EdDSA', 'Ed25519', 'pkcs8', None, True),
    ('EdDSA', 'Ed25519', 'cert', None, False),
    ('EdDSA', 'Ed25519', 'jwk', None, False),
    ('EdDSA', 'Ed25519', 'jwk-private', None, False),
    ('EdDSA', 'Ed25519', 'jwks', 'kid', False),
]

# (alg, enc or None to cycle ENCS, key type, form, kid mode, plain text?)
JWE_SPECS = [
    ('dir', 'A128GCM', ('oct', 16), 'jwk', None, False),
    ('dir', 'A192GCM', ('oct', 24), 'jwks', 'kid', False),
    ('dir', 'A256GCM', ('oct', 32), 'jwk', None, True),
    ('dir', 'A128CBC-HS256', ('oct', 32), 'jwks', 'kid', False),
    ('dir', 'A192CBC-HS384', ('oct', 48), 'jwk', None, False),
    ('dir', 'A256CBC-HS512', ('oct', 64), 'jwks', 'nokid', False),
    ('A128KW', None, ('oct', 16), 'jwk', None, False),
    ('A192KW', None, ('oct', 24), 'jwks', 'kid', False),
    ('A256KW', None, ('oct', 32), 'jwk', None, False),
    ('A128GCMKW', None, ('oct', 16), 'jwks', 'kid', False),
    ('A192GCMKW', None, ('oct', 24), 'jwk', None, False),
    ('A256GCMKW', None, ('oct', 32), 'jwks', 'unknownkid', False),
    ('RSA-OAEP', None, 'rsa', 'pkcs8', None, False),
    ('RSA-OAEP-256', None, 'rsa', 'pkcs1-priv', None, False),
    ('RSA-OAEP', None, 'rsa', 'jwk-private', None, True),
    ('RSA-OAEP-256', None, 'rsa', 'jwks', 'kid', False),
    ('RSA-OAEP', None, 'rsa', 'jwks', 'nokid', False),
    ('ECDH-ES', None, 'P-256', 'sec1', None, False),
    ('ECDH-ES', None, 'P-384', 'pkcs8', None, False),
    ('ECDH-ES', None, 'X25519', 'pkcs8', None, False),
    ('ECDH-ES', None, 'X25519', 'jwk-private', None, True),
    ('ECDH-ES', None, 'P-256', 'jwks', 'unknownkid', False),
    ('ECDH-ES+A128KW', None, 'P-256', 'jwk-private', None, False),
    ('ECDH-ES+A128KW', None, 'P-256', 'jwks', 'nokid', False),
    ('ECDH-ES+A192KW', None, 'P-256', 'jwks', 'kid', False),
    ('ECDH-ES+A192KW', None, 'P-256', 'pkcs8', None, False),
    ('ECDH-ES+A256KW', None, 'P-256', 'sec1', None, False),
    ('ECDH-ES+A256KW', None, 'P-256', 'jwk-private', None, False),
    ('PBES2-HS256+A128KW', None, None, 'password', None, False),
    ('PBES2-HS384+A192KW', None, None, 'password', None, True),
    ('PBES2-HS512+A256KW', None, None, 'password', None, False),
]

PLAIN_TEXTS = [
    'plain text payload from jwcrypto, case {n}',
    'Grüße aus jwcrypto — ünïcødé plain text ✓ (case {n})',
    'line one of case {n}\nline two, not JSON at all',
]


# ---------------------------------------------------------------- keys

class RsaPool:
    """RSA 2048 keygen is the only slow part: generate a handful, reuse them."""

    def __init__(self):
        self.keys = [jwk.JWK.generate(kty='RSA', size=2048) for _ in range(5)]

    def right(self, kind):
        return self.keys[0 if kind == 'jws' else 1]

    def wrong(self):
        return self.keys[2]

    def decoys(self):
        return self.keys[3:5]


def fresh_key(ktype):
    if isinstance(ktype, tuple):
        return jwk.JWK.generate(kty='oct', size=ktype[1] * 8)
    if ktype in ('P-256', 'P-384', 'P-521'):
        return jwk.JWK.generate(kty='EC', crv=ktype)
    if ktype in ('Ed25519', 'X25519'):
        return jwk.JWK.generate(kty='OKP', crv=ktype)
    raise ValueError(ktype)


def with_kid(key, kid):
    d = key.export(private_key=True, as_dict=True)
    d = dict(d)
    if kid is None:
        d.pop('kid', None)
    else:
        d['kid'] = kid
    return jwk.JWK(**d)


def pyca_private(key):
    return serialization.load_pem_private_key(
        key.export_to_pem(private_key=True, password=None), password=None)


def self_signed_cert(key, cn):
    priv = pyca_private(key)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.utcnow()
    algo = None if isinstance(priv, (ed25519.Ed25519PrivateKey,
                                     ed448.Ed448PrivateKey)) else hashes.SHA256()
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(priv.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                           critical=True)
            .sign(priv, algo))
    return cert.public_bytes(serialization.Encoding.PEM)


def jwk_json(key, private):
    if key.is_symmetric:
        d = key.export_symmetric(as_dict=True)
    elif private:
        d = key.export_private(as_dict=True)
    else:
        d = key.export_public(as_dict=True)
    return dict(d)


def render(key, form, private_jwks, jwks_keys=None, cn='jwcrypto test key'):
    """Serialize key in the given internal form. Returns bytes."""
    if form == 'spki':
        return key.export_to_pem(private_key=False)
    if form == 'pkcs8':
        return key.export_to_pem(private_key=True, password=None)
    if form == 'pkcs1-pub':
        return pyca_private(key).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    if form in ('pkcs1-priv', 'sec1'):
        return pyca_private(key).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption())
    if form == 'cert':
        return self_signed_cert(key, cn)
    if form == 'jwk':
        return (json.dumps(jwk_json(key, False), indent=2) + '\n').encode()
    if form == 'jwk-private':
        return (json.dumps(jwk_json(key, True), indent=2) + '\n').encode()
    if form == 'jwks':
        doc = {'keys': [jwk_json(k, private_jwks) for k in jwks_keys]}
        return (json.dumps(doc, indent=2) + '\n').encode()
    raise ValueError(form)


# ---------------------------------------------------------------- generation

def make_payload(n, text):
    if text:
        return PLAIN_TEXTS[n % len(PLAIN_TEXTS)].format(n=n)
    return json.dumps({'iss': 'jwcrypto', 'n': n}, separators=(',', ':'))


class Writer:
    def __init__(self, outdir):
        self.outdir = os.path.abspath(outdir)
        os.makedirs(self.outdir, exist_ok=True)

    def write(self, fname, data):
        path = os.path.join(self.outdir, fname)
        with open(path, 'wb') as f:
            f.write(data)
        return path


def safe(name):
    return name.replace('+', '_')


def build_keys(kind, ktype, form, kidmode, n, rsa_pool):
    """Returns (signing/encryption JWK, right file bytes, wrong file bytes,
    header kid or None)."""
    if ktype == 'rsa':
        right = rsa_pool.right(kind)
        wrong = rsa_pool.wrong()
    else:
        right = fresh_key(ktype)
        wrong = fresh_key(ktype)
    private_jwks = kind == 'jwe'
    kid = None
    if form == 'jwks':
        right_kid = 'right-%d' % n
        decoys = (rsa_pool.decoys() if ktype == 'rsa'
                  else [fresh_key(ktype), fresh_key(ktype)])
        decoys = [with_kid(d, 'decoy-%d-%s' % (n, s))
                  for d, s in zip(decoys, 'ab')]
        right = with_kid(right, right_kid)
        wrong = with_kid(wrong, right_kid)
        right_bytes = render(right, form, private_jwks,
                             [decoys[0], right, decoys[1]])
        wrong_bytes = render(wrong, form, private_jwks,
                             [decoys[0], wrong, decoys[1]])
        if kidmode == 'kid':
            kid = right_kid
        elif kidmode == 'unknownkid':
            kid = 'unknown-%d' % n
        elif kidmode != 'nokid':
            raise ValueError(kidmode)
    else:
        right = with_kid(right, None)
        wrong = with_kid(wrong, None)
        right_bytes = render(right, form, private_jwks, cn='jwcrypto right %d' % n)
        wrong_bytes = render(wrong, form, private_jwks, cn='jwcrypto wrong %d' % n)
    return right, right_bytes, wrong_bytes, kid


def case_name(prefix, form, kidmode):
    suffix = FORMS[form][1]
    if form == 'jwks' and kidmode in ('nokid', 'unknownkid'):
        suffix += '-' + kidmode
    return prefix + '-' + suffix


def generate(outdir):
    w = Writer(outdir)
    rsa_pool = RsaPool()
    cases = []
    n = 0

    for alg, ktype, form, kidmode, text in JWS_SPECS:
        n += 1
        name = case_name(alg, form, kidmode)
        key, right_bytes, wrong_bytes, kid = build_keys(
            'jws', ktype, form, kidmode, n, rsa_pool)
        ext = FORMS[form][2]
        payload = make_payload(n, text)
        header = {'alg': alg}
        if kid is not None:
            header['kid'] = kid
        if not text:
            header['typ'] = 'JWT'
        s = jws.JWS(payload.encode('utf-8'))
        s.add_signature(key, alg=None, protected=json_encode(header))
        token = s.serialize(compact=True)
        cases.append({
            'name': name, 'kind': 'jws', 'alg': alg, 'token': token,
            'payload': payload,
            'key': w.write(safe(name) + '.key.' + ext, right_bytes),
            'wrong_key': w.write(safe(name) + '.wrong.' + ext, wrong_bytes),
            'key_form': FORMS[form][0],
        })

    enc_cycle = 0
    for alg, enc, ktype, form, kidmode, text in JWE_SPECS:
        n += 1
        if enc is None:
            enc = ENCS[enc_cycle % len(ENCS)]
            enc_cycle += 1
        prefix = alg + '-' + enc
        if ktype in ('P-384', 'P-521', 'X25519'):
            prefix = alg + '-' + ktype.replace('-', '') + '-' + enc
        name = case_name(prefix, form, kidmode)
        payload = make_payload(n, text)
        header = {'alg': alg, 'enc': enc}
        if not text:
            header['typ'] = 'JWT'
        entry = {'name': name, 'kind': 'jwe', 'alg': alg, 'enc': enc}
        if form == 'password':
            pw = 'pw-%d-%s' % (n, base64url(os.urandom(12)))
            wrong_pw = 'pw-%d-%s' % (n, base64url(os.urandom(12)))
            key = jwk.JWK.from_password(pw)
            entry.update({
                'key': None, 'wrong_key': None,
                'password_file': w.write(safe(name) + '.password.txt',
                                         (pw + '\n').encode()),
                'wrong_password_file': w.write(safe(name) + '.wrong-password.txt',
                                               (wrong_pw + '\n').encode()),
            })
            enc_key = key
        else:
            if alg == 'dir' and ktype != ('oct', ENC_KEY_BYTES[enc]):
                raise AssertionError('dir key size mismatch for ' + name)
            key, right_bytes, wrong_bytes, kid = build_keys(
                'jwe', ktype, form, kidmode, n, rsa_pool)
            if kid is not None:
                header['kid'] = kid
            ext = FORMS[form][2]
            entry.update({
                'key': w.write(safe(name) + '.key.' + ext, right_bytes),
                'wrong_key': w.write(safe(name) + '.wrong.' + ext, wrong_bytes),
            })
            enc_key = key if key.is_symmetric else key.public()
        e = jwe.JWE(payload.encode('utf-8'), protected=json_encode(header))
        e.add_recipient(enc_key)
        entry['token'] = e.serialize(compact=True)
        entry['payload'] = payload
        entry['key_form'] = FORMS[form][0]
        # keep a stable field order: name, kind, alg, enc, token, payload, ...
        ordered = {k: entry[k] for k in ('name', 'kind', 'alg', 'enc', 'token',
                                         'payload', 'key', 'wrong_key')}
        ordered.update(entry)
        cases.append(ordered)
    return cases


def base64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode('ascii')


# ---------------------------------------------------------------- check

def protected_header(token):
    h = token.split('.')[0]
    return json.loads(base64.urlsafe_b64decode(h + '=' * (-len(h) % 4)))


def pem_to_jwk(data):
    """JWK.from_pem, plus the X25519/X448 private keys that jwcrypto 1.1's
    import_from_pyca does not know (it handles only Ed25519/Ed448 OKP keys)."""
    try:
        return jwk.JWK.from_pem(data)
    except jwk.InvalidJWKValue:
        priv = serialization.load_pem_private_key(data, password=None)
        if not isinstance(priv, (x25519.X25519PrivateKey, x448.X448PrivateKey)):
            raise
        crv = 'X25519' if isinstance(priv, x25519.X25519PrivateKey) else 'X448'
        raw = priv.private_bytes(serialization.Encoding.Raw,
                                 serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
        pub = priv.public_key().public_bytes(serialization.Encoding.Raw,
                                             serialization.PublicFormat.Raw)
        return jwk.JWK(kty='OKP', crv=crv, d=base64url(raw), x=base64url(pub))


def load_candidates(path, form, header):
    """Key candidates from a key file on disk, picked the way a verifier
    would: by kid if the header's kid is in the set, else every key."""
    with open(path, 'rb') as f:
        data = f.read()
    if form == 'password':
        text = data.decode('utf-8')
        assert text.endswith('\n') and not text.endswith('\n\n'), path
        return [jwk.JWK.from_password(text[:-1])]
    if form.startswith('pem-'):
        first = data.split(b'\n', 1)[0]
        allowed = {'pem-spki': ['spki'], 'pem-pkcs8': ['pkcs8'],
                   'pem-pkcs1': ['pkcs1-pub', 'pkcs1-priv'], 'pem-sec1': ['sec1'],
                   'pem-cert': ['cert']}[form]
        assert any(first == PEM_BEGIN[a] for a in allowed), (path, first)
        return [pem_to_jwk(data)]
    if form in ('jwk', 'jwk-private'):
        k = jwk.JWK.from_json(data.decode('utf-8'))
        if form == 'jwk-private':
            assert k.has_private, path
        elif not k.is_symmetric:
            assert not k.has_private, path
        return [k]
    if form == 'jwks':
        ks = jwk.JWKSet.from_json(data.decode('utf-8'))
        keys = list(ks['keys'])
        assert len(keys) == 3, path
        kids = [k.get('kid') for k in keys]
        assert None not in kids and len(set(kids)) == 3, (path, kids)
        kid = header.get('kid')
        if kid is not None and kid in kids:
            return [k for k in keys if k.get('kid') == kid]
        return keys
    raise ValueError(form)


def try_case(case, path):
    header = protected_header(case['token'])
    cands = load_candidates(path, case['key_form'], header)
    errors = []
    for k in cands:
        try:
            if case['kind'] == 'jws':
                s = jws.JWS()
                s.deserialize(case['token'])
                s.verify(k)
                got = s.payload
            else:
                e = jwe.JWE()
                e.deserialize(case['token'], key=k)
                got = e.plaintext
            return got.decode('utf-8'), len(cands)
        except Exception as ex:  # pylint: disable=broad-except
            errors.append(repr(ex))
    return None, errors


def check(cases):
    failures = []
    names = [c['name'] for c in cases]
    if len(set(names)) != len(names):
        failures.append('duplicate names')
    for c in cases:
        name = c['name']
        try:
            header = protected_header(c['token'])
            parts = c['token'].split('.')
            assert len(parts) == (3 if c['kind'] == 'jws' else 5), 'segments'
            assert header['alg'] == c['alg'], 'alg header'
            if c['kind'] == 'jwe':
                assert header['enc'] == c['enc'], 'enc header'
            if c['key_form'] == 'jwks':
                with open(c['key'], 'rb') as f:
                    kids = [k.get('kid') for k in json.load(f)['keys']]
                if name.endswith('-nokid'):
                    assert 'kid' not in header, 'nokid has kid'
                elif name.endswith('-unknownkid'):
                    assert header.get('kid') not in kids, 'kid is in set'
                else:
                    assert header.get('kid') in kids, 'kid not in set'
            if c['alg'] == 'dir':
                with open(c['key']) as f:
                    doc = json.load(f)
                ks = doc['keys'] if 'keys' in doc else [doc]
                for kd in ks:
                    raw = base64.urlsafe_b64decode(
                        kd['k'] + '=' * (-len(kd['k']) % 4))
                    assert len(raw) == ENC_KEY_BYTES[c['enc']], 'dir key size'
            if c['alg'].startswith('PBES2'):
                assert header.get('p2c') == PBES2_P2C, 'p2c'
                right, wrong = c['password_file'], c['wrong_password_file']
                assert c['key'] is None
            else:
                right, wrong = c['key'], c['wrong_key']
            got, info = try_case(c, right)
            assert got is not None, 'right key failed: %s' % info
            assert got == c['payload'], 'payload mismatch %r' % got
            bad, _ = try_case(c, wrong)
            assert bad is None, 'wrong key verified/decrypted'
        except Exception as ex:  # pylint: disable=broad-except
            failures.append('%s: %r' % (name, ex))
            print('FAIL %s: %r' % (name, ex), file=sys.stderr)
        else:
            print('ok %s' % name, file=sys.stderr)

    # coverage
    algs = {c['alg'] for c in cases}
    for a in JWS_ALGS + JWE_ALGS:
        if a not in algs:
            failures.append('alg not covered: ' + a)
    encs = {c['enc'] for c in cases if c['kind'] == 'jwe'}
    for e in ENCS:
        if e not in encs:
            failures.append('enc not covered: ' + e)
    forms = {c['key_form'] for c in cases}
    for f in KEY_FORMS:
        if f not in forms:
            failures.append('key form not covered: ' + f)
    if not any(n.endswith('-nokid') for n in names):
        failures.append('no -nokid case')
    if not any(n.endswith('-unknownkid') for n in names):
        failures.append('no -unknownkid case')
    return failures


def main(argv):
    args = [a for a in argv[1:] if a != '--check']
    if len(args) != 1:
        print('usage: %s OUTDIR [--check]' % argv[0], file=sys.stderr)
        return 2
    t0 = time.monotonic()
    cases = generate(args[0])
    t1 = time.monotonic()
    json.dump(cases, sys.stdout, indent=1)
    sys.stdout.write('\n')
    sys.stdout.flush()
    if '--check' in argv[1:]:
        failures = check(cases)
        t2 = time.monotonic()
        print('%d cases, generation %.2fs, check %.2fs'
              % (len(cases), t1 - t0, t2 - t1), file=sys.stderr)
        if failures:
            for f in failures:
                print('FAIL ' + f, file=sys.stderr)
            return 1
        print('all ok', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
