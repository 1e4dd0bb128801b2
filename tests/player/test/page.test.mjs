// The page server: the player page, hls.js, and the published master proxied with each CloudFront
// domain mapped to its local edge; and the redundant master the failover tests build.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { buildRedundantMaster, mapDomains, request, startPageServer } from '../lib/harness.mjs';

test('a proxied master maps every CloudFront domain to its local edge, on every request', async () => {
  let body = '#EXTM3U\n#EXT-X-CONTENT-STEERING:SERVER-URI="https://d1.cloudfront.net/steering.json"\nhttps://d1.cloudfront.net/s/720p/index.m3u8\nhttps://d2.cloudfront.net/s/720p/index.m3u8\n';
  const up = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/vnd.apple.mpegurl' });
    res.end(body);
  });
  await new Promise((r) => up.listen(0, '127.0.0.1', r));
  const pages = await startPageServer();
  try {
    const url = pages.proxy('/live/master.m3u8', `http://127.0.0.1:${up.address().port}/m.m3u8`, {
      'd1.cloudfront.net': 'http://127.0.0.1:9001',
      'd2.cloudfront.net': 'http://127.0.0.1:9002',
    });
    let r = await request('GET', url);
    assert.equal(r.status, 200);
    assert.equal(r.headers['access-control-allow-origin'], '*');
    assert.ok(r.body.includes('SERVER-URI="http://127.0.0.1:9001/steering.json"'));
    assert.ok(r.body.includes('\nhttp://127.0.0.1:9002/s/720p/index.m3u8\n'));
    assert.ok(!r.body.includes('cloudfront.net'));
    body = body.replace('720p', '1080p');
    r = await request('GET', url);
    assert.ok(r.body.includes('http://127.0.0.1:9001/s/1080p/index.m3u8'), 'fetched again, not cached');
    assert.equal((await request('GET', `${pages.url}/`)).status, 200);
    assert.equal((await request('GET', `${pages.url}/hls.js`)).status, 200);
  } finally {
    await pages.stop();
    up.close();
  }
  assert.equal(mapDomains('x', {}), 'x');
});

test('the redundant master lists every variant once per region with identical attributes', () => {
  const own = '#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n'
    + '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="English",URI="audio-en/index.m3u8"\n'
    + '#EXT-X-STREAM-INF:BANDWIDTH=928000,RESOLUTION=640x360,CODECS="avc1.64001e,mp4a.40.2",AUDIO="aud"\n360p/index.m3u8\n'
    + '#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=80000,URI="360p/iframes.m3u8"\n';
  const edges = [{ region: 'a', url: 'http://127.0.0.1:1' }, { region: 'b', url: 'http://127.0.0.1:2' }];
  const m = buildRedundantMaster(own, 's1', edges);
  const inf = m.split('\n').filter((l) => l.startsWith('#EXT-X-STREAM-INF:'));
  assert.equal(inf.length, 2);
  assert.equal(inf[0].replace('aud-a', 'X'), inf[1].replace('aud-b', 'X'), 'identical but for the audio group');
  assert.ok(m.includes('\nhttp://127.0.0.1:1/s1/360p/index.m3u8\n'));
  assert.ok(m.includes('GROUP-ID="aud-b",NAME="English",URI="http://127.0.0.1:2/s1/audio-en/index.m3u8"'));
  assert.ok(!m.includes('CONTENT-STEERING'));
  const st = buildRedundantMaster(own, 's1', edges, { serverUri: 'http://x/steering.json' });
  assert.ok(st.includes('#EXT-X-CONTENT-STEERING:SERVER-URI="http://x/steering.json",PATHWAY-ID="a"'));
  assert.ok(st.includes('AUDIO="aud-b",PATHWAY-ID="b"'));
});
