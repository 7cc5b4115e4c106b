"""The sign-in page: self-contained (no external assets), in ComfyUI's look.

It posts to ``/api/auth/login`` and then goes to ``next`` when that is a
path on this server (never another origin).
"""

LOGIN_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="dark light">
<title>Sign in - ComfyUI</title>
<style>
  :root { --bg: #202020; --panel: #353535; --input: #222; --border: #4e4e4e; --fg: #ddd;
          --muted: #999; --accent: #3b82f6; --error: #f87171; }
  @media (prefers-color-scheme: light) {
    :root { --bg: #f4f4f5; --panel: #fff; --input: #fff; --border: #d4d4d8; --fg: #222;
            --muted: #666; --accent: #2563eb; --error: #b91c1c; }
  }
  * { box-sizing: border-box; }
  body { margin: 0; min-height: 100vh; display: grid; place-items: center; background: var(--bg);
         color: var(--fg); font: 14px/1.5 Inter, "Segoe UI", Roboto, Arial, sans-serif; }
  main { width: min(380px, calc(100vw - 32px)); background: var(--panel); border: 1px solid var(--border);
         border-radius: 12px; padding: 28px; box-shadow: 0 10px 30px rgba(0,0,0,.35); }
  h1 { font-size: 20px; margin: 0 0 4px; }
  p.lead { margin: 0 0 20px; color: var(--muted); }
  .tabs { display: flex; gap: 4px; margin-bottom: 16px; border-bottom: 1px solid var(--border); }
  .tabs button { flex: 1; background: none; border: 0; border-bottom: 2px solid transparent; color: var(--muted);
                 padding: 8px; font: inherit; cursor: pointer; }
  .tabs button[aria-selected="true"] { color: var(--fg); border-bottom-color: var(--accent); }
  label { display: block; margin: 0 0 6px; font-weight: 600; }
  input { width: 100%; padding: 10px 12px; border-radius: 8px; border: 1px solid var(--border);
          background: var(--input); color: var(--fg); font: inherit; }
  input:focus, button:focus-visible { outline: 2px solid var(--accent); outline-offset: 1px; }
  button.primary { width: 100%; margin-top: 16px; padding: 10px; border: 0; border-radius: 8px;
                   background: var(--accent); color: #fff; font: inherit; font-weight: 600; cursor: pointer; }
  button.primary:disabled { opacity: .6; cursor: wait; }
  #message { min-height: 1.5em; margin: 12px 0 0; color: var(--error); }
  .hint { color: var(--muted); font-size: 12px; margin-top: 16px; }
</style>
</head>
<body>
<main>
  <h1>ComfyUI</h1>
  <p class="lead">This server requires you to sign in.</p>
  <div class="tabs" role="tablist">
    <button type="button" role="tab" id="tab-password" aria-selected="true" aria-controls="form">Admin password</button>
    <button type="button" role="tab" id="tab-key" aria-selected="false" aria-controls="form">API key</button>
  </div>
  <form id="form" autocomplete="on">
    <label for="secret" id="secret-label">Admin password</label>
    <input id="secret" name="password" type="password" autocomplete="current-password" required autofocus>
    <button class="primary" id="submit" type="submit">Sign in</button>
    <p id="message" role="alert" aria-live="polite"></p>
  </form>
  <p class="hint">No password yet? On the server, run the package's command line:
    <code>python custom_nodes/&lt;this package&gt; set-password</code>, or set COMFYUI_API_AUTH_ADMIN_PASSWORD.</p>
</main>
<script>
(() => {
  const form = document.getElementById("form");
  const secret = document.getElementById("secret");
  const label = document.getElementById("secret-label");
  const message = document.getElementById("message");
  const submit = document.getElementById("submit");
  const tabs = { password: document.getElementById("tab-password"), api_key: document.getElementById("tab-key") };
  let field = "password";
  function choose(name) {
    field = name;
    for (const [key, tab] of Object.entries(tabs)) tab.setAttribute("aria-selected", String(key === name));
    label.textContent = name === "password" ? "Admin password" : "API key";
    secret.name = name;
    secret.autocomplete = name === "password" ? "current-password" : "off";
    secret.placeholder = name === "password" ? "" : "comfy_...";
    message.textContent = "";
    secret.focus();
  }
  tabs.password.addEventListener("click", () => choose("password"));
  tabs.api_key.addEventListener("click", () => choose("api_key"));
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
      const response = await fetch("/api/auth/login", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ [field]: secret.value }),
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
