// Scopes in the API keys panel: what each allows, a key's scope, the scope
// picker of the create/edit form, and plain words for a SCOPE_REQUIRED answer.
// This module only exports; ComfyUI imports every .js under web/ as an
// extension, so it must have no side effects when imported.

import { h, uid } from "./api-keys-dom.js";

// Least privilege first; nested: admin can do all that generate can, which can
// do all that read can. The server's own words (GET /auth/access) replace these
// summaries when the panel has them; they are the same text (core/scopes.py).
export const SCOPES = Object.freeze(["read", "generate", "admin"]);
export const DEFAULT_SCOPE = "generate";
export const SCOPE_SUMMARIES = Object.freeze({
  read: "see the node and model catalog, its own usage and jobs; no workflows, no uploads",
  generate: "read, plus queue workflows, upload inputs and fetch results",
  admin: "everything: keys, users, ComfyUI-Manager, the server's logs and settings",
});
const LABELS = Object.freeze({ read: "Read", generate: "Generate", admin: "Admin" });

export const scopeLabel = (scope) => LABELS[scope] || String(scope);

/** A key's scope: the highest of its scopes the panel knows (scopes are nested), or null. */
export function keyScope(scopes) {
  const held = Array.isArray(scopes) ? scopes : [];
  for (let i = SCOPES.length - 1; i >= 0; i--) if (held.includes(SCOPES[i])) return SCOPES[i];
  return null;
}

/** "Generate: read, plus queue workflows…" for a key's row or card. */
export function describeScope(scope, summaries = SCOPE_SUMMARIES) {
  if (!scope) return "None (this key can reach no route)";
  return `${scopeLabel(scope)}: ${summaries[scope] || SCOPE_SUMMARIES[scope] || ""}`;
}

/**
 * A SCOPE_REQUIRED refusal (403, `required_scope`) in plain words:
 * "this key has the read scope; this needs generate". `held` is the caller's
 * scope when the panel knows it.
 */
export function explainScopeRequired(required, held) {
  const need = required ? `the ${required} scope` : "a higher scope";
  const have = held ? `This key has the ${held} scope; this needs ${need}.` : `This needs ${need}.`;
  return `${have} An admin can change the key's scope in the API Keys panel (Edit).`;
}

/**
 * The scope picker of the create/edit form: one radio per scope, each with
 * the line saying what it allows. `bootstrap`: the local bootstrap, which may
 * not make admin keys (the admin choice is disabled, with why).
 */
export function scopePicker(current, { bootstrap = false, summaries = SCOPE_SUMMARIES } = {}) {
  const name = uid("scope");
  const errorId = `${name}-error`;
  const error = h("p", { id: errorId, class: "cak-field-error", hidden: true });
  const chosen = current || DEFAULT_SCOPE;
  const radios = new Map();
  const choices = SCOPES.map((scope) => {
    const id = `${name}-${scope}`;
    const disabled = bootstrap && scope === "admin";
    const radio = h("input", {
      id, type: "radio", name, value: scope, checked: scope === chosen, disabled,
      "aria-describedby": `${id}-hint ${errorId}`, "data-scope": scope,
    });
    radios.set(scope, radio);
    const hint = disabled
      ? "Only an admin can make admin keys (sign in as admin first)."
      : (summaries[scope] || SCOPE_SUMMARIES[scope]);
    // The label is the scope's name alone; the line saying what it allows describes the radio.
    return h("div", { class: "cak-check cak-scope-choice" }, radio,
      h("div", {}, h("label", { for: id }, h("strong", { text: scopeLabel(scope) })),
        h("span", { id: `${id}-hint`, class: "cak-hint", text: ` ${hint}` })));
  });
  const wrap = h("fieldset", { class: "cak-meta cak-scope-picker", "data-testid": "scope-picker" },
    h("legend", { text: "Scope" }), choices,
    h("p", { class: "cak-hint", text: "What the key may reach. Give the least it needs; admin keys can manage every key." }),
    error);
  return {
    wrap,
    read: () => [...radios.values()].find((radio) => radio.checked)?.value || chosen,
    setError: (message) => {
      error.textContent = message || "";
      error.hidden = !message;
    },
    focus: () => ([...radios.values()].find((radio) => radio.checked) || radios.get(DEFAULT_SCOPE)).focus(),
  };
}
