/* The operator console: reads /status, /v1/decisions and /v1/groups/<g>/history, and sends pause,
 * resume and reload with the operator token kept in this tab's sessionStorage.
 *
 * Everything is built with DOM calls and textContent (never innerHTML), so nothing the daemon
 * reports can turn into markup or script. Fields that /status does not have are simply not shown;
 * fields it gains later (member addresses, lifecycle states, leadership) appear on their own.
 */
(function () {
  "use strict";

  const TOKEN_KEY = "autoscaler.operatorToken";
  const REFRESH_MS = 3000;
  const FETCH_TIMEOUT_MS = 10000;
  /* A daemon that does not answer within this long shows as unreachable; the next refresh tries again. */
  const KNOWN_MEMBER_KEYS = ["name", "state", "host", "address", "addresses", "created_at", "ready_at", "outdated"];
  const SHOWN_GROUP_KEYS = new Set([
    "group", "file", "revision", "state", "until", "reason", "paused", "min", "max", "current", "ready",
    "members", "last_decision", "replacements", "forecast", "schedules", "leader", "leadership", "desired",
    "paused_by", "paused_at",
  ]);

  const state = { status: null, route: null, timer: null, charts: {}, history: null, changesOnly: false };

  // --- small DOM helpers -------------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = String(value);
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  const $ = (id) => document.getElementById(id);

  function present(value) {
    return value !== null && value !== undefined && value !== "";
  }

  function fmtNumber(value, digits) {
    if (!present(value) || Number.isNaN(Number(value))) return "";
    const n = Number(value);
    if (Number.isInteger(n)) return n.toLocaleString();
    return n.toLocaleString(undefined, { maximumFractionDigits: digits === undefined ? 1 : digits });
  }

  function fmtDuration(seconds) {
    if (!present(seconds)) return "";
    let s = Math.max(0, Math.round(Number(seconds)));
    if (s < 60) return s + "s";
    const d = Math.floor(s / 86400); s -= d * 86400;
    const hr = Math.floor(s / 3600); s -= hr * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d) return d + "d " + hr + "h";
    if (hr) return hr + "h" + (m ? " " + m + "m" : "");
    return m + "m " + (s ? s + "s" : "");
  }

  function fmtSeconds(seconds) {
    if (!present(seconds)) return "";
    const n = Number(seconds);
    return n < 10 ? n.toFixed(1) + " s" : fmtDuration(n);
  }

  function fmtTime(unix) {
    if (!present(unix)) return "";
    const date = new Date(Number(unix) * 1000);
    const sameDay = new Date().toDateString() === date.toDateString();
    return sameDay
      ? date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false })
      : date.toLocaleString(undefined, { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", hour12: false });
  }

  function ago(unix) {
    if (!present(unix)) return "";
    const delta = Date.now() / 1000 - Number(unix);
    return delta >= 0 ? fmtDuration(delta) + " ago" : "in " + fmtDuration(-delta);
  }

  function stateClass(name) {
    const s = String(name || "").toLowerCase();
    if (["ready", "idle", "running", "leader", "enabled"].includes(s)) return "ok";
    if (["scaling", "waiting_slot", "booting", "registering", "starting"].includes(s)) return "info";
    if (["cooldown", "paused", "draining", "outdated", "standby", "follower"].includes(s)) return "warn";
    if (["failed", "disabled", "backoff", "broken", "error"].includes(s)) return "bad";
    return "";
  }

  function pill(text, cls) {
    return h("span", { class: "pill " + (cls === undefined ? stateClass(text) : cls), text: text });
  }

  function scalar(value) {
    if (!present(value)) return "";
    if (typeof value === "boolean") return value ? "yes" : "no";
    if (typeof value === "number") return fmtNumber(value, 3);
    if (Array.isArray(value)) return value.map(scalar).join(", ");
    if (typeof value === "object") {
      return Object.entries(value).filter(([, v]) => present(v)).map(([k, v]) => k + "=" + scalar(v)).join(" ");
    }
    return String(value);
  }

  function humanKey(key) {
    return key.replace(/_/g, " ");
  }

  // --- data --------------------------------------------------------------------------------------

  async function getJSON(path) {
    // Paths are relative to the page, so the console also works behind a proxy under a prefix.
    const response = await fetch(path, {
      headers: { Accept: "application/json" }, cache: "no-store", signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    });
    if (!response.ok) throw new Error(path + ": HTTP " + response.status);
    return response.json();
  }

  function leaderOf(group, status) {
    for (const holder of [group, status]) {
      if (!holder) continue;
      for (const key of ["leader", "leadership", "coordination"]) {
        const value = holder[key];
        if (!present(value)) continue;
        if (typeof value !== "object") return String(value);
        for (const inner of ["leader", "holder", "name", "id", "state", "role"]) {
          if (present(value[inner])) return scalar(value[inner]);
        }
      }
    }
    return "";
  }

  function desiredOf(group) {
    if (present(group.desired)) return group.desired;
    return group.last_decision ? group.last_decision.desired : null;
  }

  // --- token and actions -------------------------------------------------------------------------

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }

  function setToken(value) {
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage disabled: the token lives nowhere, actions stay locked */ }
    renderTokenButton();
  }

  function renderTokenButton() {
    const button = $("token-button");
    button.textContent = token() ? "Lock actions" : "Unlock actions";
    button.title = token() ? "Forget the operator token in this tab" : "Enter the operator token to pause, resume and reload";
  }

  function notify(kind, message) {
    const box = $("notices");
    const note = h("div", { class: "notice " + kind, "data-kind": kind },
      h("span", { class: "message", text: message }),
      h("button", { class: "close", type: "button", "aria-label": "Dismiss", text: "×",
        onclick: () => note.remove() }));
    box.replaceChildren(note);
    if (kind === "ok") setTimeout(() => note.remove(), 6000);
  }

  function refusal(status, body) {
    if (status === 401) {
      return "The operator token was refused (401 unauthorized). It has been forgotten in this tab: "
        + "unlock again with the content of the daemon's token file.";
    }
    if (status === 403) return "Operator actions are disabled on this daemon (no http.token_file is configured).";
    if (status === 503) return "The daemon cannot read its token file (503): operator actions are unavailable.";
    if (status === 404) return "No such group any more: " + body.trim();
    return "The daemon refused the request (HTTP " + status + "): " + body.trim();
  }

  async function operate(path, body, done) {
    const secret = token();
    if (!secret) { openTokenDialog(); return; }
    try {
      const response = await fetch(path, {
        method: "POST",
        headers: { Authorization: "Bearer " + secret, "Content-Type": "application/json" },
        body: JSON.stringify(body || {}),
        cache: "no-store",
        signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
      });
      const text = await response.text();
      if (!response.ok) {
        if (response.status === 401) setToken("");
        notify("error", refusal(response.status, text));
        return;
      }
      notify("ok", done);
    } catch (error) {
      notify("error", "The daemon did not answer: " + error.message);
    } finally {
      refresh();
    }
  }

  function openTokenDialog() {
    $("token-input").value = "";
    $("token-dialog").showModal();
    $("token-input").focus();
  }

  let pausing = null;

  function openPauseDialog(group) {
    pausing = group;
    $("pause-title").textContent = "Pause " + group;
    $("pause-reason").value = "";
    $("pause-dialog").showModal();
    $("pause-reason").focus();
  }

  function actionButtons(group, status) {
    const enabled = String(status.operator_api || "").startsWith("enabled");
    const locked = !token();
    const title = !enabled ? "Operator actions are " + status.operator_api
      : locked ? "Unlock actions with the operator token first" : "";
    const paused = present(group.paused); // a policy in paused mode is resumed by editing the policy
    const common = { class: "btn btn-small", disabled: !enabled || locked, title: title };
    return h("span", { class: "action-buttons" },
      paused
        ? h("button", { ...common, "data-action": "resume", text: "Resume",
          onclick: () => operate("groups/" + encodeURIComponent(group.group) + "/resume", {},
            "Resumed " + group.group + ".") })
        : h("button", { ...common, "data-action": "pause", text: "Pause",
          onclick: () => openPauseDialog(group.group) }));
  }

  function reloadButton(status) {
    const enabled = String(status.operator_api || "").startsWith("enabled");
    return h("button", { class: "btn btn-small", "data-action": "reload", disabled: !enabled || !token(),
      title: enabled ? "Re-read the policy files now" : "Operator actions are " + status.operator_api,
      text: "Reload policies",
      onclick: () => operate("reload", {}, "Reload requested: the policy files are re-read now.") });
  }

  // --- routing -----------------------------------------------------------------------------------

  function route() {
    const match = location.hash.match(/^#\/group\/(.+)$/);
    try {
      return match ? { page: "group", group: decodeURIComponent(match[1]) } : { page: "overview" };
    } catch (e) {
      return { page: "overview" };
    }
  }

  function crumbs(r) {
    const nav = $("crumbs");
    if (r.page === "group") {
      nav.replaceChildren(h("a", { href: "#/", text: "Groups" }), h("span", { class: "sep", text: "/" }),
        h("span", { class: "here", text: r.group }));
    } else {
      nav.replaceChildren(h("span", { class: "here", text: "Groups" }));
    }
  }

  // --- overview ----------------------------------------------------------------------------------

  function sizeBar(group) {
    const max = Math.max(Number(group.max) || 0, Number(group.current) || 0, Number(desiredOf(group)) || 0, 1);
    const bar = h("div", { class: "sizebar", title: "ready / current / desired of max " + max });
    const current = h("span", { class: "current" });
    const ready = h("span", { class: "ready" });
    const desired = h("span", { class: "desired" });
    current.style.width = (100 * (group.current || 0) / max) + "%";
    ready.style.width = (100 * (group.ready || 0) / max) + "%";
    desired.style.left = "calc(" + (100 * (desiredOf(group) || 0) / max) + "% - 1px)";
    bar.append(current, ready, desired);
    return bar;
  }

  function scheduleText(group) {
    const windows = group.schedules || [];
    if (!windows.length) return h("span", { class: "muted", text: "none" });
    const open = windows.filter((w) => w.open);
    if (open.length) {
      return h("span", {}, ...open.map((w) => h("div", {},
        pill("open", "info"), " ", w.name,
        present(w.min) ? " ≥" + w.min : "", present(w.max) ? " ≤" + w.max : "",
        present(w.closes_at) ? h("span", { class: "muted small", text: " until " + fmtTime(w.closes_at) }) : "")));
    }
    const next = windows.filter((w) => present(w.next_opening)).sort((a, b) => a.next_opening - b.next_opening)[0];
    return next
      ? h("span", { class: "muted", text: next.name + " opens " + fmtTime(next.next_opening) })
      : h("span", { class: "muted", text: "closed" });
  }

  function overviewRow(group, status, showLeader) {
    const last = group.last_decision;
    const link = "#/group/" + encodeURIComponent(group.group);
    return h("tr", { "data-group": group.group },
      h("td", {}, h("a", { href: link, class: "group-link" }, h("b", { text: group.group })),
        h("div", { class: "muted small mono", text: group.file ? group.file.split("/").pop() : "" })),
      h("td", {}, pill(group.state), present(group.paused)
        ? h("div", { class: "muted small", text: group.paused + pausedBy(group) }) : ""),
      h("td", { class: "counts" },
        h("b", { text: fmtNumber(group.current) }), h("span", { class: "muted", text: " / " }),
        h("span", { text: fmtNumber(group.ready) }), h("span", { class: "muted", text: " / " }),
        h("span", { text: fmtNumber(desiredOf(group)) }), sizeBar(group)),
      h("td", { class: "counts", text: fmtNumber(group.min) + " – " + fmtNumber(group.max) }),
      h("td", {}, scheduleText(group)),
      showLeader ? h("td", { text: leaderOf(group, status) }) : null,
      h("td", { class: "reason" }, last
        ? [h("span", { class: "line", title: last.reason, text: last.reason }),
          h("span", { class: "muted small", text: ago(last.at) + " · " + last.outcome })]
        : h("span", { class: "muted", text: "not evaluated yet" })),
      h("td", {}, actionButtons(group, status)));
  }

  function renderOverview(status) {
    const groups = status.groups || [];
    const members = groups.reduce((n, g) => n + (g.current || 0), 0);
    const ready = groups.reduce((n, g) => n + (g.ready || 0), 0);
    const paused = groups.filter((g) => g.state === "paused").length;
    const showLeader = groups.some((g) => leaderOf(g, null)) || !!leaderOf(null, status);
    const problems = Object.entries(status.policy_problems || {});
    const tiles = h("div", { class: "tiles" },
      tile("Groups", groups.length, paused ? paused + " paused" : "all managed"),
      tile("Instances", members, ready + " ready"),
      tile("Actions in flight", status.actions_in_flight || 0, ""),
      tile("Loop lag", fmtNumber((status.event_loop_lag_seconds || 0) * 1000, 0) + " ms", ""),
      tile("Operator API", String(status.operator_api || "").split(":")[0],
        token() ? "unlocked in this tab" : "locked in this tab"),
      leaderOf(null, status) ? tile("Leader", leaderOf(null, status), "") : null);
    const head = ["Group", "State", "Current / ready / desired", "Min – max", "Schedule window"];
    if (showLeader) head.push("Leader");
    head.push("Last decision", "");
    const table = groups.length
      ? h("div", { class: "table-wrap" }, h("table", { id: "groups-table" },
        h("thead", {}, h("tr", {}, head.map((t) => h("th", { text: t })))),
        h("tbody", {}, groups.map((g) => overviewRow(g, status, showLeader)))))
      : h("p", { class: "empty", text: "No group is managed: add a policy file to the policy directory." });
    return [
      h("div", { class: "page-head" }, h("h1", { text: "Groups" }), lockHint(status),
        h("div", { class: "actions" }, reloadButton(status))),
      tiles,
      problems.length ? h("section", { class: "panel" }, h("h2", { text: "Policy problems" }),
        h("div", { class: "panel-body" }, h("ul", { class: "problems" },
          problems.flatMap(([file, found]) => found.map((p) => h("li", { class: "mono", text: p })))))) : null,
      h("section", { class: "panel" }, table),
    ];
  }

  function lockHint(status) {
    if (token()) return null;
    const enabled = String(status.operator_api || "").startsWith("enabled");
    return h("span", { class: "muted small", id: "read-only",
      text: enabled ? "Read-only: unlock actions with the operator token to pause, resume or reload."
        : "Read-only: operator actions are " + status.operator_api + "." });
  }

  function tile(label, value, sub) {
    return h("div", { class: "tile" }, h("div", { class: "label", text: label }),
      h("div", { class: "value", text: value }), sub ? h("div", { class: "sub", text: sub }) : null);
  }

  // --- group page --------------------------------------------------------------------------------

  function memberColumns(members) {
    const extra = [];
    for (const m of members) {
      for (const [key, value] of Object.entries(m)) {
        if (!KNOWN_MEMBER_KEYS.includes(key) && !extra.includes(key) && present(value) && value !== false) extra.push(key);
      }
    }
    return extra;
  }

  function replacementsPanel(group) {
    const done = (group.replacements || []).slice().reverse();
    if (!done.length) return null;
    const names = (list) => (list || []).join(", ");
    return h("section", { class: "panel", id: "replacements" },
      h("div", { class: "panel-head" }, "Replaced members",
        h("span", { class: "aside muted small", text: "broken members, new clone first" })),
      h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ["When", "Broken", "Created", "Removed", "Errors"].map((t) => h("th", { text: t })))),
        h("tbody", {}, done.map((r) => h("tr", {},
          h("td", { title: ago(r.at), text: fmtTime(r.at) }), h("td", { class: "mono", text: names(r.broken) }),
          h("td", { class: "mono", text: names(r.created) }), h("td", { class: "mono", text: names(r.removed) }),
          h("td", { text: names(r.errors) })))))));
  }

  function headCell(label) {
    const [text, cls] = label.split("|");
    return h("th", { class: cls || null, text: text });
  }

  function membersPanel(group) {
    const members = group.members || [];
    const extra = memberColumns(members);
    const address = (m) => scalar(present(m.address) ? m.address : m.addresses);
    const withAddress = members.some((m) => address(m));
    const rows = members.map((m) => h("tr", { "data-member": m.name },
      h("td", { class: "mono", text: m.name }),
      h("td", {}, pill(m.state)),
      h("td", { class: "mono", title: m.host || "", text: hostName(m.host) }),
      withAddress ? h("td", { class: "mono", text: address(m) }) : null,
      h("td", { class: "num", title: fmtTime(m.created_at), text: present(m.created_at) ? fmtDuration(Date.now() / 1000 - m.created_at) : "" }),
      h("td", { class: "num", text: present(m.ready_at) ? fmtSeconds(m.ready_at - m.created_at) : "" }),
      h("td", {}, m.outdated ? h("span", { class: "tag warn", text: "outdated" }) : ""),
      extra.map((key) => h("td", { text: scalar(m[key]) }))));
    const head = ["Name", "State", "Host", withAddress ? "Address" : null, "Age|num", "Clone → ready|num", "Outdated",
      ...extra.map(humanKey)].filter(Boolean);
    return h("section", { class: "panel", id: "members" },
      h("div", { class: "panel-head" }, "Members",
        h("span", { class: "aside muted", text: members.length + " instance" + (members.length === 1 ? "" : "s") })),
      members.length
        ? h("div", { class: "table-wrap" }, h("table", { id: "members-table" },
          h("thead", {}, h("tr", {}, head.map(headCell))), h("tbody", {}, rows)))
        : h("p", { class: "empty", text: "No members." }));
  }

  function hostName(uri) {
    // qemu+ssh://root@kvm-07/system -> kvm-07; qemu:///system -> local; test:///path -> test (path)
    if (!present(uri)) return "";
    const match = String(uri).match(/^([a-z0-9+.-]+):\/\/(?:[^@/]*@)?([^/:?]*)/i);
    if (!match) return String(uri);
    if (match[2]) return match[2];
    return match[1].split("+")[0] === "test" ? "test driver" : "local";
  }

  function trail(decision) {
    const checks = decision.checks || [];
    const stages = decision.trail || [];
    return h("div", { class: "trail" },
      h("h3", { text: "Checks" }),
      checks.length ? h("table", {}, h("thead", {}, h("tr", {}, ["Check", "Input", "Value", "Proposes", "How"].map((t) => h("th", { text: t })))),
        h("tbody", {}, checks.map((c) => h("tr", {},
          h("td", { class: "mono", text: c.name }), h("td", {}, pill(c.kind, c.kind === "fresh" ? "ok" : "warn")),
          h("td", { class: "num", text: fmtNumber(c.value, 3) }), h("td", { class: "num", text: c.proposal }),
          h("td", { text: c.detail })))))
        : h("p", { class: "muted", text: "No checks." }),
      h("h3", { text: "Stages" }),
      stages.length ? h("table", {}, h("thead", {}, h("tr", {}, ["Stage", "Before", "", "After", "Reason"].map((t) => h("th", { text: t })))),
        h("tbody", {}, stages.map((s) => h("tr", { class: "stage" },
          h("td", { class: "mono", text: s.name }), h("td", { class: "num", text: s.before }),
          h("td", { class: "arrow", text: "→" }), h("td", { class: "num", text: s.after }),
          h("td", { text: s.reason })))))
        : h("p", { class: "muted", text: "No stage changed the count." }),
      (decision.victims || []).length ? h("p", {}, "Remove: ", h("span", { class: "mono", text: decision.victims.join(", ") })) : null,
      present(decision.detail) ? h("p", { class: "muted", text: decision.detail }) : null);
  }

  function decisionsPanel(all, openTicks) {
    const entries = (state.changesOnly ? all.filter((d) => d.desired !== d.current) : all).slice(0, 15);
    const items = entries.map((d) => {
      const dir = d.desired > d.current ? "up" : d.desired < d.current ? "down" : "";
      const details = h("details", { class: "decision", "data-tick": d.tick, open: openTicks.has(String(d.tick)) },
        h("summary", {},
          h("span", { class: "when", title: d.at_iso, text: fmtTime(d.at) }),
          h("span", {}, pill(d.outcome, d.outcome === "acted" ? "ok" : d.outcome === "failed" ? "bad" : "")),
          h("span", { class: "move " + dir, text: d.current + " → " + d.desired }),
          h("span", { class: "why", title: d.reason, text: d.reason })),
        trail(d));
      return details;
    });
    return h("section", { class: "panel", id: "decisions" },
      h("div", { class: "panel-head" }, "Recent decisions",
        h("label", { class: "small" }, h("input", { type: "checkbox", id: "changes-only", checked: state.changesOnly,
          onchange: (event) => { state.changesOnly = event.target.checked; refresh(); } }), "changes only"),
        h("span", { class: "aside muted small", text: "newest first · click one for its full trail" })),
      items.length ? h("div", {}, items)
        : h("p", { class: "empty", text: all.length ? "No change among the last " + all.length + " decisions." : "Not evaluated yet." }));
  }

  function readyPanel(history) {
    const summary = (history && history.clone_to_ready) || { count: 0, recent: [] };
    return h("section", { class: "panel", id: "clone-to-ready" },
      h("div", { class: "panel-head" }, "Clone to ready",
        h("span", { class: "aside muted small", text: summary.count + " measured" })),
      h("div", { class: "panel-body" },
        h("div", { class: "tiles" },
          tile("Median", fmtSeconds(summary.median) || "–", ""),
          tile("90th percentile", fmtSeconds(summary.p90) || "–", ""),
          tile("Slowest", fmtSeconds(summary.max) || "–", "")),
        summary.recent.length
          ? h("table", {}, h("thead", {}, h("tr", {}, ["Member", "Ready at", "Took"].map((t) => h("th", { text: t })))),
            h("tbody", {}, summary.recent.slice(0, 8).map((r) => h("tr", {},
              h("td", { class: "mono", text: r.name }), h("td", { text: fmtTime(r.ready_at) }),
              h("td", { class: "num", text: fmtSeconds(r.seconds) })))))
          : h("p", { class: "muted", text: "No member has become ready since the daemon started." })));
  }

  /* " (through daemon B, at 12:40:05, 5m ago)": which daemon took a shared pause and when (coordinated daemons). */
  function pausedBy(group) {
    const said = [];
    if (present(group.paused_by)) said.push("through daemon " + group.paused_by);
    if (present(group.paused_at)) said.push("at " + fmtTime(group.paused_at) + ", " + ago(group.paused_at));
    return said.length ? " (" + said.join(", ") + ")" : "";
  }

  function factsPanel(group, status) {
    const rows = [
      ["Policy file", group.file, "mono"], ["Revision", group.revision ? String(group.revision).slice(0, 12) : "", "mono"],
      ["State reason", group.reason], ["Until", present(group.until) ? fmtTime(group.until) + " (" + ago(group.until) + ")" : ""],
      ["Paused by operator", present(group.paused) ? group.paused + pausedBy(group) : ""],
      ["Forecast load", fmtNumber(group.forecast, 2)],
      ["Leader", leaderOf(group, status)],
    ];
    for (const [key, value] of Object.entries(group)) {
      if (!SHOWN_GROUP_KEYS.has(key) && present(value) && typeof value !== "object") rows.push([humanKey(key), scalar(value)]);
    }
    for (const w of group.schedules || []) {
      const when = w.open ? "open until " + fmtTime(w.closes_at) : "opens " + fmtTime(w.next_opening);
      const bounds = [present(w.min) ? "min " + w.min : "", present(w.max) ? "max " + w.max : ""].filter(Boolean).join(", ");
      rows.push(["Window " + w.name, w.cron + " " + w.timezone + " for " + fmtDuration(w.duration) + (bounds ? " (" + bounds + ")" : "") + " · " + when]);
    }
    const shown = rows.filter(([, value]) => present(value));
    return h("section", { class: "panel", id: "facts" }, h("h2", { text: "Policy and state" }),
      h("div", { class: "panel-body" }, h("dl", { class: "facts" },
        shown.map(([k, v, cls]) => [h("dt", { text: k }), h("dd", { class: cls || "", text: v })]))));
  }

  function chartPanel(id, title, aside) {
    return h("section", { class: "panel" },
      h("div", { class: "panel-head" }, title, h("span", { class: "aside muted small", text: aside })),
      h("div", { class: "chart", id: id, "data-points": "0" }));
  }

  function renderGroup(status, name, decisions, history) {
    const group = (status.groups || []).find((g) => g.group === name);
    if (!group) {
      return [h("div", { class: "page-head" }, h("h1", { text: name })),
        h("section", { class: "panel" }, h("p", { class: "empty", text: "This group is not managed (its policy file was removed or is invalid)." }))];
    }
    const basis = history && history.basis;
    const unit = basis ? basis.check + (basis.kind === "target_tracking" ? " (total over ready members)" : "") : "no sizing check";
    const hours = history ? fmtDuration(history.span_seconds) : "";
    const forecasting = history && (history.points.forecast || []).some((v) => v !== null);
    const loadAside = unit + (forecasting ? "" : " · no forecast (predictive off)") + " · last " + hours;
    return [
      h("div", { class: "page-head" }, h("h1", { text: group.group }), pill(group.state),
        present(group.paused) ? h("span", { class: "muted", text: "paused: " + group.paused + pausedBy(group) }) : lockHint(status),
        h("div", { class: "actions" }, actionButtons(group, status), reloadButton(status))),
      h("div", { class: "tiles" },
        tile("Current", fmtNumber(group.current), "min " + fmtNumber(group.min) + " · max " + fmtNumber(group.max)),
        tile("Ready", fmtNumber(group.ready), ""),
        tile("Desired", fmtNumber(desiredOf(group)), group.last_decision ? "outcome: " + group.last_decision.outcome : ""),
        tile("Last decision", group.last_decision ? ago(group.last_decision.at) : "–", group.last_decision ? "tick " + group.last_decision.tick : ""),
        present(group.forecast) ? tile("Forecast load", fmtNumber(group.forecast, 1), "") : null,
        leaderOf(group, status) ? tile("Leader", leaderOf(group, status), "") : null),
      h("div", { class: "grid-2" },
        chartPanel("chart-load", "Load, capacity and forecast", loadAside),
        chartPanel("chart-size", "Instances", "current, ready and desired · last " + hours)),
      h("div", { class: "stack" }),
      membersPanel(group),
      replacementsPanel(group),
      h("div", { class: "grid-2" }, readyPanel(history), factsPanel(group, status)),
      h("div", { class: "stack" }),
      decisionsPanel(decisions, openDecisions()),
    ];
  }

  function openDecisions() {
    return new Set(Array.from(document.querySelectorAll("details.decision[open]")).map((d) => d.dataset.tick));
  }

  // --- charts ------------------------------------------------------------------------------------

  const COLORS = { load: "#2563eb", capacity: "#16a34a", forecast: "#9333ea", current: "#2563eb", ready: "#16a34a", desired: "#f59e0b" };

  function series(label, color, options) {
    return Object.assign({ label: label, stroke: color, width: 2, spanGaps: false, points: { show: false },
      value: (u, v) => (v === null || v === undefined ? "–" : fmtNumber(v, 1)) }, options || {});
  }

  function chartSpecs() {
    const stepped = uPlot.paths && uPlot.paths.stepped ? uPlot.paths.stepped({ align: 1 }) : undefined;
    return {
      "chart-load": {
        columns: ["load", "capacity", "forecast"],
        always: 2,
        series: [series("load", COLORS.load, { fill: "rgba(37,99,235,.08)" }),
          series("capacity", COLORS.capacity, { paths: stepped }),
          series("forecast", COLORS.forecast, { dash: [6, 4] })],
      },
      "chart-size": {
        columns: ["current", "ready", "desired"],
        always: 3,
        series: [series("current", COLORS.current, { paths: stepped, fill: "rgba(37,99,235,.08)" }),
          series("ready", COLORS.ready, { paths: stepped }),
          series("desired", COLORS.desired, { paths: stepped, dash: [5, 4] })],
      },
    };
  }

  function newestInLegend(chart, count) {
    // Outside a hover the legend shows the newest values rather than dashes.
    if (count && !(chart.cursor && chart.cursor.left >= 0)) chart.setLegend({ idx: count - 1 });
  }

  function drawCharts(history) {
    if (!history || typeof uPlot === "undefined") return;
    state.history = history;
    const points = history.points || {};
    const at = points.at || [];
    const filled = (c) => (points[c] || []).some((v) => v !== null && v !== undefined);
    for (const [id, spec] of Object.entries(chartSpecs())) {
      const box = $(id);
      if (!box) continue;
      const shown = spec.columns.map((c, i) => [c, spec.series[i]]).filter(([c], i) => i < spec.always || filled(c));
      const data = [at, ...shown.map(([c]) => points[c] || at.map(() => null))];
      box.dataset.points = String(at.length);
      box.setAttribute("role", "img");
      box.setAttribute("aria-label", "newest: " + shown.map(([c]) => c + " " + fmtNumber((points[c] || []).at(-1), 1)).join(", "));
      box.dataset.ordered = String(at.every((t, i) => i === 0 || t > at[i - 1]));
      box.dataset.series = shown.filter(([c]) => filled(c)).map(([c]) => c).join(",");
      const width = Math.max(280, box.clientWidth - 16);
      const chart = state.charts[id];
      const signature = shown.map(([c]) => c).join(",");
      if (chart && chart.signature === signature && box.contains(chart.root)) {
        chart.setData(data);
        if (Math.abs(chart.width - width) > 4) chart.setSize({ width: width, height: 240 });
        newestInLegend(chart, at.length);
        continue;
      }
      box.replaceChildren();
      const styles = getComputedStyle(document.body);
      const axis = { stroke: styles.color, grid: { stroke: "rgba(127,127,127,.15)" }, ticks: { stroke: "rgba(127,127,127,.25)" } };
      state.charts[id] = new uPlot({
        width: width, height: 240,
        cursor: { drag: { x: true, y: false } },
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
        axes: [axis, Object.assign({ size: 56 }, axis)],
        series: [{ label: "time", value: (u, v) => (v === null ? "–" : fmtTime(v)) }, ...shown.map(([, s]) => s)],
        hooks: {
          ready: [(u) => newestInLegend(u, u.data[0].length)],
          setCursor: [(u) => { if (u.cursor.idx === null || u.cursor.idx === undefined) newestInLegend(u, u.data[0].length); }],
        },
      }, data, box);
      state.charts[id].signature = signature;
      newestInLegend(state.charts[id], at.length);
    }
  }

  // --- history: all of it once a minute, only the newer points in between ----------------------------

  const FULL_HISTORY_MS = 60000;
  const kept = { group: null, data: null, fetched: 0 };

  async function fetchHistory(group) {
    const path = "v1/groups/" + encodeURIComponent(group) + "/history";
    const at = kept.data && kept.data.points.at;
    const fresh = kept.group === group && at && at.length && Date.now() - kept.fetched < FULL_HISTORY_MS;
    if (!fresh) {
      const data = await getJSON(path);
      Object.assign(kept, { group: group, data: data, fetched: Date.now() });
      return data;
    }
    const newer = await getJSON(path + "?since=" + at[at.length - 1]);
    const points = kept.data.points;
    for (const column of Object.keys(points)) points[column].push(...(newer.points[column] || []));
    const horizon = points.at[points.at.length - 1] - newer.span_seconds;
    const drop = points.at.findIndex((t) => t >= horizon);
    if (drop > 0) for (const column of Object.keys(points)) points[column].splice(0, drop);
    kept.data = { ...newer, points: points };
    return kept.data;
  }

  // --- refresh loop ------------------------------------------------------------------------------

  function selecting() {
    // An operator selecting text (a member name to copy) keeps the page still until done.
    const selection = window.getSelection();
    return !!selection && !selection.isCollapsed && $("main").contains(selection.anchorNode);
  }

  function focusKey(el) {
    // What a keyboard user is on, in words that survive a re-render: an id, or an action and its group.
    if (!el || el === document.body || !$("main").contains(el)) return null;
    if (el.id) return "#" + el.id;
    const where = el.closest("[data-group], [data-tick]");
    const scope = where ? "[data-" + (where.dataset.group ? "group" : "tick") + '="'
      + CSS.escape(where.dataset.group || where.dataset.tick) + '"] ' : ".page-head ";
    if (el.dataset.action) return scope + '[data-action="' + el.dataset.action + '"]';
    if (el.matches("a.group-link, summary")) return scope + el.tagName.toLowerCase() + (el.matches("a") ? ".group-link" : "");
    return null;
  }

  function refocus(selector) {
    const el = document.querySelector(selector);
    if (el) el.focus({ preventScroll: true });
  }

  let refreshing = false;
  let again = false;

  async function refresh() {
    // One refresh at a time (the timer, an action and navigation all ask for one): the history is
    // merged from "newer than what we have", which two overlapping fetches would add twice.
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      await refreshOnce();
    } finally {
      refreshing = false;
    }
    if (again) { again = false; refresh(); }
  }

  async function refreshOnce() {
    clearTimeout(state.timer);
    if (document.hidden) { // a background tab asks nothing; showing it again refreshes at once
      state.timer = setTimeout(refresh, REFRESH_MS);
      return;
    }
    const r = route();
    const changed = !state.route || state.route.page !== r.page || state.route.group !== r.group;
    state.route = r;
    crumbs(r);
    try {
      const status = await getJSON("status");
      state.status = status;
      const daemon = $("daemon-state");
      daemon.textContent = status.ready ? "ready" : "starting";
      daemon.className = "pill " + (status.ready ? "ok" : "bad");
      let content;
      let history = null;
      if (r.page === "group") {
        const path = encodeURIComponent(r.group);
        const [decisions, found] = await Promise.all([
          getJSON("v1/decisions?group=" + path + "&limit=" + (state.changesOnly ? 100 : 15)).then((d) => d[r.group] || []).catch(() => []),
          fetchHistory(r.group).catch(() => null),
        ]);
        history = found;
        content = renderGroup(status, r.group, decisions, history);
        document.title = r.group + " · autoscaler";
      } else {
        content = renderOverview(status);
        document.title = "autoscaler";
      }
      if (!changed && selecting()) {
        state.timer = setTimeout(refresh, REFRESH_MS);
        return;
      }
      if (changed) state.charts = {};
      const keep = Object.fromEntries(Object.entries(state.charts).map(([id, c]) => [id, c.root]));
      const focused = changed ? null : focusKey(document.activeElement);
      $("main").replaceChildren(...content.filter(Boolean));
      if (focused) refocus(focused);
      for (const [id, root] of Object.entries(keep)) {
        const box = $(id);
        if (box) box.replaceChildren(root);
      }
      drawCharts(history);
      $("updated").textContent = "updated " + fmtTime(Date.now() / 1000);
      $("main").dataset.loaded = r.page;
    } catch (error) {
      $("daemon-state").textContent = "unreachable";
      $("daemon-state").className = "pill bad";
      $("updated").textContent = error.message;
    }
    state.timer = setTimeout(refresh, REFRESH_MS);
  }

  // --- wiring ------------------------------------------------------------------------------------

  function wire() {
    renderTokenButton();
    $("token-button").addEventListener("click", () => {
      if (token()) { setToken(""); notify("ok", "Actions locked: the token is forgotten in this tab."); refresh(); } else openTokenDialog();
    });
    $("token-cancel").addEventListener("click", () => $("token-dialog").close());
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token-input").value.trim();
      $("token-input").value = "";
      $("token-dialog").close();
      if (value) { setToken(value); notify("ok", "Actions unlocked in this tab. The token is checked on the first action."); }
      refresh();
    });
    $("pause-cancel").addEventListener("click", () => $("pause-dialog").close());
    $("pause-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const reason = $("pause-reason").value.trim();
      $("pause-dialog").close();
      if (pausing) operate("groups/" + encodeURIComponent(pausing) + "/pause", { reason: reason }, "Paused " + pausing + ".");
    });
    window.addEventListener("hashchange", refresh);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
    window.addEventListener("resize", () => drawCharts(state.history));
    refresh();
  }

  document.addEventListener("DOMContentLoaded", wire);
})();
