// Enhances /upload: a drawing canvas, drag and drop, paste, and results in place.
// Without JavaScript the page is a plain form that posts to /upload.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const fileInput = $("file");
const output = $("output");
const workspace = $("workspace");
let drawn = false;      // has the canvas any ink?
let lastSent = null;    // the last image sent, to read it again as a number
let latest = 0;         // only the newest request may paint the result
let strokeTimer = null;

function clearCanvas() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  drawn = false;
}

let predictionId = null;  // names the shown prediction in a correction

function clearResult() {
  latest++;
  predictionId = null;
  $("feedback").hidden = true;
  $("feedback-status").textContent = "";
  output.hidden = true;
  $("status").textContent = "";
  $("status").className = "status";
  $("result-digit").textContent = "";
  $("confidence").textContent = "";
  $("probabilities").replaceChildren();
  $("seen").hidden = $("seen-caption").hidden = true;
  $("crops").replaceChildren();
  $("crops").hidden = $("as-number").hidden = $("number-feedback").hidden = true;
  $("number-feedback-status").textContent = "";
  $("boxes").replaceChildren();
}

// --- one digit, or a whole number on a wide canvas ---
const numberMode = () => document.querySelector('input[name="mode"]:checked').value === "number";

function setMode() {
  const wide = numberMode();
  workspace.classList.toggle("wide", wide);
  canvas.width = wide ? 1400 : 560;
  canvas.height = wide ? 420 : 560;
  clearTimeout(strokeTimer);
  clearCanvas();
  clearResult();
}
document.querySelectorAll('input[name="mode"]').forEach((input) => input.addEventListener("change", setMode));

// --- drawing, with Pointer Events so mouse, touch and pen all work ---
function point(e) {
  const r = canvas.getBoundingClientRect();
  return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
}

let last = null;
canvas.addEventListener("pointerdown", (e) => {
  if (e.button !== 0) return;
  e.preventDefault();
  canvas.setPointerCapture(e.pointerId);
  clearTimeout(strokeTimer);
  last = point(e);
  $("boxes").replaceChildren();
  ctx.lineWidth = canvas.height / 14;   // about MNIST's stroke once a digit is scaled to 28 px
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.strokeStyle = ctx.fillStyle = "#111";
  ctx.beginPath();
  ctx.arc(last[0], last[1], ctx.lineWidth / 2, 0, 2 * Math.PI);
  ctx.fill();
  drawn = true;
});
canvas.addEventListener("pointermove", (e) => {
  if (!last) return;
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  ctx.beginPath();
  ctx.moveTo(last[0], last[1]);
  for (const ev of events.length ? events : [e]) {
    last = point(ev);
    ctx.lineTo(last[0], last[1]);
  }
  ctx.stroke();
});
function endStroke() {
  if (!last) return;
  last = null;
  // Predict once the hand pauses, so a two-stroke 7 isn't judged on its first stroke alone; a number
  // takes longer to write.
  strokeTimer = setTimeout(predictCanvas, numberMode() ? 1200 : 350);
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

function predictCanvas() {
  clearTimeout(strokeTimer);
  if (!drawn) {
    showMessage("Draw a digit first.", "uncertain");
    return;
  }
  canvas.toBlob((blob) => send(blob, "drawing.png", true), "image/png");
}

// --- files: picker, drag and drop, paste ---
function sendFile(file) {
  if (file) send(file, file.name || "pasted.png");
  else showMessage("Choose an image file first.", "uncertain");
}

fileInput.addEventListener("change", () => sendFile(fileInput.files[0]));
$("upload-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sendFile(fileInput.files[0]);
});
const dropZone = document.querySelector(".input");
dropZone.addEventListener("dragover", (e) => {
  e.preventDefault();
  dropZone.classList.add("dragging");
});
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
dropZone.addEventListener("drop", (e) => {
  e.preventDefault();
  dropZone.classList.remove("dragging");
  sendFile(e.dataTransfer.files[0]);
});
document.addEventListener("paste", (e) => {
  const item = [...e.clipboardData.items].find((i) => i.kind === "file" && i.type.startsWith("image/"));
  if (item) {
    e.preventDefault();
    sendFile(item.getAsFile());
  }
});

// --- talking to /predict and /predict/number ---
async function send(blob, name, onCanvas = false, asNumber = numberMode()) {
  const id = ++latest;
  lastSent = { blob, name, onCanvas };
  const body = new FormData();
  body.append("file", blob, name);
  output.hidden = false;
  output.setAttribute("aria-busy", "true");
  $("status").textContent = "Reading…";
  let response, data;
  try {
    response = await fetch(asNumber ? "/predict/number" : "/predict", { method: "POST", body });
    data = await response.json();
  } catch (err) {
    if (id === latest) showMessage("Could not reach the server. Check your connection and try again.", "error");
    return;
  } finally {
    output.removeAttribute("aria-busy");
  }
  if (id !== latest) return;
  if (!response.ok) {
    const detail = typeof data.detail === "string" ? data.detail : "the server could not read this image";
    const noDigit = response.status === 422 && detail.startsWith("no digit");
    showMessage(capitalize(detail) + ".", noDigit ? "uncertain" : "error");
    return;
  }
  if (asNumber) showNumber(data, onCanvas);
  else showPrediction(data);
}

function capitalize(s) {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function showMessage(text, kind) {
  clearResult();
  output.hidden = false;
  $("status").textContent = text;
  $("status").className = "status " + kind;
}

function showPrediction(p) {
  clearResult();
  output.hidden = false;
  $("result-digit").textContent = p.digit;
  $("confidence").textContent = `${(p.confidence * 100).toFixed(1)}% sure`;
  if (p.not_a_digit) {
    $("result-digit").textContent = "?";
    $("status").textContent = `That doesn't look like a digit. If the model had to choose, it would say ${p.digit}.`;
    $("status").className = "status uncertain";
  } else if (p.hint) {
    $("status").textContent = "This looks like several digits, not one.";
    $("status").className = "status uncertain";
    $("as-number").hidden = false;
  } else if (p.uncertain) {
    const runnerUp = p.probabilities.reduce((best, q, d) => (d !== p.digit && (best < 0 || q > p.probabilities[best]) ? d : best), -1);
    $("status").textContent = `Not sure which digit: ${p.digit} or ${runnerUp}. ${p.digit} is only the best guess.`;
    $("status").className = "status uncertain";
  }
  const seen = $("seen");
  seen.src = "data:image/png;base64," + p.input_image;
  seen.alt = `The 28×28 image the model saw, read as ${p.digit}`;
  seen.hidden = $("seen-caption").hidden = false;
  const bars = p.probabilities.map((prob, digit) => {
    const li = document.createElement("li");
    if (digit === p.digit) li.className = "top";
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = digit;
    const meter = document.createElement("meter");
    meter.min = 0;
    meter.max = 1;
    meter.value = prob;
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(prob * 100).toFixed(1)}%`;
    li.append(label, meter, value);
    return li;
  });
  $("probabilities").replaceChildren(...bars);
  predictionId = p.prediction_id;
  $("feedback").hidden = false;
}

function showNumber(n, onCanvas) {
  clearResult();
  output.hidden = false;
  $("result-digit").textContent = n.number;
  $("confidence").textContent = `${(n.confidence * 100).toFixed(1)}% sure of the whole number`;
  if (n.uncertain) {
    $("status").textContent = `Not sure about every digit, or about where one ends and the next begins; ${n.number} is the best reading.`;
    $("status").className = "status uncertain";
  }
  const crops = n.digits.map((d, i) => {
    const li = document.createElement("li");
    const img = document.createElement("img");
    img.className = "seen";
    img.src = "data:image/png;base64," + d.input_image;
    img.alt = `Digit ${i + 1} as the model saw it, read as ${d.digit}`;
    const digit = document.createElement("span");
    digit.className = "crop-digit";
    digit.textContent = d.digit;
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${Math.round(d.confidence * 100)}%`;
    li.append(img, digit, value);
    return li;
  });
  $("crops").replaceChildren(...crops);
  $("crops").hidden = false;
  if (onCanvas) drawBoxes(n.digits);
  predictionId = n.prediction_id;
  $("right-number").value = n.number;
  $("number-feedback").hidden = false;
}

// Each digit's box, given in the drawing's pixels, over the canvas as it is shown.
function drawBoxes(digits) {
  const scale = canvas.clientWidth / canvas.width;
  const boxes = digits.map((d) => {
    const [x, y, w, h] = d.box;
    const div = document.createElement("div");
    div.style.left = `${canvas.clientLeft + x * scale}px`;
    div.style.top = `${canvas.clientTop + y * scale}px`;
    div.style.width = `${w * scale}px`;
    div.style.height = `${h * scale}px`;
    const label = document.createElement("span");
    label.textContent = d.digit;
    div.append(label);
    return div;
  });
  $("boxes").replaceChildren(...boxes);
}

$("as-number").addEventListener("click", () => {
  if (lastSent) send(lastSent.blob, lastSent.name, lastSent.onCanvas, true);
});

// --- "Wrong? The right digit is:" ---
for (let d = 0; d < 10; d++) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "secondary";
  b.textContent = d;
  b.dataset.testid = `correct-${d}`;
  b.setAttribute("aria-label", `The right digit is ${d}`);
  b.addEventListener("click", () => sendCorrection(d));
  $("feedback-buttons").append(b);
}

$("number-feedback").addEventListener("submit", (e) => {
  e.preventDefault();
  sendCorrection($("right-number").value, $("number-feedback-status"));
});

async function sendCorrection(label, status = $("feedback-status")) {
  if (!predictionId) return;
  status.className = "status";
  status.textContent = "Sending…";
  try {
    const response = await fetch("/feedback", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prediction_id: predictionId, label }),
    });
    const data = await response.json();
    if (!response.ok) throw new Error(typeof data.detail === "string" ? data.detail : "not recorded");
    status.className = "status thanks";
    status.textContent = `Thank you! Recorded as ${label}.`;
  } catch (err) {
    status.className = "status error";
    status.textContent = `Not recorded: ${err.message}.`;
  }
}

$("predict").addEventListener("click", predictCanvas);
$("clear").addEventListener("click", () => {
  clearTimeout(strokeTimer);
  clearCanvas();
  clearResult();
  fileInput.value = "";
});

clearCanvas();
$("draw").hidden = false;
// With the canvas there, the file is optional; the form still posts when JavaScript is off.
fileInput.required = false;
$("submit").textContent = "Recognize this file";
