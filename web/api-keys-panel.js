// The API keys sidebar panel: status and sign-in, the key list, create/edit/
// disable/delete, per-key usage and workflows, and the admin activity (audit
// trail). Plain DOM, no framework, no innerHTML
// (names and metadata are user data).
// This module holds the panel's state, lifecycle, requests and messages, and
// decides what to show; the parts are mixins, one module each, that share this
// state: api-keys-account.js (status, sign-in/out, password), api-keys-non-admin.js
// (how to become admin, the own-usage card), api-keys-key-list.js,
// api-keys-key-actions.js (create/edit/disable/delete), api-keys-activity.js and
// api-keys-access.js (scopes, unclassified routes, node rules).
// Views and forms are functions: api-keys-usage.js, api-keys-forms.js (and
// dialogs), api-keys-dom.js; pure helpers: api-keys-lib.js, api-keys-audit.js,
// api-keys-scopes.js.
// This module only exports; the entry module (api-keys.js) registers it.

import { glyph, h, icon } from "./api-keys-dom.js";
import { withAccess } from "./api-keys-access.js";
import { withAccount } from "./api-keys-account.js";
import { withActivity } from "./api-keys-activity.js";
import { withKeyActions } from "./api-keys-key-actions.js";
import { PAGE, SORTS, withKeyList } from "./api-keys-key-list.js";
import { withNonAdminViews } from "./api-keys-non-admin.js";
import { explainScopeRequired, keyScope } from "./api-keys-scopes.js";

class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field; // the request field the server named, if any
  }
}

class PanelCore {
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
    this.access = null; // GET /auth/access (admins): scope texts, unclassified routes, node rules
    this.ownScope = null; // a key holder's scope, from GET /usage
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
      let message = (data && typeof data.error === "string" && data.error)
        || `${response.status} ${response.statusText || "error"}`;
      if (response.status === 403 && data?.error_code === "SCOPE_REQUIRED") {
        // The answer names the key's scopes as the server holds them now (they may
        // have changed since the panel loaded); else what the panel knew.
        const held = Array.isArray(data.scopes) && data.scopes.length ? keyScope(data.scopes)
          : this.ownScope || keyScope(this.status?.principal?.scopes);
        message = explainScopeRequired(typeof data.required_scope === "string" ? data.required_scope : null, held);
      }
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

  // ---- what to show ---------------------------------------------------------------------

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
}

const ApiKeysPanel = withKeyActions(withKeyList(withAccess(withActivity(withNonAdminViews(withAccount(PanelCore))))));

export function createPanel(options) {
  return new ApiKeysPanel(options);
}
