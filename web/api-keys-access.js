// The panel's "Access" section (admins): what the operator decided about
// access, from GET /auth/access: the scopes and what each allows, the routes
// of custom nodes the package does not know (keys need the admin scope for
// them), the route scope overrides and the node rules.
// A mixin of the panel (see api-keys-panel.js): its methods share the panel's
// state. This module only exports; ComfyUI imports every .js under web/ as an
// extension, so it must have no side effects when imported.

import { h, uid } from "./api-keys-dom.js";
import { SCOPES, SCOPE_SUMMARIES, scopeLabel } from "./api-keys-scopes.js";

const code = (text) => h("code", { class: "cak-code", text });
const UNCLASSIFIED_HELP = [
  "These routes belong to custom nodes the package does not know; keys need the admin scope for them; open them with ",
  "COMFYUI_API_AUTH_ROUTE_SCOPES", ", e.g. ", '{"/my_node/": "generate"}', ".",
];

export const withAccess = (Base) => class Access extends Base {
  /** The collapsible "Access" section; its content comes with each showManager (admins only). */
  buildAccess() {
    const bodyId = uid("access");
    const titleId = uid("access-title");
    this.accessView = { open: false };
    const view = this.accessView;
    view.summary = h("span", { class: "cak-muted cak-access-summary", "data-testid": "access-summary" });
    view.toggle = h("button", {
      type: "button", id: titleId, class: "cak-disclosure", "aria-expanded": "false", "aria-controls": bodyId,
      onclick: () => this.setAccessOpen(!view.open),
    }, h("span", { class: "cak-chevron", "aria-hidden": "true", text: "\u203a" }), "Access", view.summary);
    view.body = h("div", { id: bodyId, class: "cak-activity-body cak-access-body", hidden: true },
      h("p", { class: "cak-muted", text: "Loading…" }));
    return h("section", { class: "cak-card cak-activity cak-access", "aria-labelledby": titleId, "data-testid": "access" },
      h("h3", { class: "cak-activity-head" }, view.toggle), view.body);
  }

  setAccessOpen(open) {
    const view = this.accessView;
    view.open = open;
    view.toggle.setAttribute("aria-expanded", String(open));
    view.body.hidden = !open;
  }

  /** Load GET /auth/access (admins). The scope texts also go to the key form. */
  async loadAccess() {
    let access;
    try {
      access = await this.request("/auth/access");
    } catch (error) {
      if (error?.name === "AbortError" || this.destroyed) return;
      this.accessView.summary.textContent = "";
      this.accessView.body.replaceChildren(h("p", { class: "cak-error-text", text: error.message || String(error) }));
      return;
    }
    if (this.destroyed) return;
    const first = this.access === null || this.access === undefined;
    this.access = access;
    this.renderAccess();
    // Routes nothing classifies need the operator's eye: show them the first time.
    if (first && (access.unclassified_routes || []).length) this.setAccessOpen(true);
  }

  renderAccess() {
    const access = this.access || {};
    const unclassified = Array.isArray(access.unclassified_routes) ? access.unclassified_routes : [];
    const overrides = Object.entries(access.route_scopes || {});
    const rules = Object.entries(access.node_rules || {});
    const summaries = access.scopes || SCOPE_SUMMARIES;
    this.accessView.summary.textContent = unclassified.length
      ? ` · ${unclassified.length} unclassified ${unclassified.length === 1 ? "route" : "routes"}` : "";
    const none = (text) => h("p", { class: "cak-muted", text });
    this.accessView.body.replaceChildren(
      h("h4", { class: "cak-subtitle", text: "Scopes" }),
      h("dl", { class: "cak-facts", "data-testid": "access-scopes" },
        SCOPES.map((scope) => [h("dt", { text: scopeLabel(scope) }), h("dd", { text: summaries[scope] || "" })])),
      h("p", { class: "cak-hint", text: `New keys get ${(access.default_scopes || ["generate"]).join(", ")} unless you pick another scope.` }),
      h("h4", { class: "cak-subtitle", text: "Unclassified routes" }),
      h("p", { class: "cak-hint" }, UNCLASSIFIED_HELP.map((part, i) => (i % 2 ? code(part) : part))),
      unclassified.length
        ? h("ul", { class: "cak-access-list", "data-testid": "unclassified-routes" }, unclassified.map((route) =>
          h("li", {}, code(`${(route.methods || []).join(", ") || "*"} ${route.path}`))))
        : none("None: the package knows every route on this server."),
      h("h4", { class: "cak-subtitle", text: "Route scopes" }),
      h("p", { class: "cak-hint" }, "Set by ", code("COMFYUI_API_AUTH_ROUTE_SCOPES"),
        ": a path, or a prefix ending in /, and the scope a key needs there."),
      overrides.length
        ? h("ul", { class: "cak-access-list", "data-testid": "route-scopes" }, overrides.map(([path, scope]) =>
          h("li", {}, code(path), ` \u2192 ${scopeLabel(scope)}`)))
        : none("None."),
      h("h4", { class: "cak-subtitle", text: "Node rules" }),
      h("p", { class: "cak-hint" }, "Set by ", code("COMFYUI_API_AUTH_NODE_RULES"),
        ": which node classes a key's workflows may use (POST /prompt answers 403 NODE_NOT_ALLOWED otherwise). ",
        "Callers without a key (enable mode) are not bound."),
      rules.length
        ? h("dl", { class: "cak-facts", "data-testid": "node-rules" }, rules.map(([scope, rule]) => [
          h("dt", { text: `${scopeLabel(scope)} scope` }),
          h("dd", {}, Array.isArray(rule.allow)
            ? [rule.allow.length ? "may run only: " : "may run no node", ...listOf(rule.allow)]
            : ["may run every node but: ", ...listOf(rule.deny || [])])]))
        : none("None: every scope may queue every installed node."));
  }
};

function listOf(names) {
  return names.flatMap((name, i) => (i ? [", ", code(name)] : [code(name)]));
}
