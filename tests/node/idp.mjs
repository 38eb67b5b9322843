// A real OpenID Provider (npm oidc-provider) on loopback for mcp-warden's end-to-end tests.
//
//   node tests/node/idp.mjs --config CONFIG.json --ready-file READY.json
//
// Binds 127.0.0.1 port 0, then writes {"port": N, "issuer": "http://127.0.0.1:N", "kids": [...]}
// to the ready file (temp file + rename: a reader never sees half a file). No sleeps.
//
// It issues real RFC 9068 JWT access tokens through the client_credentials grant with
// resource indicators (RFC 8707): POST /token with grant_type=client_credentials and
// resource=AUDIENCE, client authentication client_secret_basic. Every token is signed by the
// provider with its own keystore and served keys (discovery, /jwks) are the real ones.
//
// CONFIG.json:
//   {"clients": [{"client_id": "...", "client_secret": "...",
//                 "alg": "RS256",                  // JWS alg of this client's access tokens
//                 "claims": {"email": "...", ...}, // extraTokenClaims
//                 "customize": {"iss": "...", "iat_offset": -7200, "exp_offset": -3600,
//                               "nbf_offset": 3600,   // formats.customizers.jwt, seconds from now
//                               "drop_aud": true}}],  // no `aud`, `client_id` only: the shape of
//                                                     // an Amazon Cognito access token
//    "ttl": 300}
//
// Test controls, under /__test/ (never part of the OpenID Provider):
//   POST /__test/rotate?keep_old=0|1  new RSA + EC keys sign from now on; the old ones stay
//                                     published only with keep_old=1 (a rotation done right
//                                     publishes first; keep_old=0 is an abrupt one)
//   POST /__test/mode?m=ok|down|hang  down: every OpenID request gets 503; hang: no answer
//   GET  /__test/stats                {"discovery": n, "jwks": n, "token": n, "kids": [...]}
//   POST /__test/sign                 body {"kid": "rsa-…", "header": TEXT, "payload": TEXT}:
//                                     RS256 over base64url(TEXT).base64url(TEXT) with the
//                                     provider's own published RSA key `kid`; answers
//                                     {"token": "…"}. The texts are signed byte for byte, so a
//                                     test can have the provider's key sign JSON no provider
//                                     would write (a key named twice) — proving a refusal is
//                                     not a signature failure.

import { createPrivateKey, generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { writeFileSync, renameSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: { config: { type: 'string' }, 'ready-file': { type: 'string' } },
});
if (!args.config || !args['ready-file']) {
  console.error('usage: idp.mjs --config CONFIG.json --ready-file READY.json');
  process.exit(2);
}
const config = JSON.parse(readFileSync(args.config, 'utf8'));
const clientsById = new Map(config.clients.map((c) => [c.client_id, c]));
const ttl = config.ttl ?? 300;

function newKeys() {
  const stamp = randomUUID().slice(0, 8);
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return [
    { ...rsa, kid: `rsa-${stamp}`, use: 'sig' },
    { ...ec, kid: `ec-${stamp}`, use: 'sig', alg: 'ES256' },
  ];
}

const stats = { discovery: 0, jwks: 0, token: 0 };
let mode = 'ok';
let keys = newKeys();
let provider;
let issuer;

function makeProvider() {
  const p = new Provider(issuer, {
    clients: config.clients.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: 'mcp',
    })),
    jwks: { keys },
    scopes: ['mcp'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: (ctx, client, oneOf) => oneOf,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator, client) => ({
          scope: 'mcp',
          audience: resourceIndicator,
          accessTokenTTL: ttl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: clientsById.get(client.clientId)?.alg ?? 'RS256' } },
        }),
      },
    },
    ttl: { ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? ttl },
    extraTokenClaims: (ctx, token) => clientsById.get(token.clientId)?.claims,
    formats: {
      customizers: {
        jwt: (ctx, token, jwt) => {
          const custom = clientsById.get(token.clientId)?.customize;
          if (!custom) return;
          const now = Math.floor(Date.now() / 1000);
          if (custom.iss !== undefined) jwt.payload.iss = custom.iss;
          if (custom.iat_offset !== undefined) jwt.payload.iat = now + custom.iat_offset;
          if (custom.exp_offset !== undefined) jwt.payload.exp = now + custom.exp_offset;
          if (custom.nbf_offset !== undefined) jwt.payload.nbf = now + custom.nbf_offset;
          // oidc-provider refuses a JWT access token without `aud` (RFC 9068 requires one),
          // so its check is handed a value that serialises to nothing: the token it signs
          // carries no `aud`, only `client_id`, as Amazon Cognito's access tokens do.
          if (custom.drop_aud) jwt.payload.aud = { toJSON: () => undefined };
        },
      },
    },
  });
  p.on('server_error', (ctx, err) => console.error('server_error', err));
  return p;
}

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

const kids = () => keys.map((k) => k.kid);

const b64url = (text) => Buffer.from(text, 'utf8').toString('base64url');

function signText(req, res) {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const { kid, header, payload } = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    const jwk = keys.find((k) => k.kid === kid && k.kty === 'RSA');
    if (!jwk) return json(res, 404, { error: `no RSA key ${kid}` });
    const input = `${b64url(header)}.${b64url(payload)}`;
    const signature = sign('sha256', Buffer.from(input), createPrivateKey({ key: jwk, format: 'jwk' }));
    return json(res, 200, { token: `${input}.${signature.toString('base64url')}` });
  });
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname.startsWith('/__test/')) {
    if (url.pathname === '/__test/stats') return json(res, 200, { ...stats, kids: kids(), mode });
    if (url.pathname === '/__test/mode' && req.method === 'POST') {
      mode = url.searchParams.get('m') ?? 'ok';
      console.log(`mode ${mode}`);
      return json(res, 200, { mode });
    }
    if (url.pathname === '/__test/rotate' && req.method === 'POST') {
      const fresh = newKeys();
      keys = url.searchParams.get('keep_old') === '1' ? [...fresh, ...keys] : fresh;
      provider = makeProvider();
      console.log(`rotated: signing with ${fresh.map((k) => k.kid).join(',')}, publishing ${kids().join(',')}`);
      return json(res, 200, { kids: kids() });
    }
    if (url.pathname === '/__test/sign' && req.method === 'POST') return signText(req, res);
    return json(res, 404, { error: 'unknown test control' });
  }
  if (url.pathname === '/.well-known/openid-configuration') stats.discovery += 1;
  if (url.pathname === '/jwks') stats.jwks += 1;
  if (url.pathname === '/token') stats.token += 1;
  if (mode === 'down') return json(res, 503, { error: 'temporarily_unavailable' });
  if (mode === 'hang') return undefined; // never answered: the caller's timeout must fire
  return provider.callback()(req, res);
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  issuer = `http://127.0.0.1:${port}`;
  provider = makeProvider();
  const ready = args['ready-file'];
  writeFileSync(`${ready}.tmp`, JSON.stringify({ port, issuer, kids: kids(), pid: process.pid }));
  renameSync(`${ready}.tmp`, ready);
  console.log(`oidc-provider listening on ${issuer}`);
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
