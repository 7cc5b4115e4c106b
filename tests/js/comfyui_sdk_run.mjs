// Runs a workflow with @saintno/comfyui-sdk, the API key given as its
// bearer_token credentials (sent on every fetch and on the /ws handshake).
// Usage: node comfyui_sdk_run.mjs BASE_URL, the key in COMFY_API_KEY.
// Prints one JSON line: the saved images, the socket events it saw, and
// the socket's log (it falls back to polling when the socket is refused).
import { CallWrapper, ComfyApi, PromptBuilder } from "@saintno/comfyui-sdk";

const [base, key] = [process.argv[2], process.env.COMFY_API_KEY];
const api = new ComfyApi(base, undefined, { credentials: { type: "bearer_token", token: key } });
const events = [];
let runEnded; // the socket's word that the run is over (it may come after onFinished)
const ended = new Promise((resolve) => { runEnded = resolve; });
api.on("execution_success", runEnded);
const socketLog = [];
api.on("all", (event) => events.push(event.detail.type));
api.on("log", (event) => { if (event.detail.fnName === "socket") socketLog.push(event.detail.message); });
api.on("auth_error", () => socketLog.push("auth_error"));
const connected = new Promise((resolve) => api.on("connected", resolve));
await api.init(5, 500).waitForReady();
await connected;

const workflow = new PromptBuilder(
  {
    "1": { class_type: "EmptyImage", inputs: { width: 16, height: 16, batch_size: 1, color: 0 } },
    "2": { class_type: "ImageBlur", inputs: { image: ["1", 0], blur_radius: 1, sigma: 1.0 } },
    "3": { class_type: "SaveImage", inputs: { images: ["2", 0], filename_prefix: "sdk" } },
  },
  ["width", "color"],
  ["images"],
)
  .setInputNode("width", "1.inputs.width")
  .setInputNode("color", "1.inputs.color")
  .setOutputNode("images", "3")
  .input("width", 20)
  .input("color", Math.floor(Math.random() * 0xffffff)); // never a cached run

const output = await new Promise((resolve, reject) => {
  new CallWrapper(api, workflow)
    .onFinished((data) => resolve(data))
    .onFailed((error) => reject(error))
    .run();
});
await Promise.race([ended, new Promise((resolve) => setTimeout(resolve, 20000))]);
const images = output.images.images;
const blob = await api.getImage(images[0]);
const png = Buffer.from(await blob.arrayBuffer()).subarray(0, 4).toString("latin1") === "\x89PNG";
console.log(JSON.stringify({ images, png, events, socketLog }));
api.destroy();
process.exit(0);
