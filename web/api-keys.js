// ComfyUI extension: the "API Keys" sidebar tab of the comfyui-api-auth package.
// ComfyUI imports every .js under web/; this is the only module with side
// effects (it registers the extension). ComfyUI's own modules are imported
// relatively because the package folder name differs between installs.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { goToSignIn } from "./api-keys-dom.js";
import { createPanel } from "./api-keys-panel.js";

const TAB_ID = "comfyui-api-auth";
const STYLE_ID = "comfyui-api-auth-styles";

// /extensions/<folder>/api-keys.js -> <folder>, for the command-line hints.
function packageFolder() {
  try {
    const parts = new URL(import.meta.url).pathname.split("/").filter(Boolean);
    return decodeURIComponent(parts[parts.length - 2] || "");
  } catch {
    return "";
  }
}

function ensureStyles() {
  if (document.getElementById(STYLE_ID)) return;
  const link = document.createElement("link");
  link.id = STYLE_ID;
  link.rel = "stylesheet";
  link.href = new URL("./api-keys.css", import.meta.url).href;
  document.head.append(link);
}

let panel = null;

// The server ends a WebSocket whose key or session was revoked, disabled,
// signed out or ran out, after a message saying why ("api_auth_revoked").
// Where nothing of the server answers without signing in (require mode, no
// trusted local access) the front end's reconnects would only get 401: go to
// the sign-in page. Otherwise (enable mode) the page keeps working, as after
// the panel's own sign-out; the panel, if open, shows who this is now.
async function onAccessEnded(event) {
  let status = null;
  try {
    const response = await api.fetchApi("/auth/status", { cache: "no-store" });
    if (response.ok) status = await response.json();
  } catch {
    // unreachable: treat as signed out
  }
  if (status && (status.mode !== "require" || status.authenticated)) {
    await panel?.refresh();
    return;
  }
  goToSignIn(event.detail?.login_url);
}

app.registerExtension({
  name: "comfyui-api-auth.ApiKeysPanel",
  setup() {
    ensureStyles();
    api.addEventListener("api_auth_revoked", onAccessEnded);
    app.extensionManager?.registerSidebarTab?.({
      id: TAB_ID,
      icon: "pi pi-key",
      title: "API Keys",
      label: "API Keys",
      tooltip: "API keys: create, revoke, limits and usage",
      type: "custom",
      render(el) {
        panel?.destroy();
        panel = createPanel({ app, api, folder: packageFolder() });
        panel.mount(el);
      },
      destroy() {
        panel?.destroy();
        panel = null;
      },
    });
  },
});
