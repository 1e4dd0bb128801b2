// Parses merged master playlists with hls.js's own M3U8 parser (the code a browser player runs)
// and checks what a player relies on. Usage: node parse-master.mjs FILE [FILE...]
// Prints one JSON summary per file (one line each); exits 1 when any check fails.
import { readFileSync } from 'node:fs';
import { M3U8Parser } from 'hls.js';

const BASE = 'https://player.invalid/master.m3u8';

function check(file) {
  const text = readFileSync(file, 'utf8');
  const problems = [];
  const parsed = M3U8Parser.parseMasterPlaylist(text, BASE);
  if (parsed.playlistParsingError) {
    problems.push(`hls.js: ${parsed.playlistParsingError.message}`);
  }
  const media = M3U8Parser.parseMasterPlaylistMedia(text, BASE, parsed);
  const audio = media.AUDIO || [];
  const subtitles = media.SUBTITLES || [];
  const captions = media['CLOSED-CAPTIONS'] || [];
  const groupsOf = (list) => new Set(list.map((m) => m.groupId));
  const groups = {
    AUDIO: groupsOf(audio),
    SUBTITLES: groupsOf(subtitles),
    'CLOSED-CAPTIONS': groupsOf(captions),
  };
  const pathways = new Set();
  // A group may only be referenced by the variants of one pathway.
  const groupPathway = new Map();
  const entries = [
    ...parsed.levels.map((l) => ['variant', l]),
    ...parsed.iframeVariants.map((l) => ['I-frame', l]),
  ];
  for (const [kind, level] of entries) {
    const url = level.url;
    if (!/^https?:\/\//.test(url) || url.startsWith('https://player.invalid/')) {
      problems.push(`${kind} URI is not absolute: ${url}`);
    }
    if (!(level.bitrate > 0)) problems.push(`${kind} ${url} has no bitrate`);
    const pathway = level.attrs['PATHWAY-ID'];
    if (!pathway) problems.push(`${kind} ${url} has no PATHWAY-ID`);
    pathways.add(pathway);
    if (kind !== 'variant') continue;
    for (const type of ['AUDIO', 'SUBTITLES', 'CLOSED-CAPTIONS']) {
      const id = level.attrs[type];
      if (!id || id === 'NONE') continue;
      if (!groups[type].has(id)) problems.push(`variant ${url}: ${type} group ${id} has no EXT-X-MEDIA`);
      const owner = groupPathway.get(`${type}/${id}`);
      if (owner !== undefined && owner !== pathway) {
        problems.push(`${type} group ${id} is referenced by pathways ${owner} and ${pathway}`);
      }
      groupPathway.set(`${type}/${id}`, pathway);
    }
  }
  for (const m of [...audio, ...subtitles]) {
    if (m.url && !/^[a-z]+:\/\//.test(m.url)) problems.push(`rendition URI not absolute: ${m.url}`);
  }
  if (parsed.contentSteering && !pathways.has(parsed.contentSteering.pathwayId)) {
    problems.push(`default pathway ${parsed.contentSteering.pathwayId} names no variant's pathway`);
  }
  return {
    file,
    levels: parsed.levels.length,
    iframes: parsed.iframeVariants.length,
    audio: audio.length,
    subtitles: subtitles.length,
    captions: captions.length,
    pathways: [...pathways].sort(),
    steering: parsed.contentSteering,
    sessionData: Object.keys(parsed.sessionData || {}).sort(),
    startTimeOffset: parsed.startTimeOffset,
    problems,
  };
}

let failed = false;
for (const file of process.argv.slice(2)) {
  let summary;
  try {
    summary = check(file);
  } catch (e) {
    summary = { file, problems: [`hls.js threw: ${e && e.stack ? e.stack : e}`] };
  }
  if (summary.problems.length > 0) failed = true;
  console.log(JSON.stringify(summary));
}
process.exit(failed ? 1 : 0);
