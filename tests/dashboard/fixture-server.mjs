// A small stand-in for the operator's dashboard server, speaking the same HTTP contract
// (/work's dash contract: /api/session, /api/state, /api/events, the distro-open action, the
// security headers) from an in-memory snapshot, and serving the real assets from
// operator/src/dashboard/assets/. The page tests (test/page.test.mjs) drive the page against it
// with states the real stack cannot be put into on demand (two clusters, a stream that drops,
// a refused action, hostile values); test/stack.test.mjs runs the page against the real operator.
//
// As a program, for working on the page: `node tests/dashboard/fixture-server.mjs [--port 8090]
// [--anonymous-read]`; tokens `admin` (may patch) and `viewer` (may not).
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ASSETS = path.resolve(HERE, '..', '..', 'operator', 'src', 'dashboard', 'assets');
export const SNAPSHOT = path.join(HERE, 'fixtures', 'snapshot.json');

export const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const COMMON = {
  'content-security-policy': CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

/** The default tokens: `admin` may patch every StreamInstance, `viewer` none. */
export const TOKENS = {
  admin: { user: 'admin', groups: ['system:authenticated'], mayPatch: true },
  viewer: { user: 'system:serviceaccount:live:viewer', groups: ['system:serviceaccounts'], mayPatch: false },
};

export function loadSnapshot() {
  return JSON.parse(fs.readFileSync(SNAPSHOT, 'utf8'));
}

/** The effective open state as the operator's openness decision would make it (simplified). */
function recompute(c) {
  for (const i of c.instances) {
    if (!i.desiredOpen) {
      i.effectiveOpen = false;
      i.openReason = 'DesiredClosed';
    } else if (c.failover === 'Automatic' && i.healthy === false) {
      i.effectiveOpen = false;
      i.openReason = 'FailedOver';
    } else {
      i.effectiveOpen = true;
      i.openReason = 'DesiredOpen';
    }
  }
  const need = Math.min(c.minOpen, c.instances.length);
  let open = c.instances.filter((i) => i.effectiveOpen).length;
  for (const i of c.instances) {
    if (open >= need) break;
    if (!i.effectiveOpen) {
      i.effectiveOpen = true;
      i.openReason = 'HeldOpenForMinOpen';
      open++;
    }
  }
  c.effectiveOpenCount = open;
  c.desiredOpenCount = c.instances.filter((i) => i.desiredOpen).length;
}

/**
 * Starts the fixture server. Returns {url, requests, snapshot(), setSnapshot(s), mutate(fn),
 * dropStreams(), refuseStreams(bool), sessions, stop()}.
 */
export async function startFixtureServer({ port = 0, anonymousRead = false, snapshot = loadSnapshot(), tokens = TOKENS } = {}) {
  let snap = structuredClone(snapshot);
  const sessions = new Map(); // cookie -> {user, groups, mayPatch, csrf}
  const streams = new Set();
  const requests = [];
  let refuse = false;
  let seq = 1000;

  const json = (res, status, body, extra = {}) => {
    res.writeHead(status, { ...COMMON, 'content-type': 'application/json', 'cache-control': 'no-store', ...extra });
    res.end(JSON.stringify(body));
  };
  const session = (req) => {
    const m = /(?:^|;\s*)cvs_session=([^;]+)/.exec(req.headers.cookie ?? '');
    return m ? sessions.get(m[1]) : undefined;
  };
  const broadcast = () => {
    snap.generatedAt = new Date().toISOString();
    const line = `event: state\ndata: ${JSON.stringify(snap)}\n\n`;
    for (const res of streams) res.write(line);
  };
  const readBody = (req) => new Promise((resolve) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (data += c));
    req.on('end', () => resolve(data));
  });

  // As the operator does (dashboard/mod.rs `is_json`): a form another site posts is refused.
  const isJson = (req) =>
    (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase() === 'application/json';
  const notJson = (res) => json(res, 415, { error: 'the body must be JSON, sent with Content-Type: application/json' });

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    const p = url.pathname;
    const entry = { t: Date.now(), method: req.method, path: p, csrf: req.headers['x-csrf-token'] ?? null, cookie: Boolean(session(req)) };
    requests.push(entry);
    const s = session(req);
    const asset = { '/': ['index.html', 'text/html; charset=utf-8'], '/assets/app.js': ['app.js', 'text/javascript; charset=utf-8'], '/assets/app.css': ['app.css', 'text/css; charset=utf-8'] }[p];
    if (req.method === 'GET' && asset) {
      res.writeHead(200, { ...COMMON, 'content-type': asset[1], 'cache-control': 'no-cache' });
      res.end(fs.readFileSync(path.join(ASSETS, asset[0])));
      return;
    }
    if (p === '/api/session') {
      if (req.method === 'GET') {
        if (s) return json(res, 200, { user: s.user, groups: s.groups, csrfToken: s.csrf, anonymousRead });
        return json(res, 401, { error: 'no session', anonymousRead });
      }
      if (req.method === 'POST') {
        if (!isJson(req)) return notJson(res);
        let token = null;
        try {
          token = JSON.parse(await readBody(req)).token;
        } catch { /* below */ }
        entry.body = token === null ? null : '<token>';
        const who = typeof token === 'string' ? tokens[token] : undefined;
        if (!who) return json(res, 401, { error: 'the token was not accepted by the cluster (TokenReview: unauthenticated)' });
        const id = crypto.randomBytes(32).toString('hex');
        const csrf = crypto.randomBytes(16).toString('hex');
        sessions.set(id, { ...who, csrf });
        return json(res, 200, { user: who.user, groups: who.groups, csrfToken: csrf }, { 'set-cookie': `cvs_session=${id}; HttpOnly; SameSite=Strict; Path=/` });
      }
      if (req.method === 'DELETE') {
        const m = /(?:^|;\s*)cvs_session=([^;]+)/.exec(req.headers.cookie ?? '');
        if (m) sessions.delete(m[1]);
        res.writeHead(204, { ...COMMON, 'cache-control': 'no-store', 'set-cookie': 'cvs_session=; Max-Age=0; Path=/' });
        res.end();
        return;
      }
    }
    if (req.method === 'GET' && p === '/api/state') {
      if (!s && !anonymousRead) return json(res, 401, { error: 'sign in first' });
      return json(res, 200, snap);
    }
    if (req.method === 'GET' && p === '/api/events') {
      if (refuse) return json(res, 503, { error: 'refused by the fixture' });
      if (!s && !anonymousRead) return json(res, 401, { error: 'sign in first' });
      res.writeHead(200, { ...COMMON, 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
      res.write(`event: state\ndata: ${JSON.stringify(snap)}\n\n`);
      streams.add(res);
      req.on('close', () => streams.delete(res));
      return;
    }
    const m = /^\/api\/namespaces\/([^/]+)\/streaminstances\/([^/]+)\/distro-open$/.exec(p);
    if (m && req.method === 'POST') {
      if (!isJson(req)) return notJson(res);
      const ns = decodeURIComponent(m[1]);
      const name = decodeURIComponent(m[2]);
      let body = null;
      try {
        body = JSON.parse(await readBody(req));
      } catch { /* below */ }
      entry.body = body;
      if (!s) return json(res, 401, { error: 'sign in first' });
      if (req.headers['x-csrf-token'] !== s.csrf) return json(res, 403, { error: 'CSRF token missing or wrong' });
      if (typeof body?.open !== 'boolean') return json(res, 400, { error: 'body must be {"open": true|false}' });
      const c = snap.clusters.find((x) => x.namespace === ns && x.instances.some((i) => i.name === name));
      const inst = c?.instances.find((i) => i.name === name);
      if (!inst) return json(res, 404, { error: `streaminstances/${name} not found in ${ns}` });
      if (!s.mayPatch) return json(res, 403, { error: `${s.user} may not patch streaminstances/${name} in ${ns}` });
      inst.desiredOpen = body.open;
      recompute(c);
      c.timeline.unshift({ at: new Date().toISOString(), instance: name, kind: 'OpenChanged', message: `${s.user} set distroOpen=${body.open} from the dashboard`, eventSeq: ++seq, user: s.user });
      c.timeline = c.timeline.slice(0, 50);
      setImmediate(broadcast);
      return json(res, 200, { namespace: ns, name, distroOpen: body.open });
    }
    json(res, 404, { error: 'not found' });
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    requests,
    sessions,
    snapshot: () => snap,
    setSnapshot(s) {
      snap = structuredClone(s);
      broadcast();
    },
    /** Changes the snapshot in place with `fn(snapshot)` and pushes it. */
    mutate(fn) {
      fn(snap);
      broadcast();
    },
    /** Ends every open event stream (as an operator restart or a proxy timeout would). */
    dropStreams() {
      for (const res of streams) res.destroy();
      streams.clear();
    },
    /** While true, /api/events answers 503. */
    refuseStreams(v) {
      refuse = v;
    },
    streamCount: () => streams.size,
    stop: () => new Promise((r) => {
      for (const res of streams) res.destroy();
      server.closeAllConnections();
      server.close(r);
    }),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const port = Number(args[args.indexOf('--port') + 1] || 8090) || 8090;
  const s = await startFixtureServer({ port: args.includes('--port') ? port : 8090, anonymousRead: args.includes('--anonymous-read') });
  console.log(`dashboard fixture server on ${s.url} (tokens: admin, viewer)`);
  // Ages advance and reset as segments arrive, as on a live stream.
  setInterval(() => s.mutate((snap) => {
    for (const c of snap.clusters) {
      for (const i of c.instances) {
        for (const r of i.renditions) {
          r.ageMs += 1000;
          if (r.fresh && r.ageMs >= r.boundMs * 0.7) {
            r.ageMs = 0;
            r.mediaSequence += 1;
          }
        }
      }
    }
  }), 1000);
}
