// Forms and dialogs of the API keys panel: the modal dialog, text fields, the
// metadata and workflow-limit editors, and the create/edit form of a key.
// This module only exports; ComfyUI imports every .js under web/ as an
// extension, so it must have no side effects when imported.

import { glyph, h, icon, uid } from "./api-keys-dom.js";
import {
  InputError, LIMITS, formatNumber, localInputValue, metadataFromRows, parseAllowedIps, parseExpiry, parseJobLimit,
  parseMetadataJson, parseRateLimit, rowsFromMetadata, validateName,
} from "./api-keys-lib.js";
import { keyScope, scopePicker } from "./api-keys-scopes.js";
import { jobLimitsOf } from "./api-keys-usage.js";

/**
 * A modal <dialog>: focus moves in, Tab stays in, Escape closes, focus goes
 * back to the opener (or to `fallbackFocus()` when the opener was re-rendered).
 * `owner` (the panel) keeps its open dialogs in `owner.dialogs`, to close them
 * when it goes; once `owner.destroyed`, focus is left alone.
 */
export function openDialog(owner, { title, body, opener, onClose, initialFocus, className = "", fallbackFocus, describedBy }) {
  const titleId = uid("dialog-title");
  const dialog = h("dialog", {
    class: `cak-dialog ${className}`, "aria-labelledby": titleId, "aria-describedby": describedBy,
  },
  h("div", { class: "cak-dialog-head" },
    h("h2", { id: titleId, class: "cak-dialog-title", text: title }),
    h("button", { type: "button", class: "cak-btn cak-btn-icon", "aria-label": "Close", onclick: () => handle.close() }, glyph("\u00d7"))),
  h("div", { class: "cak-dialog-body" }, body));
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    owner.dialogs.delete(handle);
    try {
      onClose?.();
    } finally {
      dialog.remove();
      // Give focus back unless another dialog of ours took over.
      if (!owner.destroyed && owner.dialogs.size === 0) {
        const target = opener?.isConnected ? opener : fallbackFocus?.();
        target?.focus?.();
      }
    }
  };
  const handle = {
    dialog,
    close: () => {
      if (dialog.open) dialog.close();
      finish();
    },
  };
  // Escape, the close button, or handle.close(): the same clean-up, once.
  dialog.addEventListener("close", finish);
  // Keep key presses in the dialog from reaching ComfyUI's canvas shortcuts.
  dialog.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") event.stopPropagation();
  });
  owner.dialogs.add(handle);
  document.body.append(dialog);
  dialog.showModal();
  (initialFocus || dialog.querySelector("input, textarea, select, button"))?.focus();
  return handle;
}

export function textField(labelText, props = {}, hint) {
  const id = uid("field");
  const errorId = `${id}-error`;
  const hintId = hint ? `${id}-hint` : null;
  const input = h(props.multiline ? "textarea" : "input", {
    id, class: "cak-input", type: props.multiline ? undefined : (props.type || "text"),
    autocomplete: props.autocomplete || "off", spellcheck: "false", inputmode: props.inputmode,
    "aria-describedby": [hintId, errorId].filter(Boolean).join(" "), rows: props.rows,
  });
  const error = h("p", { id: errorId, class: "cak-field-error", hidden: true });
  const wrap = h("div", { class: "cak-field" }, h("label", { for: id, text: labelText }), input,
    hint ? h("p", { id: hintId, class: "cak-hint", text: hint }) : null, error);
  const setError = (message) => {
    error.textContent = message || "";
    error.hidden = !message;
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  };
  // A message about a value goes once the value is edited.
  input.addEventListener("input", () => {
    if (!error.hidden) setError("");
  });
  return { wrap, input, error, setError };
}

export function metadataEditor(metadata) {
  const rowsBox = h("div", { class: "cak-meta-rows" });
  const errorId = uid("meta-error");
  const error = h("p", { id: errorId, class: "cak-field-error", role: "alert", hidden: true });
  const jsonId = uid("meta-json");
  const textarea = h("textarea", {
    id: jsonId, class: "cak-input cak-json", rows: 5, spellcheck: "false", placeholder: '{"project": "demo"}',
    "aria-describedby": errorId,
  });
  const jsonWrap = h("div", { class: "cak-field", hidden: true }, h("label", { for: jsonId, text: "Metadata as JSON" }), textarea);
  const addButton = h("button", { type: "button", class: "cak-btn cak-btn-small", onclick: () => { addRow("", ""); focusLast(); } },
    icon("pi-plus"), "Add field");
  let mode = "fields";
  const fieldsButton = h("button", { type: "button", class: "cak-seg-btn", "aria-pressed": "true", onclick: () => switchTo("fields") }, "Fields");
  const jsonButton = h("button", { type: "button", class: "cak-seg-btn", "aria-pressed": "false", onclick: () => switchTo("json") }, "JSON");

  const setError = (message) => {
    error.textContent = message || "";
    error.hidden = !message;
    if (message) textarea.setAttribute("aria-invalid", "true");
    else textarea.removeAttribute("aria-invalid");
  };
  const renumber = () => {
    [...rowsBox.children].forEach((row, i) => {
      const [k, v, remove] = row.querySelectorAll("input, button");
      k.setAttribute("aria-label", `Metadata key ${i + 1}`);
      v.setAttribute("aria-label", `Metadata value ${i + 1}`);
      remove.setAttribute("aria-label", `Remove metadata field ${i + 1}`);
    });
  };
  const addRow = (key, value) => {
    const k = h("input", { type: "text", class: "cak-input", placeholder: "key", autocomplete: "off", spellcheck: "false" });
    const v = h("input", { type: "text", class: "cak-input", placeholder: "value", autocomplete: "off", spellcheck: "false" });
    k.value = key;
    v.value = value;
    const row = h("div", { class: "cak-meta-row" }, k, v,
      h("button", {
        type: "button", class: "cak-btn cak-btn-icon cak-btn-small",
        onclick: () => {
          const next = row.nextElementSibling || row.previousElementSibling;
          row.remove();
          if (!rowsBox.children.length) addRow("", "");
          renumber();
          (next?.querySelector("input") || rowsBox.querySelector("input"))?.focus();
        },
      }, glyph("\u00d7")));
    rowsBox.append(row);
    renumber();
  };
  const focusLast = () => rowsBox.lastElementChild?.querySelector("input")?.focus();
  const readRows = () => [...rowsBox.children].map((row) => {
    const [k, v] = row.querySelectorAll("input");
    return { key: k.value, value: v.value };
  });
  const fillRows = (rows) => {
    rowsBox.replaceChildren();
    for (const { key, value } of rows) addRow(key, value);
    if (!rows.length) addRow("", "");
  };
  const switchTo = (next) => {
    if (next === mode) return;
    try {
      if (next === "json") {
        const value = metadataFromRows(readRows());
        textarea.value = Object.keys(value).length ? JSON.stringify(value, null, 2) : "";
      } else {
        const rows = rowsFromMetadata(parseMetadataJson(textarea.value));
        if (rows === null) {
          throw new InputError("metadata", "This metadata has values that are not text (numbers, lists or objects); edit it as JSON.");
        }
        fillRows(rows);
      }
    } catch (err) {
      setError(err.message);
      return;
    }
    setError("");
    mode = next;
    fieldsButton.setAttribute("aria-pressed", String(mode === "fields"));
    jsonButton.setAttribute("aria-pressed", String(mode === "json"));
    rowsBox.hidden = addButton.hidden = mode !== "fields";
    jsonWrap.hidden = mode !== "json";
    (mode === "json" ? textarea : rowsBox.querySelector("input"))?.focus();
  };

  const rows = rowsFromMetadata(metadata || {});
  if (rows === null) {
    fillRows([]);
    textarea.value = JSON.stringify(metadata, null, 2);
    mode = "json";
    fieldsButton.setAttribute("aria-pressed", "false");
    jsonButton.setAttribute("aria-pressed", "true");
    rowsBox.hidden = addButton.hidden = true;
    jsonWrap.hidden = false;
  } else {
    fillRows(rows);
  }
  const wrap = h("fieldset", { class: "cak-meta" },
    h("legend", { text: "Metadata (optional)" }),
    h("div", { class: "cak-seg", role: "group", "aria-label": "Edit metadata as" }, fieldsButton, jsonButton),
    rowsBox, addButton, jsonWrap, error,
    h("p", { class: "cak-hint", text: "A JSON object of up to 16 KiB, at most 8 levels deep. Admins can read it." }));
  return {
    wrap,
    setError,
    read: () => (mode === "fields" ? metadataFromRows(readRows()) : parseMetadataJson(textarea.value)),
    focus: () => (mode === "fields" ? rowsBox.querySelector("input") : textarea)?.focus(),
  };
}

/** "Workflow limits": prompts per hour and prompts waiting at once; empty = unlimited. */
export function jobLimitsEditor(limits) {
  const hintId = uid("job-hint");
  const perHour = textField("Prompts per hour", { inputmode: "numeric" });
  const waiting = textField("Prompts waiting at once", { inputmode: "numeric" });
  for (const [field, value] of [[perHour, limits.prompts_per_hour], [waiting, limits.max_waiting]]) {
    field.input.value = value === null ? "" : String(value);
    field.input.placeholder = "Unlimited";
    field.input.setAttribute("aria-describedby", `${field.input.getAttribute("aria-describedby")} ${hintId}`);
  }
  perHour.input.dataset.jobLimit = "prompts_per_hour";
  waiting.input.dataset.jobLimit = "max_waiting";
  const wrap = h("fieldset", { class: "cak-meta cak-jobs-form" },
    h("legend", { text: "Workflow limits (optional)" }),
    h("div", { class: "cak-pair" }, perHour.wrap, waiting.wrap),
    h("p", { id: hintId, class: "cak-hint" },
      "For workflows queued with this key (POST /prompt). Empty means unlimited; 0 blocks queueing. ",
      `At most ${formatNumber(LIMITS.JOB_LIMIT_MAX)}.`));
  // The server names the whole object (field "job_limits") and the member in its message.
  const pick = (message) => (/max_waiting/.test(String(message)) ? waiting : perHour);
  return {
    wrap,
    perHour,
    waiting,
    setError: (message) => {
      if (!message) {
        perHour.setError("");
        waiting.setError("");
        return;
      }
      pick(message).setError(message);
    },
    focusFor: (message) => pick(message).input.focus(),
  };
}

/**
 * The create/edit form; `read()` returns validated fields or throws InputError.
 * `bootstrap`: the local bootstrap, which may not make admin keys;
 * `summaries`: what each scope allows, in the server's words (GET /auth/access).
 */
export function keyForm(key, { bootstrap = false, summaries } = {}) {
  const name = textField("Name", {}, `1 to ${LIMITS.NAME_MAX} characters, such as the script or person using it.`);
  const rate = textField("Rate limit (requests per hour)", { inputmode: "numeric" },
    `0 to ${formatNumber(LIMITS.RATE_LIMIT_MAX)}; 0 blocks every request.`);
  name.input.value = key ? key.name : "";
  rate.input.value = String(key ? key.rate_limit : LIMITS.DEFAULT_RATE_LIMIT);
  const meta = metadataEditor(key ? key.metadata : {});
  const jobs = jobLimitsEditor(jobLimitsOf(key));
  const scope = scopePicker(key ? keyScope(key.scopes) : null, { bootstrap, summaries });
  // Lifecycle: when the key stops working (empty: never), and where it may be used from.
  const expires = textField("Expires (optional)", { type: "datetime-local" },
    "Your local time. Empty: never expires. From then on the key gets 401 KEY_EXPIRED.");
  expires.input.value = localInputValue(key?.expires_at);
  expires.input.dataset.field = "expires_at";
  const initialExpiry = expires.input.value;
  const clearExpiry = h("button", {
    type: "button", class: "cak-btn cak-btn-small", "data-action": "clear-expiry",
    onclick: () => { expires.input.value = ""; expires.input.focus(); },
  }, "Never expires");
  expires.wrap.append(clearExpiry);
  const allowed = textField("Allowed addresses (optional)", { multiline: true, rows: 2 },
    "IP addresses or CIDR ranges, one a line (203.0.113.0/24, 2001:db8::/32). Empty: from anywhere.");
  allowed.input.value = (key?.allowed_ips || []).join("\n");
  allowed.input.dataset.field = "allowed_ips";
  allowed.input.placeholder = "Anywhere";
  const fields = {
    name, rate_limit: rate, metadata: meta,
    prompts_per_hour: jobs.perHour, max_waiting: jobs.waiting, job_limits: jobs, scopes: scope,
    expires_at: expires, allowed_ips: allowed,
  };
  const focusField = (field, message) => {
    if (field === meta || field === scope) field.focus();
    else if (field === jobs) jobs.focusFor(message);
    else field.input.focus();
  };
  // Outside a modal dialog everything is inert, toasts included: say it here too.
  const formError = h("p", { class: "cak-error-text cak-form-error", role: "alert", hidden: true });
  return {
    nodes: [name.wrap, scope.wrap, rate.wrap, jobs.wrap, expires.wrap, allowed.wrap, meta.wrap, formError],
    /** The expiry field was edited (so an edit sends it, null included: never). */
    expiryChanged: () => expires.input.value !== initialExpiry,
    first: name.input,
    showServerError: (error) => {
      const field = fields[error?.field];
      if (field) {
        field.setError(error.message);
        focusField(field, error.message);
      } else {
        formError.textContent = error?.message || String(error);
        formError.hidden = false;
      }
    },
    read: () => {
      formError.hidden = true;
      for (const f of Object.values(fields)) f.setError("");
      const errors = [];
      const result = {};
      const attempt = (field, fn) => {
        try {
          result[field] = fn();
        } catch (err) {
          if (!(err instanceof InputError)) throw err;
          errors.push(err);
          fields[field].setError(err.message);
        }
      };
      attempt("name", () => validateName(name.input.value));
      attempt("rate_limit", () => parseRateLimit(rate.input.value));
      attempt("metadata", () => meta.read());
      attempt("prompts_per_hour", () => parseJobLimit(jobs.perHour.input.value, "prompts_per_hour"));
      attempt("max_waiting", () => parseJobLimit(jobs.waiting.input.value, "max_waiting"));
      attempt("expires_at", () => parseExpiry(expires.input.value));
      attempt("allowed_ips", () => parseAllowedIps(allowed.input.value));
      result.scopes = [scope.read()];
      if (errors.length) {
        focusField(fields[errors[0].field]);
        return null;
      }
      result.job_limits = { prompts_per_hour: result.prompts_per_hour, max_waiting: result.max_waiting };
      delete result.prompts_per_hour;
      delete result.max_waiting;
      return result;
    },
  };
}
