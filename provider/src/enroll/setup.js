// The nurse's setup page, progressively enhanced (served by the provider as /assets/setup.js;
// the pages work without it, this makes them follow the gateway live).
//
// - Step 2: a "Scan the QR code" button, shown only where the browser has BarcodeDetector
//   with QR codes and a camera; the scanned text fills the claim code field.
// - Steps 3 to 5: polls the page's setup state (data-state) every second and renders it with
//   DOM calls only (text, never markup from the server). A list item is rebuilt only when its
//   data changed, so a field being typed in keeps its text and its focus. The actions post
//   JSON to the page's own routes (data-actions).
"use strict";

(function () {
  const ORDER = ["connect", "pair", "measure", "summary", "done"];

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // ---- Step 2: the QR scan -------------------------------------------------------------
  async function setUpScan() {
    const button = document.getElementById("scan");
    const field = document.getElementById("claim-code");
    const video = document.getElementById("scan-video");
    if (!button || !field || !video) return;
    if (!("BarcodeDetector" in window) || !navigator.mediaDevices ||
        !navigator.mediaDevices.getUserMedia) return;
    try {
      const formats = await window.BarcodeDetector.getSupportedFormats();
      if (!formats.includes("qr_code")) return;
      const devices = await navigator.mediaDevices.enumerateDevices();
      if (!devices.some((d) => d.kind === "videoinput")) return;
    } catch (e) {
      return;
    }
    const label = button.textContent;
    const stopLabel = button.dataset.stop || label;
    let stream = null;
    let timer = null;
    const stop = () => {
      if (timer) clearInterval(timer);
      timer = null;
      if (stream) stream.getTracks().forEach((t) => t.stop());
      stream = null;
      video.hidden = true;
      button.textContent = label;
      button.setAttribute("aria-pressed", "false");
    };
    button.hidden = false;
    button.setAttribute("aria-pressed", "false");
    button.addEventListener("click", async () => {
      if (stream) {
        stop();
        return;
      }
      try {
        stream = await navigator.mediaDevices.getUserMedia({
          video: { facingMode: "environment" }, audio: false,
        });
      } catch (e) {
        stream = null;
        return;
      }
      const detector = new window.BarcodeDetector({ formats: ["qr_code"] });
      video.srcObject = stream;
      video.hidden = false;
      await video.play().catch(() => {});
      button.textContent = stopLabel;
      button.setAttribute("aria-pressed", "true");
      timer = setInterval(async () => {
        try {
          const codes = await detector.detect(video);
          if (codes.length > 0 && codes[0].rawValue) {
            field.value = codes[0].rawValue.trim();
            stop();
            field.focus();
            const submit = document.getElementById("claim-submit");
            if (submit) submit.focus();
          }
        } catch (e) {
          // A frame that cannot be read yet: try the next one.
        }
      }, 250);
    });
  }

  // ---- Steps 3 to 5: the live setup ----------------------------------------------------
  function setUpLive() {
    const root = document.getElementById("setup");
    if (!root) return;
    const words = JSON.parse(root.dataset.words || "{}");
    const stateUrl = new URL(root.dataset.state, document.baseURI);
    const actionsUrl = root.dataset.actions;
    const message = document.getElementById("setup-message");
    let stopped = false;

    const say = (text) => { if (message) message.textContent = text || ""; };
    const fill = (text, value) => (text || "").replace("{}", value);

    async function post(action, body) {
      try {
        const r = await fetch(new URL(actionsUrl + "/" + action, document.baseURI), {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
          credentials: "same-origin",
          cache: "no-store",
        });
        if (r.status === 404 || r.status === 410) { location.reload(); return false; }
        if (!r.ok) {
          const answer = await r.json().catch(() => ({}));
          say(answer.message || String(r.status));
          return false;
        }
        say("");
        return true;
      } catch (e) {
        say(String(e));
        return false;
      }
    }

    function actionButton(text, action, address, extra) {
      const b = el("button", {
        type: "button", class: "secondary", "data-action": action, "data-address": address,
        text,
      });
      b.addEventListener("click", async () => {
        b.disabled = true;
        const ok = await post(action === "retry" || action === "pair" ? "pair" :
          action === "replace" ? "unpair" : action, Object.assign({ address }, extra || {}));
        if (ok && action === "replace") say(words.replaceHint);
        b.disabled = false;
      });
      return b;
    }

    // Keeps `list`'s items in the order of `items`, rebuilding one only when its signature
    // changed.
    function sync(list, items, key, build) {
      const existing = new Map();
      for (const child of Array.from(list.children)) existing.set(child.dataset.key, child);
      const wanted = new Set(items.map(key));
      for (const [k, child] of existing) if (!wanted.has(k)) child.remove();
      let previous = null;
      for (const item of items) {
        const k = key(item);
        const sig = JSON.stringify(item);
        let node = existing.get(k);
        if (!node || node.dataset.sig !== sig) {
          const fresh = build(item);
          fresh.dataset.key = k;
          fresh.dataset.sig = sig;
          if (node) node.replaceWith(fresh); else list.append(fresh);
          node = fresh;
        }
        const expectedNext = previous ? previous.nextElementSibling : list.firstElementChild;
        if (expectedNext !== node) {
          if (previous) previous.after(node); else list.prepend(node);
        }
        previous = node;
      }
    }

    const nameOf = (d) => d.model_name || d.name || d.model_id || d.address;

    function nearbyItem(n) {
      const li = el("li", { class: "device", "data-address": n.address });
      li.append(el("strong", { text: nameOf(n) }), " ", el("span", { text: n.address }));
      if (n.profile_text) li.append(el("p", { class: "hint", text: n.profile_text }));
      if (n.rssi_dbm !== null && n.rssi_dbm !== undefined) {
        li.append(el("p", { class: "hint", text: words.signal + " " + n.rssi_dbm + " dBm" }));
      }
      if (n.pairing_hint) li.append(el("p", { text: n.pairing_hint }));
      if (n.paired) li.append(el("p", { text: words.paired }));
      else li.append(actionButton(words.pair, "pair", n.address));
      return li;
    }

    function pairingItem(p) {
      const li = el("li", { class: "device", "data-address": p.address, "data-pairing": p.step });
      li.append(el("strong", { text: p.model_name || p.address }), " ",
        el("span", { text: p.address }));
      li.append(el("p", { role: "status", text: p.text }));
      if (p.shown !== null && p.shown !== undefined &&
          (p.step === "confirm-number" || p.step === "type-on-device")) {
        li.append(el("p", { class: "number", "data-shown": p.shown, text: String(p.shown) }));
      }
      if (p.input === "pin" || p.input === "passkey") {
        const id = "secret-" + p.address.replace(/:/g, "");
        const input = el("input", {
          id, type: "text", inputmode: "numeric", autocomplete: "one-time-code",
          maxlength: 16, "data-address": p.address,
        });
        const send = el("button", { type: "submit", text: words.send });
        const form = el("form", { "data-address": p.address },
          el("label", { for: id, text: words.secret }), input, send);
        form.addEventListener("submit", async (event) => {
          event.preventDefault();
          send.disabled = true;
          const ok = await post("secret", { address: p.address, secret: input.value });
          send.disabled = false;
          if (ok) input.value = "";
        });
        li.append(form);
      }
      if (p.input === "confirm") {
        li.append(actionButton(words.confirm, "secret", p.address, { secret: "yes" }));
      }
      if (p.step === "failed") {
        if (p.error) li.append(el("p", { class: "error", text: p.error }));
        li.append(actionButton(words.retry, "retry", p.address));
      }
      if (p.step === "paired") {
        li.append(actionButton(words.unpair, "unpair", p.address),
          actionButton(words.replace, "replace", p.address));
      }
      return li;
    }

    function deviceItem(d) {
      const li = el("li", { class: "device", "data-address": d.address });
      li.append(el("strong", { text: nameOf(d) }), " ", el("span", { text: d.address }));
      if (d.battery_pct !== null && d.battery_pct !== undefined) {
        li.append(el("p", { class: "hint", text: words.battery + " " + d.battery_pct + " %" }));
      }
      li.append(el("p", d.reading ? { class: "ok", "data-reading": "shown", text: d.reading.text }
        : { "data-reading": "waiting", text: words.measureNow }));
      li.append(actionButton(words.unpair, "unpair", d.address),
        actionButton(words.replace, "replace", d.address));
      return li;
    }

    function summary(state) {
      const box = document.getElementById("summary");
      if (!box) return;
      const sig = JSON.stringify([state.gateway && state.gateway.id, state.devices]);
      if (box.dataset.sig === sig) return;
      box.dataset.sig = sig;
      box.replaceChildren();
      const dl = el("dl");
      dl.append(el("dt", { text: words.gateway }),
        el("dd", { id: "summary-gateway", text: state.gateway ? state.gateway.id : "" }));
      dl.append(el("dt", { text: words.devices }));
      if (state.devices.length === 0) dl.append(el("dd", { text: words.noDevice }));
      for (const d of state.devices) {
        const parts = [nameOf(d)];
        if (d.battery_pct !== null && d.battery_pct !== undefined) {
          parts.push(words.battery + " " + d.battery_pct + " %");
        }
        if (d.reading) parts.push(d.reading.text);
        dl.append(el("dd", { "data-address": d.address, text: parts.join(" · ") }));
      }
      box.append(dl);
    }

    function render(state) {
      root.dataset.step = state.step;
      const reached = ORDER.indexOf(state.step);
      for (const section of root.querySelectorAll("section[data-step]")) {
        const index = ORDER.indexOf(section.dataset.step);
        section.hidden = index > Math.max(reached, 1);
        if (section.dataset.step === state.step) section.setAttribute("aria-current", "step");
        else section.removeAttribute("aria-current");
      }
      const gw = document.getElementById("gateway-state");
      if (gw) {
        const text = !state.gateway || !state.gateway.last_seen ? words.waiting
          : fill(state.gateway.online ? words.online : words.offline, state.gateway.id);
        if (gw.textContent !== text) gw.textContent = text;
        gw.dataset.online = state.gateway && state.gateway.online ? "true" : "false";
      }
      const nearby = document.getElementById("nearby");
      if (nearby) {
        const unpaired = state.nearby.filter((n) => !n.paired &&
          !state.pairings.some((p) => p.address === n.address && p.step !== "failed" &&
            p.step !== "unpaired"));
        sync(nearby, unpaired, (n) => n.address, nearbyItem);
        const none = document.getElementById("nearby-none");
        if (unpaired.length === 0 && !none) {
          nearby.after(el("p", { id: "nearby-none", class: "hint", text: words.nearbyNone }));
        } else if (unpaired.length > 0 && none) none.remove();
      }
      const pairings = document.getElementById("pairings");
      if (pairings) sync(pairings, state.pairings, (p) => p.address, pairingItem);
      const measurements = document.getElementById("measurements");
      if (measurements) sync(measurements, state.devices, (d) => d.address, deviceItem);
      summary(state);
      const done = document.getElementById("setup-done");
      const finish = document.getElementById("finish-form");
      if (done) done.hidden = !state.completed;
      if (finish) finish.hidden = state.completed;
    }

    async function poll() {
      if (stopped) return;
      try {
        const r = await fetch(stateUrl, { credentials: "same-origin", cache: "no-store" });
        if (r.status === 404 || r.status === 410) { stopped = true; location.reload(); return; }
        if (r.ok) {
          const state = await r.json();
          render(state);
          if (state.completed) { stopped = true; return; }
        }
      } catch (e) {
        // The network: try again at the next tick.
      }
      setTimeout(poll, 1000);
    }
    poll();
  }

  setUpScan();
  setUpLive();
})();
