"""The sign-in page: self-contained (no external assets), in ComfyUI's look.

It posts to ``/api/auth/login`` and then goes to ``next`` when that is a
path on this server (never another origin). While no admin exists, a
"Setup code" tab posts the code the server printed to its console and a new
admin password to ``/api/auth/setup``.
"""

LOGIN_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="dark">
<title>Sign in - ComfyUI</title>
<style>
  /* ComfyUI's dark palette (ComfyUI is dark by default), whatever the system's
     colour scheme; type and spacing as in the API Keys panel. */
  :root { color-scheme: dark; --bg: #202020; --panel: #353535; --input: #222; --border: #4e4e4e;
          --fg: #fff; --text: #ddd; --muted: #999; --accent: #3b82f6; --error: #ff4444;
          --hover: rgba(127, 127, 127, .18); }
  * { box-sizing: border-box; }
  body { margin: 0; min-height: 100vh; display: grid; place-items: center; background: var(--bg);
         color: var(--text); font: 13px/1.45 Arial, sans-serif; }
  main { width: min(360px, calc(100vw - 32px)); display: flex; flex-direction: column; gap: 10px;
         background: var(--panel); border: 1px solid var(--border); border-radius: 8px; padding: 20px;
         box-shadow: 0 0 20px rgba(0, 0, 0, .5); }
  h1 { display: flex; align-items: center; gap: 8px; margin: 0; color: var(--fg); font-size: 15px; font-weight: 600; }
  h1 svg { width: 28px; height: 28px; flex: none; }
  p.lead { margin: 0; color: var(--muted); }
  .tabs { display: flex; gap: 4px; border-bottom: 1px solid var(--border); }
  .tabs button { flex: 1; background: none; border: 0; border-bottom: 2px solid transparent; color: var(--muted);
                 padding: 6px 8px; font: inherit; cursor: pointer; }
  .tabs button:hover { color: var(--text); }
  .tabs button[aria-selected="true"] { color: var(--fg); border-bottom-color: var(--accent); font-weight: 600; }
  form { margin: 2px 0 0; }
  label { display: block; margin: 0 0 4px; color: var(--fg); font-weight: 600; }
  input { width: 100%; min-height: 30px; padding: 5px 8px; border-radius: 6px; border: 1px solid var(--border);
          background: var(--input); color: var(--text); font: inherit; }
  input::placeholder { color: var(--muted); opacity: .8; }
  input:focus-visible { outline: 2px solid var(--accent); outline-offset: 0; }
  button:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
  button.primary { width: 100%; min-height: 30px; margin-top: 10px; padding: 4px 10px; border: 1px solid var(--accent);
                   border-radius: 6px; background: var(--accent); color: #fff; font: inherit; font-weight: 600;
                   cursor: pointer; }
  button.primary:hover:not(:disabled) { filter: brightness(1.1); }
  button.primary:disabled { opacity: .55; cursor: wait; }
  #message { min-height: 1.45em; margin: 8px 0 0; color: var(--error); }
  .hint { margin: 0; color: var(--muted); font-size: 12px; }
  code { padding: 0 4px; border-radius: 4px; background: var(--hover); color: var(--text);
         font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .92em; }
</style>
</head>
<body>
<main>
  <h1><svg viewBox="0 0 32 32" aria-hidden="true" focusable="false"><rect x="1" y="1" width="30" height="30" rx="7"
    fill="#202020" stroke="#4e4e4e"/><path d="M22 10.6a8 8 0 1 0 0 10.8" fill="none" stroke="#f0ff41"
    stroke-width="3.4" stroke-linecap="round"/><circle cx="22.4" cy="16" r="2.1" fill="#3b82f6"/></svg>ComfyUI</h1>
  <p class="lead">This server requires you to sign in.</p>
  <div class="tabs" role="tablist">
    <button type="button" role="tab" id="tab-password" aria-selected="true" aria-controls="form">Admin password</button>
    <button type="button" role="tab" id="tab-key" aria-selected="false" aria-controls="form">API key</button>
    <button type="button" role="tab" id="tab-setup" aria-selected="false" aria-controls="form" hidden>Setup code</button>
  </div>
  <form id="form" autocomplete="on">
    <div id="code-row" style="margin-bottom: 12px" hidden>
      <label for="code">Setup code</label>
      <input id="code" name="code" autocomplete="off" spellcheck="false" placeholder="XXXX-XXXX-XXXX-XXXX">
    </div>
    <label for="secret" id="secret-label">Admin password</label>
    <input id="secret" name="password" type="password" autocomplete="current-password" required autofocus>
    <button class="primary" id="submit" type="submit">Sign in</button>
    <p id="message" role="alert" aria-live="polite"></p>
  </form>
  <p class="hint">No password yet? Use the setup code ComfyUI printed in its console (tab "Setup code"),
    or on the server run the package's command line:
    <code>python custom_nodes/comfyui-api-auth set-password</code>, or set COMFYUI_API_AUTH_ADMIN_PASSWORD.</p>
</main>
<script>
(() => {
  const form = document.getElementById("form");
  const secret = document.getElementById("secret");
  const label = document.getElementById("secret-label");
  const message = document.getElementById("message");
  const submit = document.getElementById("submit");
  const codeRow = document.getElementById("code-row");
  const code = document.getElementById("code");
  const tabs = { password: document.getElementById("tab-password"), api_key: document.getElementById("tab-key"),
                 setup: document.getElementById("tab-setup") };
  const labels = { password: "Admin password", api_key: "API key", setup: "New admin password" };
  let field = "password";
  function choose(name) {
    field = name;
    for (const [key, tab] of Object.entries(tabs)) tab.setAttribute("aria-selected", String(key === name));
    label.textContent = labels[name];
    secret.name = name === "api_key" ? "api_key" : "password";
    secret.autocomplete = name === "password" ? "current-password" : name === "setup" ? "new-password" : "off";
    secret.placeholder = name === "api_key" ? "comfy_..." : name === "setup" ? "at least 8 characters" : "";
    codeRow.hidden = name !== "setup";
    code.required = name === "setup";
    submit.textContent = name === "setup" ? "Set password and sign in" : "Sign in";
    message.textContent = "";
    (name === "setup" ? code : secret).focus();
  }
  tabs.password.addEventListener("click", () => choose("password"));
  tabs.api_key.addEventListener("click", () => choose("api_key"));
  tabs.setup.addEventListener("click", () => choose("setup"));
  // The setup tab only while the server has a setup code waiting (no admin yet).
  fetch("/api/auth/status", { credentials: "same-origin" }).then((r) => r.json()).then((status) => {
    tabs.setup.hidden = !status.setup_available;
  }).catch(() => {});
  function target() {
    // Resolved the way the browser resolves it (it drops tabs and newlines and
    // reads "\\" as "/"), and kept only when that lands on this origin. The
    // absolute URL is returned: a path such as "/.//host" resolves to "//host",
    // which would leave the origin if handed back as a path.
    try {
      const url = new URL(new URLSearchParams(location.search).get("next") || "/", location.origin);
      if (url.origin === location.origin) return url.href;
    } catch (error) { /* not a URL at all */ }
    return "/";
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    message.textContent = "";
    try {
      const setup = field === "setup";
      const response = await fetch(setup ? "/api/auth/setup" : "/api/auth/login", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(setup ? { code: code.value, password: secret.value } : { [field]: secret.value }),
      });
      if (response.ok) { location.replace(target()); return; }
      const body = await response.json().catch(() => ({}));
      message.textContent = body.error || ("Sign-in failed (" + response.status + ")");
    } catch (error) {
      message.textContent = "Cannot reach the server: " + error.message;
    } finally {
      submit.disabled = false;
    }
  });
})();
</script>
</body>
</html>
"""
