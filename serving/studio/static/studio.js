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
    ["attempts", "Scheduler requests (one cardholder at one send slot)", 0],
    ["blocked", "Requests where no push was allowed", 0],
    ["deferred_quiet_hours", "Requests deferred to the end of quiet hours", 0],
    ["held", "Requests held by the send or hold decision", 0],
    ["value_per_1k", "Value (opens - 10 x mutes) per 1,000 cardholders", 1],
  ];
  const SEGMENT_METRICS = [
    ["sent", "Pushes sent", 0],
    ["opens_per_push", "Opens per push", 3],
    ["expected_mutes", "Mutes / unfollows", 1],
  ];
  const SEGMENT_NAMES = {card_tier: "Card tier", activity: "How active the cardholder is"};
  // the form's words for each policy field, used wherever the page names one (technical path in a tooltip)
  const FIELD_WORDS = {
    version: "version", name: "name", description: "description",
    default_timezone: "time zone when unknown", reservation_ttl: "how long a ranked push waits",
    retention: "history kept", min_gap: "minimum time between pushes",
    "quiet_hours.start": "quiet hours from", "quiet_hours.end": "quiet hours until", quiet_hours: "quiet hours",
    "no_repeat.window": "no repeat within", no_repeat: "never the same content twice",
    "fatigue.after_unopened": "pause after unopened", "fatigue.pause": "pause length", fatigue: "pause after unopened",
    "mute.pause": "no marketing after a mute", "transactional.counts_toward_limits": "transactional notices count",
    "campaign_throttle.max": "campaign sending: at most", "campaign_throttle.per": "campaign sending: every",
    campaign_throttle: "campaign sending speed", "campaign_throttle.campaigns": "campaign overrides",
    limits: "limits",
    decision: "send or hold", "decision.enabled": "send only pushes worth it",
    "decision.mute_weight": "a mute costs (opens)", "decision.min_value": "hold a push worth less than",
    "decision.hour_margin": "better hour today by", "decision.pacing": "keep slots for better days",
    "decision.pacing.margin": "a later day is better by",
    "decision.scheduler_slots": "the scheduler asks at",
    "decision.scheduler_follows_send_at": "the scheduler sends at the suggested time",
    "decision.control_share": "control share",
  };
  const LIMIT_PARTS = {max: "at most", window: "counted per", duration: "rolling period", name: "name",
                       kinds: "kinds", tags: "topics"};
  const UNITS = {s: "second", m: "minute", h: "hour", d: "day", w: "week"};
  const CHART_TITLES = {
    summary: "Totals",
    blocked_by_rule: "Why requests were blocked",
    segments: "By segment",
    daily: "Day by day",
  };


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

  function percent(part, whole) {
    return whole ? `${(100 * part / whole).toFixed(0)}%` : "-";
  }

  // "10m" -> "10 minutes", "forever" -> "forever"; "" when it is not a duration
  function durationWords(value) {
    const text = String(value ?? "").trim().toLowerCase();
    if (text === "forever") {
      return "forever";
    }
    const match = /^(\d+)\s*([smhdw])$/.exec(text);
    if (!match) {
      return /^\d+$/.test(text) ? durationWords(`${text}s`) : "";
    }
    const count = Number(match[1]);
    return `${number(count, 0)} ${UNITS[match[2]]}${count === 1 ? "" : "s"}`;
  }

  function fieldWords(path) {
    const limit = /^limits\[(\d+)\]\.(\w+)$/.exec(path);
    if (limit) {
      const name = $(`[data-field="limits.${limit[1]}.name"]`);
      return `${name ? name.value : `limit ${Number(limit[1]) + 1}`} limit: ${LIMIT_PARTS[limit[2]] || limit[2]}`;
    }
    return FIELD_WORDS[path] || path.replace(/_/g, " ");
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
  const TOGGLED = [...OPTIONAL, "decision.pacing"];  // fields enabled by a checkbox
  const DEFAULTS = {"min_gap": "12h", "quiet_hours.start": "22:00", "quiet_hours.end": "08:00",
                    "no_repeat.window": "forever", "fatigue.after_unopened": 3, "fatigue.pause": "14d",
                    "campaign_throttle.max": 500, "campaign_throttle.per": "1s"};

  // the send or hold block (recsys.caps.policy.Decision); its defaults when a policy has none
  const DECISION = {enabled: true, mute_weight: 10, min_value: 0, hour_margin: 0.1, pacing: {margin: 0.2},
                    control_share: 0};

  function fillDecision(decision) {
    const settings = {...DECISION, ...(decision || {})};
    field("decision.enabled").checked = Boolean(settings.enabled);
    ["mute_weight", "min_value", "hour_margin", "control_share"].forEach((name) => {
      field(`decision.${name}`).value = String(settings[name]);
    });
    toggle("decision.pacing").checked = settings.pacing != null;
    field("decision.pacing.margin").value = String((settings.pacing || DECISION.pacing).margin);
    // null: learned from the scheduler's calls (left empty); []: never wait for a slot ("none")
    const slots = settings.scheduler_slots;
    field("decision.scheduler_slots").value = slots == null ? "" : (slots.length ? slots.join(", ") : "none");
    // null: learned from the scheduler's sent events
    const follows = settings.scheduler_follows_send_at;
    field("decision.scheduler_follows_send_at").value = follows == null ? "" : String(follows);
  }

  function readSlots() {
    const value = text("decision.scheduler_slots");
    if (value === "") return null;
    if (value.toLowerCase() === "none") return [];
    return value.split(/[\s,]+/).filter((clock) => clock !== "");
  }

  function readDecision() {
    const numeric = (name) => {
      const value = text(name);
      return value !== "" && Number.isFinite(Number(value)) ? Number(value) : value;
    };
    return {
      enabled: field("decision.enabled").checked,
      mute_weight: numeric("decision.mute_weight"),
      min_value: numeric("decision.min_value"),
      hour_margin: numeric("decision.hour_margin"),
      pacing: toggle("decision.pacing").checked ? {margin: numeric("decision.pacing.margin")} : null,
      scheduler_slots: readSlots(),
      scheduler_follows_send_at: {"": null, true: true, false: false}[text("decision.scheduler_follows_send_at")],
      control_share: numeric("decision.control_share"),
    };
  }

  function fillForm(policy) {
    fillDecision(policy.decision);
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
    syncReadings();
  }

  // each duration field read back in words beside it ("= 400 days"), and the sending speed as a sentence
  function syncReadings() {
    $$("[data-reads]").forEach((span) => {
      const words = durationWords(field(span.dataset.reads).value);
      span.textContent = words && words !== field(span.dataset.reads).value.trim() ? `= ${words}` : "";
    });
    const per = durationWords(text("campaign_throttle.per"));
    $("#throttle-reads").textContent = toggle("campaign_throttle").checked && per
      ? `Each campaign sends at most ${number(Number(text("campaign_throttle.max")) || 0, 0)} pushes every `
        + `${per.replace(/^1 /, "")}, across all cardholders.`
      : "Campaigns send as fast as the scheduler asks.";
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
    policy.decision = readDecision();
    return policy;
  }

  function syncToggles() {
    TOGGLED.forEach((name) => {
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
    const diff = $("#draft-diff");
    diff.textContent = changed.length
      ? `The draft differs from the live policy in ${changed.length} place(s): `
        + `${changed.slice(0, 8).map(fieldWords).join(", ")}${changed.length > 8 ? ", ..." : ""}`
      : "The draft is the live policy.";
    diff.title = changed.join(", ");
  }

  // ------------------------------------------------------------------ live policy and versions
  async function loadLive() {
    live = await api("GET", "/v1/policy");
    fillForm(live.policy);
    liveForm = readForm();
    $("#live-meta").textContent = `Version ${live.policy.version} (${live.policy.name}), live since `
      + `${when(live.at)}, set by ${who(live.author)}${live.note ? `: "${live.note}"` : ""}. Revision ${live.revision}.`;
    draftChanged();
  }

  // "2026-12-05T01:07:20+00:00" -> "2026-12-05 01:07 UTC"
  function when(at) {
    const moment = new Date(at);
    return Number.isNaN(moment.getTime()) ? at : `${moment.toISOString().slice(0, 16).replace("T", " ")} UTC`;
  }

  const who = (author) => (author === "bootstrap" ? "the system at first start" : author);

  function shortValue(value) {
    if (value == null) {
      return "off";
    }
    if (typeof value === "object") {
      return "changed";
    }
    // numbers in a policy are counts or weights; durations are written with a unit ("12h", or seconds)
    if (typeof value === "number" && !Number.isInteger(value)) {
      return String(value);
    }
    return durationWords(value) || String(value);
  }

  // one diff item ({path, old, new}) in words; a limit list is compared limit by limit
  function describeChange(item) {
    if (item.path === "limits" && Array.isArray(item.old) && Array.isArray(item.new)) {
      const before = Object.fromEntries(item.old.map((limit) => [limit.name, limit]));
      const after = Object.fromEntries(item.new.map((limit) => [limit.name, limit]));
      const words = [];
      const same = (a, b) => ["window", "max", "duration", "kinds", "tags"].every(
        (key) => JSON.stringify(a[key] ?? null) === JSON.stringify(b[key] ?? null)
          || (!(a[key] ?? []).length && !(b[key] ?? []).length));
      Object.keys(after).forEach((name) => {
        if (!before[name]) {
          words.push(`new ${name} limit (at most ${after[name].max})`);
        } else if (before[name].max !== after[name].max) {
          words.push(`${name} limit ${before[name].max} -> ${after[name].max}`);
        } else if (!same(before[name], after[name])) {
          words.push(`${name} limit changed`);
        }
      });
      Object.keys(before).filter((name) => !after[name]).forEach((name) => words.push(`${name} limit removed`));
      return words.join("; ") || "limits reordered";
    }
    const label = fieldWords(item.path);
    if (typeof item.old === "object" && item.old !== null || typeof item.new === "object" && item.new !== null) {
      return item.old == null ? `${label} on` : item.new == null ? `${label} off` : `${label} changed`;
    }
    const plain = item.path.startsWith("decision.") || /\.(max|after_unopened)$/.test(item.path);
    const words = (value) => (plain && value != null && typeof value !== "object" ? String(value) : shortValue(value));
    return `${label} ${words(item.old)} -> ${words(item.new)}`;
  }

  function describeRevision(revision, first) {
    if (revision.revision === first) {
      return "First version";
    }
    if (!revision.diff.length) {
      return "No change";
    }
    const words = revision.diff.map(describeChange);
    return words.slice(0, 4).join("; ") + (words.length > 4 ? `; and ${words.length - 4} more` : "");
  }

  async function loadVersions() {
    const data = await api("GET", "/v1/policy/versions?limit=50");
    const body = $("#versions tbody");
    body.replaceChildren();
    const first = Math.min(...data.revisions.map((revision) => revision.revision));
    data.revisions.forEach((revision) => {
      const tr = row([String(revision.revision), revision.version, who(revision.author), when(revision.at),
                      revision.note, describeRevision(revision, first === 1 ? 1 : null)]);
      tr.lastChild.title = revision.diff.map((item) => item.path).join(", ");
      const td = document.createElement("td");
      if (revision.revision === data.current) {
        td.appendChild(cell("span", "live", "badge"));
      } else {
        const button = cell("button", "Make this live again", "quiet-button");
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
      const name = world.data_dir.replace(/\/+$/, "").split("/").pop();
      const meta = $("#world-meta");
      meta.textContent = `Simulations replay ${number(world.days, 0)} days for a sample of `
        + `${number(world.sample, 0)} cardholders from the "${name}" data`
        + ` (${world.truth_path ? "a synthetic world whose true responses are known"
          : "responses estimated from past pushes"}), ranked by `
        + `${world.model_uri ? "the configured model" : "what is most popular per card tier"}.`;
      meta.title = [world.data_dir, world.truth_path, world.model_uri].filter(Boolean).join("\n");
      $("#sim-days").value = world.days;
      $("#sim-users").placeholder = `all ${number(world.sample, 0)}`;
    } catch (error) {
      $("#world-meta").textContent = `Simulation unavailable: ${error.message}`;
    }
  }

  async function rollback(revision) {
    const status = $("#versions-status");
    status.textContent = `Rolling back to revision ${revision}...`;
    try {
      const result = await api("POST", "/v1/policy/rollback", {revision});
      await Promise.all([loadLive(), loadVersions()]);  // the form shows the live policy before the message
      status.textContent = `Rolled back: revision ${result.revision} (a copy of revision ${revision}) is live.`;
    } catch (error) {
      status.textContent = `Roll back failed: ${error.message}`;
    }
  }

  // ------------------------------------------------------------------ simulate
  function renderResults(data) {
    const [before, after] = data.report.outcomes;
    const world = data.report.world;
    const config = data.report.config;
    const words = data.report.rule_words || {};
    $("#results-meta").textContent = `${number(world.cardholders, 0)} cardholders x ${config.days} days from `
      + `${config.start.slice(0, 10)}, asked at ${config.slots.join(", ")} (${config.scheduler_timezone}) each day, `
      + `random seed ${config.seed}; both policies see the same cardholders and the same chance events. `
      + `Took ${data.seconds.toFixed(1)} s.`;
    const compare = $("#compare");
    compare.replaceChildren();
    compare.appendChild(row(["", before.label, "draft", "change"], "th"));
    METRICS.forEach(([key, label, digits]) => {
      const a = before.total[key];
      const b = after.total[key];
      const shown = key === "blocked"
        ? [`${number(a, 0)} (${percent(a, before.total.attempts)})`, `${number(b, 0)} (${percent(b, after.total.attempts)})`]
        : [number(a, digits), number(b, digits)];
      const tr = row([label, ...shown, change(a, b, digits)]);
      tr.dataset.metric = key;
      compare.appendChild(tr);
    });
    const rules = $("#rules");
    rules.replaceChildren();
    rules.appendChild(row(["Why no push was allowed", before.label, "draft", "change"], "th"));
    const names = [...new Set([...Object.keys(before.total.blocked_by_rule),
                               ...Object.keys(after.total.blocked_by_rule)])];
    names.filter((name) => before.total.blocked_by_rule[name] || after.total.blocked_by_rule[name]).forEach((name) => {
      const a = before.total.blocked_by_rule[name] ?? 0;
      const b = after.total.blocked_by_rule[name] ?? 0;
      const tr = row([words[name] || name, number(a, 0), number(b, 0), change(a, b, 0)]);
      tr.dataset.rule = name;
      tr.firstChild.title = `rule ${name}`;
      rules.appendChild(tr);
    });
    $("#blocked-note").textContent = blockedNote(before, after, config, words);
    const segments = $("#segments");
    segments.replaceChildren();
    Object.keys(before.segments).forEach((segment) => {
      const table = document.createElement("table");
      table.className = "numbers";
      table.dataset.segment = segment;
      const head = [SEGMENT_NAMES[segment] || segment.replace(/_/g, " ")];
      SEGMENT_METRICS.forEach(([, label]) => head.push(`${label}: ${before.label}`, "draft", "change"));
      table.appendChild(row(head, "th"));
      Object.keys(before.segments[segment]).forEach((label) => {
        const cells = [`${label} (${number(before.segments[segment][label].cardholders, 0)} cardholders)`];
        SEGMENT_METRICS.forEach(([key, , digits]) => {
          const a = before.segments[segment][label][key];
          const b = after.segments[segment][label][key];
          cells.push(number(a, digits), number(b, digits), change(a, b, digits));
        });
        table.appendChild(row(cells));
      });
      segments.appendChild(table);
    });
    const charts = $("#charts");
    charts.replaceChildren();
    // one chart per row, shown at about its natural size so its text stays readable
    const order = ["summary", "blocked_by_rule", "daily", "segments"];
    const chartNames = [...order.filter((name) => name in data.charts),
                        ...Object.keys(data.charts).filter((name) => !order.includes(name))];
    chartNames.map((name) => [name, data.charts[name]]).forEach(([name, uri]) => {
      const figure = document.createElement("figure");
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

  // What "requests where no push was allowed" means, with the share and the main reasons
  function blockedNote(before, after, config, words) {
    const reasons = Object.entries(before.total.blocked_first_rule || {})
      .filter(([, count]) => count > 0)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 3)
      .map(([rule, count]) => `${(words[rule] || rule).toLowerCase()} (${number(count, 0)})`);
    return `The scheduler asked what to push at each of the ${config.slots.length} send slots a day: `
      + `${number(before.total.attempts, 0)} requests here, one per cardholder and slot. A request gets no push when the caps allow none `
      + `of its contents; that is the caps at work, since a cardholder may get only a few pushes a month. `
      + `The live policy allowed no push in ${percent(before.total.blocked, before.total.attempts)} of requests, `
      + `the draft in ${percent(after.total.blocked, after.total.attempts)}.`
      + (reasons.length ? ` Main reasons under the live policy: ${reasons.join(", ")}.` : "");
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
  $("#policy-form").addEventListener("input", () => {
    syncReadings();
    draftChanged();
  });
  $("#policy-form").addEventListener("change", () => {
    syncToggles();
    syncReadings();
    draftChanged();
  });
  $("#policy-form").addEventListener("submit", (event) => event.preventDefault());
  $("#simulate").addEventListener("click", simulate);
  $("#apply").addEventListener("click", apply);

  if (sessionStorage.getItem(TOKEN_KEY)) {
    start();
  }
})();
