// Minimal stand-in for ComfyUI_frontend's `api` (src/scripts/api.ts), enough for
// extensions that call api.fetchApi / api.apiURL / api.addEventListener.
//
// fetchApi(route, options) requests api_base + "/api" + route with
// { cache: "no-cache", ...options, headers } and a Comfy-User header, exactly the
// way the real front end does (so fetch's default credentials, "same-origin").
// Websocket messages are re-dispatched as CustomEvents named after their type.

class ComfyApi extends EventTarget {
  constructor() {
    super();
    this.api_host = location.host;
    this.api_base = location.pathname.split("/").slice(0, -1).join("/");
    this.initialClientId = sessionStorage.getItem("clientId");
    this.clientId = undefined;
    this.user = "";
    this.socket = null;
    this.serverFeatureFlags = {};
  }

  internalURL(route) {
    return this.api_base + "/internal" + route;
  }

  apiURL(route) {
    return this.api_base + "/api" + route;
  }

  fileURL(route) {
    return this.api_base + route;
  }

  async fetchApi(route, options) {
    const headers = (options && options.headers) || {};
    if (Array.isArray(headers)) headers.push(["Comfy-User", this.user]);
    else if (headers instanceof Headers) headers.set("Comfy-User", this.user);
    else headers["Comfy-User"] = this.user;
    return fetch(this.apiURL(route), { cache: "no-cache", ...options, headers });
  }

  dispatchCustomEvent(type, detail) {
    const event = detail === undefined ? new CustomEvent(type) : new CustomEvent(type, { detail });
    return super.dispatchEvent(event);
  }

  /** Open the websocket (reconnecting with the same clientId, like the real front end). */
  init() {
    this.#createSocket(false);
  }

  #createSocket(isReconnect) {
    if (this.socket) return;
    let opened = false;
    const params = new URLSearchParams();
    if (window.name) params.set("clientId", window.name);
    const protocol = location.protocol === "https:" ? "wss" : "ws";
    const query = params.toString();
    const url = `${protocol}://${this.api_host}${this.api_base}/ws` + (query ? `?${query}` : "");
    this.socket = new WebSocket(url);
    this.socket.binaryType = "arraybuffer";

    this.socket.addEventListener("open", () => {
      opened = true;
      this.socket.send(JSON.stringify({ type: "feature_flags", data: { supports_preview_metadata: false } }));
      if (isReconnect) this.dispatchCustomEvent("reconnected");
    });
    this.socket.addEventListener("error", () => {
      if (this.socket) this.socket.close();
    });
    this.socket.addEventListener("close", () => {
      setTimeout(() => {
        this.socket = null;
        this.#createSocket(true);
      }, 300);
      if (opened) {
        this.dispatchCustomEvent("status", null);
        this.dispatchCustomEvent("reconnecting");
      }
    });
    this.socket.addEventListener("message", (event) => {
      if (event.data instanceof ArrayBuffer) {
        const view = new DataView(event.data);
        this.dispatchCustomEvent("b_preview", { eventType: view.getUint32(0), data: event.data.slice(4) });
        return;
      }
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch (e) {
        console.warn("Unhandled message:", event.data, e);
        return;
      }
      switch (msg.type) {
        case "status":
          if (msg.data.sid) {
            const clientId = msg.data.sid;
            this.clientId = clientId;
            window.name = clientId;
            sessionStorage.setItem("clientId", clientId);
          }
          this.dispatchCustomEvent("status", msg.data.status ?? null);
          break;
        case "executing":
          this.dispatchCustomEvent("executing", msg.data.display_node ?? msg.data.node);
          break;
        case "feature_flags":
          this.serverFeatureFlags = msg.data;
          this.dispatchCustomEvent("feature_flags", msg.data);
          break;
        default:
          this.dispatchCustomEvent(msg.type, msg.data);
      }
    });
  }

  async getExtensions() {
    const res = await this.fetchApi("/extensions", { cache: "no-store" });
    return await res.json();
  }

  async getSettings() {
    return (await this.fetchApi("/settings")).json();
  }

  async getSetting(id) {
    return (await this.fetchApi(`/settings/${encodeURIComponent(id)}`)).json();
  }

  async storeSetting(id, value) {
    return this.fetchApi(`/settings/${encodeURIComponent(id)}`, {
      method: "POST",
      body: JSON.stringify(value),
    });
  }

  async storeSettings(settings) {
    return this.fetchApi(`/settings`, { method: "POST", body: JSON.stringify(settings) });
  }

  async getUserConfig() {
    return (await this.fetchApi("/users")).json();
  }

  async getNodeDefs() {
    return (await this.fetchApi("/object_info", { cache: "no-store" })).json();
  }

  async queuePrompt(number, { output, workflow }, options = {}) {
    const body = {
      client_id: this.clientId ?? "",
      prompt: output,
      extra_data: { extra_pnginfo: { workflow } },
    };
    if (options.partialExecutionTargets) body.partial_execution_targets = options.partialExecutionTargets;
    if (number === -1) body.front = true;
    else if (number != 0) body.number = number;
    const res = await this.fetchApi("/prompt", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (res.status !== 200) {
      const err = new Error("Prompt execution failed");
      err.response = await res.json();
      throw err;
    }
    return await res.json();
  }

  async interrupt(runningPromptId) {
    await this.fetchApi("/interrupt", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: runningPromptId ? JSON.stringify({ prompt_id: runningPromptId }) : undefined,
    });
  }

  async getQueue() {
    return (await this.fetchApi("/queue")).json();
  }

  async getHistory(max_items = 200) {
    return (await this.fetchApi(`/history?max_items=${max_items}`)).json();
  }

  async getSystemStats() {
    return (await this.fetchApi("/system_stats")).json();
  }

  /** Translations contributed by custom nodes (locales/ folders). */
  async getCustomNodesI18n() {
    return (await this.fetchApi("/i18n")).json();
  }

  /** Example workflows of custom nodes: {package: [names]}. */
  async getWorkflowTemplates() {
    return (await this.fetchApi("/workflow_templates")).json();
  }

  /** The user's files in `dir` with size and modification time (404 when the folder does not exist yet). */
  async listUserDataFullInfo(dir) {
    const res = await this.fetchApi(`/userdata?dir=${encodeURIComponent(dir)}&recurse=true&split=false&full_info=true`);
    if (res.status === 404) return [];
    if (res.status !== 200) throw new Error(`Error getting user data list '${dir}': ${res.status} ${res.statusText}`);
    return res.json();
  }
}

export const api = new ComfyApi();
