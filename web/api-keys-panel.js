// The API keys sidebar panel: status and sign-in, the key list, create/edit/
// disable/delete, per-key usage and workflows, and the admin activity (audit
// trail). Plain DOM, no framework, no innerHTML
// (names and metadata are user data).
// This module only exports; the entry module (api-keys.js) registers it.

import {
  InputError, LIMITS, actionLabel, copyText, dailySeries, describeActor, describeDetail, formatDate, formatDateTime,
  formatDay, formatDuration, formatEventTime, formatNumber, formatRelative, metadataFromRows, parseJobLimit,
  parseMetadataJson, parseRateLimit, rowsFromMetadata, targetsKey, validateName,
} from "./api-keys-lib.js";

const SORTS = {
  name: { label: "Name", defaultDir: 1 },
  created: { label: "Created", defaultDir: -1 },
  last_used: { label: "Last used", defaultDir: -1 },
};
const PAGE = 200; // rows rendered at once; "Show more" adds another page
const TOP_ENDPOINTS = 5;
const NO_JOB_LIMITS = Object.freeze({ prompts_per_hour: null, max_waiting: null });

/** A key's workflow limits, both members present (null = unlimited). */
function jobLimitsOf(key) {
  const limits = key?.job_limits || {};
  return { prompts_per_hour: limits.prompts_per_hour ?? null, max_waiting: limits.max_waiting ?? null };
}

/** "10 prompts per hour · 2 waiting at once", or "Unlimited". */
function describeJobLimits(limits) {
  const { prompts_per_hour: perHour, max_waiting: waiting } = limits || NO_JOB_LIMITS;
  if (perHour === null && waiting === null) return "Unlimited";
  const parts = [
    perHour === null ? "any number per hour" : perHour === 0
      ? "0 per hour (queueing blocked)" : `${formatNumber(perHour)} ${perHour === 1 ? "prompt" : "prompts"} per hour`,
    waiting === null ? "any number waiting" : `${formatNumber(waiting)} waiting at once`,
  ];
  return parts.join(" · ");
}

let uidCounter = 0;
const uid = (stem) => `cak-${stem}-${++uidCounter}`;

/** Create an element: h("div", {class, text, onclick, ...attrs}, ...children). */
function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (typeof value !== "string" && key in node) node[key] = value; // hidden, disabled, checked…
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  for (const child of children) node.append(child);
  return node;
}

const icon = (name) => h("i", { class: `pi ${name}`, "aria-hidden": "true" });
const srOnly = (text) => h("span", { class: "cak-sr-only", text });
// Icon-only buttons use a text glyph, so they show even where PrimeIcons are not loaded.
const glyph = (char) => h("span", { class: "cak-glyph", "aria-hidden": "true", text: char });

class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field; // the request field the server named, if any
  }
}

export function createPanel(options) {
  return new ApiKeysPanel(options);
}

class ApiKeysPanel {
  constructor({ app, api, folder }) {
    this.app = app;
    this.api = api;
    this.folder = folder || "<folder>";
    this.status = null;
    this.keys = [];
    this.rows = new Map(); // key_id -> {sig, li, button, detail}
    this.usage = new Map(); // key_id -> usage_stats (cached while the panel is open)
    this.expanded = null;
    this.filter = "";
    this.sort = { by: "created", dir: SORTS.created.defaultDir };
    this.limit = PAGE;
    this.dialogs = new Set();
    this.controller = new AbortController();
    this.destroyed = false;
    this.filterTimer = 0;
    this.activity = { open: false, events: [], done: false, loading: 0, names: new Map() };
  }

  // ---- lifecycle ------------------------------------------------------------------------

  mount(container) {
    this.container = container;
    this.statusBox = h("div", { class: "cak-status", "aria-live": "polite" }, h("p", { class: "cak-muted", text: "Loading…" }));
    this.signInBox = h("div", { class: "cak-signin-slot" });
    this.notice = h("div", { class: "cak-notice", role: "status", hidden: true });
    this.content = h("div", { class: "cak-content" });
    this.refreshButton = h("button", {
      type: "button", class: "cak-btn cak-btn-icon", "aria-label": "Refresh", title: "Refresh",
      onclick: () => this.refresh(),
    }, glyph("\u21bb"));
    this.root = h("div", { class: "cak-root", "data-testid": "api-keys-panel" },
      h("header", { class: "cak-header" },
        h("h2", { class: "cak-title" }, icon("pi-key"), "API Keys"),
        this.refreshButton),
      this.statusBox, this.signInBox, this.notice, this.content);
    container.append(this.root);
    this.refresh();
  }

  destroy() {
    this.destroyed = true;
    this.controller.abort();
    clearTimeout(this.filterTimer);
    for (const dialog of [...this.dialogs]) dialog.close();
    this.root?.remove();
    this.rows.clear();
    this.usage.clear();
    this.keys = [];
  }

  // ---- HTTP and messages ----------------------------------------------------------------

  async request(path, { method = "GET", body } = {}) {
    const options = { method, credentials: "same-origin", headers: {}, signal: this.controller.signal };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await this.api.fetchApi(path, options);
    } catch (error) {
      if (error?.name === "AbortError") throw error;
      throw new ApiError(0, "NETWORK", `Cannot reach the ComfyUI server (${error?.message || error}).`);
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const message = (data && typeof data.error === "string" && data.error)
        || `${response.status} ${response.statusText || "error"}`;
      throw new ApiError(response.status, data?.error_code || "HTTP_" + response.status, message,
        typeof data?.field === "string" ? data.field : undefined);
    }
    return data ?? {};
  }

  toast(severity, summary, detail, life) {
    const toast = this.app?.extensionManager?.toast;
    life = life ?? (severity === "error" ? 10000 : 4000);
    if (toast?.add) {
      toast.add({ severity, summary, detail, life });
      return;
    }
    // Old front ends without toasts: say it in the panel.
    this.notice.hidden = false;
    this.notice.className = `cak-notice cak-notice-${severity}`;
    this.notice.textContent = detail ? `${summary}: ${detail}` : summary;
  }

  /** Toast a failed request with the server's own message. */
  fail(summary, error) {
    if (error?.name === "AbortError" || this.destroyed) return;
    this.toast("error", summary, error?.message || String(error));
  }

  // ---- status and sign-in ---------------------------------------------------------------

  async refresh() {
    this.refreshButton.disabled = true;
    try {
      let status;
      try {
        status = await this.request("/auth/status");
      } catch (error) {
        if (error?.name === "AbortError") return;
        this.renderUnavailable(error);
        return;
      }
      if (this.destroyed) return;
      this.status = status;
      this.renderStatus();
      // A local bootstrap request manages non-admin keys until an admin exists.
      if (status.is_admin || status.local_bootstrap) await this.showManager();
      else if (status.principal?.kind === "key") await this.showOwnUsage();
      else this.showBecomeAdmin();
    } finally {
      if (!this.destroyed) this.refreshButton.disabled = false;
    }
  }

  renderUnavailable(error) {
    const text = error.status === 404
      ? "The API key routes are not active on this server (COMFYUI_API_AUTH=off, or the package failed to load). See the ComfyUI log."
      : error.message;
    this.statusBox.replaceChildren(h("p", { class: "cak-error-text", role: "alert", text }));
    this.content.replaceChildren();
    this.toast("error", "API keys unavailable", error.message);
  }

  describePrincipal(status) {
    const p = status.principal || { kind: "anonymous", via: "none" };
    if (p.kind === "admin") {
      if (p.name) return { who: "Admin", how: `with the admin key “${p.name}”` };
      if (p.via === "local") return { who: "Admin", how: "on the machine ComfyUI runs on" };
      return { who: "Admin", how: "signed in with the admin password" };
    }
    if (p.kind === "bootstrap") return { who: "This machine", how: "may manage non-admin keys until an admin exists" };
    if (p.kind === "key") return { who: "Key holder", how: `key “${p.name ?? p.key_id}”` };
    return { who: "Not signed in", how: "anonymous" };
  }

  renderStatus() {
    const status = this.status;
    const mode = status.mode;
    const { who, how } = this.describePrincipal(status);
    const modeText = mode === "require"
      ? "Sign-in required: every request needs a key or a signed-in browser."
      : "Keys optional: anonymous use is allowed; a presented key is checked, limited and counted.";
    const actions = h("div", { class: "cak-actions" });
    if (status.principal?.via === "session") {
      actions.append(h("button", { type: "button", class: "cak-btn", onclick: (e) => this.signOut(e.currentTarget) },
        icon("pi-sign-out"), "Sign out"));
    }
    if (!status.is_admin) {
      actions.append(h("button", {
        type: "button", class: "cak-btn", "aria-expanded": "false", "data-signin-toggle": "",
        onclick: () => this.toggleSignIn(),
      }, icon("pi-sign-in"), status.authenticated ? "Sign in as admin" : "Sign in"));
    } else {
      // Sign-out-everywhere is for every admin, also where the environment manages the password.
      actions.append(status.admin_password_managed
        ? h("span", { class: "cak-muted", "data-testid": "password-managed",
          text: "Admin password: managed by the environment (COMFYUI_API_AUTH_ADMIN_PASSWORD)" })
        : h("button", { type: "button", class: "cak-btn", onclick: (e) => this.openPasswordDialog(e.currentTarget) },
          icon("pi-lock"), status.admin_password_set ? "Change admin password" : "Set admin password"));
      actions.append(h("button", { type: "button", class: "cak-btn", onclick: (e) => this.openSignOutEverywhereDialog(e.currentTarget) },
        icon("pi-power-off"), "Sign out everywhere"));
    }
    const bootstrapNote = status.local_bootstrap
      ? h("p", { class: "cak-muted", "data-testid": "bootstrap-note" },
        "No admin exists yet, so this machine may create and manage non-admin keys. To become admin, enter the setup code ",
        "printed in the ComfyUI console on the ", h("a", { class: "cak-link", href: status.login_url || "/login" }, "sign-in page"),
        ", or on the server run ", h("code", { class: "cak-code", text: `python custom_nodes/${this.folder} set-password` }), ".")
      : null;
    this.statusBox.replaceChildren(
      h("dl", { class: "cak-facts cak-status-facts" },
        h("dt", { text: "Mode" }),
        h("dd", {}, h("span", { class: `cak-chip cak-chip-${mode}`, text: mode }), " ",
          h("span", { class: "cak-muted", text: modeText })),
        h("dt", { text: "You" }),
        h("dd", { "data-testid": "principal" }, h("strong", { text: who }), " ", h("span", { class: "cak-muted", text: `(${how})` }))),
      ...(bootstrapNote ? [bootstrapNote] : []), actions);
    if (status.is_admin) this.signInBox.replaceChildren();
  }

  toggleSignIn(kind) {
    const toggle = this.statusBox.querySelector("[data-signin-toggle]");
    if (this.signInBox.firstChild && !kind) {
      this.signInBox.replaceChildren();
      toggle?.setAttribute("aria-expanded", "false");
      toggle?.focus();
      return;
    }
    const form = this.buildSignInForm(kind || "password");
    this.signInBox.replaceChildren(form);
    toggle?.setAttribute("aria-expanded", "true");
    form.querySelector("input[type=password]")?.focus();
  }

  buildSignInForm(initial) {
    let kind = initial;
    const inputId = uid("secret");
    const label = h("label", { for: inputId });
    const input = h("input", { id: inputId, type: "password", class: "cak-input", required: true, spellcheck: "false" });
    const choose = (next) => {
      kind = next;
      label.textContent = kind === "password" ? "Admin password" : "API key";
      input.autocomplete = kind === "password" ? "current-password" : "off";
      input.placeholder = kind === "password" ? "" : "comfy_…";
      for (const radio of radios) radio.checked = radio.value === kind;
    };
    const group = uid("signin-kind");
    const radios = ["password", "api_key"].map((value) => h("input", {
      type: "radio", name: group, value, onchange: () => { choose(value); input.focus(); },
    }));
    const submit = h("button", { type: "submit", class: "cak-btn cak-btn-primary" }, "Sign in");
    const form = h("form", {
      class: "cak-card cak-signin", "aria-label": "Sign in",
      onsubmit: async (event) => {
        event.preventDefault();
        const secret = input.value;
        if (!secret) {
          input.focus();
          return;
        }
        submit.disabled = true;
        try {
          const result = await this.request("/auth/login", { method: "POST", body: { [kind]: secret } });
          input.value = "";
          this.signInBox.replaceChildren();
          this.toast("success", "Signed in", result.kind === "admin" ? "You are signed in as admin." : "You are signed in with your API key.");
          await this.refresh();
        } catch (error) {
          this.fail("Sign-in failed", error);
          input.select();
        } finally {
          submit.disabled = false;
        }
      },
    },
    h("fieldset", { class: "cak-radios" },
      h("legend", { text: "Sign in with" }),
      h("label", {}, radios[0], " Admin password"),
      h("label", {}, radios[1], " API key")),
    h("div", { class: "cak-field" }, label, input),
    h("div", { class: "cak-actions" }, submit,
      h("button", { type: "button", class: "cak-btn", onclick: () => this.toggleSignIn() }, "Cancel")));
    choose(kind);
    form.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.stopPropagation();
        this.toggleSignIn();
      }
    });
    return form;
  }

  async signOut(button) {
    button.disabled = true;
    try {
      await this.request("/auth/logout", { method: "POST" });
      this.toast("success", "Signed out", "This browser's session has ended.");
      if (this.status?.mode === "require") {
        // Nothing of this server is reachable without a session now.
        const next = location.pathname + location.search;
        location.assign(`${this.status.login_url || "/login"}?next=${encodeURIComponent(next)}`);
        return;
      }
      await this.refresh();
    } catch (error) {
      this.fail("Sign-out failed", error);
      button.disabled = false;
    }
  }

  openSignOutEverywhereDialog(opener) {
    const textId = uid("everywhere-text");
    const ownSession = this.status?.principal?.via === "session";
    const keepId = uid("keep");
    const keep = h("input", { id: keepId, type: "checkbox", checked: true });
    const cancel = h("button", { type: "button", class: "cak-btn", onclick: () => dialog.close() }, "Cancel");
    const confirm = h("button", {
      type: "button", class: "cak-btn cak-btn-danger",
      onclick: async () => {
        confirm.disabled = cancel.disabled = true;
        const keepCurrent = ownSession && keep.checked;
        try {
          const result = await this.request("/auth/sessions/end-all", { method: "POST", body: { keep_current: keepCurrent } });
          dialog.close();
          const ended = result.ended === 1 ? "1 session" : `${result.ended} sessions`;
          this.toast("success", "Signed out everywhere", `${ended} ended. API keys keep working.`);
          if (ownSession && !keepCurrent && this.status?.mode === "require") {
            const next = location.pathname + location.search;
            location.assign(`${this.status.login_url || "/login"}?next=${encodeURIComponent(next)}`);
            return;
          }
          await this.refresh();
        } catch (error) {
          dialog.close();
          this.fail("Could not sign out everywhere", error);
        }
      },
    }, icon("pi-power-off"), "Sign out everywhere");
    const dialog = this.openDialog({
      title: "Sign out everywhere?", opener, describedBy: textId, className: "cak-dialog-confirm",
      initialFocus: cancel,
      body: [
        h("p", { id: textId, text: "Every browser signed in to this server, with the admin password or with a key, "
          + "is signed out at once. API keys themselves keep working; to stop a key, disable or delete it." }),
        ownSession ? h("div", { class: "cak-check" }, keep,
          h("label", { for: keepId, text: "Keep this browser signed in" })) : null,
        h("div", { class: "cak-dialog-actions" }, cancel, confirm),
      ],
    });
  }

  openPasswordDialog(opener) {
    const first = this.textField("New admin password", { type: "password", autocomplete: "new-password" });
    const second = this.textField("Repeat the password", { type: "password", autocomplete: "new-password" });
    const error = h("p", { class: "cak-error-text", role: "alert" });
    const submit = h("button", { type: "submit", class: "cak-btn cak-btn-primary" }, "Save password");
    const dialog = this.openDialog({
      title: "Admin password", opener,
      onClose: () => { first.input.value = ""; second.input.value = ""; },
      body: h("form", {
        class: "cak-form",
        onsubmit: async (event) => {
          event.preventDefault();
          const password = first.input.value;
          const bytes = new TextEncoder().encode(password).length;
          error.textContent = password.length < 8 ? "Use at least 8 characters."
            : bytes > 72 ? "Use at most 72 bytes (bcrypt reads no more)."
              : password !== second.input.value ? "The two passwords differ." : "";
          if (error.textContent) return;
          submit.disabled = true;
          try {
            const result = await this.request("/auth/password", { method: "PUT", body: { password } });
            const ended = result.sessions_ended
              ? ` ${result.sessions_ended === 1 ? "1 browser" : `${result.sessions_ended} browsers`} signed in with the old password ${result.sessions_ended === 1 ? "was" : "were"} signed out.`
              : "";
            this.toast("success", "Admin password saved", `Sign in with it from any browser to manage keys.${ended}`);
            dialog.close();
            await this.refresh();
          } catch (err) {
            this.fail("Could not set the password", err);
          } finally {
            submit.disabled = false;
          }
        },
      },
      h("p", { class: "cak-muted", text: "Anyone with this password is admin: they can create and revoke keys." }),
      first.wrap, second.wrap, error,
      h("div", { class: "cak-dialog-actions" },
        h("button", { type: "button", class: "cak-btn", onclick: () => dialog.close() }, "Cancel"), submit)),
      initialFocus: first.input,
    });
  }

  // ---- views for non-admins -------------------------------------------------------------

  becomeAdminHelp() {
    const status = this.status;
    const cli = (args) => h("code", { class: "cak-code", text: `python custom_nodes/${this.folder} ${args}` });
    const here = `${location.protocol}//127.0.0.1${location.port ? ":" + location.port : ""}/`;
    const items = [
      h("li", {},
        h("strong", { text: "Sign in with the admin password. " }),
        status.admin_password_set
          ? h("button", { type: "button", class: "cak-link", onclick: () => this.toggleSignIn("password") }, "Sign in now")
          : h("span", {}, "No admin password is set yet; on the server run ", cli("set-password"),
            " or start ComfyUI with ", h("code", { class: "cak-code", text: "COMFYUI_API_AUTH_ADMIN_PASSWORD" }), " set.")),
      h("li", {},
        h("strong", { text: "Use the machine ComfyUI runs on. " }),
        status.trust_localhost === "on"
          ? h("span", {}, "A browser on that machine (for example at ", h("code", { class: "cak-code", text: here }),
            ") is admin without signing in.")
          : status.trust_localhost === "bootstrap"
          ? h("span", {}, "While no admin exists, a browser on that machine may create non-admin keys; ",
            "the admin password comes from the setup code ComfyUI printed in its console (on the sign-in page) ",
            "or from the command line.")
          : h("span", {}, "This server does not treat local requests as admin (it listens beyond this machine, ",
            "or COMFYUI_API_AUTH_TRUST_LOCALHOST is off), so use a password or an admin key.")),
      h("li", {},
        h("strong", { text: "Create an admin key on the command line" }),
        h("span", {}, " of that machine, then sign in with it (“API key”): "),
        cli("create-key --name admin --admin")),
    ];
    return h("section", { class: "cak-card cak-help", "aria-labelledby": "cak-help-title", "data-testid": "become-admin" },
      h("h3", { id: "cak-help-title", text: "Managing keys needs an admin" }),
      h("p", { text: "Creating, editing and revoking API keys is for admins. To become admin:" }),
      h("ol", {}, items));
  }

  showBecomeAdmin() {
    this.keys = [];
    this.rows.clear();
    this.content.replaceChildren(this.becomeAdminHelp());
  }

  async showOwnUsage() {
    const slot = h("div", { class: "cak-usage-slot" }, h("p", { class: "cak-muted", text: "Loading your usage…" }));
    const card = h("section", { class: "cak-card cak-own", "aria-labelledby": "cak-own-title", "data-testid": "own-usage" },
      h("h3", { id: "cak-own-title", text: "Your API key" }), slot);
    this.keys = [];
    this.rows.clear();
    const parts = [card];
    if (this.status.mode !== "require" || !this.status.is_admin) {
      const help = this.becomeAdminHelp();
      help.classList.add("cak-help-compact");
      parts.push(help);
    }
    this.content.replaceChildren(...parts);
    try {
      const usage = await this.request(`/usage?days=${LIMITS.USAGE_DAYS}`);
      if (this.destroyed) return;
      slot.replaceChildren(
        h("dl", { class: "cak-facts" },
          h("dt", { text: "Name" }), h("dd", { class: "cak-name-text", text: usage.key_name }),
          h("dt", { text: "Key ID" }), h("dd", {}, h("code", { class: "cak-code", text: usage.key_id })),
          h("dt", { text: "This hour" }), h("dd", {}, this.hourMeter(usage.requests_this_hour, usage.rate_limit)),
          usage.job_limits ? [h("dt", { text: "Workflow limits" }), h("dd", { text: describeJobLimits(jobLimitsOf(usage)) })] : null),
        this.usageView(usage.usage_stats));
    } catch (error) {
      this.fail("Could not load your usage", error);
      slot.replaceChildren(h("p", { class: "cak-error-text", text: error.message }));
    }
  }

  // ---- the key manager (admins) ---------------------------------------------------------

  async showManager() {
    if (!this.manager) this.buildManager();
    if (this.manager.parentNode !== this.content) this.content.replaceChildren(this.manager, this.activityBox);
    this.activityBox.hidden = !this.status.is_admin;  // the audit trail is for admins, not the local bootstrap
    await this.loadKeys();
    if (this.activity.open) await this.loadActivity();
  }

  buildManager() {
    const filterId = uid("filter");
    const sortId = uid("sort");
    this.filterInput = h("input", {
      id: filterId, type: "search", class: "cak-input", placeholder: "Filter by name", autocomplete: "off",
      oninput: () => {
        clearTimeout(this.filterTimer);
        this.filterTimer = setTimeout(() => {
          this.filter = this.filterInput.value;
          this.limit = PAGE;
          this.renderList();
        }, 80);
      },
    });
    this.sortSelect = h("select", {
      id: sortId, class: "cak-input cak-select",
      onchange: () => {
        this.sort = { by: this.sortSelect.value, dir: SORTS[this.sortSelect.value].defaultDir };
        this.renderSortDir();
        this.renderList();
      },
    }, Object.entries(SORTS).map(([value, { label }]) => h("option", { value, text: label })));
    this.sortSelect.value = this.sort.by;
    this.sortDirButton = h("button", {
      type: "button", class: "cak-btn cak-btn-icon",
      onclick: () => {
        this.sort.dir = -this.sort.dir;
        this.renderSortDir();
        this.renderList();
      },
    });
    this.renderSortDir();
    this.countText = h("span", { class: "cak-count cak-muted", role: "status", "data-testid": "key-count" });
    this.list = h("ul", { class: "cak-list", "aria-label": "API keys", "data-testid": "key-list" });
    this.moreButton = h("button", {
      type: "button", class: "cak-btn cak-more", hidden: true,
      onclick: () => {
        this.limit += PAGE;
        this.renderList();
      },
    });
    this.emptyText = h("p", { class: "cak-empty cak-muted", hidden: true });
    this.manager = h("section", { class: "cak-manager", "aria-label": "Key manager" },
      h("div", { class: "cak-toolbar" },
        h("button", { type: "button", class: "cak-btn cak-btn-primary", onclick: (e) => this.openCreateDialog(e.currentTarget) },
          icon("pi-plus"), "New key"),
        h("div", { class: "cak-filter" }, h("label", { for: filterId, class: "cak-sr-only", text: "Filter keys by name" }), this.filterInput),
        h("div", { class: "cak-sort" },
          h("label", { for: sortId, text: "Sort" }), this.sortSelect, this.sortDirButton, this.countText)),
      this.list, this.moreButton, this.emptyText);
    this.activityBox = this.buildActivity();
  }

  renderSortDir() {
    const ascending = this.sort.dir === 1;
    this.sortDirButton.replaceChildren(glyph(ascending ? "\u2191" : "\u2193"),
      srOnly(ascending ? "Ascending (select for descending)" : "Descending (select for ascending)"));
    this.sortDirButton.title = ascending ? "Ascending" : "Descending";
  }

  async loadKeys() {
    if (!this.keys.length) {
      this.countText.textContent = "Loading keys…";
    }
    let data;
    try {
      data = await this.request("/keys");
    } catch (error) {
      if (error?.name === "AbortError" || this.destroyed) return;
      if ((error.status === 401 || error.status === 403) && !this.rechecking) {
        // Signed out or lost admin meanwhile: show the status, not an error.
        this.rechecking = true;
        try {
          await this.refresh();
        } finally {
          this.rechecking = false;
        }
        return;
      }
      this.fail("Could not load the API keys", error);
      this.countText.textContent = "Could not load the keys. Use Refresh to try again.";
      return;
    }
    if (this.destroyed) return;
    this.keys = Array.isArray(data.keys) ? data.keys : [];
    // Remembered for the activity, where keys deleted since still appear.
    for (const key of this.keys) this.activity.names.set(key.key_id, key.name);
    this.usage.clear();
    this.renderList();
  }

  compare() {
    const { by, dir } = this.sort;
    const collator = new Intl.Collator(undefined, { sensitivity: "base", numeric: true });
    if (by === "name") return (a, b) => dir * collator.compare(a.name, b.name) || b.created_at - a.created_at;
    if (by === "created") return (a, b) => dir * (a.created_at - b.created_at) || collator.compare(a.name, b.name);
    // last used: never-used keys always at the end
    return (a, b) => {
      if (!a.last_used !== !b.last_used) return a.last_used ? -1 : 1;
      return dir * ((a.last_used || 0) - (b.last_used || 0)) || collator.compare(a.name, b.name);
    };
  }

  renderList() {
    if (!this.list) return;
    const query = this.filter.trim().toLocaleLowerCase();
    const matches = query
      ? this.keys.filter((k) => k.name.toLocaleLowerCase().includes(query) || (k.prefix || "").toLowerCase().includes(query))
      : this.keys.slice();
    matches.sort(this.compare());
    const shown = matches.slice(0, this.limit);
    const now = Date.now();
    this.list.replaceChildren(...shown.map((key) => this.rowFor(key, now).li));
    // forget rows of deleted keys
    if (this.rows.size > this.keys.length) {
      const ids = new Set(this.keys.map((k) => k.key_id));
      for (const id of this.rows.keys()) if (!ids.has(id)) this.rows.delete(id);
    }
    const total = this.keys.length;
    this.countText.textContent = query
      ? `${matches.length} of ${total} ${total === 1 ? "key" : "keys"} match`
      : `${total} ${total === 1 ? "key" : "keys"}`;
    const remaining = matches.length - shown.length;
    this.moreButton.hidden = remaining <= 0;
    this.moreButton.textContent = `Show ${Math.min(PAGE, remaining)} more (${remaining} not shown)`;
    this.emptyText.hidden = matches.length > 0;
    this.emptyText.textContent = total === 0
      ? "No API keys yet. Create one with “New key”; scripts then send it as “Authorization: Bearer …”."
      : "No key matches this filter.";
  }

  signature(key) {
    return [key.name, key.prefix, key.created_at, key.last_used, key.rate_limit, key.is_active,
      key.requests_this_hour, (key.scopes || []).join(","), JSON.stringify(key.metadata ?? {}),
      JSON.stringify(jobLimitsOf(key))].join("\u0001");
  }

  /** The row of a key, built once and reused while the key is unchanged. */
  rowFor(key, now) {
    const sig = this.signature(key);
    const cached = this.rows.get(key.key_id);
    if (cached && cached.sig === sig) return cached;
    const detailId = `cak-detail-${key.key_id}`;
    const isAdmin = (key.scopes || []).includes("admin");
    const isMe = this.status?.principal?.key_id === key.key_id;
    const button = h("button", {
      type: "button", class: "cak-row-main", "aria-expanded": "false", "aria-controls": detailId,
      onclick: () => this.toggleRow(key.key_id),
    },
    h("span", { class: "cak-row-title" },
      h("span", { class: "cak-name-text", text: key.name }),
      key.is_active ? null : h("span", { class: "cak-chip cak-chip-off", text: "Disabled" }),
      isAdmin ? h("span", { class: "cak-chip cak-chip-admin", text: "Admin" }) : null,
      isMe ? h("span", { class: "cak-chip", text: "You" }) : null,
      h("span", { class: "cak-chevron", "aria-hidden": "true", text: "\u203a" })),
    h("span", { class: "cak-row-meta" },
      h("code", { class: "cak-code", text: `${key.prefix || "comfy_"}…` }),
      h("span", { title: formatDateTime(key.created_at), text: `Created ${formatDate(key.created_at)}` })),
    h("span", { class: "cak-row-meta" },
      h("span", { title: formatDateTime(key.last_used), text: `Last used ${formatRelative(key.last_used, now)}` }),
      this.hourMeter(key.requests_this_hour, key.rate_limit)));
    const detail = h("div", { id: detailId, class: "cak-detail", hidden: true });
    const li = h("li", { class: `cak-row${key.is_active ? "" : " cak-row-off"}`, "data-key-id": key.key_id }, button, detail);
    const row = { sig, li, button, detail, key };
    this.rows.set(key.key_id, row);
    if (this.expanded === key.key_id) this.expandRow(row);
    return row;
  }

  hourMeter(used, limit) {
    used = used || 0;
    const ratio = limit > 0 ? Math.min(1, used / limit) : 1;
    const level = limit === 0 || used >= limit ? "full" : ratio >= 0.8 ? "high" : "ok";
    return h("span", { class: `cak-meter cak-meter-${level}` },
      h("span", { class: "cak-meter-text", text: limit === 0 ? `${formatNumber(used)} / 0 this hour (blocked)` : `${formatNumber(used)} / ${formatNumber(limit)} this hour` }),
      h("span", { class: "cak-meter-bar", "aria-hidden": "true" },
        h("span", { class: "cak-meter-fill", style: `width:${(ratio * 100).toFixed(1)}%` })));
  }

  toggleRow(keyId) {
    const previous = this.expanded && this.rows.get(this.expanded);
    if (previous) {
      previous.button.setAttribute("aria-expanded", "false");
      previous.detail.hidden = true;
      previous.detail.replaceChildren();
    }
    if (this.expanded === keyId) {
      this.expanded = null;
      return;
    }
    this.expanded = keyId;
    const row = this.rows.get(keyId);
    if (row) this.expandRow(row);
  }

  expandRow(row) {
    const { key, detail, button } = row;
    button.setAttribute("aria-expanded", "true");
    detail.hidden = false;
    const isAdmin = (key.scopes || []).includes("admin");
    const metadata = key.metadata || {};
    const entries = Object.entries(metadata);
    const flat = entries.every(([, v]) => typeof v === "string" || typeof v === "number" || typeof v === "boolean");
    const metaView = entries.length === 0
      ? h("p", { class: "cak-muted", text: "No metadata." })
      : flat
        ? h("dl", { class: "cak-facts cak-meta-view" }, entries.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: String(v) })]))
        : h("pre", { class: "cak-pre", text: JSON.stringify(metadata, null, 2) });
    const usageSlot = h("div", { class: "cak-usage-slot" });
    detail.replaceChildren(
      h("div", { class: "cak-actions" },
        h("button", { type: "button", class: "cak-btn", "data-action": "edit", onclick: (e) => this.openEditDialog(key.key_id, e.currentTarget) },
          icon("pi-pencil"), "Edit"),
        h("button", {
          type: "button", class: "cak-btn", "data-action": "toggle",
          onclick: (e) => this.setActive(key.key_id, !key.is_active, e.currentTarget),
        }, icon(key.is_active ? "pi-ban" : "pi-check-circle"), key.is_active ? "Disable" : "Enable"),
        h("button", { type: "button", class: "cak-btn cak-btn-danger", "data-action": "delete", onclick: (e) => this.openDeleteDialog(key.key_id, e.currentTarget) },
          icon("pi-trash"), "Delete")),
      usageSlot,
      h("h4", { class: "cak-subtitle", text: "Metadata" }), metaView,
      h("h4", { class: "cak-subtitle", text: "Details" }),
      h("dl", { class: "cak-facts" },
        h("dt", { text: "Key ID" }), h("dd", {}, h("code", { class: "cak-code", text: key.key_id })),
        h("dt", { text: "Status" }), h("dd", { text: key.is_active ? "Active" : "Disabled: requests with it get 401" }),
        h("dt", { text: "Rate limit" }), h("dd", { text: `${formatNumber(key.rate_limit)} requests per hour` }),
        h("dt", { text: "Workflow limits" }), h("dd", { "data-testid": "job-limits", text: describeJobLimits(jobLimitsOf(key)) }),
        h("dt", { text: "Scope" }), h("dd", { text: isAdmin ? "Admin (can manage keys)" : "Regular" }),
        h("dt", { text: "Created" }), h("dd", { text: formatDateTime(key.created_at) }),
        h("dt", { text: "Last used" }), h("dd", { text: key.last_used ? formatDateTime(key.last_used) : "Never" })));
    this.loadKeyUsage(key.key_id, usageSlot);
  }

  async loadKeyUsage(keyId, slot, force = false) {
    const cached = !force && this.usage.get(keyId);
    if (cached) {
      slot.replaceChildren(this.usageView(cached, () => this.loadKeyUsage(keyId, slot, true)));
      return;
    }
    slot.replaceChildren(h("p", { class: "cak-muted", text: "Loading usage…" }));
    try {
      const data = await this.request(`/keys/${encodeURIComponent(keyId)}?days=${LIMITS.USAGE_DAYS}`);
      if (this.destroyed || !slot.isConnected) return;
      this.usage.set(keyId, data.usage_stats);
      slot.replaceChildren(this.usageView(data.usage_stats, () => this.loadKeyUsage(keyId, slot, true)));
    } catch (error) {
      if (!slot.isConnected) return;
      this.fail("Could not load the key's usage", error);
      slot.replaceChildren(h("p", { class: "cak-error-text", text: error.message || String(error) }));
    }
  }

  // ---- activity (audit trail, admins) -----------------------------------------------------

  /** The collapsible "Activity" section; it loads when opened. */
  buildActivity() {
    const bodyId = uid("activity");
    const titleId = uid("activity-title");
    const a = this.activity;
    a.toggle = h("button", {
      type: "button", id: titleId, class: "cak-disclosure", "aria-expanded": "false", "aria-controls": bodyId,
      onclick: () => this.toggleActivity(),
    }, h("span", { class: "cak-chevron", "aria-hidden": "true", text: "\u203a" }), "Activity");
    a.status = h("p", { class: "cak-count cak-muted", role: "status", "data-testid": "activity-status" });
    a.list = h("ol", { class: "cak-events", "aria-labelledby": titleId, "data-testid": "activity-list" });
    // Busy buttons are aria-disabled, not disabled: a disabled button would drop the keyboard focus.
    const unlessBusy = (fn) => (event) => {
      if (event.currentTarget.getAttribute("aria-disabled") !== "true") fn();
    };
    a.more = h("button", {
      type: "button", class: "cak-btn cak-more", hidden: true, onclick: unlessBusy(() => this.loadActivity({ more: true })),
    }, "Load more");
    a.reload = h("button", {
      type: "button", class: "cak-btn cak-btn-icon cak-btn-small", title: "Reload activity",
      onclick: unlessBusy(() => this.loadActivity()),
    }, glyph("\u21bb"), srOnly("Reload activity"));
    a.body = h("div", { id: bodyId, class: "cak-activity-body", hidden: true },
      h("div", { class: "cak-activity-bar" },
        h("p", { class: "cak-hint", text: "Key changes, sign-ins and settings, newest first." }), a.reload),
      a.list, a.status, a.more);
    return h("section", { class: "cak-card cak-activity", "aria-labelledby": titleId, "data-testid": "activity" },
      h("h3", { class: "cak-activity-head" }, a.toggle), a.body);
  }

  toggleActivity() {
    const a = this.activity;
    a.open = !a.open;
    a.toggle.setAttribute("aria-expanded", String(a.open));
    a.body.hidden = !a.open;
    if (a.open) this.loadActivity();
    else {
      a.loading++; // answers still on their way are not wanted any more
      a.events = [];
      a.list.replaceChildren();
    }
  }

  /** The trail may have changed (this panel changed a key): reload it if it is open. */
  activityChanged() {
    if (this.activity.open) this.loadActivity();
  }

  /** Load the newest page, or with `more` the page before the oldest event shown. */
  async loadActivity({ more = false } = {}) {
    const a = this.activity;
    const ticket = ++a.loading;
    const oldest = a.events.length ? Math.min(...a.events.map((e) => e.id)) : null;
    const query = `limit=${LIMITS.AUDIT_PAGE}${more && oldest !== null ? `&before=${oldest}` : ""}`;
    const setBusy = (busy) => {
      for (const button of [a.more, a.reload]) button.setAttribute("aria-disabled", String(busy));
      a.list.setAttribute("aria-busy", String(busy));
    };
    setBusy(true);
    a.status.textContent = more ? "Loading older events…" : "Loading activity…";
    let data;
    try {
      data = await this.request(`/audit?${query}`);
    } catch (error) {
      if (ticket !== a.loading || this.destroyed) return;
      this.fail("Could not load the activity", error);
      a.status.textContent = `Could not load the activity: ${error?.message || error}`;
      return;
    } finally {
      if (ticket === a.loading && !this.destroyed) setBusy(false);
    }
    if (ticket !== a.loading || this.destroyed) return;
    const events = (Array.isArray(data.events) ? data.events : []).filter((e) => e && Number.isFinite(e.id));
    const moreHadFocus = more && document.activeElement === a.more;
    if (!more) {
      a.events = [];
      a.list.replaceChildren();
    }
    const known = new Set(a.events.map((e) => e.id));
    const fresh = events.filter((e) => !known.has(e.id));
    a.events.push(...fresh);
    // Names of keys that are gone now, as the trail recorded them.
    for (const event of fresh) {
      if (targetsKey(event) && typeof event.detail?.name === "string" && !a.names.has(event.target)) {
        // events come newest first, so the first name seen is the latest one
        a.names.set(event.target, event.detail.name);
      }
    }
    const items = fresh.map((event) => this.eventItem(event));
    a.list.append(...items);
    a.done = events.length < LIMITS.AUDIT_PAGE;
    a.more.hidden = a.done || !a.events.length;
    const shown = a.events.length;
    a.status.textContent = shown === 0
      ? "No activity recorded yet."
      : `${formatNumber(shown)} ${shown === 1 ? "event" : "events"} shown${a.done ? "; that is all." : "."}`;
    // "Load more" by keyboard: go on reading at the first older event.
    if (more && moreHadFocus && items.length) items[0].focus();
    else if (more && moreHadFocus) a.toggle.focus();
  }

  /** Name of a key by key_id: the loaded key list first, then names the trail recorded. */
  keyName(keyId) {
    return this.findKey(keyId)?.name ?? this.activity.names.get(keyId);
  }

  eventItem(event) {
    const nameOf = (keyId) => this.keyName(keyId);
    const failed = event.action === "sign_in_failed";
    let target = null;
    if (targetsKey(event)) {
      const name = nameOf(event.target);
      target = name !== undefined
        ? h("span", { class: "cak-name-text", title: `Key ID ${event.target}`, text: `“${name}”` })
        : h("code", { class: "cak-code", text: event.target });
    }
    const detail = describeDetail(event);
    const when = Number(event.at) || 0;
    return h("li", { class: `cak-event${failed ? " cak-event-bad" : ""}`, tabindex: "-1", "data-event-id": String(event.id), "data-action": event.action },
      h("p", { class: "cak-event-title" },
        h("strong", { text: actionLabel(event.action) }), target ? [" ", target] : null),
      detail ? h("p", { class: "cak-event-detail", text: detail }) : null,
      h("p", { class: "cak-event-meta" }, [
        when ? h("time", { datetime: new Date(when * 1000).toISOString(), title: formatRelative(when), text: formatEventTime(when) }) : null,
        h("span", { class: "cak-event-actor", text: describeActor(event.actor, nameOf) }),
        event.client ? h("span", { class: "cak-event-client", title: "Client address", text: event.client }) : null,
      ].filter(Boolean).flatMap((part, i) => (i ? [" · ", part] : [part]))));
  }

  // ---- usage ----------------------------------------------------------------------------

  usageView(stats, reload) {
    stats = stats || {};
    const total = stats.total_requests || 0;
    const ok = stats.successful_requests || 0;
    const failed = stats.failed_requests || 0;
    const days = stats.days || LIMITS.USAGE_DAYS;
    const series = dailySeries(stats.requests_per_day, days);
    const failedShare = failed ? ` (${((failed / total) * 100).toFixed(failed / total < 0.1 ? 1 : 0)}%)` : "";
    const titleId = uid("usage");
    const endpoints = (stats.endpoints || []).slice(0, TOP_ENDPOINTS);
    return h("section", { class: "cak-usage", "aria-labelledby": titleId, "data-testid": "usage" },
      h("div", { class: "cak-usage-head" },
        h("h4", { id: titleId, class: "cak-subtitle", text: `Usage, last ${days} days` }),
        reload ? h("button", { type: "button", class: "cak-btn cak-btn-icon cak-btn-small", title: "Reload usage", onclick: reload },
          glyph("\u21bb"), srOnly("Reload usage")) : null),
      h("p", { class: "cak-totals" },
        h("span", {}, h("strong", { text: formatNumber(total) }), " requests"), " · ",
        h("span", { class: "cak-ok-text" }, h("strong", { text: formatNumber(ok) }), " succeeded"), " · ",
        h("span", { class: failed ? "cak-fail-text" : "" }, h("strong", { text: formatNumber(failed) }), ` failed${failedShare}`)),
      h("div", { class: "cak-okbar", "aria-hidden": "true" },
        h("span", { class: "cak-okbar-ok", style: `flex-grow:${ok}` }),
        h("span", { class: "cak-okbar-fail", style: `flex-grow:${failed}` })),
      this.pageLoadsView(stats),
      this.dailyChart(series),
      this.workflowsView(stats.jobs, days),
      h("h4", { class: "cak-subtitle", text: "Top endpoints" }),
      endpoints.length
        ? h("ol", { class: "cak-endpoints" }, endpoints.map((e) => h("li", {},
          h("code", { class: "cak-code cak-endpoint", text: `${e.method} ${e.route}` }),
          h("span", { class: "cak-endpoint-count" },
            h("strong", { text: formatNumber(e.requests) }),
            e.failed ? h("span", { class: "cak-fail-text", text: ` · ${formatNumber(e.failed)} failed` }) : null))))
        : h("p", { class: "cak-muted", text: "No requests yet." }));
  }

  /** The ComfyUI page opened with the key: shown apart, as it is neither charged nor counted as requests. */
  pageLoadsView(stats) {
    const loads = Math.max(0, Number(stats.page_loads) || 0);
    const files = Math.max(0, Number(stats.page_files) || 0);
    if (!loads && !files) return null;
    return h("p", {
      class: "cak-muted cak-page-loads", "data-testid": "page-loads",
      title: "Loading the ComfyUI page and its files (scripts, styles, images) is not charged to the key's hourly limit.",
    },
    h("strong", { text: formatNumber(loads) }), loads === 1 ? " page load" : " page loads", " · ",
    h("strong", { text: formatNumber(files) }), files === 1 ? " page file" : " page files",
    " (not counted as requests)");
  }

  /** Workflows queued through /prompt with the key: counts by outcome and execution time. */
  workflowsView(jobs, days) {
    if (!jobs || typeof jobs !== "object") return null; // a server without job tracking
    const count = (value) => Number(value) || 0;
    const queued = count(jobs.prompts_queued);
    const waiting = count(jobs.prompts_waiting);
    const completed = count(jobs.prompts_completed);
    const failed = count(jobs.prompts_failed);
    const interrupted = count(jobs.prompts_interrupted);
    const seconds = Math.max(0, Number(jobs.execution_seconds) || 0);
    const titleId = uid("jobs");
    const stat = (kind, label, value, { bad = false, title } = {}) => h("div", {
      class: `cak-stat${bad ? " cak-stat-bad" : ""}`, "data-stat": kind, title,
    }, h("dt", { text: label }), h("dd", { text: value }));
    const body = queued === 0
      ? h("p", { class: "cak-muted", text: `No workflows queued with this key in the last ${days} days.` })
      : [
        h("dl", { class: "cak-stats" },
          stat("queued", "Queued", formatNumber(queued)),
          stat("waiting", "Waiting now", formatNumber(waiting)),
          stat("completed", "Completed", formatNumber(completed)),
          stat("failed", "Failed", formatNumber(failed), { bad: failed > 0 }),
          stat("interrupted", "Interrupted", formatNumber(interrupted), { bad: interrupted > 0 }),
          stat("time", "Run time", formatDuration(seconds), { title: `${formatNumber(seconds)} seconds of execution in total` })),
        h("div", { class: "cak-okbar cak-jobbar", "aria-hidden": "true" },
          h("span", { class: "cak-okbar-ok", style: `flex-grow:${completed}` }),
          h("span", { class: "cak-okbar-fail", style: `flex-grow:${failed}` }),
          h("span", { class: "cak-jobbar-interrupted", style: `flex-grow:${interrupted}` }),
          h("span", { class: "cak-jobbar-waiting", style: `flex-grow:${waiting}` })),
      ];
    return h("section", { class: "cak-jobs", "aria-labelledby": titleId, "data-testid": "workflows" },
      h("h4", { id: titleId, class: "cak-subtitle", text: "Workflows" }), body);
  }

  dailyChart(series) {
    const max = Math.max(0, ...series.map((d) => d.count));
    const total = series.reduce((sum, d) => sum + d.count, 0);
    const peak = series.reduce((best, d) => (d.count > best.count ? d : best), series[0] || { count: 0 });
    const W = 10;
    const H = 60;
    const summary = total
      ? `Requests per day over the last ${series.length} days: ${formatNumber(total)} in total; busiest day ${formatDay(peak.day)} with ${formatNumber(peak.count)}.`
      : `No requests in the last ${series.length} days.`;
    const svg = s("svg", {
      class: "cak-chart", viewBox: `0 0 ${series.length * W} ${H}`, preserveAspectRatio: "none",
      role: "img", "aria-label": summary, focusable: "false",
    });
    series.forEach((d, i) => {
      const height = d.count ? Math.max(2, (d.count / max) * (H - 2)) : 1;
      svg.append(s("rect", {
        x: i * W + 1, y: H - height, width: W - 2, height, rx: 1,
        class: d.count ? "cak-bar" : "cak-bar cak-bar-zero",
      }, s("title", {}, document.createTextNode(`${formatDay(d.day)}: ${formatNumber(d.count)} requests`))));
    });
    const nonZero = series.filter((d) => d.count);
    return h("figure", { class: "cak-figure" },
      h("div", { class: "cak-chart-wrap" },
        svg,
        h("span", { class: "cak-chart-max", "aria-hidden": "true", text: max ? `max ${formatNumber(max)}` : "" })),
      h("div", { class: "cak-chart-axis", "aria-hidden": "true" },
        h("span", { text: series.length ? formatDay(series[0].day) : "" }),
        h("span", { text: "today (UTC)" })),
      h("figcaption", { class: "cak-muted" }, summary),
      nonZero.length
        ? h("details", { class: "cak-chart-table" },
          h("summary", { text: "Requests by day" }),
          h("table", {},
            h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Day (UTC)" }), h("th", { scope: "col", text: "Requests" }))),
            h("tbody", {}, nonZero.map((d) => h("tr", {}, h("td", { text: d.day }), h("td", { text: formatNumber(d.count) }))))))
        : null);
  }

  // ---- dialogs ----------------------------------------------------------------------------

  /**
   * A modal <dialog>: focus moves in, Tab stays in, Escape closes, focus goes
   * back to the opener (or to `fallbackFocus()` when the opener was re-rendered).
   */
  openDialog({ title, body, opener, onClose, initialFocus, className = "", fallbackFocus, describedBy }) {
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
      this.dialogs.delete(handle);
      try {
        onClose?.();
      } finally {
        dialog.remove();
        // Give focus back unless another dialog of ours took over.
        if (!this.destroyed && this.dialogs.size === 0) {
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
    this.dialogs.add(handle);
    document.body.append(dialog);
    dialog.showModal();
    (initialFocus || dialog.querySelector("input, textarea, select, button"))?.focus();
    return handle;
  }

  textField(labelText, props = {}, hint) {
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

  metadataEditor(metadata) {
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
  jobLimitsEditor(limits) {
    const hintId = uid("job-hint");
    const perHour = this.textField("Prompts per hour", { inputmode: "numeric" });
    const waiting = this.textField("Prompts waiting at once", { inputmode: "numeric" });
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

  /** The create/edit form; `read()` returns validated fields or throws InputError. */
  keyForm(key) {
    const name = this.textField("Name", {}, `1 to ${LIMITS.NAME_MAX} characters, such as the script or person using it.`);
    const rate = this.textField("Rate limit (requests per hour)", { inputmode: "numeric" },
      `0 to ${formatNumber(LIMITS.RATE_LIMIT_MAX)}; 0 blocks every request.`);
    name.input.value = key ? key.name : "";
    rate.input.value = String(key ? key.rate_limit : LIMITS.DEFAULT_RATE_LIMIT);
    const meta = this.metadataEditor(key ? key.metadata : {});
    const jobs = this.jobLimitsEditor(jobLimitsOf(key));
    const adminId = uid("admin");
    const bootstrap = !!this.status?.local_bootstrap;  // may not make admin keys
    const admin = h("input", { id: adminId, type: "checkbox", checked: !!key && (key.scopes || []).includes("admin"), disabled: bootstrap });
    const scope = h("div", { class: "cak-check" }, admin,
      h("label", { for: adminId }, h("strong", { text: "Admin key" }),
        h("span", { class: "cak-hint", text: bootstrap
          ? " Only an admin can make admin keys (sign in as admin first)."
          : " Can create, change and revoke keys. Give it only to people you trust with the whole server." })));
    const fields = {
      name, rate_limit: rate, metadata: meta,
      prompts_per_hour: jobs.perHour, max_waiting: jobs.waiting, job_limits: jobs,
    };
    const focusField = (field, message) => {
      if (field === meta) meta.focus();
      else if (field === jobs) jobs.focusFor(message);
      else field.input.focus();
    };
    // Outside a modal dialog everything is inert, toasts included: say it here too.
    const formError = h("p", { class: "cak-error-text cak-form-error", role: "alert", hidden: true });
    return {
      nodes: [name.wrap, rate.wrap, jobs.wrap, meta.wrap, scope, formError],
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
        result.scopes = admin.checked ? ["admin"] : [];
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

  openCreateDialog(opener) {
    const form = this.keyForm(null);
    const submit = h("button", { type: "submit", class: "cak-btn cak-btn-primary" }, icon("pi-key"), "Create key");
    const dialog = this.openDialog({
      title: "New API key", opener, initialFocus: form.first,
      body: h("form", {
        class: "cak-form", novalidate: true,
        onsubmit: async (event) => {
          event.preventDefault();
          const fields = form.read();
          if (!fields) return;
          // Unlimited is the server's default: leave the field out unless a limit is set.
          if (fields.job_limits.prompts_per_hour === null && fields.job_limits.max_waiting === null) delete fields.job_limits;
          submit.disabled = true;
          try {
            const created = await this.request("/keys", { method: "POST", body: fields });
            let secret = created.api_key;
            delete created.api_key;
            delete created.message;
            this.keys.push({ requests_this_hour: 0, last_used: null, is_active: true, ...created });
            this.renderList();
            dialog.close();
            this.toast("success", "API key created", `“${created.name}” is ready. Copy it now: it will not be shown again.`);
            this.activityChanged();
            this.showSecret(created, secret);
            secret = null;
          } catch (error) {
            this.fail("Could not create the key", error);
            form.showServerError(error);
          } finally {
            submit.disabled = false;
          }
        },
      }, form.nodes,
      h("div", { class: "cak-dialog-actions" },
        h("button", { type: "button", class: "cak-btn", onclick: () => dialog.close() }, "Cancel"), submit)),
    });
  }

  /** Show a new key once. Closing the dialog drops every reference to it. */
  showSecret(created, secretValue) {
    const state = { secret: secretValue };
    const warnId = uid("secret-warning");
    const input = h("input", {
      type: "text", class: "cak-input cak-secret", readOnly: true, autocomplete: "off", spellcheck: "false",
      "aria-label": "Your new API key", "aria-describedby": warnId, "data-testid": "new-key",
    });
    input.value = state.secret; // a property, never an attribute: it stays out of the HTML
    const copyLabel = h("span", { text: "Copy" });
    const copy = h("button", {
      type: "button", class: "cak-btn cak-btn-primary", "data-testid": "copy-key",
      onclick: async () => {
        if (!state.secret) return;
        const ok = await copyText(state.secret, input);
        if (ok) {
          copyLabel.textContent = "Copied";
          this.toast("success", "Copied", "The key is on the clipboard.", 2500);
        } else {
          this.toast("warn", "Copy it by hand", "The browser refused the clipboard: select the key and press Ctrl+C.");
          input.focus();
          input.select();
        }
      },
    }, icon("pi-copy"), copyLabel);
    const done = h("button", { type: "button", class: "cak-btn", onclick: () => dialog.close() }, "Done");
    const dialog = this.openDialog({
      title: `Key created: ${created.name}`, className: "cak-dialog-secret", describedBy: warnId,
      initialFocus: copy,
      fallbackFocus: () => this.manager?.querySelector(".cak-toolbar .cak-btn-primary"),
      onClose: () => {
        input.value = "";
        state.secret = null;
      },
      body: [
        h("p", { id: warnId, class: "cak-warning", role: "note" }, icon("pi-exclamation-triangle"),
          h("span", {}, h("strong", { text: "Copy this key now: it will not be shown again." }),
            " Only a hash is stored; if you lose it, create a new key.")),
        h("div", { class: "cak-secret-row" }, input, copy),
        h("p", { class: "cak-hint" }, "Scripts send it as ", h("code", { class: "cak-code", text: "Authorization: Bearer <key>" }),
          " or ", h("code", { class: "cak-code", text: "X-API-Key: <key>" }), "."),
        h("div", { class: "cak-dialog-actions" }, done),
      ],
    });
    input.addEventListener("focus", () => input.select());
  }

  findKey(keyId) {
    return this.keys.find((k) => k.key_id === keyId);
  }

  /** Put the server's answer for a key into the list (PATCH returns the whole key). */
  replaceKey(updated) {
    delete updated.message;
    const index = this.keys.findIndex((k) => k.key_id === updated.key_id);
    if (index >= 0) this.keys[index] = { ...this.keys[index], ...updated };
    this.renderList();
  }

  /** Focus a button of the (possibly re-rendered) row of a key. */
  rowButton(keyId, action) {
    const row = this.rows.get(keyId);
    if (!row || !row.li.isConnected) return this.filterInput;
    return (action && row.detail.querySelector(`[data-action="${action}"]`)) || row.button;
  }

  async handleMissing(error) {
    if (error?.status === 404) await this.loadKeys();
  }

  openEditDialog(keyId, opener) {
    const key = this.findKey(keyId);
    if (!key) return;
    const form = this.keyForm(key);
    const submit = h("button", { type: "submit", class: "cak-btn cak-btn-primary" }, "Save");
    const dialog = this.openDialog({
      title: `Edit “${key.name}”`, opener, initialFocus: form.first,
      fallbackFocus: () => this.rowButton(keyId, "edit"),
      body: h("form", {
        class: "cak-form", novalidate: true,
        onsubmit: async (event) => {
          event.preventDefault();
          const fields = form.read();
          if (!fields) return;
          const changes = {};
          if (fields.name !== key.name) changes.name = fields.name;
          if (fields.rate_limit !== key.rate_limit) changes.rate_limit = fields.rate_limit;
          if (JSON.stringify(fields.metadata) !== JSON.stringify(key.metadata ?? {})) changes.metadata = fields.metadata;
          if (fields.scopes.join() !== [...(key.scopes || [])].sort().join()) changes.scopes = fields.scopes;
          // PATCH replaces both workflow limits: always send the pair.
          const limits = jobLimitsOf(key);
          if (fields.job_limits.prompts_per_hour !== limits.prompts_per_hour
            || fields.job_limits.max_waiting !== limits.max_waiting) changes.job_limits = fields.job_limits;
          if (!Object.keys(changes).length) {
            dialog.close();
            this.toast("info", "Nothing changed", `“${key.name}” is as it was.`);
            return;
          }
          submit.disabled = true;
          try {
            const updated = await this.request(`/keys/${encodeURIComponent(keyId)}`, { method: "PATCH", body: changes });
            this.replaceKey(updated);
            dialog.close(); // after the row is re-rendered, so focus lands on its Edit button
            this.toast("success", "API key updated", `“${updated.name}” saved.`);
            this.activityChanged();
          } catch (error) {
            this.fail("Could not save the key", error);
            form.showServerError(error);
            if (error?.status === 404) {
              dialog.close();
              await this.handleMissing(error);
            }
          } finally {
            submit.disabled = false;
          }
        },
      }, form.nodes,
      h("div", { class: "cak-dialog-actions" },
        h("button", { type: "button", class: "cak-btn", onclick: () => dialog.close() }, "Cancel"), submit)),
    });
  }

  async setActive(keyId, active, button) {
    const key = this.findKey(keyId);
    if (!key) return;
    button.disabled = true;
    try {
      const updated = await this.request(`/keys/${encodeURIComponent(keyId)}`, { method: "PATCH", body: { is_active: active } });
      this.replaceKey(updated);
      this.toast("success", active ? "API key enabled" : "API key disabled",
        active ? `“${updated.name}” works again.` : `“${updated.name}” is refused (401) until you enable it again.`);
      this.rowButton(keyId, "toggle")?.focus();
      this.activityChanged();
    } catch (error) {
      this.fail(active ? "Could not enable the key" : "Could not disable the key", error);
      if (button.isConnected) button.disabled = false;
      await this.handleMissing(error);
    }
  }

  openDeleteDialog(keyId, opener) {
    const key = this.findKey(keyId);
    if (!key) return;
    const textId = uid("delete-text");
    const cancel = h("button", { type: "button", class: "cak-btn", onclick: () => dialog.close() }, "Cancel");
    const confirm = h("button", {
      type: "button", class: "cak-btn cak-btn-danger",
      onclick: async () => {
        confirm.disabled = cancel.disabled = true;
        try {
          await this.request(`/keys/${encodeURIComponent(keyId)}`, { method: "DELETE" });
          this.activity.names.set(keyId, key.name);
          this.keys = this.keys.filter((k) => k.key_id !== keyId);
          this.rows.delete(keyId);
          this.usage.delete(keyId);
          if (this.expanded === keyId) this.expanded = null;
          this.renderList();
          dialog.close();
          this.toast("success", "API key deleted", `“${key.name}” no longer works.`);
          this.activityChanged();
        } catch (error) {
          dialog.close();
          this.fail("Could not delete the key", error);
          await this.handleMissing(error);
        }
      },
    }, icon("pi-trash"), "Delete key");
    const dialog = this.openDialog({
      title: "Delete this API key?", opener, describedBy: textId, className: "cak-dialog-confirm",
      initialFocus: cancel,
      fallbackFocus: () => this.filterInput,
      body: [
        h("p", { id: textId }, "“", h("strong", { class: "cak-name-text", text: key.name }), "” (",
          h("code", { class: "cak-code", text: `${key.prefix}…` }),
          ") stops working at once: scripts using it get 401. This cannot be undone."),
        h("div", { class: "cak-dialog-actions" }, cancel, confirm),
      ],
    });
  }
}
