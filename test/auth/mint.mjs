// mint.mjs: tokens for the auth tests, one per case, minted with jose (RS256)
// in Cognito's shapes.  The bad cases are built the way an attacker would:
// alg none, HS256 keyed with the public key, a kid naming another key,
// a payload edited after signing.
import { SignJWT, exportSPKI } from 'jose';
import { createHmac } from 'node:crypto';

const b64url = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');

// keys: { kid: { privateKey, publicKey } }; ctx: { issuer, audience }
export async function mint(kase, keys, ctx, sub) {
  const now = Math.floor(Date.now() / 1000);
  const access = { sub, token_use: 'access', client_id: ctx.audience, scope: 'aws.cognito.signin.user.admin',
                   username: 'user-' + sub.slice(0, 8), iss: ctx.issuer, iat: now, exp: now + 3600 };
  const id = { sub, token_use: 'id', aud: ctx.audience, 'cognito:username': 'user-' + sub.slice(0, 8),
               iss: ctx.issuer, iat: now, auth_time: now, exp: now + 3600 };
  const sign = (claims, kid = 'key-1', signer = kid) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' }).sign(keys[signer].privateKey);

  switch (kase) {
    case 'access': return sign(access);
    case 'id': return sign(id);
    case 'id_aud_array': return sign({ ...id, aud: ['other-app', ctx.audience] });
    case 'second_key': return sign(access, 'key-2');
    case 'expired': return sign({ ...access, iat: now - 7200, exp: now - 3600 });
    case 'expired_within_leeway': return sign({ ...access, iat: now - 600, exp: now - 10 });
    case 'short_lived': return sign({ ...access, exp: now + 3 });
    case 'not_yet_valid': return sign({ ...access, nbf: now + 3600 });
    case 'issued_in_future': return sign({ ...access, iat: now + 3600, exp: now + 7200 });
    case 'wrong_issuer': return sign({ ...access, iss: ctx.issuer + '-other' });
    case 'wrong_audience': return sign({ ...access, client_id: 'other-app' });
    case 'id_wrong_audience': return sign({ ...id, aud: 'other-app' });
    case 'access_with_aud_only': { const { client_id, ...rest } = access; return sign({ ...rest, aud: ctx.audience }); }
    case 'bad_token_use': return sign({ ...access, token_use: 'refresh' });
    case 'no_exp': { const { exp, ...rest } = access; return sign(rest); }
    case 'no_sub': { const { sub: _s, ...rest } = access; return sign(rest); }
    case 'unknown_kid': return sign(access, 'unpublished');
    case 'kid_of_other_key': return sign(access, 'key-1', 'key-2');
    case 'rotated': return sign(access, 'key-3');
    case 'alg_none':
      return b64url({ alg: 'none', kid: 'key-1', typ: 'JWT' }) + '.' + b64url(access) + '.';
    case 'hs256_public_key': {
      // the classic confusion: HMAC keyed with the RSA public key (PEM)
      const pem = await exportSPKI(keys['key-1'].publicKey);
      const input = b64url({ alg: 'HS256', kid: 'key-1', typ: 'JWT' }) + '.' + b64url(access);
      return input + '.' + createHmac('sha256', pem).update(input).digest('base64url');
    }
    case 'tampered': {
      const [h, , s] = (await sign(access)).split('.');
      return h + '.' + b64url({ ...access, sub: '00000000-0000-4000-8000-000000000000' }) + '.' + s;
    }
    default: throw new Error('unknown case ' + kase);
  }
}
