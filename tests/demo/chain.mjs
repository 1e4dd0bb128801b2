// What the demo's chain shows, read on the real components: the StreamInstances' conditions
// (kubectl), the state table (DynamoDB Local), the master and steering manifest the operator
// published (moto's S3 and the operator's /steering endpoint), the copilot's answer at a region's
// local edge, and the operator's log. tests/demo/failure.mjs (the scripted failure of `make demo`)
// and tests/player/test/chain.test.mjs (the player through the operator chain) use it on the
// demo.json that tests/demo.sh writes:
//   {namespace, cluster, controlUrl, operatorUrl, operatorLog, s3Endpoint, dynamodbEndpoint,
//    buckets, masterKey, steeringKey, table, kubectl, kubeconfig, page, viewerLog?,
//    instances: [{name, region, domain, edge}]}
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const requireEdge = createRequire(path.join(REPO, 'edge-lambda', 'package.json'));

/** The chain of one demo.json; every reader below polls the real component once. */
export function chain(cfg) {
  // The AWS SDK of edge-lambda/node_modules, which tests/demo.sh installs before writing demo.json.
  const ddbSdk = requireEdge('@aws-sdk/client-dynamodb');
  // DynamoDB Local takes any credentials; tests/env exports these.
  const ddb = new ddbSdk.DynamoDBClient({
    region: 'us-east-1', maxAttempts: 1, endpoint: cfg.dynamodbEndpoint,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  });
  const s3Url = (bucket, key) => `${cfg.s3Endpoint}/${bucket}/${key}`;
  const all = cfg.instances.map((i) => i.region).sort();

  function kubectl(args) {
    return new Promise((resolve, reject) => {
      execFile(cfg.kubectl, args, { maxBuffer: 16 << 20, env: { ...process.env, KUBECONFIG: cfg.kubeconfig } }, (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve(stdout)));
    });
  }

  /** {name: {Healthy: {status, reason}, Open: {...}}} of every StreamInstance in the namespace. */
  async function instanceConditions() {
    const list = JSON.parse(await kubectl(['get', 'streaminstances', '-n', cfg.namespace, '-o', 'json']));
    const out = {};
    for (const item of list.items) {
      const conds = {};
      for (const c of item.status?.conditions ?? []) conds[c.type] = { status: c.status, reason: c.reason };
      out[item.metadata.name] = conds;
    }
    return out;
  }

  async function distroOpen(domain) {
    const r = await ddb.send(new ddbSdk.GetItemCommand({ TableName: cfg.table, Key: { domain: { S: domain } }, ConsistentRead: true }));
    const v = r.Item?.distro_open?.BOOL;
    return v === undefined ? null : v;
  }

  async function getText(url) {
    const r = await fetch(url, { cache: 'no-store', signal: AbortSignal.timeout(3000) });
    return { status: r.status, body: await r.text(), headers: r.headers };
  }

  /** PATHWAY-PRIORITY of the steering manifest at `url` (S3's by default), or null. */
  async function steeringPriority(url = s3Url(cfg.buckets[0], cfg.steeringKey)) {
    const r = await getText(url);
    if (r.status !== 200) return null;
    return JSON.parse(r.body)['PATHWAY-PRIORITY'] ?? null;
  }

  /** The master in every bucket: its PATHWAY-IDs and whether it carries content steering; null when the buckets differ. */
  async function master() {
    let seen = null;
    for (const bucket of cfg.buckets) {
      const r = await getText(s3Url(bucket, cfg.masterKey));
      if (r.status !== 200) return null;
      const ids = [...new Set([...r.body.matchAll(/#EXT-X-STREAM-INF:.*PATHWAY-ID="([^"]+)"/g)].map((m) => m[1]))].sort();
      const hosts = [...new Set([...r.body.matchAll(/^https?:\/\/([^/]+)\//gm)].map((m) => m[1]))].sort();
      const key = JSON.stringify({ ids, hosts, steering: r.body.includes('#EXT-X-CONTENT-STEERING') });
      if (seen !== null && seen !== key) return null;
      seen = key;
    }
    return seen === null ? null : JSON.parse(seen);
  }

  /** The PATHWAY-IDs of the master's variants (steering on), or null when the buckets differ. */
  async function masterPathways() {
    return (await master())?.ids ?? null;
  }

  /** The regions whose CloudFront domain the master's variants use (steering on or off). */
  async function masterRegions() {
    const m = await master();
    if (!m) return null;
    return cfg.instances.filter((i) => m.hosts.includes(i.domain)).map((i) => i.region).sort();
  }

  /** The status of a media playlist through the region's edge, and whether the copilot answered. */
  async function edgeAnswer(inst) {
    const r = await getText(`${inst.edge}/s0001/720p/index.m3u8`);
    return { status: r.status, copilot: r.headers.get('x-cvs-copilot') };
  }

  /**
   * When the operator logged `instance health changed` for `instance` (namespace/name) to
   * `healthy` at or after `since` (unix ms); null when not (yet). Its log's lines start with an
   * RFC 3339 timestamp.
   */
  function healthChangeLogged(instance, healthy, since) {
    if (!cfg.operatorLog || !fs.existsSync(cfg.operatorLog)) return null;
    const text = fs.readFileSync(cfg.operatorLog, 'utf8');
    for (const line of text.split('\n')) {
      if (!line.includes('instance health changed') || !line.includes(instance) || !line.includes(`healthy=${healthy}`)) continue;
      const t = Date.parse(line.slice(0, line.indexOf(' ')));
      if (Number.isFinite(t) && t >= since) return t;
    }
    return null;
  }

  return {
    cfg, all, s3Url, kubectl, instanceConditions, distroOpen, getText, steeringPriority, master,
    masterPathways, masterRegions, edgeAnswer, healthChangeLogged,
    cond: (conds, name, type) => conds[name]?.[type] ?? {},
    instance: (region) => cfg.instances.find((i) => i.region === region),
    /** Sends a fault to the simulator's control endpoint (DELETE: heal every fault). */
    async control(method, body) {
      const r = await fetch(`${cfg.controlUrl}/faults`, {
        method,
        headers: body ? { 'content-type': 'application/json' } : {},
        body: body ? JSON.stringify(body) : undefined,
      });
      if (r.status >= 300) throw new Error(`${method} ${cfg.controlUrl}/faults: ${r.status} ${await r.text()}`);
    },
  };
}

export const same = (a, b) => a && b && a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Polls every probe (name -> async () => truthy detail | falsy) every `pollMs` until each is true
 * once, from `t0`. Returns [{step, ms, detail}] in the order seen; a probe not seen gets ms = null.
 * `say` prints each step as it is seen.
 */
export async function observe(t0, probes, { timeoutMs = 60_000, pollMs = 200, say = () => {} } = {}) {
  const seen = [];
  await Promise.all(
    probes.map(async ([step, probe]) => {
      const until = t0 + timeoutMs;
      while (Date.now() < until) {
        const at = Date.now();
        let v = null;
        try {
          v = await probe();
        } catch {
          v = null;
        }
        if (v) {
          // A probe may return {at, detail}: the time it read on the component itself.
          const when = typeof v === 'object' && v.at ? v.at : at;
          const detail = typeof v === 'string' ? v : (typeof v === 'object' && v.detail) || '';
          seen.push({ step, ms: when - t0, detail });
          say(`  +${String(when - t0).padStart(6)} ms  ${step}${detail ? ` (${detail})` : ''}`);
          return;
        }
        await sleep(pollMs);
      }
      seen.push({ step, ms: null, detail: `not seen within ${timeoutMs / 1000} s` });
      say(`  not seen within ${timeoutMs / 1000} s: ${step}`);
    }),
  );
  const order = new Map(probes.map(([step], i) => [step, i]));
  return seen.sort((a, b) => (a.ms ?? Infinity) - (b.ms ?? Infinity) || order.get(a.step) - order.get(b.step));
}

/** The probes of the steady state: every region healthy, open, in the table, the steering manifest (when on) and the master, and passed through by its edge. */
export function steadyProbes(c, { steering = true } = {}) {
  return [
    ['all healthy and open', async () => {
      const k = await c.instanceConditions();
      return c.cfg.instances.every((i) => c.cond(k, i.name, 'Healthy').status === 'True' && c.cond(k, i.name, 'Open').status === 'True');
    }],
    ['table: all open', async () => (await Promise.all(c.cfg.instances.map((i) => c.distroOpen(i.domain)))).every((v) => v === true)],
    ...(steering
      ? [['steering: all regions', async () => {
          const p = await c.steeringPriority();
          return p && [...p].sort().join() === c.all.join();
        }]]
      : []),
    ['master: all regions', async () => same(await c.masterRegions(), c.all)],
    ['edges pass through', async () => (await Promise.all(c.cfg.instances.map(c.edgeAnswer))).every((a) => a.status === 200)],
  ];
}
