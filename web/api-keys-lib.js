// Pure helpers of the API keys panel: input validation (the server's limits),
// formatting, the usage series, and a clipboard helper.
// This module only exports; ComfyUI imports every .js under web/ as an
// extension, so it must have no side effects when imported.

export const LIMITS = Object.freeze({
  NAME_MAX: 100,
  RATE_LIMIT_MAX: 1_000_000_000,
  DEFAULT_RATE_LIMIT: 100,
  METADATA_MAX_BYTES: 16 * 1024,
  METADATA_MAX_DEPTH: 8,
  USAGE_DAYS: 30,
  JOB_LIMIT_MAX: 1_000_000_000,
  AUDIT_PAGE: 50,
});

/** A value the user typed that the server would refuse; `field` names the input. */
export class InputError extends Error {
  constructor(field, message) {
    super(message);
    this.name = "InputError";
    this.field = field;
  }
}

// Python's str.strip() removes what str.isspace() calls whitespace; the server
// trims with it, so the panel counts characters the same way.
const PY_SPACE = "[\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const PY_STRIP = new RegExp(`^${PY_SPACE}+|${PY_SPACE}+$`, "g");
// unicodedata categories Cc (control) and Cs (lone surrogates), as the server checks.
const CONTROL = /[\p{Cc}\p{Cs}]/u;

export function pyStrip(text) {
  return String(text).replace(PY_STRIP, "");
}

/** Length in code points, as Python's len() counts. */
export function codePointLength(text) {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

export function validateName(raw) {
  if (typeof raw !== "string") throw new InputError("name", "Name must be text.");
  const name = pyStrip(raw);
  if (name.length === 0) throw new InputError("name", "Enter a name.");
  const length = codePointLength(name);
  if (length > LIMITS.NAME_MAX) {
    throw new InputError("name", `Name must be at most ${LIMITS.NAME_MAX} characters (it has ${length}).`);
  }
  if (CONTROL.test(name)) throw new InputError("name", "Name must not contain control characters (tabs, line breaks…).");
  return name;
}

export function parseRateLimit(raw) {
  const text = String(raw ?? "").trim();
  if (text === "") throw new InputError("rate_limit", "Enter a rate limit (requests per hour; 0 blocks the key).");
  if (!/^[0-9]+$/.test(text)) {
    throw new InputError("rate_limit", "Rate limit must be a whole number of requests per hour, such as 100.");
  }
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value > LIMITS.RATE_LIMIT_MAX) {
    throw new InputError("rate_limit", `Rate limit must be from 0 to ${formatNumber(LIMITS.RATE_LIMIT_MAX)}.`);
  }
  return value;
}

/**
 * A workflow limit (prompts per hour, prompts waiting at once): empty means
 * unlimited (null); otherwise a whole number from 0 to 1,000,000,000, as the
 * server's validate_job_limits accepts. `field` is the job_limits member.
 */
export function parseJobLimit(raw, field) {
  const text = String(raw ?? "").trim();
  if (text === "") return null;
  if (!/^[0-9]+$/.test(text)) {
    throw new InputError(field, "Enter a whole number, such as 10, or leave it empty for no limit.");
  }
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value > LIMITS.JOB_LIMIT_MAX) {
    throw new InputError(field, `Use 0 to ${formatNumber(LIMITS.JOB_LIMIT_MAX)}, or leave it empty for no limit.`);
  }
  return value;
}

/** Nesting depth the way the server measures it (a flat object is 1). */
export function jsonDepth(value, level = 1) {
  if (Array.isArray(value)) {
    let deepest = level;
    for (const item of value) deepest = Math.max(deepest, jsonDepth(item, level + 1));
    return deepest;
  }
  if (value !== null && typeof value === "object") {
    let deepest = level;
    for (const item of Object.values(value)) deepest = Math.max(deepest, jsonDepth(item, level + 1));
    return deepest;
  }
  return level - 1;
}

const encoder = new TextEncoder();

/**
 * Bytes of Python's json.dumps(value, ensure_ascii=False): JSON.stringify plus
 * the space Python puts after every ':' and ','.
 */
export function pythonJsonSize(value) {
  let separators = 0;
  const walk = (v) => {
    if (Array.isArray(v)) {
      separators += Math.max(0, v.length - 1);
      v.forEach(walk);
    } else if (v !== null && typeof v === "object") {
      const entries = Object.values(v);
      separators += entries.length + Math.max(0, entries.length - 1);
      entries.forEach(walk);
    }
  };
  walk(value);
  return encoder.encode(JSON.stringify(value)).length + separators;
}

/** First object key that appears twice in the same object of a JSON text, or null. */
export function findDuplicateKey(text) {
  const stack = []; // per open container: a Set of keys for objects, null for arrays
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      const token = text.slice(i, j + 1);
      const top = stack[stack.length - 1];
      if (expectKey && top) {
        let key;
        try {
          key = JSON.parse(token);
        } catch {
          return null; // not valid JSON; JSON.parse reports that better
        }
        if (top.has(key)) return key;
        top.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === "{") {
      stack.push(new Set());
      expectKey = true;
    } else if (c === "[") {
      stack.push(null);
      expectKey = false;
    } else if (c === "}" || c === "]") {
      stack.pop();
      expectKey = false;
    } else if (c === ",") {
      expectKey = !!stack[stack.length - 1];
    }
  }
  return null;
}

/** Check a metadata object against the server's limits; returns it. */
export function validateMetadata(value) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new InputError("metadata", 'Metadata must be a JSON object, such as {"project": "demo"}.');
  }
  if (jsonDepth(value) > LIMITS.METADATA_MAX_DEPTH) {
    throw new InputError("metadata", `Metadata must not nest deeper than ${LIMITS.METADATA_MAX_DEPTH} levels.`);
  }
  const size = pythonJsonSize(value);
  if (size > LIMITS.METADATA_MAX_BYTES) {
    throw new InputError("metadata",
      `Metadata is ${formatNumber(size)} bytes as JSON; the limit is ${formatNumber(LIMITS.METADATA_MAX_BYTES)} (16 KiB).`);
  }
  return value;
}

/** Metadata from the raw JSON editor. Empty text means an empty object. */
export function parseMetadataJson(text) {
  const source = String(text ?? "").trim();
  if (source === "") return {};
  let value;
  try {
    value = JSON.parse(source);
  } catch (error) {
    throw new InputError("metadata", `Metadata is not valid JSON: ${error.message}`);
  }
  const duplicate = findDuplicateKey(source);
  if (duplicate !== null) throw new InputError("metadata", `Metadata has the key "${duplicate}" twice.`);
  return validateMetadata(value);
}

/** Metadata from key/value rows ([{key, value}]); values stay text. Blank rows are skipped. */
export function metadataFromRows(rows) {
  const result = {};
  for (const { key, value } of rows) {
    const k = String(key ?? "").trim();
    const v = String(value ?? "");
    if (k === "" && v === "") continue;
    if (k === "") throw new InputError("metadata", "Every metadata value needs a key.");
    if (Object.prototype.hasOwnProperty.call(result, k)) {
      throw new InputError("metadata", `Metadata has the key "${k}" twice.`);
    }
    result[k] = v;
  }
  return validateMetadata(result);
}

/** Rows for the key/value editor, or null when the metadata holds more than flat text. */
export function rowsFromMetadata(metadata) {
  const rows = [];
  for (const [key, value] of Object.entries(metadata || {})) {
    if (typeof value !== "string") return null;
    rows.push({ key, value });
  }
  return rows;
}

// ---- formatting -------------------------------------------------------------------------

const numberFormat = new Intl.NumberFormat();

export function formatNumber(n) {
  return numberFormat.format(n);
}

export function formatDate(seconds) {
  if (!seconds) return "—";
  return new Date(seconds * 1000).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
}

export function formatDateTime(seconds) {
  if (!seconds) return "";
  return new Date(seconds * 1000).toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  });
}

/** A short date and time with seconds, for the audit trail; the year only when it is not this year. */
export function formatEventTime(seconds, nowMs = Date.now()) {
  if (!seconds) return "";
  const date = new Date(seconds * 1000);
  const options = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" };
  if (date.getFullYear() !== new Date(nowMs).getFullYear()) options.year = "numeric";
  return date.toLocaleString(undefined, options);
}

const decimalFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

/** Seconds as people say them: "3 ms", "4.2 s", "3 min 12 s", "2 h 5 min", "3 d 4 h". */
export function formatDuration(seconds) {
  const value = Number(seconds);
  if (!Number.isFinite(value) || value <= 0) return "0 s";
  if (value < 0.9995) return `${Math.max(1, Math.round(value * 1000))} ms`;
  if (value < 9.95) return `${decimalFormat.format(value)} s`;
  const total = Math.round(value);
  if (total < 60) return `${total} s`;
  const days = Math.floor(total / 86400);
  const hours = Math.floor((total % 86400) / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const rest = total % 60;
  const pair = (a, unitA, b, unitB) => (b ? `${a} ${unitA} ${b} ${unitB}` : `${a} ${unitA}`);
  if (days) return pair(formatNumber(days), "d", hours, "h");
  if (hours) return pair(hours, "h", minutes, "min");
  return pair(minutes, "min", rest, "s");
}

const relativeFormat = typeof Intl.RelativeTimeFormat === "function"
  ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" })
  : null;

export function formatRelative(seconds, nowMs = Date.now()) {
  if (!seconds) return "never";
  const diff = seconds - nowMs / 1000; // negative: in the past
  const steps = [[60, "second"], [60, "minute"], [24, "hour"], [7, "day"], [4.35, "week"], [12, "month"], [Infinity, "year"]];
  let amount = diff;
  for (const [size, unit] of steps) {
    if (Math.abs(amount) < size) {
      if (unit === "second" && Math.abs(amount) < 45) return "just now";
      const rounded = Math.round(amount);
      return relativeFormat ? relativeFormat.format(rounded, unit) : `${Math.abs(rounded)} ${unit}s ago`;
    }
    amount /= size;
  }
  return formatDate(seconds);
}

/** "YYYY-MM-DD" of a UTC day, as the server keys requests_per_day. */
export function utcDay(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

/** [{day, count}] for each of the last `days` UTC days, oldest first, zeros filled in. */
export function dailySeries(requestsPerDay, days = LIMITS.USAGE_DAYS, nowMs = Date.now()) {
  const series = [];
  const today = Math.floor(nowMs / 86_400_000) * 86_400_000;
  for (let i = days - 1; i >= 0; i--) {
    const day = utcDay(today - i * 86_400_000);
    const count = Number((requestsPerDay || {})[day]) || 0;
    series.push({ day, count });
  }
  return series;
}

export function formatDay(day) {
  const date = new Date(`${day}T00:00:00Z`);
  return date.toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
}

// ---- clipboard --------------------------------------------------------------------------

/**
 * Copy text. navigator.clipboard needs a secure context (https or localhost);
 * ComfyUI is often opened over plain http on a LAN address, so fall back to
 * selecting `input` (which already shows the text) and execCommand("copy").
 */
export async function copyText(text, input) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // permission refused or document not focused: try the old way
    }
  }
  if (!input) return false;
  try {
    input.focus();
    input.select();
    return document.execCommand("copy");
  } catch {
    return false;
  } finally {
    window.getSelection()?.removeAllRanges();
  }
}

// ---- a key's lifecycle: expiry and IP allowlist (README: Key lifecycle) ----

export const ALLOWED_IPS_MAX = 100;

/** "Never expires", "Expires in 3 days" or "Expired": what a key's expiry means now. */
export function describeExpiry(expiresAt, nowMs = Date.now()) {
  if (expiresAt === null || expiresAt === undefined) return "Never expires";
  if (expiresAt * 1000 <= nowMs) return "Expired";
  return `Expires ${formatRelative(expiresAt, nowMs)}`;
}

/** A datetime-local input's value ("YYYY-MM-DDTHH:MM", local time) for Unix seconds; "" for none. */
export function localInputValue(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const date = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** Unix seconds from a datetime-local value (local time); null for "" (never expires). */
export function parseExpiry(raw) {
  const text = String(raw).trim();
  if (!text) return null;
  const ms = new Date(text).getTime();
  if (!Number.isFinite(ms) || ms <= 0) throw new InputError("expires_at", "Enter a date and time, or leave it empty for never.");
  return Math.floor(ms / 1000);
}

/** The allowlist typed one a line (or comma-separated); [] = from anywhere. The server checks each entry strictly. */
export function parseAllowedIps(raw) {
  const entries = String(raw).split(/[\s,]+/).filter(Boolean);
  if (entries.length > ALLOWED_IPS_MAX) {
    throw new InputError("allowed_ips", `At most ${ALLOWED_IPS_MAX} addresses or ranges.`);
  }
  return [...new Set(entries)];
}
