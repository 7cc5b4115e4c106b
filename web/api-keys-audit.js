// Audit trail wording of the API keys panel: what an event's action, actor and
// detail mean, in words. Pure functions.
// This module only exports; ComfyUI imports every .js under web/ as an
// extension, so it must have no side effects when imported.

import { formatNumber } from "./api-keys-lib.js";

const ACTIONS = {
  key_create: "Key created",
  key_update: "Key changed",
  key_disable: "Key disabled",
  key_enable: "Key enabled",
  key_delete: "Key deleted",
  sign_in: "Signed in",
  sign_in_failed: "Sign-in failed",
  sign_out: "Signed out",
  password_set: "Admin password set",
  mode_change: "Mode changed",
};

const FIELDS = {
  name: "name",
  rate_limit: "rate limit",
  metadata: "metadata",
  scopes: "scope",
  is_active: "status",
  job_limits: "workflow limits",
};

/** A readable label of an audit action; unknown actions are shown as they are, spaced. */
export function actionLabel(action) {
  const text = String(action ?? "");
  if (Object.prototype.hasOwnProperty.call(ACTIONS, text)) return ACTIONS[text];
  const spaced = text.replace(/_/g, " ");
  return spaced ? spaced[0].toUpperCase() + spaced.slice(1) : "Unknown action";
}

/** Whether an action's target is an API key (its key_id). */
export function targetsKey(event) {
  const action = String(event?.action ?? "");
  const target = String(event?.target ?? "");
  if (!target || target === "admin") return false;
  return action.startsWith("key_") || action === "sign_in";
}

/**
 * Who acted, in words. `nameOf(keyId)` gives a key's name or undefined.
 * Actors are "admin:local", "admin:session", "key:<key_id>", "cli", "config", "anonymous:none"…
 */
export function describeActor(actor, nameOf = () => undefined) {
  const text = String(actor ?? "");
  const [kind, ...rest] = text.split(":");
  const via = rest.join(":");
  if (kind === "key" && via) {
    const name = nameOf(via);
    return name ? `Key “${name}”` : `Key ${via}`;
  }
  if (kind === "admin") {
    if (via === "local") return "Admin on this machine";
    if (via === "session") return "Admin (password sign-in)";
    return via ? `Admin (${via})` : "Admin";
  }
  if (kind === "anonymous") return "Anonymous";
  if (text === "cli") return "Command line";
  if (text === "config") return "Server configuration";
  return text || "Unknown";
}

/** One line about an event's detail object (no secrets are stored there), or "". */
export function describeDetail(event) {
  const detail = event?.detail && typeof event.detail === "object" ? event.detail : {};
  const method = { password: "the admin password", api_key: "an API key" }[detail.method];
  switch (event?.action) {
    case "key_create": {
      const parts = [];
      if (Number.isFinite(detail.rate_limit)) parts.push(`${formatNumber(detail.rate_limit)} requests per hour`);
      if (Array.isArray(detail.scopes) && detail.scopes.includes("admin")) parts.push("admin");
      return parts.join(" · ");
    }
    case "key_update":
      return Array.isArray(detail.fields) && detail.fields.length
        ? `Changed ${detail.fields.map((f) => FIELDS[f] || String(f).replace(/_/g, " ")).join(", ")}`
        : "";
    case "sign_in":
    case "sign_in_failed":
      return method ? `${event.action === "sign_in" ? "With" : "Tried"} ${method}` : "";
    case "mode_change":
      return event.target
        ? `Now “${event.target}”${detail.from ? ` (was “${detail.from}”)` : ""}`
        : "";
    case "password_set":
      return detail.source === "environment" ? "From COMFYUI_API_AUTH_ADMIN_PASSWORD" : "";
    default:
      return "";
  }
}
