// The Chat pane (anywidget front end). State comes from the Python `Chat` widget: `messages`,
// `busy`, `system_prompt`, `model_name`, `status`, and for the model picker `models` (the loaded
// models: {name, label, model}) and `model` (the chosen one's name, which the picker sets).
// Model names come from model files: they are shown as text (textContent), never as markup. A reply being generated arrives as small
// custom messages ({type: "token", text}) and is redrawn at most once per animation frame.
// A document library picker sets `docs` (entries: `libraries`); a reply from one carries `sources`,
// and its [n] citations show where each comes from (cite.js). Document text is untrusted too.
import { renderMarkdown } from "./render.js";
import { linkCitations, sourcesView, readSources } from "./cite.js";

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const child of children) el.append(child);
  return el;
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // no clipboard API (insecure origin, older browser): the selection-based fallback
    const area = h("textarea", { style: "position:fixed;opacity:0" });
    area.value = text;
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}

function copyButton(getText, label = "Copy") {
  const button = h("button", { class: "lmnb-copy", type: "button", title: "Copy to the clipboard" }, label);
  button.addEventListener("click", async () => {
    const ok = await copyText(getText());
    button.textContent = ok ? "Copied" : "Copy failed";
    setTimeout(() => (button.textContent = label), 1200);
  });
  return button;
}

function statsLine(stats) {
  if (!stats) return "";
  const parts = [`${stats.tokens} tokens`];
  if (stats.tokens_per_s) parts.push(`${stats.tokens_per_s.toFixed(1)} tok/s`);
  if (stats.ttft_s) parts.push(`first token ${Math.round(stats.ttft_s * 1000)} ms`);
  // prompt tokens taken from the KV cache (earlier turns), not read again
  if (stats.prompt_tokens) {
    const cached = stats.cached_tokens ? ` (${stats.cached_tokens} cached)` : "";
    parts.push(`prompt ${stats.prompt_tokens} tokens${cached}`);
  }
  const lora = Object.entries(stats.lora || {});
  if (lora.length) parts.push("LoRA " + lora.map(([name, scale]) => `${name}×${scale}`).join(", "));
  if (stats.finish_reason === "cancelled") parts.push("stopped");
  else if (stats.finish_reason === "length") parts.push("max tokens reached");
  // the context_overflow policy left these out of the prompt (they stay in the conversation)
  const dropped = stats.dropped_messages || 0;
  if (dropped) parts.push(`${dropped} earlier message${dropped === 1 ? "" : "s"} left out to fit the context`);
  return parts.join(" · ");
}

function fillBody(body, role, text) {
  if (role === "user") {
    body.textContent = text; // what the user typed is shown as typed
    return;
  }
  body.innerHTML = renderMarkdown(text);
  for (const pre of body.querySelectorAll("pre")) {
    const code = pre.textContent;
    pre.classList.add("lmnb-code");
    pre.append(copyButton(() => code));
  }
}

// Folded text (a tool call, its result, a model's thinking): a <details> whose parts are set as
// text, never as markup, since arguments, results and thinking are untrusted.
function folded(cls, summary, text) {
  const pre = h("pre", { class: "lmnb-folded-text" });
  pre.textContent = text;
  const head = h("summary", {});
  head.textContent = summary;
  return h("details", { class: cls }, head, pre);
}

function toolView(m) {
  const name = m.name || "tool";
  const el = h("div", { class: "lmnb-msg lmnb-msg-tool" },
    folded("lmnb-tool-result", `\u{1F527} result of ${name}`, m.content || ""));
  return el;
}

function messageView(m, tip) {
  if (m.role === "tool") return toolView(m);
  const role = m.role === "user" ? "user" : "assistant";
  const body = h("div", { class: "lmnb-msg-body" });
  fillBody(body, role, m.content || "");
  const sources = role === "assistant" ? readSources(m.sources) : new Map();
  const listing = sources.size ? sourcesView(sources) : null;
  if (listing) linkCitations(body, sources, tip, listing);
  const head = h("div", { class: "lmnb-msg-role" }, role === "user" ? "You" : "Assistant");
  const extras = [];
  if (role === "assistant" && m.reasoning) extras.push(folded("lmnb-thinking", "Thinking", m.reasoning));
  for (const call of (role === "assistant" && m.tool_calls) || []) {
    const fn = call.function || {};
    extras.push(folded("lmnb-tool-call", `\u{1F527} ${fn.name || "?"}(…)`, fn.arguments || ""));
  }
  const foot = h("div", { class: "lmnb-msg-foot" });
  if (m.stats) foot.append(h("span", { class: "lmnb-msg-stats" }, statsLine(m.stats)));
  foot.append(copyButton(() => m.content || ""));
  const el = h("div", { class: `lmnb-msg lmnb-msg-${role}` }, head, ...extras, body, ...(listing ? [listing] : []), foot);
  if (m.stats && m.stats.finish_reason === "cancelled") el.classList.add("lmnb-msg-stopped");
  return el;
}

function render({ model, el }) {
  const title = h("span", { class: "lmnb-chat-model" });
  const picker = h("select", { class: "lmnb-chat-picker", title: "The model that answers", "aria-label": "Model" });
  const docsPicker = h("select", {
    class: "lmnb-chat-docs",
    title: "Answer from a document library (lmnb.docs): replies cite its passages as [1], [2]",
    "aria-label": "Documents",
  });
  const clear = h("button", { class: "lmnb-clear", type: "button", title: "Forget this conversation" }, "Clear");
  const toolList = h("div", { class: "lmnb-chat-toollist" });
  const toolSummary = h("summary", { title: "The Python functions the model may call" });
  const toolbox = h("details", { class: "lmnb-chat-toolbox" }, toolSummary, toolList);
  const header = h("div", { class: "lmnb-chat-header" }, title,
    h("span", { class: "lmnb-chat-tools" }, toolbox, docsPicker, picker, clear));

  const system = h("textarea", { class: "lmnb-chat-system", rows: "2", placeholder: "e.g. You are a concise tutor." });
  const systemBox = h("details", { class: "lmnb-chat-system-box" }, h("summary", {}, "System prompt"), system);

  const list = h("div", { class: "lmnb-chat-messages", role: "log", "aria-live": "polite" });
  const input = h("textarea", {
    class: "lmnb-chat-input",
    rows: "2",
    placeholder: "Message the model (Enter sends, Shift+Enter for a new line)",
  });
  const send = h("button", { class: "lmnb-send", type: "button" }, "Send");
  const stop = h("button", { class: "lmnb-stop", type: "button" }, "Stop");
  const regenerate = h("button", { class: "lmnb-regenerate", type: "button", title: "Generate the last reply again" }, "Regenerate");
  const composer = h("div", { class: "lmnb-chat-composer" }, input, h("div", { class: "lmnb-chat-buttons" }, send, stop, regenerate));
  const status = h("div", { class: "lmnb-chat-status" });

  // one tooltip for every citation, in the root: the message list's scrolling would clip it
  const tip = h("div", { class: "lmnb-cite-tip", role: "tooltip" });
  tip.hidden = true;
  const root = h("div", { class: "lmnb-chat" }, header, systemBox, list, composer, status, tip);
  // Keys typed in the chat are text, not JupyterLab's notebook shortcuts (Lumino honours this).
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  el.append(root);

  let streaming = null; // {text, view, body, progress, dirty}
  let frame = 0;

  const nearBottom = () => list.scrollHeight - list.scrollTop - list.clientHeight < 48;
  const toBottom = () => (list.scrollTop = list.scrollHeight);

  function streamingView() {
    const body = h("div", { class: "lmnb-msg-body" });
    const progress = h("div", { class: "lmnb-msg-progress" });
    // thinking and tool steps stream as text (untrusted), folded like the finished reply's
    const thinkingText = h("pre", { class: "lmnb-folded-text" });
    const thinkingHead = h("summary", {});
    thinkingHead.textContent = "Thinking…";
    const thinking = h("details", { class: "lmnb-thinking", open: "" }, thinkingHead, thinkingText);
    thinking.hidden = true;
    const steps = h("div", { class: "lmnb-msg-steps" });
    const view = h("div", { class: "lmnb-msg lmnb-msg-assistant lmnb-streaming" },
      h("div", { class: "lmnb-msg-role" }, "Assistant"), progress, thinking, steps, body);
    return { text: "", thinking: "", view, body, progress, thinkingBox: thinking, thinkingText, steps, dirty: false };
  }

  function addStep(msg) {
    const name = typeof msg.name === "string" ? msg.name : "?";
    const args = typeof msg.arguments === "string" ? msg.arguments : "";
    const out = typeof msg.output === "string" ? msg.output : "";
    const secs = typeof msg.seconds === "number" ? ` · ${msg.seconds.toFixed(2)} s` : "";
    streaming.steps.append(
      folded("lmnb-tool-call", `\u{1F527} ${name}(…)`, args),
      folded("lmnb-tool-result", `\u{1F527} result of ${name}${msg.error ? " (error)" : ""}${secs}`, out),
    );
  }

  function drawTools() {
    const tools = (model.get("tools") || []).filter((t) => t && typeof t.name === "string");
    toolbox.hidden = tools.length === 0;
    const on = tools.filter((t) => t.enabled).length;
    toolSummary.textContent = `Tools (${on}/${tools.length})`;
    toolList.replaceChildren(
      ...tools.map((t) => {
        const box = h("input", { type: "checkbox" });
        box.checked = !!t.enabled;
        box.addEventListener("change", () => model.send({ type: "tool_toggle", name: t.name, enabled: box.checked }));
        const label = h("label", { class: "lmnb-chat-tool" }, box, h("span", {}));
        label.lastChild.textContent = t.name;
        label.title = typeof t.description === "string" ? t.description : "";
        return label;
      }),
    );
  }

  function drawStreaming() {
    frame = 0;
    if (!streaming || !streaming.dirty) return;
    const stick = nearBottom();
    streaming.dirty = false;
    fillBody(streaming.body, "assistant", streaming.text);
    if (streaming.thinking) {
      streaming.thinkingBox.hidden = false;
      streaming.thinkingText.textContent = streaming.thinking;
    }
    if (streaming.text || streaming.thinking) streaming.progress.textContent = "";
    if (stick) toBottom();
  }

  function schedule() {
    streaming.dirty = true;
    if (!frame) frame = requestAnimationFrame(drawStreaming);
  }

  function drawMessages() {
    const stick = nearBottom();
    const messages = model.get("messages") || [];
    tip.hidden = true;
    const views = messages.map((m) => messageView(m, tip));
    if (!messages.length && !streaming) {
      views.push(h("div", { class: "lmnb-chat-empty" }, "Send a message to start. `%%lm chat` cells continue this conversation."));
    }
    list.replaceChildren(...views);
    if (streaming) list.append(streaming.view);
    if (stick || streaming) toBottom();
    const hasReply = messages.some((m) => m.role === "assistant");
    regenerate.disabled = model.get("busy") || !hasReply;
  }

  function drawModels() {
    const entries = (model.get("models") || []).filter((m) => m && typeof m.name === "string");
    const chosen = model.get("model") || "default";
    const key = JSON.stringify([entries, chosen]);
    if (picker.dataset.key === key) return; // unchanged: keep the open list as it is
    picker.dataset.key = key;
    picker.replaceChildren(
      ...entries.map((m) => {
        const option = document.createElement("option");
        option.value = m.name;
        option.textContent = m.label || m.name;
        option.title = m.model || "";
        return option;
      }),
    );
    picker.value = entries.some((m) => m.name === chosen) ? chosen : entries.length ? entries[0].name : "";
    picker.hidden = entries.length < 2; // one model (or none): nothing to choose
  }

  function drawDocs() {
    const names = (model.get("libraries") || []).filter((n) => typeof n === "string");
    const chosen = model.get("docs") || "";
    const key = JSON.stringify([names, chosen]);
    if (docsPicker.dataset.key === key) return; // unchanged: keep the open list as it is
    docsPicker.dataset.key = key;
    const entries = [["", "No documents"], ...names.map((n) => [n, `Docs: ${n}`])];
    if (chosen && !names.includes(chosen)) entries.push([chosen, `Docs: ${chosen} (not made yet)`]);
    docsPicker.replaceChildren(
      ...entries.map(([value, label]) => {
        const option = document.createElement("option");
        option.value = value;
        option.textContent = label;
        return option;
      }),
    );
    docsPicker.value = chosen;
  }

  function drawState() {
    const busy = model.get("busy");
    root.dataset.busy = busy ? "true" : "false";
    send.hidden = busy;
    stop.hidden = !busy;
    picker.disabled = busy; // the reply being generated keeps its model
    docsPicker.disabled = busy;
    const name = model.get("model_name");
    title.textContent = name || "No model loaded";
    title.classList.toggle("lmnb-chat-nomodel", !name);
    status.textContent = model.get("status") || "";
    if (document.activeElement !== system) system.value = model.get("system_prompt") || "";
    systemBox.classList.toggle("lmnb-chat-system-set", !!model.get("system_prompt"));
    if (!busy && streaming) {
      streaming = null;
      drawMessages();
    }
    regenerate.disabled = busy || !(model.get("messages") || []).some((m) => m.role === "assistant");
  }

  function submit() {
    const text = input.value.trim();
    if (!text || model.get("busy")) return;
    model.send({ type: "send", text });
    input.value = "";
  }

  function onCustom(msg) {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "start") {
      streaming = streamingView();
      drawMessages();
    } else if (msg.type === "token" || msg.type === "sync") {
      if (!streaming) {
        streaming = streamingView();
        drawMessages();
      }
      streaming.text = msg.type === "sync" ? msg.text : streaming.text + msg.text;
      schedule();
    } else if (msg.type === "thinking" && typeof msg.text === "string") {
      if (!streaming) {
        streaming = streamingView();
        drawMessages();
      }
      streaming.thinking += msg.text;
      schedule();
    } else if (msg.type === "round" && streaming) {
      streaming.text = ""; // a new request of the tool loop: its own text
      schedule();
    } else if (msg.type === "tool_step" && streaming) {
      addStep(msg);
      schedule();
    } else if (msg.type === "progress" && streaming) {
      const pct = Math.round((100 * msg.done) / Math.max(1, msg.total));
      streaming.progress.textContent = `Reading the prompt… ${pct}% of ${msg.total} tokens`;
    } else if (msg.type === "end") {
      if (frame) cancelAnimationFrame(frame);
      frame = 0;
      streaming = null;
      drawMessages();
    } else if (msg.type === "restore" && !input.value) {
      input.value = msg.text;
    }
  }

  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    }
  });
  send.addEventListener("click", submit);
  stop.addEventListener("click", () => model.send({ type: "stop" }));
  regenerate.addEventListener("click", () => model.send({ type: "regenerate" }));
  clear.addEventListener("click", () => model.send({ type: "clear" }));
  picker.addEventListener("change", () => {
    model.set("model", picker.value);
    model.save_changes();
  });
  docsPicker.addEventListener("change", () => {
    model.set("docs", docsPicker.value);
    model.save_changes();
  });
  // libraries made elsewhere (a cell, the Documents tab) show up when the picker is next used
  docsPicker.addEventListener("focus", () => model.send({ type: "libraries" }));
  system.addEventListener("change", () => {
    model.set("system_prompt", system.value);
    model.save_changes();
  });

  const onMessages = () => drawMessages();
  model.on("change:messages", onMessages);
  model.on("change:busy change:model_name change:status change:system_prompt", drawState);
  model.on("change:models change:model", drawModels);
  model.on("change:tools", drawTools);
  model.on("change:libraries change:docs", drawDocs);
  model.on("msg:custom", onCustom);
  drawMessages();
  drawDocs();
  drawModels();
  drawTools();
  drawState();
  if (model.get("busy")) model.send({ type: "hello" }); // opened mid-reply: ask for the text so far

  return () => {
    if (frame) cancelAnimationFrame(frame);
    model.off("change:messages", onMessages);
    model.off("change:busy change:model_name change:status change:system_prompt", drawState);
    model.off("change:models change:model", drawModels);
    model.off("change:tools", drawTools);
    model.off("change:libraries change:docs", drawDocs);
    model.off("msg:custom", onCustom);
  };
}

export default { render };
