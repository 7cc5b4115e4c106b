// The panel for non-admins: how to become admin (password, this machine, the
// command line), and a key holder's own-usage card.
// A mixin of the panel (see api-keys-panel.js): its methods share the panel's
// state. This module only exports; ComfyUI imports every .js under web/ as an
// extension, so it must have no side effects when imported.

import { h } from "./api-keys-dom.js";
import { LIMITS } from "./api-keys-lib.js";
import { describeScope, keyScope } from "./api-keys-scopes.js";
import { describeJobLimits, hourMeter, jobLimitsOf, usageView } from "./api-keys-usage.js";
import { lifecycleFacts } from "./api-keys-key-list.js";

export const withNonAdminViews = (Base) => class NonAdminViews extends Base {
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
      this.ownScope = keyScope(usage.scopes);
      slot.replaceChildren(
        h("dl", { class: "cak-facts" },
          h("dt", { text: "Name" }), h("dd", { class: "cak-name-text", text: usage.key_name }),
          h("dt", { text: "Key ID" }), h("dd", {}, h("code", { class: "cak-code", text: usage.key_id })),
          Array.isArray(usage.scopes)
            ? [h("dt", { text: "Scope" }), h("dd", { "data-testid": "own-scope", text: describeScope(this.ownScope) })] : null,
          lifecycleFacts(usage, Date.now()),
          h("dt", { text: "This hour" }), h("dd", {}, hourMeter(usage.requests_this_hour, usage.rate_limit)),
          usage.job_limits ? [h("dt", { text: "Workflow limits" }), h("dd", { text: describeJobLimits(jobLimitsOf(usage)) })] : null),
        usageView(usage.usage_stats));
    } catch (error) {
      this.fail("Could not load your usage", error);
      slot.replaceChildren(h("p", { class: "cak-error-text", text: error.message }));
    }
  }
};
