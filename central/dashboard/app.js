// hallsync dashboard: plain JavaScript, no build step, no external URL.
// Every number comes from /api/v1 with the user's API key (Authorization: Bearer). The key lives in
// sessionStorage only. The UI asks GET /whoami for the key's role and shows what that role may use;
// a section the role may not read says so (403) instead of failing. Text from the API is always set
// with textContent (never innerHTML), so data cannot inject markup.
"use strict";

(function () {
  const API = "/api/v1";
  const KEY_STORE = "hallsync.apiKey";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const STATES = ["offline", "door_open", "tilt", "disabled", "playing", "idle"];
  const STATE_LABEL = {
    offline: "offline", door_open: "door open", tilt: "tilt", disabled: "disabled",
    playing: "playing", idle: "idle",
  };
  const FINAL = ["applied", "failed", "expired"];
  const POLL_MS = 1000;
  const POLL_LIMIT = 120;
  const REFRESH_MS = 15000;
  const DEFAULT_DAYS = 30;
  // views that read a report over the period picker's gaming days
  const PERIOD_VIEWS = ["charts", "reconciliation", "hold", "audit"];
  // views shown only to a role that may read their route (their nav button is hidden otherwise)
  const VIEW_ROUTE = {
    reconciliation: "GET /reports/reconciliation", hold: "GET /reports/hold", audit: "GET /audit", rules: "GET /rules",
  };
  // heavy reads (a reconciliation reads every machine-day) and records that do not change while one
  // reads them: loaded when shown, on Refresh and on a new period, not every REFRESH_MS
  const NO_AUTO_REFRESH = ["reconciliation", "hold", "audit", "rules"];
  const MAX_PAGES = 20;

  const state = {
    key: null, who: null, currency: "", view: "overview", floorHall: null,
    commands: [], // {id, hall, device, action, game, status, detail}
    floorMachines: null, // device → the machine as the floor last showed it
    floorMoney: null, // device → its GGR today (minor units), for the roles that read money
    period: null, // {from, to, isDefault}: hall-local gaming days YYYY-MM-DD, both inclusive
    loading: 0,
    timer: null,
  };

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // ---- helpers ----------------------------------------------------------------------------------
  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else if (name === "class") node.className = value;
      else if (name === "onclick") node.addEventListener("click", value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "text") node.textContent = String(value);
      else node.setAttribute(name, String(value));
    }
    return node;
  }

  // Integer minor units → "1 234.56 EUR" with integer arithmetic only (no float rounding of money).
  function money(minor) {
    if (typeof minor !== "number" || !Number.isSafeInteger(minor)) return "—";
    const sign = minor < 0 ? "-" : "";
    const abs = Math.abs(minor);
    const major = Math.trunc(abs / 100);
    const cents = abs - major * 100;
    const grouped = String(major).replace(/\B(?=(\d{3})+(?!\d))/g, " ");
    return sign + grouped + "." + String(cents).padStart(2, "0") + (state.currency ? " " + state.currency : "");
  }

  // ---- gaming days and the period picker --------------------------------------------------------
  // YYYY-MM-DD plus n days (calendar arithmetic in UTC: no time zone can shift a date label).
  function addDays(day, n) {
    const [y, m, d] = day.split("-").map(Number);
    return new Date(Date.UTC(y, m - 1, d + n)).toISOString().slice(0, 10);
  }

  // The gaming day a hall is in now, by its rule from a report's `days` ({timezone, gaming_day_start}):
  // the local date of (now − the day's start), as central's DayRule.day_of.
  function gamingDay(rule, now) {
    const [h, m] = String(rule.gaming_day_start || "00:00").split(":").map(Number);
    const shifted = new Date(now.getTime() - (h * 60 + m) * 60000);
    try {
      const parts = new Intl.DateTimeFormat("en-CA", { timeZone: rule.timezone || "UTC", year: "numeric",
        month: "2-digit", day: "2-digit" }).formatToParts(shifted);
      const get = (type) => parts.find((part) => part.type === type).value;
      return get("year") + "-" + get("month") + "-" + get("day");
    } catch (err) {
      return shifted.toISOString().slice(0, 10);   // a zone this browser does not know: UTC's date
    }
  }

  // The default period: the last 30 gaming days up to the latest "today" among the key's halls (the
  // one the reports' to=today would reach), else UTC's today.
  function defaultPeriod(days) {
    const now = new Date();
    const todays = Object.values(days || {}).map((rule) => gamingDay(rule, now)).sort();
    const to = todays.length ? todays[todays.length - 1] : now.toISOString().slice(0, 10);
    return { from: addDays(to, 1 - DEFAULT_DAYS), to, isDefault: true };
  }

  function setPeriod(period) {
    state.period = period;
    $("period-from").value = period.from;
    $("period-to").value = period.to;
    $("period-error").hidden = true;
  }

  // Learns the halls' gaming days (and the currency) from one small report, for the default period.
  async function initPeriod() {
    let days = null;
    if (canUse("GET /reports/ggr")) {
      try {
        const report = await api("/reports/ggr?group_by=network&from=today&to=today");
        days = report.days;
        state.currency = report.currency;
      } catch (err) {
        if (!(err instanceof ApiError) || err.status === 401) throw err;
      }
    }
    state.days = days;
    setPeriod(defaultPeriod(days));
  }

  function periodQuery() { return "from=" + state.period.from + "&to=" + state.period.to; }

  function periodLabel() {
    const p = state.period;
    if (p.isDefault) return "Last " + DEFAULT_DAYS + " days";
    return p.from === p.to ? p.from : p.from + " – " + p.to;
  }

  function onPeriodChange() {
    const from = $("period-from").value;
    const to = $("period-to").value;
    const error = $("period-error");
    if (!from || !to || from > to) {
      error.textContent = !from || !to ? "Give both days." : "The first day is after the last.";
      error.hidden = false;
      return;
    }
    const fresh = defaultPeriod(state.days);
    setPeriod({ from, to, isDefault: from === fresh.from && to === fresh.to });
    refresh();
  }

  // ---- CSV ------------------------------------------------------------------------------------
  // A column of a report table: `head` on the page, `csv` in the file. Kinds: text, int, money (shown
  // in major units with the currency, written as integer minor units so a spreadsheet sums exactly),
  // bp (basis points: shown as %, written as the integer).
  function cellText(col, value) {
    if (value === null || value === undefined || value === "") return col.kind === "text" ? "" : "—";
    if (col.kind === "money") return money(value);
    if (col.kind === "bp") return bp(value);
    return String(value);
  }

  function csvField(value, kind) {
    let s = value === null || value === undefined ? "" : String(value);
    // a text cell starting with = + - @ would run as a formula in a spreadsheet: quoted as text
    if (kind === "text" && /^[=+\-@\t\r]/.test(s)) s = "'" + s;
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }

  // RFC 4180: CRLF line ends, a header line, fields with comma, quote or line break quoted, quotes doubled.
  function toCsv(columns, rows, withCurrency) {
    const head = columns.map((c) => c.csv).concat(withCurrency ? ["currency"] : []);
    const lines = [head.map((h) => csvField(h, "head")).join(",")];
    for (const r of rows) {
      const fields = columns.map((c) => csvField(c.get(r), c.kind));
      if (withCurrency) fields.push(csvField(state.currency, "head"));
      lines.push(fields.join(","));
    }
    return lines.join("\r\n") + "\r\n";
  }

  function download(filename, text) {
    const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
    const link = el("a", { href: url, download: filename, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  // A report as a table and a "Download CSV" button whose file holds exactly these rows and columns.
  function reportTable(name, columns, rows, attrs) {
    const withCurrency = columns.some((c) => c.kind === "money");
    const trs = rows.map((r) => el("tr", attrs.row ? attrs.row(r) : {}, ...columns.map((c) => {
      const value = c.get(r);
      const extra = c.cls ? c.cls(r) : "";
      return el("td", { class: ((c.kind === "text" ? "" : "num ") + (c.css || "") + " " + extra).trim() || null,
        "data-col": c.csv, "data-minor": c.kind === "money" && value !== null ? value : null,
        text: c.display ? c.display(r) : cellText(c, value) });
    })));
    const filename = name + "_" + (attrs.period === false ? new Date().toISOString().slice(0, 10)
      : state.period.from + "_" + state.period.to) + ".csv";
    const button = el("button", { type: "button", class: "csv", "data-report": name, text: "Download CSV",
      onclick: () => download(filename, toCsv(columns, rows, withCurrency)) });
    const head = el("thead", {}, el("tr", {}, ...columns.map((c) => el("th",
      { class: c.kind === "text" ? null : "num", text: c.head }))));
    return [el("div", { class: "report-tools" }, button,
      el("span", { class: "notice", text: rows.length + " row" + (rows.length === 1 ? "" : "s") })),
    el("table", { id: name + "-table", class: "report" }, head, el("tbody", {}, ...trs))];
  }

  function when(iso) { return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "—"; }

  function canUse(route) { return !!state.who && state.who.routes.includes(route); }

  // ---- API ------------------------------------------------------------------------------------
  async function api(path, options) {
    const opts = options || {};
    const headers = { "Authorization": "Bearer " + (opts.key || state.key), "Accept": "application/json" };
    const init = { method: opts.method || "GET", headers, cache: "no-store" };
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    let response;
    try {
      response = await fetch(API + path, init);
    } catch (err) {
      throw new ApiError(0, "network", "central does not answer (" + err.message + ")");
    }
    let body = null;
    try { body = await response.json(); } catch (err) { body = null; }
    if (!response.ok) {
      const e = body && body.error ? body.error : {};
      throw new ApiError(response.status, e.code || "error", e.message || ("HTTP " + response.status));
    }
    return body;
  }

  // Renders a section's failure in place: 403 is a role matter, 401 means log in again.
  function showError(container, err) {
    container.replaceChildren();
    if (err.status === 401) {
      logout("Your API key is no longer valid: log in again.");
      return;
    }
    if (err.status === 403) {
      container.append(el("p", { class: "denied", text: "Not permitted for your role (" + state.who.role + ")." }));
    } else if (err.status === 404) {
      container.append(el("p", { class: "notice", text: "Not available on this server: " + err.message }));
    } else {
      container.append(el("p", { class: "error", text: "Could not load: " + err.message }));
    }
  }

  async function section(container, route, load) {
    if (!canUse(route)) {
      container.replaceChildren(el("p", { class: "denied",
        text: "Not permitted for your role (" + state.who.role + ")." }));
      return;
    }
    try {
      await load();
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      showError(container, err);
    }
  }

  function table(headers, rows, attrs) {
    const thead = el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { text: h }))));
    const tbody = el("tbody", {}, ...rows);
    return el("table", attrs || {}, thead, tbody);
  }

  // ---- login ----------------------------------------------------------------------------------
  async function login(key) {
    const who = await api("/whoami", { key });
    state.key = key;
    state.who = who;
    sessionStorage.setItem(KEY_STORE, key);
    $("whoami").textContent = (who.name ? who.name + " (" + who.id + ")" : who.id) + " · " + who.role +
      (who.halls ? " · halls: " + who.halls.join(", ") : "");
    $("whoami").dataset.role = who.role;
    for (const [name, route] of Object.entries(VIEW_ROUTE)) {
      document.querySelector('#views button[data-view="' + name + '"]').hidden = !canUse(route);
    }
    await initPeriod();
    $("login").hidden = true;
    $("app").hidden = false;
    $("session").hidden = false;
    await show(state.view);
    schedule();
  }

  function logout(message) {
    sessionStorage.removeItem(KEY_STORE);
    state.key = null;
    state.who = null;
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
    // nothing of the last user's data stays on the page for the next one
    state.view = "overview";
    state.floorHall = null;
    state.floorMachines = null;
    state.floorMoney = null;
    state.period = null;
    state.days = null;
    state.commands = [];
    state.currency = "";
    for (const node of document.querySelectorAll(".panel, .summary, .legend, #floor-hall")) node.replaceChildren();
    $("whoami").textContent = "";
    $("app").hidden = true;
    $("session").hidden = true;
    $("login").hidden = false;
    $("api-key").value = "";
    const error = $("login-error");
    error.hidden = !message;
    error.textContent = message || "";
  }

  async function onLogin(event) {
    event.preventDefault();
    const key = $("api-key").value.trim();
    const error = $("login-error");
    error.hidden = true;
    if (!key) return;
    try {
      await login(key);
    } catch (err) {
      error.textContent = err.status === 401 ? "That API key is not valid." : "Login failed: " + err.message;
      error.hidden = false;
    }
  }

  function schedule() {
    if (state.timer) clearInterval(state.timer);
    state.timer = setInterval(() => { if (state.key && !NO_AUTO_REFRESH.includes(state.view)) refresh(); }, REFRESH_MS);
  }

  // ---- views ----------------------------------------------------------------------------------
  const VIEWS = {
    overview: renderOverview, floor: renderFloor, charts: renderCharts, alerts: renderAlerts, catalog: renderCatalog,
    reconciliation: renderReconciliation, hold: renderHold, audit: renderAudit, rules: renderRules,
  };

  async function show(view) {
    state.view = view;
    for (const button of document.querySelectorAll("#views button")) {
      button.classList.toggle("active", button.dataset.view === view);
    }
    for (const name of Object.keys(VIEWS)) $("view-" + name).hidden = name !== view;
    $("period").hidden = !PERIOD_VIEWS.includes(view);
    await refresh();
  }

  async function refresh() {
    const main = document.querySelector("main");
    state.loading += 1;   // refreshes may overlap (a new period while one loads): loading until all end
    main.dataset.loading = "true";
    try {
      await VIEWS[state.view]();
    } finally {
      state.loading -= 1;
      main.dataset.loading = state.loading > 0 ? "true" : "false";
    }
  }

  async function hallIds() {
    if (!canUse("GET /halls")) return state.who.halls || [];
    const halls = await api("/halls");
    return halls.rows.map((h) => h.id);
  }

  // Network: halls online and today's GGR per hall (each hall's own gaming day: the API's "today").
  async function renderOverview() {
    const body = $("overview-body");
    const summary = $("overview-summary");
    const mayHalls = canUse("GET /halls");
    const mayGgr = canUse("GET /reports/ggr");
    const denied = "not permitted for your role";
    if (!mayHalls && !mayGgr) {
      summary.textContent = "";
      body.replaceChildren(el("p", { class: "denied", text: "Not permitted for your role (" + state.who.role + ")." }));
      return;
    }
    try {
      const halls = mayHalls ? (await api("/halls")).rows : null;
      let ggr = null;
      let ggrError = null;
      if (mayGgr) {
        try {
          ggr = await api("/reports/ggr?group_by=hall&from=today&to=today");
          state.currency = ggr.currency;
        } catch (err) {
          if (!(err instanceof ApiError) || err.status === 401) throw err;
          ggrError = err;
        }
      }
      const byHall = new Map((ggr ? ggr.rows : []).map((r) => [r.key, r]));
      // machines per state, for the roles that see the floor (one small request per hall)
      const floors = new Map();
      if (halls && canUse("GET /floor")) {
        await Promise.all(halls.map(async (h) => {
          try {
            floors.set(h.id, await api("/floor?hall=" + encodeURIComponent(h.id)));
          } catch (err) {
            if (!(err instanceof ApiError) || err.status === 401) throw err;
          }
        }));
      }
      // a role without the agents' status (regulator) still sees each hall's money
      const list = halls || (ggr ? ggr.rows.map((r) => ({ id: r.key, online: undefined, status_at: null })) : []);
      const parts = [];
      if (halls) parts.push(halls.filter((h) => h.online === true).length + " of " + halls.length + " halls online");
      if (ggr) parts.push("GGR today " + money(ggr.rows.reduce((sum, r) => sum + r.ggr, 0)));
      summary.textContent = parts.join(" · ");
      const rows = list.map((h) => {
        const r = byHall.get(h.id);
        const status = h.online === true ? "online" : h.online === false ? "offline" : "unknown";
        const agentCell = halls ? el("td", { class: "online " + status, text: status })
          : el("td", { class: "online denied", text: denied });
        const ggrCell = ggr
          ? el("td", { class: "ggr num", "data-minor": r ? r.ggr : 0, text: money(r ? r.ggr : 0) })
          : el("td", { class: "ggr denied", text: ggrError && ggrError.status !== 403 ? ggrError.message : denied });
        const name = canUse("GET /floor")
          ? el("button", { type: "button", class: "link", text: h.id,
            onclick: () => { state.floorHall = h.id; show("floor"); } })
          : h.id;
        const floor = floors.get(h.id);
        const machines = floor
          ? el("td", { class: "machines", "data-total": floor.machines.length,
            text: floor.machines.length + " machines: " + STATES.filter((st) => floor.counts[st])
              .map((st) => floor.counts[st] + " " + STATE_LABEL[st]).join(", ") })
          : el("td", { class: "machines denied", text: canUse("GET /floor") ? "—" : denied });
        return el("tr", { "data-hall": h.id }, el("td", {}, name), agentCell, ggrCell,
          el("td", { class: "num", text: r ? r.rounds : (ggr ? 0 : "—") }), machines,
          el("td", { text: when(h.status_at) }));
      });
      body.replaceChildren(rows.length ? table(["Hall", "Agent", "GGR today", "Rounds today", "Machines",
        "Status since"], rows,
        { id: "halls-table" }) : el("p", { class: "notice", text: "No hall is registered yet." }));
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      showError(body, err);
    }
  }

  // Floor: each machine with its state; operators and admins may disable or enable it.
  async function renderFloor() {
    const grid = $("floor-grid");
    const select = $("floor-hall");
    await section(grid, "GET /floor", async () => {
      const ids = await hallIds();
      if (!state.floorHall || !ids.includes(state.floorHall)) state.floorHall = ids[0] || null;
      select.replaceChildren(...ids.map((id) => el("option", { value: id, text: id,
        selected: id === state.floorHall })));
      if (!state.floorHall) {
        grid.replaceChildren(el("p", { class: "notice", text: "No hall is registered yet." }));
        return;
      }
      const floor = await api("/floor?hall=" + encodeURIComponent(state.floorHall));
      // each machine's GGR in the hall's own gaming day today, for the roles that read money (the
      // floor itself is status only: a technician sees the floor, not the money)
      state.floorMoney = null;
      if (canUse("GET /reports/ggr")) {
        try {
          const ggr = await api("/reports/ggr?group_by=device&hall=" + encodeURIComponent(floor.hall) +
            "&from=today&to=today");
          state.currency = ggr.currency;
          state.floorMoney = new Map(ggr.rows.filter((r) => r.hall === floor.hall).map((r) => [r.key, r]));
        } catch (err) {
          if (!(err instanceof ApiError) || err.status === 401) throw err;
        }
      }
      $("floor-summary").textContent = STATES.map((s) => floor.counts[s] + " " + STATE_LABEL[s]).join(" · ") +
        (floor.hall_online === false ? " · the hall's agent is offline" : "") +
        (floor.complete === false ? " · central's monitor is behind: an older open door or tilt may be missing" : "");
      $("floor-legend").replaceChildren(...STATES.map((s) => el("span", { class: "chip state-" + s,
        text: STATE_LABEL[s] })));
      state.floorMachines = new Map(floor.machines.map((m) => [m.device, m]));
      const tiles = floor.machines.map((m) => machineTile(floor.hall, m));
      grid.replaceChildren(...(tiles.length ? tiles
        : [el("p", { class: "notice", text: "No machine has reported in this hall yet." })]));
    });
  }

  // One machine's tile; a command button for the roles that may send commands.
  function machineTile(hall, m) {
    const tile = el("div", { class: "machine state-" + m.state, "data-device": m.device, "data-state": m.state,
      "data-flags": m.flags.join(" ") },
      el("div", { class: "device", text: m.device }),
      el("div", { class: "kind", text: m.kind }),
      el("div", { class: "state", text: STATE_LABEL[m.state] || m.state }),
      el("div", { class: "detail", text: m.detail || (m.last_play ? "last game " + when(m.last_play) : "") }),
      m.disabled_games.length ? el("div", { class: "games-off", text: "games off: " + m.disabled_games.join(", ") })
        : null,
      state.floorMoney ? moneyLine(state.floorMoney.get(m.device)) : null);
    if (canUse("POST /commands")) {
      const action = m.enabled ? "disable_machine" : "enable_machine";
      tile.append(el("button", { type: "button", class: m.enabled ? "cmd-disable" : "cmd-enable",
        text: m.enabled ? "Disable" : "Enable",
        onclick: (event) => {
          const button = event.target;
          button.disabled = true;
          const ask = m.enabled ? confirmCommand("Disable machine " + m.device + " in hall " + hall + "?",
            "Nobody can play on it until it is enabled again.", "Disable") : Promise.resolve(true);
          ask.then((ok) => {
            if (ok) sendCommand({ hall, device: m.device, action });
            else button.disabled = false;
          });
        },
      }));
    }
    const last = latestCommand(hall, m.device, null);
    if (last) tile.append(commandBadge(last));
    return tile;
  }

  // A tile's money today: no row means the machine moved no money today (0), said as such.
  function moneyLine(row) {
    const ggr = row ? row.ggr : 0;
    return el("div", { class: "money", "data-minor": ggr,
      title: row ? "bets " + money(row.bets) + ", wins " + money(row.wins) + ", " + row.rounds + " rounds today"
        : "no money today", text: "GGR today " + money(ggr) });
  }

  // A command the hall says it applied changes the tile at once (the same rule as central's floor:
  // disabled is more urgent than playing and idle, less than offline, door open and tilt); the floor
  // is then read again, and central's answer (which takes the applied command as the newest word on
  // the switch) agrees.
  function commandApplied(c) {
    if (state.view !== "floor" || state.floorHall !== c.hall || !state.floorMachines) return false;
    const m = state.floorMachines.get(c.device);
    if (!m) return false;
    const flags = m.flags.filter((f) => f !== "disabled");
    let enabled = m.enabled;
    let games = m.disabled_games.slice();
    if (c.action === "disable_machine" || c.action === "enable_machine") {
      enabled = c.action === "enable_machine";
    } else if (c.game && (c.action === "disable_game" || c.action === "enable_game")) {
      games = games.filter((g) => g !== c.game);
      if (c.action === "disable_game") games = [...games, c.game].sort();
    } else {
      return false;
    }
    const details = m.detail ? m.detail.split("; ").filter((d) => d !== "disabled") : [];
    if (!enabled) details.push("disabled");
    if (!enabled || details.includes("out of service")) flags.push("disabled");
    const ordered = STATES.filter((st) => flags.includes(st));
    const next = { ...m, enabled, disabled_games: games, state: ordered[0] || "idle",
      flags: [...ordered, ...flags.filter((f) => !STATES.includes(f))], detail: details.join("; ") };
    state.floorMachines.set(c.device, next);
    const old = document.querySelector('#floor-grid .machine[data-device="' + CSS.escape(c.device) + '"]');
    if (old) old.replaceWith(machineTile(c.hall, next));
    return true;
  }

  // ---- charts (inline SVG, our own code) -------------------------------------------------------
  // A value axis of "nice" steps (1, 2 or 5 × 10^k minor units, never below one cent) that covers
  // min..max and zero: integers only, so a tick's label is exact money.
  function ticks(min, max) {
    const span = max - min;
    if (span <= 0) return { low: 0, high: 100, step: 100 };
    const rough = span / 4;
    const magnitude = Math.pow(10, Math.floor(Math.log10(rough)));
    const fraction = rough / magnitude;
    const step = Math.max(1, (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * magnitude);
    return { low: Math.floor(min / step) * step, high: Math.ceil(max / step) * step, step };
  }

  function barChart(name, rows, labelOf) {
    const width = 640;
    const barGap = 6;
    const height = 240;
    const top = 16;
    const bottom = 48;
    const left = 72;   // room for the value axis' labels
    const right = 8;
    const values = rows.map((r) => r.ggr);
    const axis = ticks(Math.min(0, ...values), Math.max(0, ...values));
    const span = axis.high - axis.low;
    const plot = height - top - bottom;
    const yOf = (v) => top + ((axis.high - v) / span) * plot;
    const zeroY = yOf(0);
    const inner = width - left - right;
    const barWidth = rows.length ? Math.max(4, Math.min(60, inner / rows.length - barGap)) : 0;
    const chart = svg("svg", { class: "chart", "data-chart": name, viewBox: "0 0 " + width + " " + height,
      role: "img", "aria-label": "GGR by " + name });
    // gridlines and their labels: one per step, the zero line drawn as the axis
    const grid = svg("g", { class: "value-axis", "data-step": axis.step });
    for (let v = axis.low; v <= axis.high; v += axis.step) {
      const y = yOf(v);
      grid.append(svg("line", { class: v === 0 ? "axis" : "grid", x1: left, x2: width - right, y1: y, y2: y }));
      grid.append(svg("text", { class: "tick", x: left - 4, y: y + 3, "text-anchor": "end", "data-value": v,
        text: money(v).replace(" " + state.currency, "") }));
    }
    grid.append(svg("line", { class: "axis", x1: left, x2: left, y1: top, y2: top + plot }));
    grid.append(svg("text", { class: "unit", x: 4, y: 10, text: "GGR" + (state.currency ? " (" + state.currency + ")" : "") }));
    chart.append(grid);
    rows.forEach((r, i) => {
      const x = left + barGap / 2 + i * (barWidth + barGap);
      const h = (Math.abs(r.ggr) / span) * plot;
      const y = r.ggr >= 0 ? zeroY - h : zeroY;
      const bar = svg("rect", { class: "bar" + (r.ggr < 0 ? " negative" : ""), x, y, width: barWidth,
        height: Math.max(h, 1), "data-key": r.key, "data-label": labelOf(r), "data-ggr": r.ggr });
      bar.append(svg("title", { text: labelOf(r) + ": " + money(r.ggr) + " (bets " + money(r.bets) +
        ", wins " + money(r.wins) + ", " + r.rounds + " rounds)" }));
      chart.append(bar);
      chart.append(svg("text", { class: "value", x: x + barWidth / 2, y: r.ggr >= 0 ? y - 3 : y + h + 11,
        "text-anchor": "middle", text: money(r.ggr).replace(" " + state.currency, "") }));
      const label = labelOf(r);
      const fits = Math.max(4, Math.floor((barWidth + barGap) / 5.5));   // about 5.5 px a character at 10 px
      chart.append(svg("text", { class: "label", x: x + barWidth / 2, y: height - bottom + 24,
        "text-anchor": "middle", text: label.length > fits ? label.slice(0, fits - 1) + "…" : label }));
    });
    if (!rows.length) {
      chart.append(svg("text", { class: "label", x: left + inner / 2, y: top + plot / 2, "text-anchor": "middle",
        text: "no play in this period" }));
    }
    return chart;
  }

  // A row's part of the total, one decimal (a display, not money: the amounts stay integers).
  function share(part, total) {
    if (!total) return "—";
    return (Math.round((part * 1000) / total) / 10).toFixed(1) + " %";
  }

  const CHART_READS = 3;

  function sumGgr(rows) { return rows.reduce((s, r) => s + r.ggr, 0); }

  function clock(date) {
    return [date.getHours(), date.getMinutes(), date.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
  }

  // One view, one moment: every chart covers the same days (the same from= and to=) and the page reads
  // them together; the halls keep sending while it reads, so when the totals disagree (a batch landed
  // between two reads) it reads them all again, and says "as of" when the set it shows was read.
  async function renderCharts() {
    const period = "&" + periodQuery();
    const specs = [
      ["day", (r) => r.key.slice(5)],
      // the API's label: catalog names, and money outside games said as such (never an empty key)
      ["game", (r) => r.label || r.key],
      ["provider", (r) => r.label || r.key],
      ["hall", (r) => r.key],
    ];
    const boxes = specs.map(([name]) => $("chart-" + name));
    const asOf = $("charts-asof");
    asOf.textContent = "";
    if (!canUse("GET /reports/ggr")) {
      for (const box of boxes) {
        box.replaceChildren(el("p", { class: "denied", text: "Not permitted for your role (" + state.who.role + ")." }));
      }
      return;
    }
    const asked = periodQuery();
    let reports = null;
    let readAt = null;
    let agree = false;
    try {
      for (let attempt = 0; attempt < CHART_READS && !agree; attempt++) {
        readAt = new Date();
        reports = await Promise.all(specs.map(([name]) => api("/reports/ggr?group_by=" + name + period)));
        const totals = reports.map((report) => sumGgr(report.rows));
        agree = totals.every((t) => t === totals[0]);
      }
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      for (const box of boxes) showError(box, err);
      return;
    }
    if (periodQuery() !== asked) return;   // a newer period was asked meanwhile: its read shows
    asOf.dataset.at = readAt.toISOString();
    asOf.dataset.consistent = String(agree);
    asOf.textContent = periodLabel() + ", as of " + clock(readAt) + (agree ? ""
      : " · the halls were sending while the charts were read: their totals may differ by the newest play");
    specs.forEach(([name, labelOf], i) => {
      const report = reports[i];
      state.currency = report.currency;
      const rows = name === "day" ? report.rows.slice().sort((a, b) => a.key.localeCompare(b.key)) : report.rows;
      const total = sumGgr(rows);
      const parts = [barChart(name, rows, labelOf)];
      if (name === "game" || name === "provider") {   // names too long for a bar: listed in full below it
        parts.push(table(["", "GGR", "Share"], rows.map((r) => el("tr", { "data-key": r.key },
          el("td", { class: "label", text: labelOf(r) }), el("td", { class: "num", text: money(r.ggr) }),
          el("td", { class: "num", text: share(r.ggr, total) }))), { class: "chart-rows", "data-chart": name }));
      }
      parts.push(el("p", { class: "total", "data-minor": total, text: "Total " + money(total) }));
      boxes[i].replaceChildren(...parts);
    });
  }

  // ---- reconciliation, hold vs RTP, audit, rules ------------------------------------------------
  // Reads every page of a paged route (at most MAX_PAGES); `next` gives the next page's query or null.
  async function allPages(first, next) {
    const rows = [];
    let page = await api(first);
    let pages = 1;
    rows.push(...page.rows);
    for (let q = next(page); q && pages < MAX_PAGES; q = next(page), pages++) {
      page = await api(q);
      rows.push(...page.rows);
    }
    return { last: page, rows, complete: !next(page) };
  }

  function lineOf(row, name) { return row.ggr ? row.ggr[name] : null; }

  async function renderReconciliation() {
    const box = $("reconciliation-body");
    const summary = $("reconciliation-summary");
    summary.textContent = "";
    await section(box, "GET /reports/reconciliation", async () => {
      const asked = periodQuery();
      const base = "/reports/reconciliation?" + asked + "&limit=5000";
      const got = await allPages(base, (page) => page.next_after ? base + "&after=" +
        encodeURIComponent(page.next_after) : null);
      if (periodQuery() !== asked) return;
      state.currency = got.last.currency;
      const columns = [
        { head: "Hall", csv: "hall", kind: "text", get: (r) => r.hall },
        { head: "Machine", csv: "device", kind: "text", get: (r) => r.device },
        { head: "Gaming day", csv: "day", kind: "text", get: (r) => r.day },
        { head: "Reason", csv: "reason", kind: "text", get: (r) => r.reason, cls: (r) => "reason-" + r.reason },
        { head: "GGR by meters", csv: "ggr_meters_minor", kind: "money", get: (r) => lineOf(r, "meters") },
        { head: "GGR by events", csv: "ggr_events_minor", kind: "money", get: (r) => lineOf(r, "events") },
        { head: "Missed", csv: "ggr_missed_minor", kind: "money", get: (r) => lineOf(r, "missed") },
        { head: "Variance", csv: "ggr_variance_minor", kind: "money", get: (r) => lineOf(r, "variance") },
        { head: "Variance %", csv: "ggr_variance_bp", kind: "bp", get: (r) => lineOf(r, "variance_bp") },
        { head: "Residual", csv: "ggr_residual_minor", kind: "money", get: (r) => lineOf(r, "residual") },
        { head: "Unreconciled bets", csv: "unreconciled_bets_minor", kind: "money", get: (r) => r.unreconciled.bets },
        { head: "Unreconciled wins", csv: "unreconciled_wins_minor", kind: "money", get: (r) => r.unreconciled.wins },
        { head: "Notes", csv: "notes", kind: "text", get: (r) => (r.notes || []).join("; ") },
      ];
      const flagged = got.rows.filter((r) => r.reason === "unexplained" || r.reason === "events_exceed_meters").length;
      summary.textContent = periodLabel() + " · " + got.rows.length + " machine-days · " + flagged +
        " unexplained" + (got.complete ? "" : " · only the first " + got.rows.length + ": narrow the period");
      box.replaceChildren(...reportTable("reconciliation", columns, got.rows, {
        row: (r) => ({ "data-hall": r.hall, "data-device": r.device, "data-day": r.day }) }));
    });
  }

  async function renderHold() {
    const box = $("hold-body");
    const summary = $("hold-summary");
    summary.textContent = "";
    await section(box, "GET /reports/hold", async () => {
      const asked = periodQuery();
      const group = $("hold-group").value;
      const data = await api("/reports/hold?group_by=" + group + "&" + asked);
      if (periodQuery() !== asked || $("hold-group").value !== group) return;
      state.currency = data.currency;
      const keys = group === "device" ? [
        { head: "Hall", csv: "hall", kind: "text", get: (r) => r.hall },
        { head: "Machine", csv: "device", kind: "text", get: (r) => r.device },
        { head: "No.", csv: "number", kind: "text", get: (r) => r.number },
        { head: "Game", csv: "game", kind: "text", get: (r) => r.game },
      ] : [{ head: "Game", csv: "game", kind: "text", get: (r) => r.key }];
      const columns = keys.concat([
        { head: "Provider", csv: "provider", kind: "text", get: (r) => r.provider },
        { head: "Rounds", csv: "rounds", kind: "int", get: (r) => r.rounds },
        { head: "Bets", csv: "bets_minor", kind: "money", get: (r) => r.bets },
        { head: "Wins", csv: "wins_minor", kind: "money", get: (r) => r.wins },
        { head: "GGR", csv: "ggr_minor", kind: "money", get: (r) => r.ggr },
        { head: "RTP", csv: "rtp_bp", kind: "bp", get: (r) => r.rtp_bp },
        { head: "Theoretical hold", csv: "theoretical_hold_bp", kind: "bp", get: (r) => r.theoretical_hold_bp },
        { head: "Actual hold", csv: "actual_hold_bp", kind: "bp", get: (r) => r.actual_hold_bp },
        { head: "Deviation", csv: "deviation_bp", kind: "bp", get: (r) => r.deviation_bp },
        { head: "Band ±", csv: "band_bp", kind: "bp", get: (r) => r.band_bp },
        { head: "Anomaly", csv: "anomaly", kind: "text", get: (r) => r.anomaly ? "yes" : "no" },
        { head: "Why", csv: "reason", kind: "text", get: (r) => r.reason },
      ]);
      const t = data.thresholds || {};
      summary.textContent = periodLabel() + " · " + data.rows.filter((r) => r.anomaly).length +
        " anomalies · flagged outside theoretical ± " + (t.z || "?") + " σ, never below " +
        (t.min_rounds || "?") + " rounds";
      box.replaceChildren(...reportTable("hold", columns, data.rows, {
        row: (r) => ({ class: r.anomaly ? "anomaly" : null, "data-key": r.key }) }));
    });
  }

  function json(value) { return value === null || value === undefined ? "" : JSON.stringify(value); }

  async function renderAudit() {
    const box = $("audit-body");
    const summary = $("audit-summary");
    summary.textContent = "";
    await section(box, "GET /audit", async () => {
      const asked = periodQuery();
      const base = "/audit?" + asked + "&limit=1000";
      const got = await allPages(base, (page) => page.next_after_id !== null && page.next_after_id !== undefined
        ? base + "&after_id=" + page.next_after_id : null);
      if (periodQuery() !== asked) return;
      const columns = [
        { head: "Id", csv: "id", kind: "int", get: (r) => r.id },
        { head: "Time", csv: "time", kind: "text", get: (r) => r.time, display: (r) => when(r.time) },
        { head: "Who", csv: "actor", kind: "text", get: (r) => r.actor },
        { head: "Name", csv: "actor_name", kind: "text", get: (r) => r.actor_name },
        { head: "Action", csv: "action", kind: "text", get: (r) => r.action },
        { head: "Target", csv: "target", kind: "text", get: (r) => r.target },
        { head: "Hall", csv: "hall", kind: "text", get: (r) => r.hall },
        { head: "Before", csv: "before", kind: "text", css: "json", get: (r) => json(r.before) },
        { head: "After", csv: "after", kind: "text", css: "json", get: (r) => json(r.after) },
      ];
      summary.textContent = periodLabel() + " · " + got.rows.length + " changes, oldest first" +
        (got.complete ? "" : " · only the first " + got.rows.length + ": narrow the period");
      box.replaceChildren(...reportTable("audit", columns, got.rows, { row: (r) => ({ "data-audit": r.id }) }));
    });
  }

  function ruleText(r) {
    const p = r.params || {};
    if (r.kind === "max_bet") {
      return "max bet " + money(p.max_bet) + (p.provider ? " · provider " + p.provider : "") +
        (p.game ? " · game " + p.game : "") + (p.enforce ? " · enforced (games over it disabled)" : " · listed");
    }
    return r.kind.replace("_", " ") + " " + (p.game || "");
  }

  async function renderRules() {
    const box = $("rules-body");
    const summary = $("rules-summary");
    summary.textContent = "";
    await section(box, "GET /rules", async () => {
      const data = await api("/rules?limit=1000");
      const columns = [
        { head: "Created", csv: "created_at", kind: "text", get: (r) => r.created_at, display: (r) => when(r.created_at) },
        { head: "Rule", csv: "id", kind: "text", get: (r) => r.id },
        { head: "Kind", csv: "kind", kind: "text", get: (r) => r.kind },
        { head: "What", csv: "params", kind: "text", get: (r) => json(r.params), display: ruleText },
        { head: "Max bet", csv: "max_bet_minor", kind: "money",
          get: (r) => r.params && Number.isSafeInteger(r.params.max_bet) ? r.params.max_bet : null },
        { head: "Halls", csv: "halls", kind: "text", get: (r) => r.halls ? r.halls.join(" ") : "",
          display: (r) => r.halls ? r.halls.join(", ") : "every hall" },
        { head: "State", csv: "state", kind: "text", get: (r) => r.state },
        { head: "Commands", csv: "status", kind: "text", get: (r) => r.status },
        { head: "Counts", csv: "counts", kind: "text", get: (r) => Object.entries(r.counts || {})
          .map(([k, v]) => k + "=" + v).join(" ") },
        { head: "By", csv: "created_by", kind: "text", get: (r) => r.created_by },
      ];
      summary.textContent = data.rows.length + " rules, newest first (rules are not bound to a period: all are listed)";
      box.replaceChildren(...reportTable("rules", columns, data.rows,
        { period: false, row: (r) => ({ "data-rule": r.id, class: "rule-" + r.state }) }));
    });
  }

  // ---- alerts and the integration log ---------------------------------------------------------
  async function renderAlerts() {
    const alerts = $("alerts-body");
    const log = $("log-body");
    await section(alerts, "GET /alerts", async () => {
      const data = await api("/alerts?state=active&limit=200");
      const mayAck = canUse("POST /alerts/{id}/ack");
      const rows = data.rows.map((a) => el("tr", { "data-alert": a.id, class: "alert-" + a.kind },
        el("td", { text: when(a.raised_at) }), el("td", { text: a.hall }), el("td", { text: a.device || "" }),
        el("td", { text: a.kind }), el("td", { text: a.detail }),
        el("td", { class: "state", text: a.state + (a.acked_by ? " by " + a.acked_by : "") }),
        el("td", {}, mayAck && a.state === "open" ? el("button", { type: "button", class: "ack",
          text: "Acknowledge", onclick: () => acknowledge(a.id) }) : null)));
      alerts.replaceChildren(rows.length ? table(["Raised", "Hall", "Device", "Kind", "Detail", "State", ""], rows,
        { id: "alerts-table" }) : el("p", { class: "notice", text: "No active alert." }));
    });
    await section(log, "GET /integration-log", async () => {
      const data = await api("/integration-log?limit=200");
      const rows = data.rows.map((e) => el("tr", { class: "log-" + e.kind },
        el("td", { text: when(e.time) }), el("td", { text: e.hall || "" }), el("td", { text: e.kind }),
        el("td", { text: e.device || "" }), el("td", { text: e.detail })));
      log.replaceChildren(rows.length ? table(["Time", "Hall", "Kind", "Device", "Detail"], rows,
        { id: "log-table" }) : el("p", { class: "notice", text: "The integration log is empty." }));
    });
  }

  // "Seen, on it": recorded once by central (who and when, audited); the alert stays until its cause ends.
  async function acknowledge(id) {
    try {
      await api("/alerts/" + encodeURIComponent(id) + "/ack", { method: "POST" });
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      if (err.status !== 409) {   // 409: someone acknowledged it meanwhile; the refresh shows who
        showError($("alerts-body"), err);
        return;
      }
    }
    await refresh();
  }

  // ---- catalog and commands -------------------------------------------------------------------
  async function renderCatalog() {
    renderCommands();
    const names = new Map();   // catalog game id → its name, for the confirmation of a game's disable
    await section($("catalog-games"), "GET /catalog/games", async () => {
      const data = await api("/catalog/games");
      for (const g of data.rows) names.set(g.id, g.name);
      const rows = data.rows.map((g) => el("tr", { "data-game": g.id },
        el("td", { text: g.id }), el("td", { text: g.name }), el("td", { text: g.provider }),
        el("td", { text: g.category }), el("td", { class: "num", text: bp(g.rtp_bp) }),
        el("td", { class: "num", text: money(g.min_bet) + " – " + money(g.max_bet) }), el("td", { text: g.status })));
      $("catalog-games").replaceChildren(rows.length ? table(["Game", "Name", "Provider", "Category", "RTP",
        "Bet", "Status"], rows, { id: "games-table" }) : el("p", { class: "notice", text: "The catalog is empty." }));
    });
    await section($("catalog-devices"), "GET /catalog/availability", async () => {
      const data = await api("/catalog/availability");
      const mayCommand = canUse("POST /commands");
      const rows = [];
      for (const d of data.devices) {
        for (const g of d.games) {
          const on = g.available;
          const action = on ? "disable_game" : "enable_game";
          rows.push(el("tr", { "data-device": d.device, "data-number": g.number },
            el("td", { text: d.hall }), el("td", { text: d.device }), el("td", { class: "num", text: g.number }),
            el("td", { text: g.game || "(not in the catalog)" }), el("td", { text: g.provider || "" }),
            el("td", { class: on ? "available" : "unavailable", text: on ? "available" : "unavailable" }),
            el("td", {}, mayCommand ? el("button", { type: "button", class: on ? "cmd-disable" : "cmd-enable",
              text: on ? "Disable game" : "Enable game",
              onclick: (event) => {
                const button = event.target;
                button.disabled = true;
                const name = "game " + g.number + (g.game ? " (" + (names.get(g.game) || g.game) + ")" : "");
                const ask = on ? confirmCommand("Disable " + name + " on machine " + d.device + " in hall " + d.hall +
                  "?", "The machine's other games stay playable.", "Disable game") : Promise.resolve(true);
                ask.then((ok) => {
                  if (ok) sendCommand({ hall: d.hall, device: d.device, action, game: String(g.number) });
                  else button.disabled = false;
                });
              } })
              : null)));
        }
      }
      $("catalog-devices").replaceChildren(rows.length ? table(["Hall", "Machine", "No.", "Game", "Provider",
        "Now", ""], rows, { id: "availability-table" })
        : el("p", { class: "notice", text: "No machine has reported or been given games yet." }));
    });
  }

  function bp(value) {
    if (typeof value !== "number") return "—";
    const abs = Math.abs(value);
    return (value < 0 ? "-" : "") + Math.trunc(abs / 100) + "." + String(abs % 100).padStart(2, "0") + " %";
  }

  function latestCommand(hall, device, game) {
    for (let i = state.commands.length - 1; i >= 0; i--) {
      const c = state.commands[i];
      if (c.hall === hall && c.device === device && (game === null || c.game === game)) return c;
    }
    return null;
  }

  function commandBadge(c) {
    return el("div", { class: "command-status status-" + c.status, "data-command": c.id, "data-status": c.status,
      title: c.detail || "", text: c.action.replace("_", " ") + (c.game ? " " + c.game : "") + ": " + c.status });
  }

  function renderCommands() {
    const box = $("commands-body");
    if (!canUse("POST /commands")) {
      box.replaceChildren(el("p", { class: "denied", text: "Sending commands is not permitted for your role (" +
        state.who.role + ")." }));
      return;
    }
    const rows = state.commands.slice().reverse().map((c) => el("tr", { "data-command": c.id },
      el("td", { text: c.id }), el("td", { text: c.hall }), el("td", { text: c.device }),
      el("td", { text: c.action + (c.game ? " " + c.game : "") }),
      el("td", { class: "status status-" + c.status, text: c.status }), el("td", { text: c.detail || "" })));
    box.replaceChildren(rows.length ? table(["Command", "Hall", "Machine", "Action", "Status", "Detail"], rows,
      { id: "commands-table" }) : el("p", { class: "notice",
      text: "No command sent from this tab yet: use Disable / Enable on the floor or per game below." }));
  }

  function commandChanged() {
    // Update every badge and the command table in place (no reload of the view needed).
    for (const c of state.commands) {
      for (const node of document.querySelectorAll('[data-command="' + CSS.escape(c.id) + '"]')) {
        if (node.classList.contains("command-status")) node.replaceWith(commandBadge(c));
      }
    }
    if (state.view === "catalog") renderCommands();
    if (state.view === "floor") {
      for (const tile of document.querySelectorAll("#floor-grid .machine")) {
        const c = latestCommand(state.floorHall, tile.dataset.device, null);
        const old = tile.querySelector(".command-status");
        if (c && (!old || old.dataset.command !== c.id)) {
          if (old) old.replaceWith(commandBadge(c)); else tile.append(commandBadge(c));
        }
      }
    }
  }

  // A disable takes a machine (or a game) away from the players: the page asks first, naming the
  // machine, hall and game, in its own dialog (Cancel, Escape and a click on OK are all one place).
  function confirmCommand(question, consequence, okLabel) {
    const dialog = $("confirm");
    $("confirm-title").textContent = okLabel + "?";
    $("confirm-text").replaceChildren(el("strong", { text: question }), el("br"), consequence);
    $("confirm-ok").textContent = okLabel;
    dialog.returnValue = "cancel";
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.showModal();
      $("confirm-cancel").focus();
    });
  }

  async function sendCommand(body) {
    let created;
    try {
      created = await api("/commands", { method: "POST", body });
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      if (err.status === 401) { logout("Your API key is no longer valid: log in again."); return; }
      const failed = { id: "(not sent)", ...body, game: body.game || null, status: "failed",
        detail: err.status === 403 ? "not permitted for your role" : err.message };
      state.commands.push(failed);
      commandChanged();
      return;
    }
    const command = { id: created.id, hall: body.hall, device: body.device, action: body.action,
      game: body.game || null, status: created.status, detail: "" };
    state.commands.push(command);
    commandChanged();
    for (let i = 0; i < POLL_LIMIT && !FINAL.includes(command.status) && state.key; i++) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      try {
        const now = await api("/commands/" + encodeURIComponent(command.id));
        if (now.status !== command.status || now.detail !== command.detail) {
          command.status = now.status;
          command.detail = now.detail || "";
          commandChanged();
          if (command.status === "applied" && commandApplied(command)) await refresh();
        }
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        if (err.status === 401 || err.status === 403) break;
      }
    }
  }

  // ---- start ----------------------------------------------------------------------------------
  function start() {
    $("login-form").addEventListener("submit", onLogin);
    $("logout").addEventListener("click", () => logout(""));
    $("refresh").addEventListener("click", () => refresh());
    for (const button of document.querySelectorAll("#views button")) {
      button.addEventListener("click", () => show(button.dataset.view));
    }
    $("period").addEventListener("change", onPeriodChange);
    $("period").addEventListener("submit", (event) => { event.preventDefault(); onPeriodChange(); });
    $("period-default").addEventListener("click", () => { setPeriod(defaultPeriod(state.days)); refresh(); });
    $("hold-group").addEventListener("change", () => refresh());
    $("floor-hall").addEventListener("change", (event) => {
      state.floorHall = event.target.value;
      refresh();
    });
    const saved = sessionStorage.getItem(KEY_STORE);
    if (saved) {
      login(saved).catch((err) => logout(err.status === 401 ? "Your saved API key is no longer valid." : err.message));
    }
    document.body.dataset.ready = "true";
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
