// The panel's account part: who you are and the mode (the status box), the
// sign-in form, sign-out, "Sign out everywhere" and the admin password dialog.
// A mixin of the panel (see api-keys-panel.js): its methods share the panel's
// state. This module only exports; ComfyUI imports every .js under web/ as an
// extension, so it must have no side effects when imported.

import { goToSignIn, h, icon, uid } from "./api-keys-dom.js";
import { openDialog, textField } from "./api-keys-forms.js";

export const withAccount = (Base) => class Account extends Base {
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
        goToSignIn(this.status.login_url);
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
            goToSignIn(this.status.login_url);
            return;
          }
          await this.refresh();
        } catch (error) {
          dialog.close();
          this.fail("Could not sign out everywhere", error);
        }
      },
    }, icon("pi-power-off"), "Sign out everywhere");
    const dialog = openDialog(this, {
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
    const first = textField("New admin password", { type: "password", autocomplete: "new-password" });
    const second = textField("Repeat the password", { type: "password", autocomplete: "new-password" });
    const error = h("p", { class: "cak-error-text", role: "alert" });
    const submit = h("button", { type: "submit", class: "cak-btn cak-btn-primary" }, "Save password");
    const dialog = openDialog(this, {
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
};
