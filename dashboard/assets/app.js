// Dashboard of ringfence-server. It polls GET /v1/rollouts every two seconds
// and draws each channel's rollout; the buttons POST operator actions to
// /v1/rollouts/{channel}/{action} with the token from the URL fragment.
//
// Every string from the API reaches the page through text nodes or
// setAttribute, never as markup, and the server's Content-Security-Policy
// forbids inline script and style: keep it that way (dashboard_test.go checks).
'use strict';

(function () {
  const POLL_MS = 2000;
  const FETCH_TIMEOUT_MS = 10000;
  const MAX_ERROR_TEXT = 400; // characters of a server error shown to the operator
  const MAX_DECISIONS = 200; // rows of the decision log drawn
  const MAX_HOSTS_SHOWN = 4; // host names listed in a stage box before "+N"
  const OK_MESSAGE_MS = 15000; // how long "accepted" stays beside the buttons
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const ACTIONS = [
    { action: 'pause', label: 'Pause' },
    { action: 'resume', label: 'Resume' },
    { action: 'halt', label: 'Halt', danger: true },
    { action: 'rollback', label: 'Rollback', danger: true },
    { action: 'promote', label: 'Promote' },
  ];
  const KNOWN_STATES = ['running', 'paused', 'halted', 'rolled-back', 'completed'];
  const UNKNOWN_SENSOR = 'unknown'; // the API's name for hosts that did not say their sensor
  const KNOWN_KINDS = ['start', 'advance', 'wait', 'halt', 'rollback', 'pause', 'resume', 'promote', 'complete'];
  const NO_TOKEN_HINT = 'Read-only: open the dashboard URL that "ringfence-server serve" prints ' +
    '(it ends in #token=...) to enable the actions.';

  const messages = new Map(); // channel -> {text, error, at}
  const busy = new Set(); // channels with an action in flight
  let lastBody = null; // text of the last /v1/rollouts answer drawn
  let lastData = null;
  let timer = 0;
  let inFlight = false;
  let again = false;

  // ---- small helpers --------------------------------------------------------

  function token() {
    const params = new URLSearchParams(window.location.hash.replace(/^#/, ''));
    return params.get('token') || '';
  }

  function arr(v) { return Array.isArray(v) ? v : []; }
  function finite(v) { return typeof v === 'number' && Number.isFinite(v); }
  function str(v) { return typeof v === 'string' ? v : (finite(v) ? String(v) : ''); }
  // cls turns an API value into a safe class-name fragment.
  function cls(v, known) { return known.includes(v) ? v : 'unknown'; }

  function append(parent, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach((c) => append(parent, c)); return; }
    parent.append(child instanceof Node ? child : String(child)); // a string becomes a text node
  }

  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      e.setAttribute(k, v === true ? '' : String(v));
    }
  }

  // el builds an HTML element; children are nodes or strings (set as text).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  }

  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG_NS, tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  }

  function fixed(v, digits) { return finite(v) ? v.toFixed(digits) : '–'; }
  function stat(v) { return fixed(v, 2); }
  function count(v) { return finite(v) ? String(Math.round(v)) : '–'; }
  function pct(v) { return finite(v) ? `${Number(v.toFixed(3))}%` : '–'; }
  // share formats a probability (0.059) as a percentage ("5.9%").
  function share(v) { return finite(v) ? `${Number((100 * v).toFixed(1))}%` : '–'; }
  function rate(fail, total) {
    return finite(fail) && finite(total) && total > 0 ? `${(100 * fail / total).toFixed(1)}%` : '–';
  }

  function duration(secs) {
    if (!finite(secs) || secs <= 0) return 'none';
    let s = Math.round(secs);
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    return [h && `${h}h`, m && `${m}m`, s && `${s}s`].filter(Boolean).join('') || '0s';
  }

  function parseTime(v) {
    const t = typeof v === 'string' ? Date.parse(v) : NaN;
    return Number.isFinite(t) ? t : NaN;
  }

  // when formats an RFC 3339 time in UTC, as the server's logs do.
  function when(v) {
    const t = parseTime(v);
    if (!Number.isFinite(t)) return str(v) || '–';
    const iso = new Date(t).toISOString();
    return `${iso.slice(0, 10)} ${iso.slice(11, 19)}Z`;
  }

  function clock(t) { return new Date(t).toISOString().slice(11, 19); }

  function stageLabel(r, i) {
    if (!finite(i)) return '–';
    const s = arr(r.stages)[i];
    return s && s.name ? str(s.name) : `#${i}`;
  }

  function obj(v) { return v && typeof v === 'object' && !Array.isArray(v) ? v : {}; }

  // compareSensors orders sensor versions as people read them: runs of
  // digits by value (7.9 before 7.11), the rest as text, "unknown" (hosts
  // that did not say) last.
  function compareSensors(a, b) {
    if ((a === UNKNOWN_SENSOR) !== (b === UNKNOWN_SENSOR)) return a === UNKNOWN_SENSOR ? 1 : -1;
    const ra = a.match(/\d+|\D+/g) || [], rb = b.match(/\d+|\D+/g) || [];
    for (let i = 0; i < Math.min(ra.length, rb.length); i++) {
      const na = /^\d/.test(ra[i]), nb = /^\d/.test(rb[i]);
      if (na && nb) {
        const ta = ra[i].replace(/^0+/, ''), tb = rb[i].replace(/^0+/, '');
        if (ta.length !== tb.length) return ta.length - tb.length;
        if (ta !== tb) return ta < tb ? -1 : 1;
      }
      if (ra[i] !== rb[i]) return ra[i] < rb[i] ? -1 : 1;
    }
    return ra.length - rb.length;
  }

  // sensorCounts is an API map of hosts per sensor version as sorted
  // [version, hosts] pairs.
  function sensorCounts(m) {
    return Object.entries(obj(m)).filter(([k, n]) => k && finite(n))
      .sort((a, b) => compareSensors(a[0], b[0]));
  }

  // compatOf is a rollout's constraint: the allowed sensor versions (none:
  // any) and the excluded ones with their reasons, all as strings.
  function compatOf(r) {
    const c = obj(r.compat);
    const sensors = arr(c.sensors).map(str).filter(Boolean).sort(compareSensors);
    const excluded = Object.entries(obj(c.excluded)).map(([k, why]) => [k, str(why)]).filter(([k]) => k)
      .sort((a, b) => compareSensors(a[0], b[0]));
    return { any: !sensors.length, sensors, excluded };
  }

  function compatSummary(c) {
    return c.any ? 'any sensor' : `sensor${c.sensors.length > 1 ? 's' : ''} ${c.sensors.join(', ')} only`;
  }

  function evidenceParts(ev) {
    if (!ev || typeof ev !== 'object') return [];
    const parts = [];
    if (finite(ev.statistic) || finite(ev.threshold)) {
      const op = finite(ev.statistic) && finite(ev.threshold) ? (ev.statistic >= ev.threshold ? '≥' : '<') : 'vs';
      parts.push({ k: 'statistic', v: `${stat(ev.statistic)} ${op} ${stat(ev.threshold)}`, bad: op === '≥' });
    }
    if (finite(ev.treated) || finite(ev.treated_failures)) {
      parts.push({ k: 'treated', v: `${count(ev.treated_failures)}/${count(ev.treated)} failed (${rate(ev.treated_failures, ev.treated)})` });
    }
    if (finite(ev.control) || finite(ev.control_failures)) {
      parts.push({ k: 'control', v: `${count(ev.control_failures)}/${count(ev.control)} failed (${rate(ev.control_failures, ev.control)})` });
    }
    if (finite(ev.treated_judged) && ev.treated_judged > 0) {
      parts.push({ k: 'health', v: `${count(ev.treated_unhealthy)}/${count(ev.treated_judged)} unhealthy (p0 ${share(ev.health_p0)})` });
    }
    return parts;
  }

  function evidence(ev, className) {
    const parts = evidenceParts(ev);
    if (!parts.length) return el('span', { class: 'muted' }, '–');
    return el('span', { class: className },
      parts.map((p) => el('span', { class: 'ev' + (p.bad ? ' bad' : '') }, el('span', { class: 'k' }, p.k), ' ', p.v)));
  }

  // ---- one rollout ----------------------------------------------------------

  function newestDecisions(r) {
    return arr(r.decisions).filter((d) => d && typeof d === 'object').slice().sort((a, b) => {
      if (finite(a.seq) && finite(b.seq) && a.seq !== b.seq) return b.seq - a.seq;
      return (parseTime(b.time) || 0) - (parseTime(a.time) || 0);
    });
  }

  function header(r, ch, state) {
    const stages = arr(r.stages);
    const meta = [];
    if (r.schedule) meta.push(el('span', null, el('span', { class: 'k' }, 'schedule'), ' ', str(r.schedule)));
    if (finite(r.stage) && stages.length) {
      meta.push(el('span', null, el('span', { class: 'k' }, 'stage'), ' ',
        `${Math.min(r.stage + 1, stages.length)} of ${stages.length}`));
    }
    const c = compatOf(r);
    if (!c.any) meta.push(el('span', { class: 'compat-meta', title: 'the sensor versions the new version may run on' }, el('span', { class: 'k' }, 'compat'), ' ', compatSummary(c)));
    if (r.updated) meta.push(el('span', { title: str(r.updated) }, el('span', { class: 'k' }, 'updated'), ' ', when(r.updated)));
    return el('header', { class: 'rollout-head' },
      el('h2', null, 'Channel ', ch),
      finite(r.from_version) || finite(r.to_version)
        ? el('span', { class: 'versions', title: 'from version → to version' },
          count(r.from_version), el('span', { class: 'arrow' }, ' → '), count(r.to_version))
        : null,
      el('span', { class: `state state-${cls(state, KNOWN_STATES)}` }, state),
      el('span', { class: 'meta' }, meta));
  }

  // haltBanner is the loud notice of a halted or rolled-back rollout, with the
  // reason and evidence of the decision that stopped it. For a rollback that
  // followed a halt, the halt's reason and evidence come second.
  function haltBanner(r, ch, state, decisions) {
    if (state !== 'halted' && state !== 'rolled-back') return null;
    const halt = decisions.find((x) => x.kind === 'halt') || null;
    const rollback = state === 'rolled-back' ? decisions.find((x) => x.kind === 'rollback') || null : null;
    const d = rollback || halt;
    const by = d ? ` by ${str(d.actor) || 'unknown'} at ${when(d.time)} in stage ${stageLabel(r, d.stage)}` : '';
    const banner = el('div', { id: `halt-banner-${ch}`, class: `banner banner-${state}` },
      el('div', { class: 'banner-title' },
        el('strong', null, state === 'halted' ? 'HALTED' : 'ROLLED BACK'),
        el('span', { class: 'banner-by' }, by)),
      el('div', { class: 'banner-reason' }, d && d.reason ? str(d.reason) : 'No decision with a reason was recorded.'));
    if (d && evidenceParts(d.evidence).length) {
      banner.append(evidence(d.evidence, 'evidence banner-evidence'));
    }
    if (rollback && halt && halt !== rollback) {
      banner.append(el('div', { class: 'banner-halt' },
        el('span', { class: 'k' }, `halted by ${str(halt.actor) || 'unknown'} at ${when(halt.time)}: `),
        str(halt.reason) || '–'));
      if (evidenceParts(halt.evidence).length) banner.append(evidence(halt.evidence, 'evidence banner-evidence'));
    } else if (!d || !evidenceParts(d.evidence).length) {
      if (evidenceParts(r.gate).length) banner.append(evidence(r.gate, 'evidence banner-evidence'));
    }
    return banner;
  }

  // signBanner warns that a committed decision is not yet in the signed
  // plan hosts read (the server retries signing until it succeeds).
  function signBanner(r, ch) {
    if (r.plan_signed !== false) return null;
    return el('div', { id: `sign-banner-${ch}`, class: 'banner banner-unsigned' },
      el('div', { class: 'banner-title' }, el('strong', null, 'PLAN NOT YET SIGNED')),
      el('div', { class: 'banner-reason' }, 'The decision is stored; hosts still follow the last signed plan until the server manages to sign this one (it retries): ' + (str(r.sign_error) || 'no error recorded')));
  }

  function actionBar(ch) {
    const tok = token();
    const m = messages.get(ch);
    if (m && !m.error && Date.now() - m.at > OK_MESSAGE_MS) messages.delete(ch);
    const bar = el('div', { class: 'actions', title: tok ? null : NO_TOKEN_HINT });
    for (const a of ACTIONS) {
      const b = el('button', {
        type: 'button',
        class: 'btn' + (a.danger ? ' btn-danger' : ''),
        'data-action': a.action,
        title: tok ? `${a.label} the rollout of channel ${ch}` : NO_TOKEN_HINT,
      }, a.label);
      b.disabled = !tok || busy.has(ch);
      b.addEventListener('click', () => act(ch, a));
      bar.append(b);
    }
    const shown = messages.get(ch);
    bar.append(el('span', { id: `action-msg-${ch}`, class: 'action-msg' + (shown && shown.error ? ' error' : '') },
      shown ? shown.text : (tok ? '' : 'Read-only: open the URL that "ringfence-server serve" prints (it ends in #token=...) to act.')));
    return bar;
  }

  function stageTarget(s) {
    const parts = [];
    if (finite(s.percent) && s.percent > 0) parts.push(el('span', null, `${pct(s.percent)} of hosts`));
    const hosts = arr(s.hosts).map(str).filter(Boolean);
    if (hosts.length) {
      const shown = hosts.slice(0, MAX_HOSTS_SHOWN).join(', ');
      const more = hosts.length > MAX_HOSTS_SHOWN ? ` +${hosts.length - MAX_HOSTS_SHOWN}` : '';
      parts.push(el('span', { title: hosts.join(', ') }, el('span', { class: 'k' }, 'hosts'), ' ', shown + more));
    }
    const tags = arr(s.tags).map(str).filter(Boolean);
    if (tags.length) parts.push(el('span', null, el('span', { class: 'k' }, 'tags'), ' ', tags.join(', ')));
    return parts.length ? parts : el('span', { class: 'muted' }, 'no target');
  }

  function bake(r, s, state) {
    const started = parseTime(r.stage_started);
    if (!Number.isFinite(started) || !finite(s.bake_seconds) || s.bake_seconds <= 0 || state !== 'running') return null;
    const p = el('progress', { class: 'bake', max: s.bake_seconds, 'data-started': started });
    const label = el('span', { class: 'bake-label' });
    updateBake(p, label);
    return el('div', { class: 'bake-wrap' }, p, label);
  }

  // updateBake moves a bake bar to now; it runs on every poll, without a redraw.
  function updateBake(p, label) {
    const max = Number(p.getAttribute('max'));
    const started = Number(p.getAttribute('data-started'));
    const elapsed = Math.min(max, Math.max(0, (Date.now() - started) / 1000));
    p.value = elapsed;
    label.textContent = elapsed >= max ? 'baked' : `baking ${duration(elapsed)} of ${duration(max)}`;
  }

  function stagesRow(r, state) {
    const stages = arr(r.stages);
    if (!stages.length) return el('p', { class: 'muted' }, 'No stages.');
    const cur = finite(r.stage) ? r.stage : -1;
    return el('ol', { class: 'stages' }, stages.map((s, i) => {
      s = s && typeof s === 'object' ? s : {};
      const status = ['done', 'current', 'pending'].includes(s.status) ? s.status
        : (i < cur ? 'done' : (i === cur ? 'current' : 'pending'));
      return el('li', { class: `stage stage-${status}`, 'data-status': status },
        el('div', { class: 'stage-top' },
          el('span', { class: 'stage-name' }, str(s.name) || `stage ${i + 1}`),
          el('span', { class: 'stage-status' }, status === 'done' ? '✓ done' : status)),
        el('div', { class: 'stage-target' }, stageTarget(s)),
        el('div', { class: 'stage-meta' }, [
          finite(s.bake_seconds) && s.bake_seconds > 0 ? `bake ${duration(s.bake_seconds)}` : 'no bake',
          finite(s.min_hosts) && s.min_hosts > 0 ? `min ${count(s.min_hosts)} hosts` : null,
        ].filter(Boolean).join(' · ')),
        status === 'current' ? bake(r, s, state) : null);
    }));
  }

  function versionsTable(r) {
    const v = r.versions && typeof r.versions === 'object' ? r.versions : {};
    const rows = Object.entries(v).filter(([, n]) => finite(n)).sort((a, b) => Number(a[0]) - Number(b[0]));
    if (!rows.length) return el('p', { class: 'muted' }, 'No hosts reported yet.');
    const total = rows.reduce((sum, [, n]) => sum + n, 0);
    return el('table', { class: 'versions-table' },
      el('thead', null, el('tr', null, el('th', null, 'Version'), el('th', { class: 'num' }, 'Hosts'), el('th', null, 'Share'))),
      el('tbody', null, rows.map(([ver, n]) => {
        const role = ver === str(r.to_version) ? 'to' : (ver === str(r.from_version) ? 'from' : null);
        return el('tr', { class: role ? `role-${role}` : null },
          el('td', null, ver, role ? el('span', { class: `tag tag-${role}` }, role) : null),
          el('td', { class: 'num' }, count(n)),
          el('td', { class: 'share' },
            el('progress', { max: total || 1, value: n }),
            el('span', null, total ? `${(100 * n / total).toFixed(1)}%` : '–')));
      })),
      el('tfoot', null, el('tr', null, el('td', null, 'total'), el('td', { class: 'num' }, count(total)), el('td'))));
  }

  // compatLine says which sensor versions the new version may run on and
  // which it excludes, with the first reason the publisher's check gave.
  function compatLine(r) {
    const c = compatOf(r);
    if (c.any) {
      return el('div', { class: 'compat compat-any' }, el('span', { class: 'k' }, 'compat'), ' ', 'any sensor');
    }
    const line = el('div', { class: 'compat compat-constrained' }, el('span', { class: 'k' }, 'compat'), ' ', compatSummary(c));
    if (c.excluded.length) {
      append(line, ['; excludes ', c.excluded.map(([s, why], i) => [
        i ? ', ' : null,
        el('span', { class: 'compat-excluded', 'data-sensor': s }, s, why ? el('span', { class: 'why' }, ` (${why})`) : null),
      ])]);
    }
    return line;
  }

  // sensorsTable is the channel's hosts per sensor version, those the
  // constraint keeps out of the rollout marked.
  function sensorsTable(r) {
    const rows = sensorCounts(r.sensors);
    const c = compatOf(r);
    const out = new Set(arr(r.excludes).map(str));
    const why = new Map(c.excluded);
    const g = obj(r.gate);
    const foot = c.any ? null : el('tfoot', null, el('tr', { class: 'sensors-excluded' },
      el('td', { title: 'hosts on the channel that the constraint keeps out of the rollout (the gate counts them on neither side)' }, 'excluded from the rollout'),
      el('td', { class: 'num' }, count(finite(g.excluded) ? g.excluded : 0)), el('td')));
    if (!rows.length) return el('p', { class: 'muted' }, 'No hosts on the channel yet.');
    const total = rows.reduce((sum, [, n]) => sum + n, 0);
    return el('table', { class: 'sensors-table' },
      el('thead', null, el('tr', null, el('th', null, 'Sensor'), el('th', { class: 'num' }, 'Hosts'), el('th', null, 'Share'))),
      el('tbody', null, rows.map(([s, n]) => {
        const excluded = out.has(s);
        const title = !excluded ? null : (why.get(s) ? `excluded: refused by the publisher's check (${why.get(s)})`
          : (s === UNKNOWN_SENSOR ? 'excluded: these hosts did not say their sensor version' : 'excluded: not a sensor version the content may run on'));
        return el('tr', { class: 'sensor' + (excluded ? ' sensor-excluded' : ''), 'data-sensor': s, 'data-excluded': excluded ? 'true' : 'false' },
          el('td', { title }, s, excluded ? el('span', { class: 'tag tag-excluded' }, 'excluded') : null),
          el('td', { class: 'num' }, count(n)),
          el('td', { class: 'share' },
            el('progress', { max: total || 1, value: n }),
            el('span', null, total ? `${(100 * n / total).toFixed(1)}%` : '–')));
      })),
      foot);
  }

  function gatePanel(r, decisions) {
    const g = r.gate && typeof r.gate === 'object' ? r.gate : {};
    if (!Object.keys(g).length && !arr(r.history).length) return el('p', { class: 'muted' }, 'No gate data yet.');
    const over = finite(g.statistic) && finite(g.threshold) && g.statistic >= g.threshold;
    return el('div', { class: 'gate' },
      el('div', { class: 'readout' },
        el('div', { class: 'big' + (over ? ' bad' : '') },
          el('span', { class: 'k' }, 'statistic'), el('span', { class: 'v' }, stat(g.statistic))),
        el('div', { class: 'big' },
          el('span', { class: 'k' }, 'threshold'), el('span', { class: 'v' }, stat(g.threshold))),
        el('div', { class: 'big small' },
          el('span', { class: 'k' }, 'alpha'), el('span', { class: 'v' }, finite(g.alpha) ? String(g.alpha) : '–')),
        el('div', { class: 'verdict' + (over ? ' bad' : '') },
          !finite(g.statistic) || !finite(g.threshold) ? 'no verdict yet' : (over ? 'over the threshold' : 'under the threshold'))),
      el('table', { class: 'counts' },
        el('thead', null, el('tr', null, el('th'), el('th', { class: 'num' }, 'hosts'), el('th', { class: 'num' }, 'failures'), el('th', { class: 'num' }, 'rate'))),
        el('tbody', null,
          el('tr', null, el('th', { title: 'hosts on the new version' }, 'treated'), el('td', { class: 'num' }, count(g.treated)),
            el('td', { class: 'num' }, count(g.treated_failures)), el('td', { class: 'num' }, rate(g.treated_failures, g.treated))),
          el('tr', null, el('th', { title: 'hosts on the old version' }, 'control'), el('td', { class: 'num' }, count(g.control)),
            el('td', { class: 'num' }, count(g.control_failures)), el('td', { class: 'num' }, rate(g.control_failures, g.control))))),
      testsTable(g),
      gateChart(r, g, decisions),
      el('div', { class: 'legend' },
        el('span', { class: 'sw sw-stat' }), 'statistic ',
        el('span', { class: 'sw sw-threshold' }), 'threshold ',
        el('span', { class: 'sw sw-halt' }), 'halt'));
  }

  // testsTable shows the gate's three tests, each halting on its own at the
  // threshold (the alpha split between them): failures hosts reported,
  // silence, and health, with what the health test judged and the limits
  // the controls set; then where promotion stands (docs/gate.md).
  function testsTable(g) {
    const row = (name, title, v, detail) => {
      const over = finite(v) && finite(g.threshold) && v >= g.threshold;
      return el('tr', { class: 'test' + (over ? ' bad' : ''), 'data-test': name },
        el('th', { title }, name), el('td', { class: 'num' }, stat(v)), el('td', null, detail));
    };
    const silentT = finite(g.treated_silent) ? g.treated_silent : 0, silentC = finite(g.control_silent) ? g.control_silent : 0;
    const judged = finite(g.treated_judged) ? g.treated_judged : 0;
    const health = judged > 0
      ? `${count(g.treated_unhealthy)} of ${count(judged)} treated hosts judged unhealthy; a healthy one is at most ${share(g.health_p0)} likely to be (${count(g.control_unhealthy || 0)} of ${count(g.control_sampled || 0)} controls beyond the limits)`
      : 'no treated host judged yet (each is judged once, a health window after it installed, while controls run the old version)';
    const l = obj(g.health_limits);
    const limits = finite(l.controls)
      ? `health limits: CPU ${fixed(l.cpu, 3)} cores, memory ${fixed(l.rss / 1e6, 1)} MB, latency p99 ${fixed(l.latency_us, 0)} µs, at least ${fixed(l.events_per_s, 1)} events/s (from ${count(l.controls)} controls)`
      : null;
    const p = obj(g.promote);
    const promotion = p.off ? 'off: every stage bakes its full time'
      : g.promoted ? `passed: shown no worse than ${str(p.margin) || '?'}x (beta ${str(p.beta) || '?'}); a stage ends before its bake once its hosts are there`
        : `not yet: to end a stage before its bake, each test must show the version no worse than ${str(p.margin) || '?'}x (beta ${str(p.beta) || '?'})`;
    return el('div', { class: 'tests' },
      el('table', { class: 'counts tests-table' },
        el('thead', null, el('tr', null, el('th', null, 'test'), el('th', { class: 'num' }, 'statistic'), el('th', null, 'evidence'))),
        el('tbody', null,
          row('failures', 'reverts, crashes and rejections hosts reported', g.reported_statistic,
            `${count(g.treated_failures - silentT)} treated, ${count(g.control_failures - silentC)} control hosts reported one`),
          row('silence', 'hosts not heard from in time', g.silence_statistic, `${count(silentT)} treated, ${count(silentC)} control hosts silent`),
          row('health', "the agents' CPU, memory, latency and events against the controls'", g.health_statistic, health))),
      limits ? el('p', { class: 'limits muted' }, limits) : null,
      el('p', { class: 'promotion' + (g.promoted ? ' passed' : '') },
        el('span', { class: 'k' }, 'promotion'), ' ', promotion,
        finite(g.expected_failures) ? ` · expected failures so far ${fixed(g.expected_failures, 1)}` : null));
  }

  // sloTable shows the rollout's SLO checks and what their last evaluation
  // found; a breach, or no data past the grace, halts the rollout.
  function sloTable(r) {
    return el('table', { class: 'slo' },
      el('thead', null, el('tr', null, el('th', null, 'check'), el('th', null, 'query'), el('th', null, 'bound'),
        el('th', { class: 'num' }, 'last value'), el('th', null, 'state'))),
      el('tbody', null, arr(r.slo).map((c) => {
        c = obj(c);
        const last = obj(c.last);
        const bound = [finite(c.min) ? `≥ ${c.min}` : null, finite(c.max) ? `≤ ${c.max}` : null].filter(Boolean).join(' and ') || '–';
        const state = str(c.unwatched) || (last.breach ? `BREACH: ${str(last.breach)}`
          : last.error ? `no data: ${str(last.error)}` : last.no_data ? 'no data' : last.at ? 'within bounds' : 'not evaluated yet');
        return el('tr', { class: 'slo-check' + (last.breach ? ' bad' : ''), 'data-check': str(c.name) },
          el('th', null, str(c.name) || '–'),
          el('td', null, el('code', null, str(c.query))),
          el('td', null, bound, c.grace ? ` (grace ${str(c.grace)})` : null),
          el('td', { class: 'num' }, finite(last.value) ? String(Number(last.value.toPrecision(4))) : '–'),
          el('td', { class: 'slo-state' }, state));
      })));
  }

  // niceStep returns a round step (1, 2 or 5 times a power of ten) near raw.
  function niceStep(raw) {
    if (!(raw > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
  }

  const SECOND = 1000, MINUTE = 60 * SECOND, HOUR = 60 * MINUTE, DAY = 24 * HOUR;
  // TIME_STEPS are the spacings of the time axis's labels, smallest first.
  const TIME_STEPS = [5 * SECOND, 10 * SECOND, 15 * SECOND, 30 * SECOND, MINUTE, 2 * MINUTE, 5 * MINUTE,
    10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY];

  // gateChart draws the statistic over time, the threshold as a horizontal
  // line (a step line if it changed between stages), stage boundaries and the
  // halt decisions.
  function gateChart(r, g, decisions) {
    const W = 640, H = 230;
    const M = { l: 44, r: 16, t: 22, b: 28 };
    const pts = arr(r.history)
      .map((h) => h && ({ t: parseTime(h.time), s: h.statistic, th: h.threshold, stage: h.stage }))
      .filter((p) => p && Number.isFinite(p.t) && finite(p.s))
      .sort((a, b) => a.t - b.t);
    const halts = decisions.filter((d) => d.kind === 'halt')
      .map((d) => ({ t: parseTime(d.time), s: d.evidence ? d.evidence.statistic : undefined, d }))
      .filter((h) => Number.isFinite(h.t));
    const thresholds = pts.filter((p) => finite(p.th));
    const threshold = finite(g.threshold) ? g.threshold : (thresholds.length ? thresholds[thresholds.length - 1].th : NaN);
    const stepped = thresholds.some((p) => p.th !== thresholds[0].th);

    const chart = svg('svg', {
      class: 'gate-chart', viewBox: `0 0 ${W} ${H}`, role: 'img',
      'aria-label': `gate statistic over time, threshold ${stat(threshold)}`,
    });

    const times = pts.map((p) => p.t).concat(halts.map((h) => h.t));
    let t0 = Math.min(...times), t1 = Math.max(...times);
    if (!times.length) { t0 = Date.now() - MINUTE; t1 = Date.now(); }
    if (t1 - t0 < MINUTE) { t0 -= MINUTE / 2; t1 += MINUTE / 2; }
    const pad = (t1 - t0) * 0.025; // keep the first and last marks off the edges
    t0 -= pad; t1 += pad;
    const ys = pts.map((p) => p.s).concat(halts.map((h) => h.s), thresholds.map((p) => p.th), [threshold, 0]).filter(finite);
    let y0 = Math.min(...ys), y1 = Math.max(...ys);
    if (y1 - y0 < 1e-9) y1 = y0 + 1;
    const step = niceStep((y1 - y0) / 4);
    y0 = Math.floor(y0 / step) * step;
    y1 = Math.ceil((y1 + (y1 - y0) * 0.08) / step) * step;
    const x = (t) => M.l + (t - t0) / (t1 - t0) * (W - M.l - M.r);
    const y = (s) => M.t + (y1 - s) / (y1 - y0) * (H - M.t - M.b);
    const round = (v) => Math.round(v * 10) / 10;

    // Grid and axes.
    for (let v = y0; v <= y1 + step / 2; v += step) {
      const yy = round(y(v));
      append(chart, [
        svg('line', { class: 'grid', x1: M.l, x2: W - M.r, y1: yy, y2: yy }),
        svg('text', { class: 'axis-label', x: M.l - 6, y: yy + 4, 'text-anchor': 'end' }, Number(v.toFixed(6)).toString()),
      ]);
    }
    const tstep = TIME_STEPS.find((st) => (t1 - t0) / st <= 6) || TIME_STEPS[TIME_STEPS.length - 1];
    for (let t = Math.ceil(t0 / tstep) * tstep; t <= t1; t += tstep) {
      const xx = round(x(t));
      if (xx < M.l + 16 || xx > W - M.r - 16) continue; // a label would be cut at the edge
      const iso = new Date(t).toISOString();
      const label = tstep >= DAY ? iso.slice(5, 10) : (tstep < MINUTE ? iso.slice(11, 19) : iso.slice(11, 16));
      append(chart, [
        svg('line', { class: 'grid', x1: xx, x2: xx, y1: M.t, y2: H - M.b }),
        svg('text', { class: 'axis-label', x: xx, y: H - 9, 'text-anchor': 'middle' }, label),
      ]);
    }
    append(chart, [
      svg('line', { class: 'axis', x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b }),
      svg('text', { class: 'axis-label', x: M.l - 6, y: H - 9, 'text-anchor': 'end' }, 'UTC'),
    ]);

    // Stage boundaries: where the stage of the samples changes.
    for (let i = 1; i < pts.length; i++) {
      if (pts[i].stage === pts[i - 1].stage || !finite(pts[i].stage)) continue;
      const xx = round(x(pts[i].t));
      append(chart, [
        svg('line', { class: 'stage-boundary', x1: xx, x2: xx, y1: M.t, y2: H - M.b }),
        svg('text', { class: 'stage-label', x: xx + 3, y: M.t - 6 }, stageLabel(r, pts[i].stage)),
      ]);
    }
    if (pts.length && finite(pts[0].stage)) {
      append(chart, svg('text', { class: 'stage-label', x: round(x(pts[0].t)) + 3, y: M.t - 6 }, stageLabel(r, pts[0].stage)));
    }

    // Threshold.
    if (finite(threshold)) {
      const yy = round(y(threshold));
      append(chart, svg('rect', { class: 'danger-zone', x: M.l, y: M.t, width: W - M.l - M.r, height: Math.max(0, yy - M.t) }));
      if (stepped) {
        let d = '';
        thresholds.forEach((p, i) => {
          const px = round(x(p.t)), py = round(y(p.th));
          d += i === 0 ? `M${M.l},${py} H${px}` : ` H${px} V${py}`;
        });
        d += ` H${W - M.r}`;
        append(chart, svg('path', { class: 'threshold', d }));
      } else {
        append(chart, svg('line', { class: 'threshold', x1: M.l, x2: W - M.r, y1: yy, y2: yy }));
      }
      // A constant threshold is labelled at the left, clear of the newest
      // samples and halts; a stepped one at the right, where it applies now.
      append(chart, svg('text', stepped
        ? { class: 'threshold-label', x: W - M.r - 4, y: yy - 5, 'text-anchor': 'end' }
        : { class: 'threshold-label', x: M.l + 6, y: yy - 5 },
        `threshold ${stat(threshold)}`));
    }

    // Statistic.
    if (pts.length) {
      append(chart, svg('polyline', { class: 'stat-line', points: pts.map((p) => `${round(x(p.t))},${round(y(p.s))}`).join(' ') }));
      for (const p of pts) {
        append(chart, svg('circle', { class: 'stat-point', cx: round(x(p.t)), cy: round(y(p.s)), r: 2.5 },
          svg('title', null, `${when(new Date(p.t).toISOString())}: statistic ${stat(p.s)}`)));
      }
    } else {
      append(chart, svg('text', { class: 'no-data', x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'no gate samples yet'));
    }

    // Halt decisions, at their statistic (or on the threshold if the evidence lacks one).
    for (const h of halts) {
      const xx = round(x(h.t));
      const yy = round(y(finite(h.s) ? h.s : (finite(threshold) ? threshold : y0)));
      append(chart, [
        svg('line', { class: 'halt-mark', x1: xx, x2: xx, y1: M.t, y2: H - M.b }),
        svg('circle', { class: 'halt-point', cx: xx, cy: yy, r: 6 },
          svg('title', null, `halt at ${when(h.d.time)}: ${str(h.d.reason)}`)),
      ]);
    }
    return chart;
  }

  function decisionLog(r, decisions) {
    if (!decisions.length) return el('p', { class: 'muted' }, 'No decisions yet.');
    const shown = decisions.slice(0, MAX_DECISIONS);
    return el('div', { class: 'table-wrap' },
      el('table', { class: 'decisions' },
        el('thead', null, el('tr', null,
          el('th', null, 'Time'), el('th', null, 'Kind'), el('th', null, 'Stage'), el('th', null, 'Actor'),
          el('th', null, 'Reason'), el('th', null, 'Evidence'))),
        el('tbody', null, shown.map((d) => {
          const kind = str(d.kind) || '?';
          return el('tr', { class: `decision decision-${cls(kind, KNOWN_KINDS)}`, 'data-seq': finite(d.seq) ? d.seq : null },
            el('td', { class: 'time', title: str(d.time) }, when(d.time)),
            el('td', null, el('span', { class: `kind kind-${cls(kind, KNOWN_KINDS)}` }, kind)),
            el('td', null, stageLabel(r, d.stage)),
            el('td', null, str(d.actor) || '–'),
            el('td', { class: 'reason' }, str(d.reason) || '–'),
            el('td', null, evidence(d.evidence, 'evidence')));
        }))),
      decisions.length > shown.length ? el('p', { class: 'muted' }, `Showing the newest ${shown.length} of ${decisions.length} decisions.`) : null);
  }

  function section(title, className, ...children) {
    return el('section', { class: `panel ${className}` }, el('h3', null, title), children);
  }

  function rollout(r) {
    const ch = str(r.channel) || '?';
    const state = str(r.state) || 'unknown';
    const decisions = newestDecisions(r);
    return el('article', { class: 'rollout', 'data-channel': ch, 'data-state': cls(state, KNOWN_STATES) },
      header(r, ch, state),
      haltBanner(r, ch, state, decisions),
      signBanner(r, ch),
      actionBar(ch),
      section('Stages', 'stages-panel', stagesRow(r, state)),
      el('div', { class: 'columns' },
        section('Gate', 'gate-panel', gatePanel(r, decisions)),
        el('div', { class: 'side' },
          section('Hosts per version', 'hosts-panel', versionsTable(r)),
          section('Hosts per sensor', 'sensors-panel', compatLine(r), sensorsTable(r)))),
      arr(r.slo).length ? section('SLO checks', 'slo-panel', sloTable(r)) : null,
      section('Decision log', 'log-panel', decisionLog(r, decisions)));
  }

  // ---- page -----------------------------------------------------------------

  function draw() {
    const root = document.getElementById('rollouts');
    const access = document.getElementById('access');
    const tok = token();
    access.textContent = tok ? 'operator' : 'read-only';
    access.className = 'access' + (tok ? ' operator' : '');
    access.title = tok ? 'The actions are enabled with the token from the URL.' : NO_TOKEN_HINT;
    if (lastData === null) return;
    fleetLine(lastData);
    const list = arr(lastData && lastData.rollouts).filter((r) => r && typeof r === 'object');
    if (!list.length) {
      root.replaceChildren(el('p', { class: 'empty' }, 'No rollouts yet.'));
      return;
    }
    root.replaceChildren(...list.map(rollout));
  }

  // fleetLine shows the fleet's size, the keys waiting for admission, the
  // hosts per sensor version and, when the latest commit failed, that
  // nothing of it took effect.
  function fleetLine(data) {
    const f = document.getElementById('fleet');
    if (!f) return;
    const store = data && typeof data.store === 'object' && data.store ? data.store : {};
    const parts = [
      el('span', null, el('span', { class: 'k' }, 'fleet'), ' ', count(data.hosts), ' hosts'),
      el('span', { class: data.pending_hosts > 0 ? 'pending' : null, title: 'keys waiting for admission: nothing they report counts' },
        el('span', { class: 'k' }, 'pending'), ' ', count(data.pending_hosts)),
    ];
    const sensors = sensorCounts(data.sensors);
    if (sensors.length) {
      parts.push(el('span', { class: 'fleet-sensors', title: 'hosts per sensor version across the fleet' },
        el('span', { class: 'k' }, 'sensors'), ' ',
        sensors.map(([s, n], i) => [i ? ', ' : null, el('span', { class: 'fleet-sensor', 'data-sensor': s }, `${s}: ${count(n)}`)])));
    }
    if (str(store.last_error)) {
      parts.push(el('span', { class: 'store-error' }, `STORE FAILING since ${when(store.since)}: ${str(store.last_error)} (nothing of the failed changes took effect; retried)`));
    }
    f.className = 'fleet' + (str(store.last_error) ? ' error' : '');
    f.replaceChildren(...parts);
  }

  function setConn(text, error) {
    const c = document.getElementById('conn');
    c.textContent = text;
    c.className = 'conn' + (error ? ' error' : '');
  }

  async function errorText(res) {
    let text = '';
    try { text = (await res.text()).trim(); } catch (_) { /* no body */ }
    try {
      const j = JSON.parse(text);
      if (j && typeof j.error === 'string') text = j.error;
      else if (j && typeof j.message === 'string') text = j.message;
    } catch (_) { /* plain text */ }
    if (text.length > MAX_ERROR_TEXT) text = text.slice(0, MAX_ERROR_TEXT) + '…';
    const status = `${res.status}${res.statusText ? ' ' + res.statusText : ''}`;
    return text ? `${text} (${status})` : status;
  }

  function fetchOptions(extra) {
    const opts = Object.assign({ cache: 'no-store' }, extra);
    if (typeof AbortSignal !== 'undefined' && AbortSignal.timeout) opts.signal = AbortSignal.timeout(FETCH_TIMEOUT_MS);
    return opts;
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }

  async function poll() {
    if (inFlight) { again = true; return; }
    inFlight = true;
    try {
      const headers = { Accept: 'application/json' };
      const tok = token();
      if (tok) headers.Authorization = `Bearer ${tok}`;
      const res = await fetch('/v1/rollouts', fetchOptions({ headers }));
      if (!res.ok) throw new Error(await errorText(res));
      const body = await res.text();
      if (body !== lastBody) {
        lastData = JSON.parse(body);
        lastBody = body;
        draw();
      }
      document.querySelectorAll('.bake-wrap').forEach((w) => updateBake(w.querySelector('progress'), w.querySelector('.bake-label')));
      setConn(`updated ${clock(Date.now())}Z`, false);
    } catch (e) {
      setConn(`cannot load /v1/rollouts: ${e && e.message ? e.message : e}; retrying`, true);
      if (lastData === null) {
        document.getElementById('rollouts').replaceChildren(el('p', { class: 'empty error' }, 'Cannot load the rollouts from the server; retrying every two seconds.'));
      }
    } finally {
      inFlight = false;
      schedule(again ? 0 : POLL_MS);
      again = false;
    }
  }

  async function act(ch, a) {
    const tok = token();
    if (!tok || busy.has(ch)) return;
    const why = window.prompt(`Reason to ${a.action} the rollout of channel ${ch}:`, '');
    if (why === null) return; // cancelled
    busy.add(ch);
    messages.set(ch, { text: `${a.label}: sending…`, at: Date.now() });
    draw();
    try {
      const res = await fetch(`/v1/rollouts/${encodeURIComponent(ch)}/${a.action}`, fetchOptions({
        method: 'POST',
        headers: { Authorization: `Bearer ${tok}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ who: 'dashboard', why: why.trim() }),
      }));
      if (res.ok) {
        messages.set(ch, { text: `${a.label} accepted.`, at: Date.now() });
      } else {
        messages.set(ch, { text: `${a.label} failed: ${await errorText(res)}`, error: true, at: Date.now() });
      }
    } catch (e) {
      messages.set(ch, { text: `${a.label} failed: ${e && e.message ? e.message : e}`, error: true, at: Date.now() });
    } finally {
      busy.delete(ch);
      draw();
      schedule(0);
    }
  }

  window.addEventListener('hashchange', draw);
  draw();
  poll();
})();
