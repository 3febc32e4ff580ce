// jwks-server.mjs: a Cognito-like user pool on 127.0.0.1 for the tests.
//   GET  /<pool>/.well-known/jwks.json (also /.well-known/jwks.json): the JWKS
//   GET  /mint?case=<case>&sub=<user>: a token (see mint.mjs)
//   POST /rotate: publish key-3 and withdraw key-1 (key rotation)
//   GET  /stats: {"jwks_fetches": n}
// Prints "READY <port> <issuer> <audience>" once listening.  With a second
// argument <dir> holding cert.pem and key.pem it serves https instead.
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { generateKeyPair, exportJWK } from 'jose';
import { mint } from './mint.mjs';

const pool = 'eu-west-2_TestPool';
const audience = 'test-app-client';
const keys = {};
for (const kid of ['key-1', 'key-2', 'key-3', 'unpublished'])
  keys[kid] = await generateKeyPair('RS256', { modulusLength: 2048 });
let published = ['key-1', 'key-2'];
let fetches = 0;

async function jwks() {
  const out = [];
  for (const kid of published)
    out.push({ ...(await exportJWK(keys[kid].publicKey)), kid, alg: 'RS256', use: 'sig' });
  return { keys: out };
}

const tlsDir = process.argv[3];
const scheme = tlsDir ? 'https' : 'http';
const handler = async (req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  const send = (code, body, type = 'application/json') => {
    res.writeHead(code, { 'content-type': type });
    res.end(typeof body === 'string' ? body : JSON.stringify(body));
  };
  try {
    if (req.method === 'GET' && url.pathname.endsWith('/.well-known/jwks.json')) {
      fetches++;
      return send(200, await jwks());
    }
    if (req.method === 'GET' && url.pathname === '/mint')
      return send(200, await mint(url.searchParams.get('case'), keys, { issuer, audience },
                                  url.searchParams.get('sub') || '0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4'),
                  'text/plain');
    if (req.method === 'POST' && url.pathname === '/rotate') {
      published = ['key-2', 'key-3'];
      return send(200, { published });
    }
    if (req.method === 'GET' && url.pathname === '/stats')
      return send(200, { jwks_fetches: fetches });
    send(404, { error: 'not found' });
  } catch (e) {
    send(400, { error: String(e.message) });
  }
};
const server = tlsDir
  ? https.createServer({ cert: readFileSync(`${tlsDir}/cert.pem`), key: readFileSync(`${tlsDir}/key.pem`) }, handler)
  : http.createServer(handler);

let issuer;
server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  const port = server.address().port;
  issuer = `${scheme}://127.0.0.1:${port}/${pool}`;
  console.log(`READY ${port} ${issuer} ${audience}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
