// The panel's key list (admins and the local bootstrap): the toolbar (new key,
// filter, sort), the rows, built once and reused while a key is unchanged, and
// a row's details with the key's usage.
// A mixin of the panel (see api-keys-panel.js): its methods share the panel's
// state. This module only exports; ComfyUI imports every .js under web/ as an
// extension, so it must have no side effects when imported.

import { glyph, h, icon, srOnly, uid } from "./api-keys-dom.js";
import { LIMITS, describeExpiry, formatDate, formatDateTime, formatNumber, formatRelative } from "./api-keys-lib.js";
import { describeScope, keyScope, scopeLabel } from "./api-keys-scopes.js";
import { describeJobLimits, hourMeter, jobLimitsOf, usageView } from "./api-keys-usage.js";

export const SORTS = {
  name: { label: "Name", defaultDir: 1 },
  created: { label: "Created", defaultDir: -1 },
  last_used: { label: "Last used", defaultDir: -1 },
};
export const PAGE = 200; // rows rendered at once; "Show more" adds another page

/** "Expired" / "Expires in 3 days" beside a key's name; nothing for a key that never expires. */
export function expiryChip(key, now) {
  if (key.expires_at === null || key.expires_at === undefined) return null;
  const expired = key.expires_at * 1000 <= now;
  return h("span", {
    class: `cak-chip${expired ? " cak-chip-off" : ""}`, "data-testid": "expiry",
    title: formatDateTime(key.expires_at), text: describeExpiry(key.expires_at, now),
  });
}

/** Expiry, allowed addresses and a rotation's grace period, as <dt>/<dd> pairs (admins and the key's holder). */
export function lifecycleFacts(key, now) {
  const allowed = key.allowed_ips || [];
  return [
    h("dt", { text: "Expires" }),
    h("dd", { "data-testid": "expires", title: key.expires_at ? formatDateTime(key.expires_at) : "",
      text: key.expires_at ? `${describeExpiry(key.expires_at, now)} (${formatDateTime(key.expires_at)})` : "Never" }),
    h("dt", { text: "Allowed from" }),
    h("dd", { "data-testid": "allowed-ips", text: allowed.length ? allowed.join(", ") : "Anywhere" }),
    key.previous_key_valid_until
      ? [h("dt", { text: "Old secret" }), h("dd", { text: `Works until ${formatDateTime(key.previous_key_valid_until)}` })]
      : null,
  ];
}

export const withKeyList = (Base) => class KeyList extends Base {
  async showManager() {
    if (!this.manager) this.buildManager();
    if (this.manager.parentNode !== this.content) this.content.replaceChildren(this.manager, this.accessBox, this.activityBox);
    this.activityBox.hidden = !this.status.is_admin;  // the audit trail is for admins, not the local bootstrap
    this.accessBox.hidden = !this.status.is_admin;  // so is the access view
    await Promise.all([this.loadKeys(), this.status.is_admin ? this.loadAccess() : null]);
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
    this.accessBox = this.buildAccess();
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
      JSON.stringify(jobLimitsOf(key)), key.expires_at, (key.allowed_ips || []).join(","),
      key.previous_key_valid_until].join("\u0001");
  }

  /** The row of a key, built once and reused while the key is unchanged. */
  rowFor(key, now) {
    const sig = this.signature(key);
    const cached = this.rows.get(key.key_id);
    if (cached && cached.sig === sig) return cached;
    const detailId = `cak-detail-${key.key_id}`;
    const scope = keyScope(key.scopes);
    const isMe = this.status?.principal?.key_id === key.key_id;
    const button = h("button", {
      type: "button", class: "cak-row-main", "aria-expanded": "false", "aria-controls": detailId,
      onclick: () => this.toggleRow(key.key_id),
    },
    h("span", { class: "cak-row-title" },
      h("span", { class: "cak-name-text", text: key.name }),
      key.is_active ? null : h("span", { class: "cak-chip cak-chip-off", text: "Disabled" }),
      h("span", {
        class: `cak-chip cak-chip-scope${scope === "admin" ? " cak-chip-admin" : ""}`, "data-testid": "key-scope",
        title: describeScope(scope, this.access?.scopes), text: scope ? scopeLabel(scope) : "No scope",
      }),
      isMe ? h("span", { class: "cak-chip", text: "You" }) : null,
      expiryChip(key, now),
      h("span", { class: "cak-chevron", "aria-hidden": "true", text: "\u203a" })),
    h("span", { class: "cak-row-meta" },
      h("code", { class: "cak-code", text: `${key.prefix || "comfy_"}…` }),
      h("span", { title: formatDateTime(key.created_at), text: `Created ${formatDate(key.created_at)}` })),
    h("span", { class: "cak-row-meta" },
      h("span", { title: formatDateTime(key.last_used), text: `Last used ${formatRelative(key.last_used, now)}` }),
      hourMeter(key.requests_this_hour, key.rate_limit)));
    const detail = h("div", { id: detailId, class: "cak-detail", hidden: true });
    const li = h("li", { class: `cak-row${key.is_active ? "" : " cak-row-off"}`, "data-key-id": key.key_id }, button, detail);
    const row = { sig, li, button, detail, key };
    this.rows.set(key.key_id, row);
    if (this.expanded === key.key_id) this.expandRow(row);
    return row;
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
        h("button", { type: "button", class: "cak-btn", "data-action": "rotate", onclick: (e) => this.openRotateDialog(key.key_id, e.currentTarget) },
          icon("pi-refresh"), "Rotate"),
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
        h("dt", { text: "Scope" }), h("dd", { "data-testid": "scope-detail", text: describeScope(keyScope(key.scopes), this.access?.scopes) }),
        lifecycleFacts(key, Date.now()),
        h("dt", { text: "Created" }), h("dd", { text: formatDateTime(key.created_at) }),
        h("dt", { text: "Last used" }), h("dd", { text: key.last_used ? formatDateTime(key.last_used) : "Never" })));
    this.loadKeyUsage(key.key_id, usageSlot);
  }

  async loadKeyUsage(keyId, slot, force = false) {
    const cached = !force && this.usage.get(keyId);
    if (cached) {
      slot.replaceChildren(usageView(cached, () => this.loadKeyUsage(keyId, slot, true)));
      return;
    }
    slot.replaceChildren(h("p", { class: "cak-muted", text: "Loading usage…" }));
    try {
      const data = await this.request(`/keys/${encodeURIComponent(keyId)}?days=${LIMITS.USAGE_DAYS}`);
      if (this.destroyed || !slot.isConnected) return;
      this.usage.set(keyId, data.usage_stats);
      slot.replaceChildren(usageView(data.usage_stats, () => this.loadKeyUsage(keyId, slot, true)));
    } catch (error) {
      if (!slot.isConnected) return;
      this.fail("Could not load the key's usage", error);
      slot.replaceChildren(h("p", { class: "cak-error-text", text: error.message || String(error) }));
    }
  }

  findKey(keyId) {
    return this.keys.find((k) => k.key_id === keyId);
  }

  /** Focus a button of the (possibly re-rendered) row of a key. */
  rowButton(keyId, action) {
    const row = this.rows.get(keyId);
    if (!row || !row.li.isConnected) return this.filterInput;
    return (action && row.detail.querySelector(`[data-action="${action}"]`)) || row.button;
  }
};
