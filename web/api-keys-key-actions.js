// What the panel does to keys: create (and show the new key once), edit,
// enable/disable, rotate (and show the new secret once), delete, each through its dialog.
// A mixin of the panel (see api-keys-panel.js): its methods share the panel's
// state. This module only exports; ComfyUI imports every .js under web/ as an
// extension, so it must have no side effects when imported.

import { h, icon, uid } from "./api-keys-dom.js";
import { keyForm, openDialog } from "./api-keys-forms.js";
import { copyText, formatDateTime } from "./api-keys-lib.js";
import { keyScope } from "./api-keys-scopes.js";
import { jobLimitsOf } from "./api-keys-usage.js";

// The rotate dialog's choices: how long the old secret keeps working (seconds).
export const ROTATE_GRACES = [[0, "Not at all (ends now)"], [3600, "1 hour"], [86400, "1 day"], [7 * 86400, "7 days"]];

export const withKeyActions = (Base) => class KeyActions extends Base {
  /** The key form's options: the bootstrap may not make admin keys; scope texts in the server's words. */
  formOptions() {
    return { bootstrap: !!this.status?.local_bootstrap, summaries: this.access?.scopes };
  }

  openCreateDialog(opener) {
    const form = keyForm(null, this.formOptions());
    const submit = h("button", { type: "submit", class: "cak-btn cak-btn-primary" }, icon("pi-key"), "Create key");
    const dialog = openDialog(this, {
      title: "New API key", opener, initialFocus: form.first,
      body: h("form", {
        class: "cak-form", novalidate: true,
        onsubmit: async (event) => {
          event.preventDefault();
          const fields = form.read();
          if (!fields) return;
          // Unlimited is the server's default: leave the field out unless a limit is set.
          if (fields.job_limits.prompts_per_hour === null && fields.job_limits.max_waiting === null) delete fields.job_limits;
          if (fields.expires_at === null) delete fields.expires_at;
          if (!fields.allowed_ips.length) delete fields.allowed_ips;
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

  /** Show a new key (or a rotated key's new secret) once. Closing the dialog drops every reference to it. */
  showSecret(created, secretValue, title = `Key created: ${created.name}`) {
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
    const dialog = openDialog(this, {
      title, className: "cak-dialog-secret", describedBy: warnId,
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

  /** Put the server's answer for a key into the list (PATCH returns the whole key). */
  replaceKey(updated) {
    delete updated.message;
    const index = this.keys.findIndex((k) => k.key_id === updated.key_id);
    if (index >= 0) this.keys[index] = { ...this.keys[index], ...updated };
    this.renderList();
  }

  async handleMissing(error) {
    if (error?.status === 404) await this.loadKeys();
  }

  openEditDialog(keyId, opener) {
    const key = this.findKey(keyId);
    if (!key) return;
    const form = keyForm(key, this.formOptions());
    const submit = h("button", { type: "submit", class: "cak-btn cak-btn-primary" }, "Save");
    const dialog = openDialog(this, {
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
          if (fields.scopes[0] !== keyScope(key.scopes)) changes.scopes = fields.scopes;
          // PATCH replaces both workflow limits: always send the pair.
          const limits = jobLimitsOf(key);
          if (fields.job_limits.prompts_per_hour !== limits.prompts_per_hour
            || fields.job_limits.max_waiting !== limits.max_waiting) changes.job_limits = fields.job_limits;
          if (form.expiryChanged()) changes.expires_at = fields.expires_at; // null: never expires
          if (fields.allowed_ips.join() !== (key.allowed_ips || []).join()) changes.allowed_ips = fields.allowed_ips;
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

  /** Rotate: a new secret, shown once; the old one works for the chosen grace period. */
  openRotateDialog(keyId, opener) {
    const key = this.findKey(keyId);
    if (!key) return;
    const textId = uid("rotate-text");
    const graceId = uid("grace");
    const grace = h("select", { id: graceId, class: "cak-input cak-select", "data-testid": "rotate-grace" },
      ROTATE_GRACES.map(([value, label]) => h("option", { value: String(value), text: label })));
    const cancel = h("button", { type: "button", class: "cak-btn", onclick: () => dialog.close() }, "Cancel");
    const confirm = h("button", {
      type: "button", class: "cak-btn cak-btn-primary", "data-action": "confirm-rotate",
      onclick: async () => {
        confirm.disabled = cancel.disabled = true;
        try {
          const rotated = await this.request(`/keys/${encodeURIComponent(keyId)}/rotate`, {
            method: "POST", body: { grace_seconds: Number(grace.value) },
          });
          let secret = rotated.api_key;
          delete rotated.api_key;
          this.replaceKey(rotated);
          dialog.close();
          this.toast("success", "API key rotated", Number(grace.value)
            ? `The old secret of “${rotated.name}” works until ${formatDateTime(rotated.previous_key_valid_until)}.`
            : `The old secret of “${rotated.name}” no longer works.`);
          this.activityChanged();
          this.showSecret(rotated, secret, `New secret: ${rotated.name}`);
          secret = null;
        } catch (error) {
          dialog.close();
          this.fail("Could not rotate the key", error);
          await this.handleMissing(error);
        }
      },
    }, icon("pi-refresh"), "Rotate");
    const dialog = openDialog(this, {
      title: "Rotate this API key?", opener, describedBy: textId, className: "cak-dialog-confirm",
      initialFocus: grace,
      fallbackFocus: () => this.rowButton(keyId, "rotate"),
      body: [
        h("p", { id: textId }, "“", h("strong", { class: "cak-name-text", text: key.name }),
          "” gets a new secret, shown once. It keeps its ID, settings, limits and usage; sign-ins and sockets opened with the old secret end with it."),
        h("div", { class: "cak-field" }, h("label", { for: graceId, text: "The old secret keeps working" }), grace),
        h("div", { class: "cak-dialog-actions" }, cancel, confirm),
      ],
    });
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
    const dialog = openDialog(this, {
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
};
