// ComfyUI extension: the "API Keys" sidebar tab of the comfyui-api-auth package.
// ComfyUI imports every .js under web/; this is the only module with side
// effects (it registers the extension). ComfyUI's own modules are imported
// relatively because the package folder name differs between installs.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
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

app.registerExtension({
  name: "comfyui-api-auth.ApiKeysPanel",
  setup() {
    ensureStyles();
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
