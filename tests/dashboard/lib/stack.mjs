// The real stack for the dashboard's browser tests: the local environment (tests/env/up.sh:
// etcd + kube-apiserver with RBAC, DynamoDB Local, moto) in a state dir of its own, the HLS origin
// simulator, a ClusteredStream with three StreamInstances and a state table, ServiceAccounts with
// and without RBAC on streaminstances, and the operator with its dashboard on.
import { execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { REPO, TARGET, waitFor } from './browser.mjs';

export const REGIONS = ['ap-southeast-1', 'eu-west-1', 'us-east-1'];
export const instanceName = (region) => `event-${region}`;
export const instanceDomain = (region) => `d-${region}.cloudfront.net`;

/**
 * Starts tests/env/up.sh in `stateDir` (reusing what runs there) and returns its environment
 * (the `export` lines, applied to a copy of process.env) and whether it was already up.
 */
export function envUp(stateDir) {
  const wasUp = fs.existsSync(path.join(stateDir, 'env.sh'));
  const out = execFileSync('bash', ['-c', 'eval "$(tests/env/up.sh)" && env -0'], {
    cwd: REPO,
    env: { ...process.env, CVS_STATE_DIR: stateDir },
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 16 << 20,
    timeout: 20 * 60_000,
  });
  const env = {};
  for (const kv of out.toString('utf8').split('\0')) {
    const i = kv.indexOf('=');
    if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return { env, wasUp };
}

export function envDown(stateDir) {
  execFileSync(path.join(REPO, 'tests', 'env', 'down.sh'), [], {
    cwd: REPO, env: { ...process.env, CVS_STATE_DIR: stateDir }, stdio: ['ignore', 'inherit', 'inherit'],
  });
}

export function kubectlFn(env) {
  return (args, input) => new Promise((resolve, reject) => {
    const child = execFile(env.CVS_KUBECTL, args, { env, maxBuffer: 16 << 20 }, (err, stdout, stderr) => (err ? reject(new Error(`kubectl ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout)));
    if (input !== undefined) child.stdin.end(input);
  });
}

/** The state-table item of `domain` (DynamoDB Local's JSON API, strongly consistent), or null. */
export async function stateItem(env, table, domain) {
  const r = await fetch(env.AWS_ENDPOINT_URL_DYNAMODB, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-amz-json-1.0',
      'x-amz-target': 'DynamoDB_20120810.GetItem',
      // DynamoDB Local reads the credential's shape, not its signature.
      authorization: `AWS4-HMAC-SHA256 Credential=${env.AWS_ACCESS_KEY_ID}/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0`,
    },
    body: JSON.stringify({ TableName: table, Key: { domain: { S: domain } }, ConsistentRead: true }),
    signal: AbortSignal.timeout(5000),
  });
  if (r.status !== 200) throw new Error(`DynamoDB GetItem ${table}/${domain}: ${r.status} ${await r.text()}`);
  return (await r.json()).Item ?? null;
}

/** Starts hls-origin-sim (TD `td` s, synthetic media); {control, regions, fault(body), heal(), stop()}. */
export async function startSim({ regions, td, renditions, logFile }) {
  const ready = `${logFile}.ready.json`;
  fs.rmSync(ready, { force: true });
  const log = fs.openSync(logFile, 'a');
  const child = spawn(path.join(TARGET, 'debug', 'hls-origin-sim'), [
    '--regions', regions.join(','), '--streams', '1', '--renditions', String(renditions),
    '--target-duration', String(td), '--align-streams', '--ready-file', ready, '--threads', '1',
  ], { stdio: ['ignore', 'ignore', log] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await waitFor(() => {
    if (child.exitCode !== null) throw new Error(`hls-origin-sim exited; see ${logFile}`);
    return fs.existsSync(ready);
  }, 30_000, 'hls-origin-sim to start');
  const line = JSON.parse(fs.readFileSync(ready, 'utf8'));
  fs.rmSync(ready, { force: true });
  const control = async (method, body) => {
    const r = await fetch(`${line.control}/faults`, {
      method, headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined,
    });
    if (r.status >= 300) throw new Error(`${method} /faults: ${r.status} ${await r.text()}`);
  };
  return {
    control: line.control,
    regions: line.regions,
    fault: (body) => control('POST', body),
    heal: () => control('DELETE'),
    async stop() {
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

/** Starts `cvs-operator run` with the dashboard on; {url, dashboard, log, stop()}. */
export async function startOperator({ env, namespace, logFile, freePort }) {
  const port = await freePort();
  const dport = await freePort();
  const log = fs.openSync(logFile, 'a');
  const child = spawn(path.join(TARGET, 'debug', 'cvs-operator'), [
    'run', '--namespace', namespace, '--listen', `127.0.0.1:${port}`, '--allow-private-origins',
    '--dashboard-addr', `127.0.0.1:${dport}`,
  ], { env: { ...env, CVS_LOG: 'info,cvs_operator=debug' }, stdio: ['ignore', log, log] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const url = `http://127.0.0.1:${port}`;
  const dashboard = `http://127.0.0.1:${dport}`;
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`the operator exited ${child.exitCode}; its log:\n${fs.readFileSync(logFile, 'utf8').slice(-3000)}`);
    const [ready, page] = await Promise.all([`${url}/readyz`, `${dashboard}/`].map((u) => fetch(u).then((r) => r.status, () => 0)));
    return ready === 200 && page === 200;
  }, 60_000, `the operator and its dashboard (log: ${logFile})`, 200);
  return {
    url,
    dashboard,
    async stop() {
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

/** A free loopback port. */
export async function freePort() {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The manifests: the ClusteredStream (automatic failover, minOpen 1) and one instance per region. */
export function manifests({ table, origins }) {
  const docs = [`apiVersion: cvs.dev/v1alpha1
kind: ClusteredStream
metadata:
  name: event
spec:
  stateTable: {name: ${table}, region: us-east-1, create: true}
  failover: {mode: Automatic, holdDownSeconds: 3}
  minOpen: 1
`];
  for (const region of REGIONS) {
    docs.push(`apiVersion: cvs.dev/v1alpha1
kind: StreamInstance
metadata:
  name: ${instanceName(region)}
spec:
  clusteredStream: event
  region: ${region}
  cloudfront: {domain: ${instanceDomain(region)}}
  origin: {url: "${origins[region]}/s0001/master.m3u8"}
`);
  }
  return docs.join('---\n');
}

/** ServiceAccount `oncall` (Role: get/list/watch/patch streaminstances) and `visitor` (no RBAC). */
export function rbac(namespace) {
  return `apiVersion: v1
kind: ServiceAccount
metadata: {name: oncall, namespace: ${namespace}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: visitor, namespace: ${namespace}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: stream-oncall, namespace: ${namespace}}
rules:
  - apiGroups: [cvs.dev]
    resources: [streaminstances]
    verbs: [get, list, watch, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: stream-oncall, namespace: ${namespace}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: stream-oncall}
subjects:
  - {kind: ServiceAccount, name: oncall, namespace: ${namespace}}
`;
}
