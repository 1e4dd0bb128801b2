// The operator's live dashboard. Plain JavaScript, no dependency, no inline script, no eval:
// the page is served with `script-src 'self'; style-src 'self'`.
//
// Data: GET /api/session (who am I, CSRF token, may anonymous users read), then the snapshot
// pushed on EventSource('/api/events') (`event: state`). The DOM is built once per cluster,
// instance, rendition and timeline entry and then only updated in place (text, attributes), so an
// update never moves the layout. The bearer token is sent once to POST /api/session and then
// forgotten; the session is an HttpOnly cookie and the CSRF token lives in this closure only.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);

  const app = {
    user: null, // {user, groups} when signed in
    csrf: null, // CSRF token of the session, in memory only
    anonymousRead: false,
    es: null,
    reconnectTimer: null,
    reconnectAttempt: 0,
    live: false,
    snapshot: null,
    receivedAt: 0, // performance.now() when the snapshot arrived
    clusters: new Map(), // "ns/name" -> {el, rows: Map(name -> row), events: Map(key -> li), data}
    dialog: null, // {ns, cluster, instance, open, opener}
    first: true,
  };

  // ---------------------------------------------------------------------------------------------
  // Formatting (pure)

  /** A finite number from hostile input, clamped to [min, max]; `fallback` otherwise. */
  function num(v, min, max, fallback = null) {
    return typeof v === 'number' && Number.isFinite(v) ? Math.min(max, Math.max(min, v)) : fallback;
  }

  function seconds(ms) {
    const s = ms / 1000;
    return s >= 100 ? `${Math.round(s)} s` : `${s.toFixed(1)} s`;
  }

  function boundText(ms) {
    const s = ms / 1000;
    return Number.isInteger(s) ? `${s} s` : `${s.toFixed(1)} s`;
  }

  /** HH:MM:SS UTC of an RFC 3339 time, or "—". */
  function clock(iso, withMs = false) {
    if (typeof iso !== 'string') return '—';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return '—';
    const t = d.toISOString().slice(11, withMs ? 23 : 19);
    return t;
  }

  function plural(n, one, many) {
    return `${n} ${n === 1 ? one : many}`;
  }

  /** "2 of 3 open, minOpen 1: 1 more may close". */
  function headroomText(c) {
    const n = c.instances.length;
    const eff = c.effectiveOpenCount;
    const min = c.minOpen;
    const may = eff - Math.min(min, n);
    let tail;
    if (may > 0) tail = `${may} more may close`;
    else if (may === 0) tail = 'none may close';
    else tail = `${-may} below minOpen`;
    const desired = c.desiredOpenCount !== eff ? ` (${c.desiredOpenCount} asked open)` : '';
    return `${eff} of ${n} open${desired}, minOpen ${min}: ${tail}`;
  }

  function regionLabel(inst) {
    return inst.region || inst.name;
  }

  /**
   * What the confirmation dialog says the operator will do (pure): closing or opening `inst` in
   * cluster `c`, as the openness decision (operator/src/openness.rs) would.
   */
  function outcomeText(c, inst, open) {
    const who = regionLabel(inst);
    const min = c.minOpen;
    if (!open) {
      if (!inst.effectiveOpen) {
        return `${who} is already closed (${inst.openReason || 'Closed'}); this keeps it closed after it recovers, until someone opens it again.`;
      }
      const left = c.effectiveOpenCount - 1;
      const need = Math.min(min, c.instances.length);
      if (left < need) {
        return `Closing ${who} leaves ${left} open; minOpen is ${min}, so the operator will keep it open (HeldOpenForMinOpen) until another region is open.`;
      }
      return `Closing ${who} leaves ${left} open; minOpen is ${min}, so the operator will close it: its players move to the ${plural(left, 'other open region', 'other open regions')}.`;
    }
    if (inst.effectiveOpen) {
      return `${who} is open now (${inst.openReason || 'Open'}); this asks for it to stay open once the operator no longer needs to hold it for minOpen.`;
    }
    const auto = c.failover === 'Automatic';
    if (inst.healthy === false && auto) {
      return `${who} is stale: with automatic failover the operator keeps it closed until it is healthy again and has stayed so for the hold-down time. ${c.effectiveOpenCount} of ${c.instances.length} open now.`;
    }
    return `Opening ${who} makes ${c.effectiveOpenCount + 1} of ${c.instances.length} open${auto ? ' (after the hold-down if it has just recovered)' : ''}.`;
  }

  // ---------------------------------------------------------------------------------------------
  // HTTP

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method !== 'GET' && app.csrf) headers['X-CSRF-Token'] = app.csrf;
    let r;
    try {
      r = await fetch(path, {
        method,
        headers,
        credentials: 'same-origin',
        cache: 'no-store',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      return { status: 0, body: { error: `the operator could not be reached (${e.message})` } };
    }
    let data = null;
    const text = await r.text().catch(() => '');
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = { error: text.slice(0, 300) };
      }
    }
    return { status: r.status, body: data ?? {} };
  }

  // ---------------------------------------------------------------------------------------------
  // Session

  async function boot() {
    const r = await api('GET', '/api/session');
    if (r.status === 200) {
      signedIn(r.body);
    } else if (r.status === 401) {
      app.anonymousRead = r.body.anonymousRead === true;
      signedOut();
    } else {
      setConn('offline', `Operator unreachable (${r.status || 'network'})`);
      notice(r.body.error || `GET /api/session answered ${r.status}`);
      setTimeout(boot, 5000);
    }
  }

  function signedIn(body) {
    app.user = { user: String(body.user ?? ''), groups: Array.isArray(body.groups) ? body.groups : [] };
    app.csrf = typeof body.csrfToken === 'string' ? body.csrfToken : null;
    if (typeof body.anonymousRead === 'boolean') app.anonymousRead = body.anonymousRead;
    $('who-name').textContent = app.user.user;
    $('who').hidden = false;
    $('signout').hidden = false;
    $('signin-open').hidden = true;
    $('signin').hidden = true;
    $('readonly').hidden = true;
    $('dashboard').hidden = false;
    document.body.dataset.session = 'user';
    refreshActions();
    connect();
  }

  function signedOut(message) {
    app.user = null;
    app.csrf = null;
    $('who').hidden = true;
    $('signout').hidden = true;
    document.body.dataset.session = app.anonymousRead ? 'anonymous' : 'none';
    if (app.anonymousRead) {
      $('signin-open').hidden = false;
      $('readonly').hidden = false;
      $('dashboard').hidden = false;
      $('signin').hidden = !message;
      $('signin-cancel').hidden = false;
      refreshActions();
      connect();
    } else {
      disconnect();
      // Nothing of the streams stays in the page for the next person at this screen.
      app.clusters.clear();
      app.snapshot = null;
      $('clusters').replaceChildren();
      $('signin-open').hidden = true;
      $('dashboard').hidden = true;
      $('signin').hidden = false;
      $('signin-cancel').hidden = true;
      setConn('signedout', 'Signed out');
    }
    $('signin-error').textContent = message || '';
    if (!$('signin').hidden) $('token').focus();
  }

  async function signIn(ev) {
    ev.preventDefault();
    const input = $('token');
    const token = input.value.trim();
    if (!token) return;
    $('signin-submit').disabled = true;
    $('signin-error').textContent = '';
    const r = await api('POST', '/api/session', { token });
    input.value = '';
    $('signin-submit').disabled = false;
    if (r.status === 200) {
      signedIn(r.body);
      announce(`Signed in as ${r.body.user}`);
      $('main').focus();
    } else if (r.status === 401) {
      $('signin-error').textContent = `The cluster did not accept this token: ${r.body.error || 'unauthorized'}`;
      input.focus();
    } else {
      $('signin-error').textContent = r.body.error || `Sign-in failed (${r.status || 'network error'})`;
      input.focus();
    }
  }

  async function signOut() {
    await api('DELETE', '/api/session');
    announce('Signed out');
    const r = await api('GET', '/api/session');
    app.anonymousRead = r.body?.anonymousRead === true;
    signedOut();
    if (app.anonymousRead) $('signin-open').focus();
  }

  /** The stream or an action said 401: the session is gone (expired, operator restarted). */
  async function sessionLost() {
    const r = await api('GET', '/api/session');
    if (r.status === 200) return false;
    app.anonymousRead = r.body?.anonymousRead === true;
    signedOut(app.user ? 'Your session has ended; sign in again.' : '');
    return true;
  }

  // ---------------------------------------------------------------------------------------------
  // Live stream

  function connect() {
    if (app.es) return;
    clearTimeout(app.reconnectTimer);
    setConn(app.reconnectAttempt ? 'reconnecting' : 'connecting');
    const es = new EventSource('/api/events');
    app.es = es;
    es.addEventListener('open', () => {
      app.reconnectAttempt = 0;
    });
    es.addEventListener('state', (e) => {
      let snap;
      try {
        snap = JSON.parse(e.data);
      } catch {
        return;
      }
      setConn('live');
      app.reconnectAttempt = 0;
      apply(snap);
    });
    es.addEventListener('error', async () => {
      if (app.es !== es) return;
      app.reconnectAttempt++;
      if (es.readyState === EventSource.CLOSED) {
        // The server refused the stream (401 after a session expired, or an error status):
        // EventSource gives up, so we retry ourselves, after checking the session.
        es.close();
        app.es = null;
        setConn('reconnecting');
        if (await sessionLost()) return;
        const delay = Math.min(30_000, 1000 * 2 ** Math.min(5, app.reconnectAttempt - 1));
        app.reconnectTimer = setTimeout(connect, delay);
      } else {
        setConn('reconnecting');
      }
    });
  }

  function disconnect() {
    clearTimeout(app.reconnectTimer);
    if (app.es) app.es.close();
    app.es = null;
  }

  const CONN = {
    connecting: ['◌', 'Connecting…'],
    live: ['●', 'Live'],
    reconnecting: ['▲', 'Reconnecting…'],
    offline: ['■', 'Offline'],
    signedout: ['■', 'Not connected'],
  };

  function setConn(state, text) {
    const el = $('conn');
    const was = el.dataset.state;
    const [icon, label] = CONN[state];
    el.dataset.state = state;
    el.querySelector('.icon').textContent = icon;
    el.querySelector('.label').textContent =
      state === 'reconnecting' && app.reconnectAttempt > 1 ? `${label} (attempt ${app.reconnectAttempt})` : text || label;
    app.live = state === 'live';
    setText($('updated-label'), app.live ? 'Updated' : 'Data as of');
    document.body.dataset.conn = state;
    if (was !== state && (state === 'live' || was === 'live')) {
      announce(state === 'live' ? 'Live updates connected' : 'Live updates lost; reconnecting');
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Rendering, in place

  function tpl(id) {
    return $(id).content.firstElementChild.cloneNode(true);
  }

  function setText(el, text) {
    const t = String(text);
    if (el.textContent !== t) el.textContent = t;
  }

  function setAttr(el, name, value) {
    if (value === null || value === undefined) {
      if (el.hasAttribute(name)) el.removeAttribute(name);
    } else if (el.getAttribute(name) !== String(value)) {
      el.setAttribute(name, String(value));
    }
  }

  function badge(el, state, icon, label) {
    setAttr(el, 'data-state', state);
    setText(el.querySelector('.icon'), icon);
    setText(el.querySelector('.label'), label);
  }

  /** Puts `children` (in order) into `parent`, moving only what is out of place. */
  function order(parent, children) {
    let at = parent.firstElementChild;
    for (const child of children) {
      if (child !== at) parent.insertBefore(child, at);
      else at = at.nextElementSibling;
    }
    while (at) {
      const next = at.nextElementSibling;
      at.remove();
      at = next;
    }
  }

  /** Validates the snapshot's shape; anything missing becomes an empty or neutral value. */
  function clean(snap) {
    const clusters = Array.isArray(snap?.clusters) ? snap.clusters : [];
    return {
      generatedAt: snap?.generatedAt,
      clusters: clusters.filter((c) => c && typeof c.name === 'string').map((c) => {
        const instances = (Array.isArray(c.instances) ? c.instances : []).filter((i) => i && typeof i.name === 'string');
        return {
          ...c,
          namespace: String(c.namespace ?? ''),
          minOpen: num(c.minOpen, 0, 1e6, 1),
          effectiveOpenCount: num(c.effectiveOpenCount, 0, 1e6, instances.filter((i) => i.effectiveOpen).length),
          desiredOpenCount: num(c.desiredOpenCount, 0, 1e6, instances.filter((i) => i.desiredOpen).length),
          instances: instances.map((i) => ({
            ...i,
            renditions: (Array.isArray(i.renditions) ? i.renditions : []).filter((r) => r && typeof r.uri === 'string'),
          })),
          timeline: (Array.isArray(c.timeline) ? c.timeline : []).filter((e) => e && typeof e === 'object').slice(0, 50),
        };
      }),
    };
  }

  function apply(raw) {
    const snap = clean(raw);
    app.snapshot = snap;
    app.receivedAt = performance.now();
    const upd = $('updated');
    setText(upd, `${clock(snap.generatedAt)} UTC`);
    setAttr(upd, 'datetime', snap.generatedAt ?? null);
    $('empty').hidden = snap.clusters.length > 0;
    const host = $('clusters');
    const seen = [];
    for (const c of snap.clusters) {
      const key = `${c.namespace}/${c.name}`;
      let view = app.clusters.get(key);
      if (!view) {
        view = makeCluster(c);
        app.clusters.set(key, view);
      }
      updateCluster(view, c);
      seen.push(view.el);
    }
    for (const [key, view] of app.clusters) {
      if (!seen.includes(view.el)) app.clusters.delete(key);
    }
    order(host, seen);
    if (app.dialog) refreshDialog();
    tick();
    app.first = false;
  }

  function makeCluster(c) {
    const el = tpl('tpl-cluster');
    const id = `c-${c.namespace}-${c.name}`.replace(/[^A-Za-z0-9_-]/g, '_');
    el.id = id;
    el.setAttribute('aria-labelledby', `${id}-title`);
    el.querySelector('.cluster-title').id = `${id}-title`;
    setText(el.querySelector('.ns'), c.namespace);
    setText(el.querySelector('.name'), c.name);
    setText(el.querySelector('caption'), `Instances of ${c.namespace}/${c.name}`);
    el.dataset.cluster = `${c.namespace}/${c.name}`;
    return { el, rows: new Map(), events: new Map(), data: c };
  }

  const STATUS = {
    True: ['ok', '✔'],
    False: ['bad', '▲'],
    Unknown: ['unknown', '○'],
  };

  function condBadge(el, cond, trueLabel, falseLabel) {
    const status = ['True', 'False'].includes(cond?.status) ? cond.status : 'Unknown';
    const [state, icon] = STATUS[status];
    badge(el, state, icon, status === 'True' ? trueLabel : status === 'False' ? falseLabel : 'Unknown');
  }

  function updateCluster(view, c) {
    const prev = view.data;
    view.data = c;
    const el = view.el;
    setText(el.querySelector('.open-summary'), headroomText(c));
    const room = c.effectiveOpenCount - Math.min(c.minOpen, c.instances.length);
    setAttr(el.querySelector('.fact-open'), 'data-state', room > 0 ? 'ok' : room === 0 ? 'warn' : 'bad');
    setText(el.querySelector('.failover'), String(c.failover ?? '—'));
    const pub = c.publication ?? {};
    condBadge(el.querySelector('.badge.pub'), pub, 'Published', 'Not published');
    const pubAt = pub.lastPublishedAt ? `at ${clock(pub.lastPublishedAt)} UTC` : '';
    setText(el.querySelector('.pub-detail'), [pub.reason, pubAt].filter(Boolean).join(' · '));
    setAttr(el.querySelector('.pub-detail'), 'title', pub.message || null);
    const edge = c.edge ?? {};
    condBadge(el.querySelector('.badge.edge'), edge, 'Deployed', 'Not deployed');
    setText(el.querySelector('.edge-detail'), [edge.reason, edge.functionVersion ? `version ${edge.functionVersion}` : ''].filter(Boolean).join(' · '));
    setAttr(el.querySelector('.edge-detail'), 'title', edge.message || null);
    const steer = c.steering === true ? 'On' : c.steering === false ? 'Off' : '—';
    setText(el.querySelector('.steering'), c.closedVariants ? `${steer} · closed variants: ${c.closedVariants}` : steer);

    const tbody = el.querySelector('tbody');
    const rows = [];
    const names = new Set();
    for (const inst of c.instances) {
      names.add(inst.name);
      let row = view.rows.get(inst.name);
      if (!row) {
        row = makeRow(c, inst);
        view.rows.set(inst.name, row);
      }
      const before = prev?.instances?.find((i) => i.name === inst.name);
      updateRow(row, c, inst, before);
      rows.push(row.el);
    }
    for (const name of [...view.rows.keys()]) if (!names.has(name)) view.rows.delete(name);
    order(tbody, rows);
    updateTimeline(view, c);
  }

  function makeRow(c, inst) {
    const el = tpl('tpl-instance');
    el.dataset.instance = inst.name;
    const btn = el.querySelector('.action');
    btn.addEventListener('click', () => {
      const view = app.clusters.get(el.closest('.cluster').dataset.cluster);
      const cur = view?.data.instances.find((i) => i.name === inst.name);
      if (cur) openDialog(view.data, cur, !cur.desiredOpen, btn);
    });
    return { el, renditions: new Map(), inst };
  }

  function updateRow(row, c, inst, before) {
    row.inst = inst;
    const el = row.el;
    setText(el.querySelector('.region'), regionLabel(inst));
    setText(el.querySelector('.inst-name'), inst.name);

    const health = inst.healthy === true ? 'healthy' : inst.healthy === false ? 'stale' : 'unknown';
    setAttr(el, 'data-health', health);
    badge(el.querySelector('.badge.health'), health, { healthy: '✔', stale: '▲', unknown: '○' }[health],
      { healthy: 'Healthy', stale: 'Stale', unknown: 'Not judged yet' }[health]);
    const since = inst.healthChangedAt ? `since ${clock(inst.healthChangedAt)}` : '';
    setText(el.querySelector('.health-reason'), [inst.healthReason, since].filter(Boolean).join(' · '));
    setAttr(el.querySelector('.health-reason'), 'title', inst.healthMessage || null);

    const open = inst.effectiveOpen === true;
    setAttr(el, 'data-open', open ? 'open' : 'closed');
    badge(el.querySelector('.badge.open'), open ? 'open' : 'closed', open ? '●' : '■', open ? 'Open' : 'Closed');
    const desired = `asked ${inst.desiredOpen ? 'open' : 'closed'}`;
    setText(el.querySelector('.open-detail'), [desired, inst.openReason].filter(Boolean).join(' · '));
    setAttr(el.querySelector('.badge.open'), 'data-differs', inst.desiredOpen !== open ? 'true' : null);

    const lag = inst.lagging;
    const lagEl = el.querySelector('.lag');
    if (lag && typeof lag === 'object') {
      const s = num(lag.lagSeconds, 0, 1e6);
      const t = s === null ? '' : ` ${s.toFixed(1)} s`;
      setText(lagEl, lag.status === true ? `▲ Lagging${t}` : `${s === null ? '—' : `${s.toFixed(1)} s`}`);
      setAttr(lagEl, 'data-state', lag.status === true ? 'bad' : 'ok');
    } else {
      setText(lagEl, '—');
      setAttr(lagEl, 'data-state', null);
    }

    const ul = el.querySelector('.renditions');
    const items = [];
    const uris = new Set();
    for (const r of inst.renditions) {
      uris.add(r.uri);
      let rv = row.renditions.get(r.uri);
      if (!rv) {
        rv = { el: tpl('tpl-rendition') };
        setText(rv.el.querySelector('.r-uri'), shortUri(r.uri));
        setAttr(rv.el.querySelector('.r-uri'), 'title', r.uri);
        row.renditions.set(r.uri, rv);
      }
      rv.ageMs = num(r.ageMs, 0, 1e9, null);
      // No bound (or a day and more, as a server without a target duration may say): none shown.
      const bound = num(r.boundMs, 0, Number.MAX_VALUE, null);
      rv.boundMs = bound > 0 && bound < 86_400_000 ? bound : null;
      rv.fresh = r.fresh === true;
      setAttr(rv.el, 'data-fresh', rv.fresh ? 'true' : 'false');
      badge(rv.el.querySelector('.r-state'), rv.fresh ? 'fresh' : 'stale', rv.fresh ? '✔' : '▲', rv.fresh ? 'Fresh' : 'Stale');
      setAttr(rv.el, 'title', [r.reason, Number.isFinite(r.mediaSequence) ? `media sequence ${r.mediaSequence}` : ''].filter(Boolean).join(' · ') || null);
      items.push(rv.el);
    }
    for (const uri of [...row.renditions.keys()]) if (!uris.has(uri)) row.renditions.delete(uri);
    order(ul, items);
    setAttr(ul, 'data-count', String(items.length));

    refreshAction(row, inst);

    if (before && !app.first) {
      const where = `${regionLabel(inst)} (${inst.name})`;
      if (before.healthy !== inst.healthy) {
        announce(`${where} is now ${inst.healthy === true ? 'healthy' : inst.healthy === false ? `stale: ${inst.healthReason || ''}` : 'not judged'}`);
      }
      if (before.effectiveOpen !== inst.effectiveOpen) {
        announce(`${where} is now ${inst.effectiveOpen ? 'open' : 'closed'} (${inst.openReason || ''})`);
      }
    }
  }

  function refreshAction(row, inst) {
    const btn = row.el.querySelector('.action');
    const can = app.user !== null;
    btn.hidden = !can;
    setAttr(row.el.querySelector('.c-act'), 'data-can', can ? 'true' : 'false');
    const verb = inst.desiredOpen ? 'Close' : 'Open';
    setText(btn, `${verb}…`);
    setAttr(btn, 'aria-label', `${verb} ${regionLabel(inst)} (${inst.name})…`);
    setAttr(btn, 'data-verb', verb.toLowerCase());
    btn.classList.toggle('danger', inst.desiredOpen === true);
  }

  function refreshActions() {
    for (const view of app.clusters.values()) {
      for (const row of view.rows.values()) refreshAction(row, row.inst);
    }
  }

  function shortUri(uri) {
    try {
      const u = new URL(uri, 'http://x/');
      const parts = u.pathname.split('/').filter(Boolean);
      const last = (parts.at(-1) ?? '').replace(/\.m3u8$/i, '');
      // ".../720p/index.m3u8" -> "720p".
      if (parts.length < 2) return last || uri;
      if (/^(index|playlist|prog_index|chunklist|media|stream|mono|main)$/i.test(last)) return parts.at(-2);
      // ".../720p/iframes.m3u8" -> "720p/iframes".
      return `${parts.at(-2)}/${last}`;
    } catch {
      return uri;
    }
  }

  /** Updates the age text and bar of every rendition: the server's age plus the time since. */
  function tick() {
    const extra = app.live ? Math.max(0, performance.now() - app.receivedAt) : 0;
    for (const view of app.clusters.values()) {
      for (const row of view.rows.values()) {
        for (const rv of row.renditions.values()) {
          const ageEl = rv.el.querySelector('.r-age');
          const fill = rv.el.querySelector('.fill');
          if (rv.ageMs === null || rv.boundMs === null) {
            setText(ageEl, rv.ageMs === null ? '—' : `${seconds(rv.ageMs + (rv.fresh ? 0 : extra))} / —`);
            fill.style.transform = 'scaleX(0)';
            continue;
          }
          // A stale rendition's age keeps growing; a fresh one's is capped at the bound between
          // snapshots so the page never shows a fresh rendition as overdue on its own.
          let age = rv.ageMs + extra;
          if (rv.fresh) age = Math.min(age, Math.max(rv.ageMs, rv.boundMs));
          setText(ageEl, `${seconds(age)} / ${boundText(rv.boundMs)}`);
          // The bar spans 0..1.5 x the bound; the mark is at the bound (2/3).
          const frac = Math.min(1, age / (rv.boundMs * 1.5));
          fill.style.transform = `scaleX(${frac.toFixed(3)})`;
          setAttr(fill, 'data-over', age > rv.boundMs ? 'true' : null);
        }
      }
    }
  }

  function eventKey(e) {
    return `${e.at}|${e.instance}|${e.kind}|${e.eventSeq ?? ''}|${e.message ?? ''}`;
  }

  function updateTimeline(view, c) {
    const ol = view.el.querySelector('.timeline');
    const items = [];
    const keys = new Set();
    for (const e of c.timeline) {
      const key = eventKey(e);
      if (keys.has(key)) continue;
      keys.add(key);
      let li = view.events.get(key);
      if (!li) {
        li = tpl('tpl-event');
        const t = li.querySelector('.ev-at');
        setText(t, clock(e.at, true));
        setAttr(t, 'datetime', typeof e.at === 'string' ? e.at : null);
        setText(li.querySelector('.ev-inst'), String(e.instance ?? ''));
        setText(li.querySelector('.ev-kind'), String(e.kind ?? ''));
        setText(li.querySelector('.ev-msg'), String(e.message ?? ''));
        setAttr(li.querySelector('.ev-msg'), 'title', String(e.message ?? ''));
        setText(li.querySelector('.ev-seq'), Number.isFinite(e.eventSeq) ? `#${e.eventSeq}` : '');
        setText(li.querySelector('.ev-user'), e.user ? `by ${e.user}` : '');
        setAttr(li.querySelector('.ev-user'), 'title', e.user ? String(e.user) : null);
        setAttr(li.querySelector('.ev-kind'), 'title', String(e.kind ?? ''));
        li.dataset.kind = String(e.kind ?? '');
        view.events.set(key, li);
      }
      items.push(li);
    }
    for (const key of [...view.events.keys()]) if (!keys.has(key)) view.events.delete(key);
    order(ol, items);
    setText(view.el.querySelector('.tl-count'), `(${items.length})`);
  }

  // ---------------------------------------------------------------------------------------------
  // Confirmation dialog and actions

  function openDialog(c, inst, open, opener) {
    if (!app.user) return;
    app.dialog = { ns: c.namespace, cluster: c.name, instance: inst.name, open, opener };
    const dlg = $('confirm');
    setText($('confirm-title'), `${open ? 'Open' : 'Close'} ${regionLabel(inst)}?`);
    setText($('confirm-what'),
      `Sets spec.distroOpen=${open} on StreamInstance ${c.namespace}/${inst.name}, as kubectl patch would; the cluster's RBAC decides, and the Event records you (${app.user.user}).`);
    setText($('confirm-ok'), open ? `Open ${regionLabel(inst)}` : `Close ${regionLabel(inst)}`);
    $('confirm-ok').classList.toggle('danger', !open);
    $('confirm-ok').disabled = false;
    $('confirm-cancel').disabled = false;
    setText($('confirm-error'), '');
    refreshDialog();
    dlg.showModal();
    $('confirm-cancel').focus();
  }

  function refreshDialog() {
    const d = app.dialog;
    const view = app.clusters.get(`${d.ns}/${d.cluster}`);
    const inst = view?.data.instances.find((i) => i.name === d.instance);
    if (!inst) {
      setText($('confirm-minopen'), 'This instance is no longer in the snapshot.');
      $('confirm-ok').disabled = true;
      return;
    }
    setText($('confirm-minopen'), outcomeText(view.data, inst, d.open));
  }

  function closeDialog() {
    const d = app.dialog;
    app.dialog = null;
    const dlg = $('confirm');
    if (dlg.open) dlg.close();
    if (d?.opener?.isConnected) d.opener.focus();
  }

  async function confirmAction(ev) {
    ev.preventDefault();
    const d = app.dialog;
    if (!d) return;
    const ok = $('confirm-ok');
    ok.disabled = true;
    $('confirm-cancel').disabled = true;
    setText($('confirm-error'), '');
    setText(ok, 'Sending…');
    const path = `/api/namespaces/${encodeURIComponent(d.ns)}/streaminstances/${encodeURIComponent(d.instance)}/distro-open`;
    const r = await api('POST', path, { open: d.open });
    if (app.dialog !== d) return;
    $('confirm-cancel').disabled = false;
    if (r.status === 200) {
      closeDialog();
      announce(`Asked to ${d.open ? 'open' : 'close'} ${d.instance}: spec.distroOpen=${d.open}. The operator applies it within a second.`);
      return;
    }
    if (r.status === 401) {
      closeDialog();
      await sessionLost();
      return;
    }
    ok.disabled = false;
    setText(ok, d.open ? 'Open' : 'Close');
    const msg = r.body.error || `the operator answered ${r.status || 'nothing'}`;
    setText($('confirm-error'), r.status === 403 ? `Refused: ${msg}` : `Failed: ${msg}`);
    $('confirm-cancel').focus();
  }

  /** Keeps Tab and Shift+Tab inside the open dialog. */
  function trapFocus(ev) {
    if (ev.key !== 'Tab') return;
    const dlg = $('confirm');
    const f = [...dlg.querySelectorAll('button, [href], input, select, textarea, [tabindex]:not([tabindex="-1"])')]
      .filter((x) => !x.disabled && !x.hidden);
    if (!f.length) return;
    const first = f[0];
    const last = f[f.length - 1];
    if (ev.shiftKey && (document.activeElement === first || !dlg.contains(document.activeElement))) {
      ev.preventDefault();
      last.focus();
    } else if (!ev.shiftKey && (document.activeElement === last || !dlg.contains(document.activeElement))) {
      ev.preventDefault();
      first.focus();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Notices

  function announce(text) {
    const host = $('announce');
    const p = document.createElement('p');
    p.textContent = text;
    host.append(p);
    while (host.childElementCount > 5) host.firstElementChild.remove();
  }

  function notice(text) {
    setText($('notice-text'), text);
    $('notice').hidden = !text;
  }

  function wire() {
    $('signin-form').addEventListener('submit', signIn);
    $('signout').addEventListener('click', signOut);
    $('signin-open').addEventListener('click', () => {
      $('signin').hidden = false;
      $('signin-cancel').hidden = false;
      $('token').focus();
    });
    $('signin-cancel').addEventListener('click', () => {
      $('signin').hidden = true;
      $('signin-open').focus();
    });
    $('notice-dismiss').addEventListener('click', () => notice(''));
    $('confirm-form').addEventListener('submit', confirmAction);
    $('confirm-cancel').addEventListener('click', closeDialog);
    const dlg = $('confirm');
    dlg.addEventListener('cancel', (ev) => {
      ev.preventDefault();
      closeDialog();
    });
    dlg.addEventListener('keydown', trapFocus);
    setInterval(tick, 250);
  }

  wire();
  boot();
})();
