// cafe console: a live view of the CafeDeployment releases, with confirmed one-click actions.
// State arrives as Server-Sent Events on /events; actions are POSTed to /api/act.
// Server data only ever reaches the DOM through textContent / text nodes (see el()).
"use strict";

const TOKEN = document.querySelector('meta[name="cafe-token"]')?.content ?? "";

const state = {
  readOnly: false,
  scope: "",
  context: "",
  user: "", // not in the contract's hello, but shown when the server sends it
  loaded: false, // the burst of events after `hello` is over
  refill: null, // during that burst: {y: scroll position at hello, problem: whether one was re-sent}
  releases: new Map(), // key -> Release
  outcomeAt: null, // where the last action came from: a release key, "global", or null
  global: { freezes: [], members: [], actions: [] },
};

// Open state of every <details>, by a stable id: survives re-renders and reconnects.
const openDetails = new Map();

// Symbols that go with words, so colour is never the only signal.
const GROUP_STATE = { done: "✔", moving: "↻", waiting: "⚑", pending: "·" };
const REACH = { Reachable: "✔", Unreachable: "✖" };
const VERDICT = { Successful: "✔", Failed: "✖", Inconclusive: "?", Error: "⚠" };
const BANNER_ICON = { freeze: "❄", window: "◷", stalled: "✖", info: "ℹ" };
// Only used when the server sends no icon (it normally does).
const PHASE_ICON = {
  Healthy: "✔", Progressing: "↻", Analyzing: "⌕", WaitingForConfirm: "⚑",
  Paused: "‖", Frozen: "❄", RollingBack: "↺", Stalled: "✖",
};
const GO_LABEL = {
  confirm: "Confirm", pause: "Pause", resume: "Resume",
  rollback: "Roll back", freeze: "Freeze", thaw: "Thaw",
};

const $ = (id) => document.getElementById(id);
const OUTCOME = $("outcome"); // moved around the page, so held on to here

// ---------------------------------------------------------------- DOM helpers

// el("td", {class: "x", "data-state": s}, child, "text", [more]): strings become text nodes.
// Attributes that are null, undefined or false are left out; true means "present".
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// A symbol for sighted users next to the word; screen readers get the word only.
function withIcon(icon, word) {
  return [el("span", { class: "icon", "aria-hidden": "true", text: icon }), " ", word];
}

// "WaitingForConfirm" -> "Waiting for confirm"
function humanize(word) {
  const spaced = String(word).replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
  return spaced.charAt(0).toUpperCase() + spaced.slice(1);
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

// A <details> whose open state is remembered under `openId`.
function details(openId, summary, ...body) {
  const node = el("details", { "data-open-id": openId },
    el("summary", { "data-focus-id": `summary:${openId}` }, summary), ...body);
  node.open = openDetails.get(openId) ?? false;
  node.addEventListener("toggle", () => openDetails.set(openId, node.open));
  return node;
}

// A table inside its own horizontally scrolling box (the page itself never scrolls sideways).
function tableBox(scrollId, caption, headers, rows) {
  return el("div", { class: "table-wrap", "data-scroll-id": scrollId },
    el("table", null,
      caption && el("caption", { class: "sr-only", text: caption }),
      el("thead", null, el("tr", null, headers.map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", null, rows.map((cells) => el("tr", null, cells.map((c) => el("td", null, c)))))));
}

// Replace a rendered node by a fresh one, keeping keyboard focus and the
// horizontal scroll of its tables (open <details> are handled by details()).
function swap(oldNode, newNode) {
  const active = document.activeElement;
  const focusId = oldNode.contains(active) ? active.closest("[data-focus-id]")?.dataset.focusId : null;
  const scrolls = [...oldNode.querySelectorAll("[data-scroll-id]")]
    .map((n) => [n.dataset.scrollId, n.scrollLeft]);
  oldNode.replaceWith(newNode);
  for (const [id, left] of scrolls) {
    const box = newNode.querySelector(`[data-scroll-id="${CSS.escape(id)}"]`);
    if (box) box.scrollLeft = left;
  }
  if (focusId) byFocusId(newNode, focusId)?.focus({ preventScroll: true });
}

function byFocusId(root, focusId) {
  return root.querySelector(`[data-focus-id="${CSS.escape(focusId)}"]`);
}

// ---------------------------------------------------------------- times

// <time> with "14:03 (5 min ago)"; the relative part is refreshed by a timer.
function timeEl(iso) {
  if (!iso) return el("span", { class: "muted", text: "never" });
  const node = el("time", { class: "when", datetime: iso });
  updateTime(node);
  return node;
}

function updateTime(node) {
  const date = new Date(node.dateTime);
  if (Number.isNaN(date.getTime())) {
    node.textContent = node.dateTime;
    return;
  }
  // Today: just the time of day; earlier: the date too. The reader's locale and time zone,
  // but always a 24-hour clock, as in logs.
  const today = date.toDateString() === new Date().toDateString();
  const style = today ? { timeStyle: "short" } : { dateStyle: "medium", timeStyle: "short" };
  const clock = date.toLocaleString([], { ...style, hourCycle: "h23" });
  node.title = date.toString();
  node.textContent = `${clock} (${ago(Date.now() - date.getTime())})`;
}

function ago(ms) {
  const s = Math.round(ms / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 172800) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

// ---------------------------------------------------------------- header and global state

function renderHeader() {
  $("scope").textContent = state.scope || "…";
  $("context").textContent = state.context;
  $("context-item").hidden = !state.context;
  $("user").textContent = state.user;
  $("user-item").hidden = !state.user;
  $("readonly").hidden = !state.readOnly;
}

function setLive(live) {
  const node = $("live");
  node.dataset.live = String(live);
  node.textContent = live ? "● live" : "○ reconnecting…";
  $("conn").hidden = live;
}

function renderGlobal() {
  const { freezes, members, actions } = state.global;
  const thawFor = (name) => actions.find((a) => a.verb === "thaw" && a.freeze === name);
  // Thaws sit in their freeze's banner; everything else ("Freeze releases…") in a row of its own.
  const loose = actions.filter((a) => !(a.verb === "thaw" && freezes.some((f) => f.name === a.freeze)));
  const section = el("section", { id: "global", "aria-label": "Freezes and member clusters" },
    freezes.map((f) => freezeBanner(f, thawFor(f.name))),
    loose.length > 0 && el("div", { class: "actions" }, loose.map((a) => actionControl(a, null))),
    members.length > 0 && membersBox(members));
  swap($("global"), section);
  if (state.outcomeAt === "global") placeOutcome();
}

function freezeBanner(freeze, thaw) {
  return el("div", { class: "banner", "data-kind": "freeze", "data-freeze": freeze.name },
    el("div", { class: "banner-text" },
      el("strong", null, withIcon("❄", `Release freeze ${freeze.name}`)),
      el("span", { text: freeze.reason }),
      el("span", { class: "meta" },
        `by ${freeze.by} · since `, timeEl(freeze.since), ` · scope: ${freeze.scope}`)),
    thaw && actionControl(thaw, null));
}

function membersBox(members) {
  return el("div", { class: "members" },
    el("h2", { text: "Member clusters" }),
    el("ul", null, members.map((m) => el("li", { "data-member": m.name },
      el("strong", { class: "member-name", text: m.name }),
      reachEl(m.state),
      m.message && el("span", { class: "meta", text: m.message }),
      el("span", { class: "meta" }, "last contact ", timeEl(m.lastContact))))));
}

function reachEl(reach) {
  const node = el("span", { class: "reach", "data-reach": reach ?? "" });
  if (reach) node.append(...withIcon(REACH[reach] ?? "?", reach));
  return node;
}

// ---------------------------------------------------------------- a release card

const cardId = (key) => `release-${key}`;

function renderRelease(r) {
  const titleId = `title-${r.key}`;
  const phaseClass = `phase-${String(r.phase ?? "unknown").toLowerCase()}`;
  return el("article", { class: `card ${phaseClass}`, id: cardId(r.key), "data-key": r.key, "aria-labelledby": titleId },
    cardHeader(r, titleId),
    (r.banners || []).map(releaseBanner),
    r.message && el("p", { class: "message", text: r.message }),
    r.next && el("p", { class: "next" }, el("span", { class: "label", text: "Next" }), el("code", { text: r.next })),
    actionsRow(r),
    groupBar(r),
    facts(r),
    cellGrid(r),
    podsBox(r),
    analysisBox(r),
    historyBox(r));
}

function cardHeader(r, titleId) {
  return el("header", { class: "card-head" },
    el("h2", { id: titleId }, el("span", { class: "ns", text: `${r.namespace}/` }), r.name),
    el("span", { class: "phase pill", "data-phase": r.phase ?? "" }, phaseWords(r)));
}

function phaseWords(r) {
  return withIcon(r.icon || PHASE_ICON[r.phase] || "?", r.phase ? humanize(r.phase) : "Unknown");
}

// One line per release above the cards, each linking to its card.
// (Its phase pill is not class "phase": that one identifies the card's own.)
function renderOverview() {
  const releases = [...state.releases.values()].sort((a, b) => (a.key < b.key ? -1 : 1));
  const nav = el("nav", { id: "overview", "aria-label": "Releases at a glance", hidden: releases.length === 0 },
    el("ul", null, releases.map((r) => el("li", { "data-overview-key": r.key },
      el("a", { href: `#${cardId(r.key)}`, "data-focus-id": `overview:${r.key}` }, r.key),
      el("span", { class: "pill", "data-pill-phase": r.phase ?? "" }, phaseWords(r)),
      el("span", { class: "meta", text: r.message })))));
  swap($("overview"), nav);
}

function releaseBanner(b) {
  return el("div", { class: "banner", "data-kind": b.kind },
    el("span", { class: "banner-text" }, withIcon(BANNER_ICON[b.kind] ?? "ℹ", b.text)));
}

function actionsRow(r) {
  if (!r.actions || r.actions.length === 0) return null;
  return el("div", { class: "actions" }, r.actions.map((a) => actionControl(a, r)));
}

// One action button; when it may not be used: disabled, with the reason shown next to it.
function actionControl(action, release) {
  const enabled = Boolean(action.enabled) && !state.readOnly;
  const why = state.readOnly ? "read-only console" : action.why;
  const focusId = `act:${action.verb}${action.freeze ? `:${action.freeze}` : ""}`;
  const whyId = `why-${release ? release.key : "global"}-${focusId}`;
  const button = el("button", {
    type: "button",
    class: `act${action.danger ? " danger" : ""}${action.verb === "confirm" ? " primary" : ""}`,
    "data-verb": action.verb,
    "data-freeze": action.freeze,
    "data-focus-id": focusId,
    disabled: !enabled,
    title: enabled ? null : why,
    "aria-describedby": !enabled && why ? whyId : null,
  }, action.label);
  if (enabled) button.addEventListener("click", () => openDialog(action, release, button));
  return el("span", { class: "action" }, button,
    !enabled && why && el("span", { class: "why", id: whyId, text: why }));
}

// The aggregated state of each group over all cells, as a segmented bar plus words.
function groupBar(r) {
  if (!r.group) return null;
  const { done, of } = r.group;
  const segments = (r.groups || []).map((g, i) => {
    const st = groupState(r.cells || [], i);
    return el("span", { class: `seg seg-${st}`, title: `Group ${g.group} (${g.label}): ${st}` });
  });
  return el("div", { class: "groupbar" },
    el("span", { class: "segs", "aria-hidden": "true" }, segments),
    el("span", { class: "groupbar-text", text: `${done} of ${plural(of, "group", "groups")} done` }));
}

function groupState(cells, index) {
  const states = cells.map((c) => c.groups?.[index]?.state).filter(Boolean);
  if (states.length > 0 && states.every((s) => s === "done")) return "done";
  return ["moving", "waiting"].find((s) => states.includes(s)) ?? "pending";
}

function facts(r) {
  const rows = [
    ["Strategy", r.strategy],
    ["Revisions", revisionsText(r.revisions)],
    ["Pods", `${r.updated} of ${r.replicas} updated · ${r.ready} of ${r.replicas} ready`],
    ["Sign-off", r.signoff],
  ].filter(([, value]) => value);
  return el("dl", { class: "facts" },
    rows.map(([term, value]) => [el("dt", { text: term }), el("dd", { text: value })]));
}

function revisionsText(revs) {
  if (!revs || !(revs.current || revs.update)) return null;
  if (!revs.current) return `update ${revs.update}`;
  if (!revs.update || revs.update === revs.current) return `current ${revs.current}`;
  return `current ${revs.current} → update ${revs.update}`;
}

function groupTitle(g) {
  const label = g.label && g.label !== String(g.group) ? ` · ${g.label}` : "";
  return `Group ${g.group}${label}`;
}

// The cells x groups grid: a real table, rows are cells, columns are groups.
function cellGrid(r) {
  const groups = r.groups || [];
  const cells = r.cells || [];
  if (cells.length === 0) return el("p", { class: "muted", text: "No cells." });
  return el("div", { class: "table-wrap", "data-scroll-id": "grid" },
    el("table", { class: "grid" },
      el("caption", { class: "sr-only", text: `Cells by groups of ${r.key}` }),
      el("thead", null, el("tr", null,
        el("th", { scope: "col", text: "Cell" }),
        groups.map((g) => el("th", { scope: "col", text: groupTitle(g) })),
        el("th", { scope: "col", text: "Pods" }))),
      el("tbody", null, cells.map((c) => cellRow(c, groups)))));
}

function cellRow(cell, groups) {
  const byGroup = new Map((cell.groups || []).map((g) => [g.group, g]));
  const unreachable = cell.reachability === "Unreachable";
  return el("tr", { "data-cell": cell.name, class: unreachable ? "unreachable" : null },
    el("th", { scope: "row" },
      el("span", { class: "cell-name", text: cell.name }),
      el("span", { class: "cluster", text: cell.cluster ? `cluster ${cell.cluster}` : "local cluster" }),
      reachEl(cell.reachability),
      cell.cluster && cell.reachability !== "Reachable" &&
        el("span", { class: "meta" }, "last contact ", timeEl(cell.lastContact))),
    groups.map((g) => groupCell(byGroup.get(g.group), g.group)),
    el("td", { class: "counts" },
      el("span", { text: `${cell.updated}/${cell.replicas} updated` }),
      el("span", { text: `${cell.ready}/${cell.replicas} ready` })));
}

function groupCell(cg, group) {
  if (!cg) return el("td", { "data-group": group, "data-state": "", class: "gs" }, "—");
  return el("td", { "data-group": group, "data-state": cg.state, class: `gs gs-${cg.state}` },
    el("span", { class: "gs-state" }, withIcon(GROUP_STATE[cg.state] ?? "?", cg.state)),
    // pods is null when the plan for this cell is not known here
    el("span", { class: "gs-pods", text: cg.pods === null || cg.pods === undefined ? "? pods" : plural(cg.pods, "pod", "pods") }));
}

function podsBox(r) {
  const cells = r.cells || [];
  if (cells.length === 0) return null;
  return el("div", { class: "pods" }, cells.map((c) =>
    details(`${r.key}|pods|${c.name}`, `Pods in ${c.name} (${(c.pods || []).length})`, podsBody(c, r))));
}

function podsBody(cell, r) {
  const note = cell.podsNote && el("p", { class: "note", text: cell.podsNote });
  const pods = cell.pods || [];
  if (pods.length === 0) return note || el("p", { class: "muted", text: "No pods." });
  const revName = (rev) => (rev === "update" ? r.revisions?.update : r.revisions?.current);
  const rows = pods.map((p) => [
    el("code", { text: p.name }),
    el("span", { title: revName(p.revision) ?? null, text: p.revision }),
    p.state,
    withIcon(p.ready ? "✔" : "○", p.ready ? "ready" : "not ready"),
    String(p.restarts ?? 0),
    p.node ?? "—",
    p.holds && p.holds.length ? p.holds.join(", ") : "—",
  ]);
  return [note, tableBox(`pods-${cell.name}`, `Pods in ${cell.name}`,
    ["Pod", "Revision", "State", "Ready", "Restarts", "Node", "Held by"], rows)];
}

function analysisBox(r) {
  const a = r.analysis;
  if (!a) return null;
  const rows = (a.measurements || []).map((m) => [
    el("code", { text: m.query }),
    m.value,
    el("code", { text: m.condition }),
    el("span", { class: "verdict", "data-verdict": m.verdict }, withIcon(VERDICT[m.verdict] ?? "?", m.verdict)),
    timeEl(m.at),
  ]);
  return el("section", { class: "analysis" },
    el("h3", null, `Analysis: ${a.phase ?? "—"}`),
    a.message && el("p", { class: "meta", text: a.message }),
    rows.length > 0
      ? tableBox("analysis", `Analysis measurements of ${r.key}`, ["Query", "Value", "Condition", "Verdict", "At"], rows)
      : el("p", { class: "muted", text: "No measurements yet." }));
}

function historyBox(r) {
  const history = r.history || [];
  if (history.length === 0) return null;
  const rows = history.map((h) => [
    timeEl(h.at), h.action, h.by || "—", h.revision || "—",
    h.group === null || h.group === undefined ? "—" : String(h.group), h.message ?? "",
  ]);
  return details(`${r.key}|history`, `History (${plural(history.length, "entry", "entries")})`,
    tableBox("history", `History of ${r.key}`, ["When", "Action", "By", "Revision", "Group", "Message"], rows));
}

// ---------------------------------------------------------------- the release list

function findCard(key) {
  return $("releases").querySelector(`:scope > [data-key="${CSS.escape(key)}"]`);
}

// Cards are kept sorted by key; a changed release re-renders only its own card.
function showRelease(r) {
  state.releases.set(r.key, r);
  const card = renderRelease(r);
  const old = findCard(r.key);
  if (old) {
    swap(old, card);
  } else {
    const list = $("releases");
    const next = [...list.children].find((c) => c.dataset.key > r.key);
    list.insertBefore(card, next ?? null);
  }
  if (state.outcomeAt === r.key) placeOutcome();
  renderOverview();
  updateEmpty();
}

function removeRelease(key) {
  state.releases.delete(key);
  const card = findCard(key);
  if (card?.contains(document.activeElement)) $("releases").focus({ preventScroll: true });
  card?.remove();
  if (state.outcomeAt === key) placeOutcome();
  renderOverview();
  updateEmpty();
}

function updateEmpty() {
  const empty = $("empty");
  empty.hidden = state.releases.size > 0;
  empty.textContent = state.loaded ? `No releases (CafeDeployments) in ${state.scope}.` : "Loading releases…";
}

// After `hello` the server sends everything again and the list starts empty. So that a
// reconnect does not move the page, <main> keeps its height and the scroll position is put
// back after each refilled card, until the events pause.
let settleTimer = null;
function settleSoon() {
  clearTimeout(settleTimer);
  settleTimer = setTimeout(() => {
    if (state.refill && !state.refill.problem) showProblem(""); // not re-sent: it is over
    state.refill = null;
    document.querySelector("main").style.minHeight = "";
    state.loaded = true;
    updateEmpty();
  }, 1200);
}

// ---------------------------------------------------------------- server events

function onHello(hello) {
  setLive(true);
  state.readOnly = Boolean(hello.readOnly);
  state.scope = hello.scope ?? "";
  state.context = hello.context ?? "";
  state.user = hello.user ?? "";
  renderHeader();
  const main = document.querySelector("main");
  main.style.minHeight = `${main.offsetHeight}px`;
  state.refill = { y: window.scrollY, problem: false };
  $("outcome-home").append(OUTCOME); // back under its card once that is sent again
  $("releases").replaceChildren();
  state.releases.clear();
  renderOverview();
  state.loaded = false;
  updateEmpty();
  settleSoon();
}

function onGlobal(g) {
  state.global = { freezes: g.freezes || [], members: g.members || [], actions: g.actions || [] };
  renderGlobal();
}

function onRelease(r) {
  showRelease(r);
  if (state.refill) {
    window.scrollTo(0, state.refill.y);
    settleSoon();
  }
}

function onProblem(p) {
  if (state.refill) state.refill.problem = true;
  showProblem(p.message);
}

function showProblem(message) {
  $("problem-text").textContent = message || "";
  $("problem").hidden = !message;
}

function connect() {
  const source = new EventSource("/events");
  const handlers = {
    hello: onHello,
    global: onGlobal,
    release: onRelease,
    gone: (g) => removeRelease(g.key),
    problem: onProblem,
  };
  for (const [name, handler] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => {
      const data = parseJson(event.data);
      if (data) handler(data);
      else console.error(`cafe console: a ${name} event that is not JSON`, event.data);
    });
  }
  source.onopen = () => setLive(true);
  source.onerror = () => {
    setLive(false);
    // EventSource retries by itself, unless the server answered with an error status.
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 5000);
  };
}

// ---------------------------------------------------------------- the dialog and acting

let current = null; // {action, release, opener, seq} while the dialog is open
let dialogSeq = 0;

function openDialog(action, release, opener) {
  const seq = ++dialogSeq;
  current = { action, release, opener, seq };
  $("dialog-title").textContent = action.label.replace(/…$/, "");
  const where = [state.context && `context ${state.context}`, state.user && `as ${state.user}`];
  $("dialog-target").textContent = [release ? `Release ${release.key}` : state.scope, ...where]
    .filter(Boolean).join(" · ");
  $("dialog-explain").textContent = action.explain || "";
  $("dialog-fields").replaceChildren(...dialogFields(action, release, seq));
  const go = $("dialog-go");
  go.textContent = GO_LABEL[action.verb] ?? "Confirm";
  go.className = action.danger ? "act danger" : "act primary";
  go.disabled = action.verb === "rollback"; // until the revisions are listed
  $("dialog").showModal();
  // Focus the first field; otherwise Cancel for dangerous actions, the action for the others.
  const field = $("dialog-fields").querySelector("input");
  (field ?? (action.danger ? $("dialog-cancel") : go)).focus();
}

function dialogFields(action, release, seq) {
  if (action.verb === "freeze") {
    return [
      el("label", { for: "f-reason", text: "Reason (required)" }),
      el("input", { id: "f-reason", name: "reason", required: true, autocomplete: "off",
        pattern: ".*\\S.*", title: "Say why releases are frozen" }),
      el("label", { for: "f-namespaces", text: "Namespaces (optional, comma separated)" }),
      el("input", { id: "f-namespaces", name: "namespaces", autocomplete: "off", placeholder: "shop, ledger" }),
    ];
  }
  if (action.verb === "rollback" && release) {
    const box = el("fieldset", { class: "revisions" },
      el("legend", { text: "Roll back to revision" }),
      el("p", { class: "muted", text: "Loading revisions…" }));
    loadRevisions(release, box, seq);
    return [box];
  }
  return [];
}

async function loadRevisions(release, box, seq) {
  const query = new URLSearchParams({ namespace: release.namespace, name: release.name });
  let list = null;
  let error = null;
  try {
    const res = await fetch(`/api/revisions?${query}`, { headers: { Accept: "application/json" } });
    const body = await res.json().catch(() => null);
    if (res.ok && Array.isArray(body)) list = body;
    else error = body?.error ?? `HTTP ${res.status}`;
  } catch (err) {
    error = err.message;
  }
  if (!current || current.seq !== seq) return; // that dialog is gone
  $("dialog-go").disabled = false;
  const legend = box.querySelector("legend");
  if (error || list.length === 0) {
    const why = error ? `Could not list the revisions: ${error}` : "No revisions listed.";
    box.replaceChildren(legend, el("p", { class: "field-error", text: why }),
      el("p", { class: "meta", text: "The rollback will be sent without a revision; the server picks the target." }));
    return;
  }
  // Default: the newest revision that is not the one being rolled out.
  const preferred = list.find((rev) => !rev.update) ?? list[0];
  box.replaceChildren(legend, ...list.map((rev) => revisionChoice(rev, rev === preferred)));
}

function revisionChoice(rev, checked) {
  const id = `rev-${rev.revision}`;
  return el("div", { class: "choice" },
    el("input", { type: "radio", name: "revision", id, value: rev.revision, checked }),
    el("label", { for: id },
      el("strong", { text: `Revision ${rev.revision}` }), " ",
      el("code", { text: rev.images }),
      rev.current && el("span", { class: "tag", text: "current" }),
      rev.update && el("span", { class: "tag", text: "update" })));
}

// The JSON body for /api/act, from the action and the dialog's fields.
function actBody(action, release) {
  const body = { verb: action.verb };
  if (release) Object.assign(body, { namespace: release.namespace, name: release.name });
  if (action.freeze) body.freeze = action.freeze;
  const form = $("dialog-form");
  if (action.verb === "rollback") {
    const chosen = form.querySelector('input[name="revision"]:checked');
    if (chosen) body.revision = Number(chosen.value);
  }
  if (action.verb === "freeze") {
    body.reason = form.elements.reason.value.trim();
    const namespaces = form.elements.namespaces.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (namespaces.length > 0) body.namespaces = namespaces;
  }
  return body;
}

async function postAct(body) {
  try {
    const res = await fetch("/api/act", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Cafe-Token": TOKEN },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    const data = parseJson(text); // not JSON: the text is shown as it came
    if (res.ok) return { ok: true, text: data?.message ?? (text || "Done.") };
    return { ok: false, text: data?.error ?? (text || `HTTP ${res.status} ${res.statusText}`) };
  } catch (err) {
    return { ok: false, text: `The request failed: ${err.message}` };
  }
}

// The form validated itself (required reason) before this submit event.
async function submitDialog(event) {
  event.preventDefault();
  if (!current) return;
  const { action, release, seq } = current;
  const what = `${action.label.replace(/…$/, "")}${release ? ` · ${release.key}` : ""}`;
  const body = actBody(action, release);
  const go = $("dialog-go");
  go.disabled = true;
  go.textContent = "Working…";
  showOutcome(null); // the previous result stays until now, the next action
  const outcome = await postAct(body);
  if (current?.seq === seq) $("dialog").close(); // unless Esc closed it meanwhile
  showOutcome(outcome, what, release ? release.key : "global");
}

function showOutcome(outcome, what = "", at = null) {
  state.outcomeAt = outcome ? at : null;
  placeOutcome();
  $("result").textContent = outcome?.ok ? outcome.text : "";
  $("error").textContent = outcome && !outcome.ok ? outcome.text : "";
  $("outcome-what").textContent = outcome ? `${outcome.ok ? "Done" : "Failed"}: ${what}` : "";
  OUTCOME.classList.toggle("shown", Boolean(outcome));
  OUTCOME.classList.toggle("failed", Boolean(outcome && !outcome.ok));
}

// The outcome sits under the buttons it came from (not over anything, unlike a sticky
// panel) and follows their re-renders; when they are gone it rests at its home near the top,
// so #result and #error are always in the document.
function placeOutcome() {
  const at = state.outcomeAt;
  const card = at && at !== "global" ? findCard(at) : null;
  if (at === "global") $("global").prepend(OUTCOME);
  else if (card) (card.querySelector(":scope > .actions") ?? card.querySelector(".card-head")).after(OUTCOME);
  else $("outcome-home").append(OUTCOME);
}

// Back to the button that opened the dialog, or its re-rendered twin, or the outcome.
function onDialogClose() {
  const closed = current;
  current = null;
  if (!closed) return;
  const focusId = closed.opener.dataset.focusId;
  const root = closed.release ? findCard(closed.release.key) : $("global");
  let target = closed.opener.isConnected ? closed.opener : root && byFocusId(root, focusId);
  if (!target || target.disabled) target = OUTCOME.classList.contains("shown") ? OUTCOME : $("releases");
  target.focus();
}

function start() {
  $("dialog-form").addEventListener("submit", submitDialog);
  $("dialog-cancel").addEventListener("click", () => $("dialog").close());
  $("dialog").addEventListener("close", onDialogClose);
  $("outcome-close").addEventListener("click", () => {
    showOutcome(null);
    $("releases").focus({ preventScroll: true });
  });
  setInterval(() => document.querySelectorAll("time.when").forEach(updateTime), 20000);
  renderGlobal();
  connect();
}

start();
