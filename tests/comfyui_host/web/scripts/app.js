// Minimal stand-in for ComfyUI_frontend's `app`, enough to host extensions that
// register sidebar tabs, show toasts and read/write settings.
//
// Boot order follows the real front end: open the websocket, load user config and
// settings (/api/users, /api/settings), translations and system stats (/api/i18n,
// /api/system_stats), import every module listed by /api/extensions, call each
// extension's init(app), load /api/object_info, call setup(app), then fill the
// stores (/api/userdata?dir=workflows, /api/queue, /api/history,
// /api/workflow_templates, /templates/index.json). 11 API calls, as the real
// front end's 16 or so; its static files are fewer (a dozen, not 472).
// An extension registered after that gets init/setup called immediately.
//
// app.loadApiJson(prompt) / app.queuePrompt(number, batchCount) and the Run
// button (button[data-testid=queue-button]) queue a workflow; SaveImage outputs
// are shown as <img src=/api/view?...> in [data-testid=outputs].
//
// app.extensionManager:
//   registerSidebarTab({id, icon, title, tooltip, type: "custom", render(el), destroy?()})
//     -> button.side-bar-button.<id>-tab-button in the left bar; clicking it toggles
//        the panel; render(el) runs each time the tab opens, destroy() when it closes.
//   toast.add({severity, summary, detail, life}) -> div.p-toast-message.p-toast-message-<severity>
//   toast.addAlert(message)                     -> warn toast
//   setting.get(id) / setting.set(id, value)    -> value from /api/settings, else the
//        defaultValue declared in an extension's `settings` array; set POSTs /api/settings/<id>.
import { api } from "./api.js";

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

class ToastManager {
  constructor() {
    this.container = null;
    this.messages = [];
  }

  #ensureContainer() {
    if (!this.container) {
      this.container = el("div", { class: "p-toast p-component p-toast-top-right", "data-testid": "toast" });
      document.body.append(this.container);
    }
    return this.container;
  }

  add({ severity = "info", summary = "", detail = "", life } = {}) {
    const message = el("div", {
      class: `p-toast-message p-toast-message-${severity}`,
      role: "alert",
      "data-severity": severity,
    }, [
      el("div", { class: "p-toast-message-content" }, [
        el("span", { class: "p-toast-summary", text: String(summary ?? "") }),
        el("div", { class: "p-toast-detail", text: typeof detail === "string" ? detail : JSON.stringify(detail) }),
      ]),
    ]);
    const close = el("button", { class: "p-toast-close-button", type: "button", "aria-label": "Close", text: "×" });
    close.addEventListener("click", () => this.#remove(message));
    message.append(close);
    this.#ensureContainer().append(message);
    this.messages.push({ severity, summary, detail, life });
    if (typeof life === "number" && life > 0) setTimeout(() => this.#remove(message), life);
    return message;
  }

  addAlert(message) {
    return this.add({ severity: "warn", summary: "Alert", detail: message });
  }

  removeAll() {
    if (this.container) this.container.replaceChildren();
  }

  #remove(message) {
    message.remove();
  }
}

class SettingStore {
  constructor() {
    this.values = {};
    this.defaults = {};
  }

  addDefinitions(settings) {
    for (const s of settings || []) {
      if (s && s.id !== undefined) this.defaults[s.id] = s.defaultValue;
    }
  }

  get(id) {
    return id in this.values ? this.values[id] : this.defaults[id];
  }

  async set(id, value) {
    const old = this.get(id);
    this.values[id] = value;
    await api.storeSetting(id, value);
    document.dispatchEvent(new CustomEvent("comfy-setting-changed", { detail: { id, value, old } }));
  }
}

class Sidebar {
  constructor(app) {
    this.app = app;
    this.tabs = [];
    this.activeId = null;
    this.bar = null;
    this.panel = null;
  }

  mount(bar, panel) {
    this.bar = bar;
    this.panel = panel;
    for (const tab of this.tabs) this.#addButton(tab);
  }

  register(tab) {
    if (!tab || !tab.id) throw new Error("Sidebar tabs need an 'id'");
    if (this.tabs.some((t) => t.id === tab.id)) throw new Error(`Sidebar tab '${tab.id}' already registered`);
    this.tabs.push(tab);
    if (this.bar) this.#addButton(tab);
  }

  #addButton(tab) {
    const icon = el("i", { class: `side-bar-button-icon ${tab.icon || "pi pi-box"}` });
    const button = el("button", {
      class: `side-bar-button ${tab.id}-tab-button`,
      type: "button",
      title: tab.tooltip || tab.title || tab.id,
      "aria-label": tab.title || tab.tooltip || tab.id,
      "data-tab-id": tab.id,
    }, [icon]);
    if (tab.iconBadge) {
      const badge = typeof tab.iconBadge === "function" ? tab.iconBadge() : tab.iconBadge;
      if (badge) button.append(el("span", { class: "side-bar-button-badge", text: String(badge) }));
    }
    button.addEventListener("click", () => this.toggle(tab.id));
    this.bar.append(button);
  }

  toggle(id) {
    this.#closeActive();
    if (this.activeId === id) {
      this.activeId = null;
      return;
    }
    const tab = this.tabs.find((t) => t.id === id);
    if (!tab) return;
    this.activeId = id;
    this.bar.querySelectorAll(".side-bar-button").forEach((b) =>
      b.classList.toggle("side-bar-button-selected", b.dataset.tabId === id));
    const content = el("div", { class: `sidebar-content-container ${id}-tab-content`, "data-tab-id": id });
    this.panel.replaceChildren(content);
    this.panel.hidden = false;
    if (typeof tab.render === "function") {
      try {
        tab.render(content);
      } catch (e) {
        console.error(`Error rendering sidebar tab '${id}'`, e);
      }
    }
  }

  #closeActive() {
    if (!this.activeId) return;
    const tab = this.tabs.find((t) => t.id === this.activeId);
    if (tab && typeof tab.destroy === "function") {
      try {
        tab.destroy();
      } catch (e) {
        console.error(e);
      }
    }
    this.panel.replaceChildren();
    this.panel.hidden = true;
    this.bar.querySelectorAll(".side-bar-button").forEach((b) => b.classList.remove("side-bar-button-selected"));
  }
}

class ComfyApp {
  constructor() {
    this.api = api;
    this.extensions = [];
    this.vueAppReady = false;
    this.setupDone = false;
    this.nodeDefs = {};
    this.sidebar = new Sidebar(this);
    this.settingStore = new SettingStore();
    this.toastManager = new ToastManager();
    const self = this;
    this.extensionManager = {
      registerSidebarTab: (tab) => self.sidebar.register(tab),
      unregisterSidebarTab: (id) => {
        self.sidebar.tabs = self.sidebar.tabs.filter((t) => t.id !== id);
        self.sidebar.bar?.querySelector(`[data-tab-id="${id}"]`)?.remove();
      },
      getSidebarTabs: () => [...self.sidebar.tabs],
      toast: this.toastManager,
      setting: {
        get: (id) => self.settingStore.get(id),
        set: (id, value) => self.settingStore.set(id, value),
      },
    };
    // legacy API some extensions still use
    this.ui = {
      settings: {
        getSettingValue: (id, defaultValue) => {
          const v = self.settingStore.get(id);
          return v === undefined ? defaultValue : v;
        },
        setSettingValue: (id, value) => self.settingStore.set(id, value),
        setSettingValueAsync: (id, value) => self.settingStore.set(id, value),
      },
    };
  }

  /** Load a workflow in API format as the one to queue (the real front end builds a graph from it). */
  loadApiJson(apiData, fileName = "workflow") {
    this.apiWorkflow = { output: apiData, workflow: { name: fileName, nodes: Object.keys(apiData) } };
  }

  /** Queue the loaded workflow `batchCount` times: true when every queued prompt was accepted. */
  async queuePrompt(number = 0, batchCount = 1) {
    if (!this.apiWorkflow) return false;
    try {
      for (let i = 0; i < batchCount; i++) await api.queuePrompt(number, this.apiWorkflow);
      return true;
    } catch (error) {
      const detail = error.response?.error?.message || error.response?.error || error.message;
      this.toastManager.add({ severity: "error", summary: "Prompt execution failed", detail: String(detail) });
      return false;
    }
  }

  #mountQueueButton(root) {
    const button = root.querySelector("[data-testid=queue-button]");
    const outputs = root.querySelector("[data-testid=outputs]");
    if (button) {
      button.addEventListener("click", async () => {
        button.disabled = true;
        try {
          await this.queuePrompt(0, 1);
        } finally {
          button.disabled = false;
        }
      });
    }
    // Output previews, as a SaveImage node shows them: <img> from /api/view.
    api.addEventListener("executed", ({ detail }) => {
      for (const image of detail?.output?.images || []) {
        const params = new URLSearchParams({ filename: image.filename, type: image.type, subfolder: image.subfolder ?? "" });
        const img = el("img", { src: api.apiURL(`/view?${params}&rand=${Math.random()}`), alt: image.filename });
        outputs?.append(img);
      }
    });
  }

  registerExtension(extension) {
    if (!extension || !extension.name) throw new Error("Extensions must have a 'name' property.");
    if (this.extensions.some((e) => e.name === extension.name)) {
      throw new Error(`Extension named '${extension.name}' already registered.`);
    }
    this.extensions.push(extension);
    this.settingStore.addDefinitions(extension.settings);
    if (this.setupDone) {
      // late registration: run its hooks right away
      this.#invoke(extension, "init").then(() => this.#invoke(extension, "setup"));
    }
  }

  async #invoke(extension, method) {
    if (typeof extension[method] !== "function") return;
    try {
      await extension[method](this);
    } catch (error) {
      console.error(`Error calling extension '${extension.name}' method '${method}'`, error);
    }
  }

  async #invokeAll(method) {
    for (const ext of [...this.extensions]) await this.#invoke(ext, method);
  }

  async #loadExtensions() {
    const urls = await api.getExtensions();
    await Promise.all(
      urls
        .filter((url) => !url.includes("extensions/core"))
        .map(async (url) => {
          try {
            await import(api.fileURL(url));
          } catch (error) {
            console.error("Error loading extension", url, error);
          }
        })
    );
  }

  async setup(root = document.body) {
    const bar = root.querySelector(".side-tool-bar-container");
    const panel = root.querySelector(".sidebar-panel");
    this.sidebar.mount(bar, panel);

    api.init();
    try {
      await api.getUserConfig();
      this.settingStore.values = (await api.getSettings()) || {};
    } catch (e) {
      console.error("Failed to load settings", e);
    }
    await Promise.all([
      api.getCustomNodesI18n().catch((e) => console.error("Failed to load translations", e)),
      api.getSystemStats().catch((e) => console.error("Failed to load system stats", e)),
    ]);
    await this.#loadExtensions();
    await this.#invokeAll("init");
    try {
      this.nodeDefs = await api.getNodeDefs();
    } catch (e) {
      console.error("Failed to load node definitions", e);
    }
    await this.#invokeAll("setup");
    this.#mountQueueButton(root);
    // The stores the real front end fills once the graph is up: saved workflows,
    // queue, history and the template browser's lists (/templates is a static folder).
    await Promise.allSettled([
      api.listUserDataFullInfo("workflows"),
      api.getQueue(),
      api.getHistory(64),
      api.getWorkflowTemplates(),
      fetch(api.fileURL("/templates/index.json")).then((res) => res.json()),
    ]);
    this.setupDone = true;
    this.vueAppReady = true;
    document.body.dataset.comfyReady = "true";
    document.dispatchEvent(new CustomEvent("comfy-app-ready"));
  }
}

export const app = new ComfyApp();
window.app = app;
window.comfyAPI = { app: { app }, api: { api } };
