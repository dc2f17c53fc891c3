// Qianmian caps studio: plain JavaScript, no framework, no network access beyond this API.
"use strict";

(() => {
  const TOKEN_KEY = "qianmian.studio.token";
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
  const WINDOWS = ["calendar_day", "calendar_month", "rolling"];
  const METRICS = [
    ["sent", "Pushes sent", 0],
    ["reached", "Cardholders reached", 0],
    ["expected_opens", "Expected opens", 1],
    ["opens_per_push", "Expected opens per push", 3],
    ["expected_mutes", "Expected mutes / unfollows", 1],
    ["mutes_per_1k_pushes", "Mutes per 1,000 pushes", 2],
    ["blocked", "Requests blocked", 0],
    ["deferred_quiet_hours", "Requests deferred to the end of quiet hours", 0],
  ];
  const SEGMENT_METRICS = [
    ["sent", "sent", 0],
    ["opens_per_push", "opens/push", 3],
    ["expected_mutes", "mutes", 1],
  ];
  const CHART_TITLES = {
    summary: "Totals",
    blocked_by_rule: "Blocked by rule",
    segments: "By segment",
    daily: "Day by day",
  };

  const WIDE_CHARTS = ["summary", "segments"];

  let live = null; // {revision, author, at, note, policy}
  let liveForm = null; // the live policy as the form reads it back, to diff the draft against

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, body, headers = {}) {
    const init = {method, headers: {Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}`,
                                    Accept: "application/json", ...headers}};
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    if (!response.ok) {
      const message = (data && data.message) || `${response.status} ${response.statusText}`;
      if (response.status === 401) {
        signOut(`Signed out: ${message}`);
      }
      throw new ApiError(response.status, message);
    }
    return data;
  }

  // ------------------------------------------------------------------ formatting
  const number = (value, digits) => Number(value).toLocaleString("en-US", {
    minimumFractionDigits: digits, maximumFractionDigits: digits});

  function change(before, after, digits) {
    const delta = after - before;
    const sign = delta > 0 ? "+" : "";
    const percent = before ? ` (${sign}${(100 * delta / before).toFixed(1)}%)` : "";
    return `${sign}${number(delta, digits)}${percent}`;
  }

  function cell(tag, text, className) {
    const element = document.createElement(tag);
    element.textContent = text;
    if (className) {
      element.className = className;
    }
    return element;
  }

  function row(cells, tag = "td") {
    const tr = document.createElement("tr");
    cells.forEach((text, index) => tr.appendChild(cell(index === 0 ? "th" : tag, text)));
    return tr;
  }

  function show(element, text) {
    element.textContent = text;
    element.hidden = !text;
  }

  // ------------------------------------------------------------------ the policy form
  const field = (name) => $(`[data-field="${name}"]`);
  const toggle = (name) => $(`[data-toggle="${name}"]`);

  function get(document_, path) {
    return path.split(".").reduce((value, key) => (value == null ? undefined : value[key]), document_);
  }

  function input(value, attributes = {}) {
    const element = document.createElement("input");
    Object.entries(attributes).forEach(([key, attribute]) => element.setAttribute(key, attribute));
    element.value = value == null ? "" : String(value);
    return element;
  }

  function removeButton(tr) {
    const button = cell("button", "Remove", "quiet-button");
    button.type = "button";
    button.addEventListener("click", () => {
      tr.remove();
      renumber();
      draftChanged();
    });
    return button;
  }

  function addLimit(limit = {}) {
    const tr = document.createElement("tr");
    const windowSelect = document.createElement("select");
    WINDOWS.forEach((name) => windowSelect.appendChild(new Option(name.replace("_", " "), name)));
    windowSelect.value = limit.window || "calendar_day";
    const parts = [
      input(limit.name, {"data-part": "name", size: 12}),
      windowSelect,
      input(limit.max ?? 1, {"data-part": "max", type: "number", min: 1}),
      input(limit.duration, {"data-part": "duration", placeholder: "7d", size: 6}),
      input((limit.kinds || []).join(", "), {"data-part": "kinds", placeholder: "promotion", size: 12}),
      input((limit.tags || []).join(", "), {"data-part": "tags", placeholder: "dining", size: 10}),
    ];
    windowSelect.dataset.part = "window";
    const syncDuration = () => {
      parts[3].disabled = windowSelect.value !== "rolling";
    };
    windowSelect.addEventListener("change", syncDuration);
    syncDuration();
    appendRow("#limits tbody", tr, parts);
  }

  function appendRow(body, tr, parts) {
    [...parts, removeButton(tr)].forEach((part) => {
      const td = document.createElement("td");
      td.appendChild(part);
      tr.appendChild(td);
    });
    $(body).appendChild(tr);
    renumber();
  }

  function addCampaign(name = "", rate = {}) {
    const tr = document.createElement("tr");
    appendRow("#campaigns tbody", tr, [
      input(name, {"data-part": "campaign", size: 14}),
      input(rate.max ?? "", {"data-part": "max", type: "number", min: 1}),
      input(rate.per ?? "", {"data-part": "per", placeholder: "1s", size: 6}),
    ]);
  }

  // Stable names for every editable part (limits.0.max, ...), so people and tests can address them.
  function renumber() {
    $$("#limits tbody tr").forEach((tr, index) => {
      $$("[data-part]", tr).forEach((part) => {
        part.dataset.field = `limits.${index}.${part.dataset.part}`;
        part.setAttribute("aria-label", `limit ${index + 1} ${part.dataset.part}`);
      });
    });
    $$("#campaigns tbody tr").forEach((tr, index) => {
      $$("[data-part]", tr).forEach((part) => {
        part.dataset.field = `campaigns.${index}.${part.dataset.part}`;
        part.setAttribute("aria-label", `campaign override ${index + 1} ${part.dataset.part}`);
      });
    });
  }

  const SIMPLE = ["version", "name", "description", "default_timezone", "reservation_ttl", "retention",
                  "min_gap", "quiet_hours.start", "quiet_hours.end", "no_repeat.window", "fatigue.after_unopened",
                  "fatigue.pause", "mute.pause", "campaign_throttle.max", "campaign_throttle.per"];
  const OPTIONAL = ["min_gap", "quiet_hours", "no_repeat", "fatigue", "campaign_throttle"];
  const DEFAULTS = {"min_gap": "12h", "quiet_hours.start": "22:00", "quiet_hours.end": "08:00",
                    "no_repeat.window": "forever", "fatigue.after_unopened": 3, "fatigue.pause": "14d",
                    "campaign_throttle.max": 500, "campaign_throttle.per": "1s"};

  function fillForm(policy) {
    SIMPLE.forEach((name) => {
      const value = get(policy, name);
      field(name).value = value == null ? (DEFAULTS[name] ?? "") : String(value);
    });
    OPTIONAL.forEach((name) => {
      toggle(name).checked = policy[name] != null;
    });
    field("transactional.counts_toward_limits").checked = Boolean(get(policy, "transactional.counts_toward_limits"));
    $("#limits tbody").replaceChildren();
    (policy.limits || []).forEach((limit) => addLimit(limit));
    $("#campaigns tbody").replaceChildren();
    Object.entries(get(policy, "campaign_throttle.campaigns") || {}).forEach(([name, rate]) => addCampaign(name, rate));
    syncToggles();
  }

  const text = (name) => field(name).value.trim();
  const integer = (value) => (/^\d+$/.test(String(value).trim()) ? Number(value) : String(value).trim());
  const list = (value) => value.split(",").map((part) => part.trim()).filter(Boolean);

  function readForm() {
    const policy = {version: text("version")};
    ["name", "description", "default_timezone", "reservation_ttl", "retention"].forEach((name) => {
      if (text(name)) {
        policy[name] = text(name);
      }
    });
    policy.limits = $$("#limits tbody tr").map((tr) => {
      const part = (name) => $(`[data-part="${name}"]`, tr).value.trim();
      const limit = {name: part("name"), window: part("window"), max: integer(part("max"))};
      if (limit.window === "rolling") {
        limit.duration = part("duration");
      }
      if (list(part("kinds")).length) {
        limit.kinds = list(part("kinds"));
      }
      if (list(part("tags")).length) {
        limit.tags = list(part("tags"));
      }
      return limit;
    });
    policy.min_gap = toggle("min_gap").checked ? text("min_gap") : null;
    policy.quiet_hours = toggle("quiet_hours").checked
      ? {start: text("quiet_hours.start"), end: text("quiet_hours.end")} : null;
    policy.no_repeat = toggle("no_repeat").checked ? {window: text("no_repeat.window") || "forever"} : null;
    policy.fatigue = toggle("fatigue").checked
      ? {after_unopened: integer(text("fatigue.after_unopened")), pause: text("fatigue.pause")} : null;
    policy.mute = {pause: text("mute.pause") || "forever"};
    policy.transactional = {counts_toward_limits: field("transactional.counts_toward_limits").checked};
    if (toggle("campaign_throttle").checked) {
      const campaigns = {};
      $$("#campaigns tbody tr").forEach((tr) => {
        const part = (name) => $(`[data-part="${name}"]`, tr).value.trim();
        if (part("campaign")) {
          campaigns[part("campaign")] = {max: integer(part("max")), per: part("per")};
        }
      });
      policy.campaign_throttle = {max: integer(text("campaign_throttle.max")), per: text("campaign_throttle.per"),
                                  campaigns};
    } else {
      policy.campaign_throttle = null;
    }
    return policy;
  }

  function syncToggles() {
    OPTIONAL.forEach((name) => {
      const on = toggle(name).checked;
      $$(`[data-field^="${name}"]`).forEach((element) => {
        element.disabled = !on;
      });
      if (name === "campaign_throttle") {
        $$("#campaigns input, #campaigns button, #add-campaign").forEach((element) => {
          element.disabled = !on;
        });
      }
    });
  }

  // Scalar leaves by path (limits[1].max, quiet_hours.start, ...), to say where a draft differs.
  function leaves(value, path, out) {
    if (Array.isArray(value)) {
      value.forEach((item, index) => leaves(item, `${path}[${index}]`, out));
      if (!value.length) {
        out[path] = "[]";
      }
    } else if (value && typeof value === "object") {
      Object.keys(value).forEach((key) => leaves(value[key], path ? `${path}.${key}` : key, out));
    } else {
      out[path] = JSON.stringify(value ?? null);
    }
    return out;
  }

  function draftChanged() {
    if (!liveForm) {
      return;
    }
    const before = leaves(liveForm, "", {});
    const after = leaves(readForm(), "", {});
    const changed = [...new Set([...Object.keys(before), ...Object.keys(after)])]
      .filter((key) => before[key] !== after[key]);
    $("#draft-diff").textContent = changed.length
      ? `The draft differs from the live policy in ${changed.length} place(s): ${changed.slice(0, 8).join(", ")}`
        + (changed.length > 8 ? ", ..." : "")
      : "The draft is the live policy.";
  }

  // ------------------------------------------------------------------ live policy and versions
  async function loadLive() {
    live = await api("GET", "/v1/policy");
    fillForm(live.policy);
    liveForm = readForm();
    $("#live-meta").textContent = `Revision ${live.revision}: version ${live.policy.version} (${live.policy.name}), `
      + `set by ${live.author} at ${live.at}${live.note ? ` - ${live.note}` : ""}`;
    draftChanged();
  }

  async function loadVersions() {
    const data = await api("GET", "/v1/policy/versions?limit=50");
    const body = $("#versions tbody");
    body.replaceChildren();
    data.revisions.forEach((revision) => {
      const paths = revision.diff.map((item) => item.path);
      const tr = row([String(revision.revision), revision.version, revision.author, revision.at, revision.note,
                      paths.length ? `${paths.length}: ${paths.slice(0, 4).join(", ")}${paths.length > 4 ? ", ..." : ""}`
                        : "none"]);
      const td = document.createElement("td");
      if (revision.revision === data.current) {
        td.appendChild(cell("span", "live", "badge"));
      } else {
        const button = cell("button", `Roll back to version ${revision.revision}`, "quiet-button");
        button.type = "button";
        button.id = `rollback-${revision.revision}`;
        button.addEventListener("click", () => rollback(revision.revision));
        td.appendChild(button);
      }
      tr.appendChild(td);
      body.appendChild(tr);
    });
  }

  async function loadWorld() {
    try {
      const world = await api("GET", "/v1/studio/world");
      $("#world-meta").textContent = `Simulations replay ${number(world.sample, 0)} cardholders of ${world.data_dir}`
        + ` (${world.truth_path ? "synthetic truth" : "response fitted on the push log"};`
        + ` ranking: ${world.model_uri || "card-tier popularity"}) for ${world.days} days by default.`;
      $("#sim-days").value = world.days;
    } catch (error) {
      $("#world-meta").textContent = `Simulation unavailable: ${error.message}`;
    }
  }

  async function rollback(revision) {
    const status = $("#versions-status");
    status.textContent = `Rolling back to version ${revision}...`;
    try {
      const result = await api("POST", "/v1/policy/rollback", {revision});
      status.textContent = `Rolled back: revision ${result.revision} (a copy of version ${revision}) is live.`;
      await Promise.all([loadLive(), loadVersions()]);
    } catch (error) {
      status.textContent = `Roll back failed: ${error.message}`;
    }
  }

  // ------------------------------------------------------------------ simulate
  function renderResults(data) {
    const [before, after] = data.report.outcomes;
    const world = data.report.world;
    const config = data.report.config;
    $("#results-meta").textContent = `${number(world.cardholders, 0)} cardholders x ${config.days} days from `
      + `${config.start.slice(0, 10)}, send slots ${config.slots.join(", ")} ${config.scheduler_timezone}, `
      + `seed ${config.seed}; same cardholders and random draws for both. Took ${data.seconds.toFixed(1)} s.`;
    const compare = $("#compare");
    compare.replaceChildren();
    compare.appendChild(row(["Metric", before.label, "draft", "change"], "th"));
    METRICS.forEach(([key, label, digits]) => {
      const a = before.total[key];
      const b = after.total[key];
      const tr = row([label, number(a, digits), number(b, digits), change(a, b, digits)]);
      tr.dataset.metric = key;
      compare.appendChild(tr);
    });
    const rules = $("#rules");
    rules.replaceChildren();
    rules.appendChild(row(["Blocked by rule", before.label, "draft"], "th"));
    const names = [...new Set([...Object.keys(before.total.blocked_by_rule),
                               ...Object.keys(after.total.blocked_by_rule)])];
    names.filter((name) => before.total.blocked_by_rule[name] || after.total.blocked_by_rule[name]).forEach((name) => {
      const tr = row([name, number(before.total.blocked_by_rule[name] ?? 0, 0),
                      number(after.total.blocked_by_rule[name] ?? 0, 0)]);
      tr.dataset.rule = name;
      rules.appendChild(tr);
    });
    const segments = $("#segments");
    segments.replaceChildren();
    Object.keys(before.segments).forEach((segment) => {
      const table = document.createElement("table");
      table.className = "numbers";
      const head = [segment.replace("_", " ")];
      SEGMENT_METRICS.forEach(([, label]) => head.push(`${label} live`, `${label} draft`));
      table.appendChild(row(head, "th"));
      Object.keys(before.segments[segment]).forEach((label) => {
        const cells = [`${label} (${number(before.segments[segment][label].cardholders, 0)})`];
        SEGMENT_METRICS.forEach(([key, , digits]) => {
          cells.push(number(before.segments[segment][label][key], digits),
                     number(after.segments[segment][label][key], digits));
        });
        table.appendChild(row(cells));
      });
      segments.appendChild(table);
    });
    const charts = $("#charts");
    charts.replaceChildren();
    // wide charts take a whole row; the two narrow ones sit side by side between them
    const order = ["summary", "blocked_by_rule", "daily", "segments"];
    const chartNames = [...order.filter((name) => name in data.charts),
                        ...Object.keys(data.charts).filter((name) => !order.includes(name))];
    chartNames.map((name) => [name, data.charts[name]]).forEach(([name, uri]) => {
      const figure = document.createElement("figure");
      figure.className = WIDE_CHARTS.includes(name) ? "wide" : "";
      const image = document.createElement("img");
      image.src = uri;
      image.alt = `${CHART_TITLES[name] || name}: live vs draft`;
      image.dataset.chart = name;
      figure.appendChild(image);
      figure.appendChild(cell("figcaption", CHART_TITLES[name] || name));
      charts.appendChild(figure);
    });
    $("#results").hidden = false;
  }

  async function simulate() {
    const button = $("#simulate");
    const status = $("#sim-status");
    show($("#sim-error"), "");
    button.disabled = true;
    status.textContent = "Simulating...";
    const body = {draft: readForm(), days: Number($("#sim-days").value) || undefined,
                  seed: Number($("#sim-seed").value) || 0};
    if ($("#sim-users").value) {
      body.users = Number($("#sim-users").value);
    }
    try {
      const data = await api("POST", "/v1/studio/simulate", body);
      renderResults(data);
      status.textContent = `Done: compared with live revision ${data.live_revision}.`;
    } catch (error) {
      status.textContent = "";
      show($("#sim-error"), error.message);
    } finally {
      button.disabled = false;
    }
  }

  // ------------------------------------------------------------------ apply
  async function apply() {
    const status = $("#apply-status");
    show($("#apply-error"), "");
    const note = $("#apply-note").value.trim() || "applied from the caps studio";
    const draft = readForm();
    // every decision names the policy version that made it: a changed policy needs its own
    if (draft.version === live.policy.version && JSON.stringify(draft) !== JSON.stringify(liveForm)) {
      show($("#apply-error"), `Give the draft its own version (it is still ${live.policy.version}), `
        + "so every decision shows which policy made it.");
      return;
    }
    status.textContent = "Applying...";
    try {
      const result = await api("PUT", `/v1/policy?note=${encodeURIComponent(note)}`, draft,
                               {"If-Match": String(live.revision)});
      status.textContent = `Applied: revision ${result.revision} (version ${result.policy.version}) is live.`;
      await Promise.all([loadLive(), loadVersions()]);
    } catch (error) {
      status.textContent = "";
      show($("#apply-error"), error.status === 409 ? `${error.message} (reload the live policy first)` : error.message);
    }
  }

  // ------------------------------------------------------------------ sign in / out
  function signOut(message = "") {
    sessionStorage.removeItem(TOKEN_KEY);
    $("#app").hidden = true;
    $("#login").hidden = false;
    $("#signout").hidden = true;
    $("#login-error").textContent = message;
  }

  async function start() {
    try {
      await api("GET", "/v1/policy");
      // the policy is readable by the scheduler too: check the token can act as admin
      const check = await fetch("/v1/studio/world", {
        headers: {Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}`}});
      if (check.status === 401 || check.status === 403) {
        signOut("This token may not change the policy: sign in with the admin token.");
        return;
      }
    } catch (error) {
      if (error.status !== 401) {
        signOut(`Cannot reach the API: ${error.message}`);
      }
      return;
    }
    $("#login").hidden = true;
    $("#app").hidden = false;
    $("#signout").hidden = false;
    await Promise.all([loadLive(), loadVersions(), loadWorld()]);
  }

  $("#login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
    $("#token").value = "";
    $("#login-error").textContent = "";
    start();
  });
  $("#signout").addEventListener("click", () => signOut());
  $("#add-limit").addEventListener("click", () => {
    addLimit({name: `limit_${$$("#limits tbody tr").length + 1}`, window: "rolling", max: 2, duration: "7d"});
    draftChanged();
  });
  $("#add-campaign").addEventListener("click", () => {
    addCampaign("", {max: 50, per: "1s"});
    draftChanged();
  });
  $("#reset").addEventListener("click", () => {
    if (live) {
      fillForm(live.policy);
      draftChanged();
    }
  });
  $("#policy-form").addEventListener("input", draftChanged);
  $("#policy-form").addEventListener("change", () => {
    syncToggles();
    draftChanged();
  });
  $("#policy-form").addEventListener("submit", (event) => event.preventDefault());
  $("#simulate").addEventListener("click", simulate);
  $("#apply").addEventListener("click", apply);

  if (sessionStorage.getItem(TOKEN_KEY)) {
    start();
  }
})();
