// DOM helpers of the API keys panel: element and SVG builders, icons, ids.
// Plain DOM, no innerHTML (names and metadata are user data).
// This module only exports; ComfyUI imports every .js under web/ as an
// extension, so it must have no side effects when imported.

let uidCounter = 0;
export const uid = (stem) => `cak-${stem}-${++uidCounter}`;

/** Create an element: h("div", {class, text, onclick, ...attrs}, ...children). */
export function h(tag, props = {}, ...children) {
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
export function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  for (const child of children) node.append(child);
  return node;
}

export const icon = (name) => h("i", { class: `pi ${name}`, "aria-hidden": "true" });
export const srOnly = (text) => h("span", { class: "cak-sr-only", text });
// Icon-only buttons use a text glyph, so they show even where PrimeIcons are not loaded.
export const glyph = (char) => h("span", { class: "cak-glyph", "aria-hidden": "true", text: char });

// One trip to the sign-in page per page. The panel's own sign-out and the
// server's "api_auth_revoked" message (sent as the ended session's socket
// closes) can both ask for it at once; a second location.assign would abort
// the first navigation half-way.
let leavingForSignIn = false;

export function goToSignIn(loginUrl) {
  if (leavingForSignIn) return;
  leavingForSignIn = true;
  const login = typeof loginUrl === "string" && loginUrl.startsWith("/") && !loginUrl.startsWith("//") ? loginUrl : "/login";
  const next = location.pathname + location.search;
  location.assign(`${login}?next=${encodeURIComponent(next)}`);
}
