// Enhances /upload: a drawing canvas, drag and drop, paste, and results in place.
// Without JavaScript the page is a plain form that posts to /upload.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const fileInput = $("file");
const output = $("output");
const workspace = $("workspace");
let strokes = [];       // the drawing: each stroke its points, in canvas pixels
let lastSent = null;    // the last image sent: read again when the mode changes
let latest = 0;         // only the newest request may paint the result
let strokeTimer = null;
let uploadUrl = null;   // the object URL of the shown upload, revoked when another replaces it

// What the page says, in its language: the template's translations, with {name} filled in here.
const messages = JSON.parse($("messages").textContent);
const say = (key, params = {}) => messages[key].replace(/\{(\w+)\}/g, (_, name) => params[name]);
const percent = (share, decimals = 1) => new Intl.NumberFormat(document.documentElement.lang, {
  style: "percent", minimumFractionDigits: decimals, maximumFractionDigits: decimals,
}).format(share);

function clearCanvas() {
  strokes = [];
  render();
}

// The pen follows the size the hand draws at, as MNIST's writers' pens did: about 0.12 of the digit's height.
// A fixed pen of 1/14 of the pad made a blob of a digit drawn over a tenth of it (64.0% read right in the realism
// benchmark's training digits, 98.4% with this pen). Its share is of the drawing's longer side, or of its height
// in number mode, where the width holds several digits. It is at least 1/140 of the canvas's height, so that a
// stroke's start shows, and at most the old 1/14: wider, a digit drawn over 90% of the pad ran off its edges
// (95.8% against 96.0%). The whole drawing is drawn again as it grows, so that every stroke has the one pen.
const PEN_SHARE = 0.12;
const PEN_LEAST = 1 / 140;
const PEN_MOST = 1 / 14;

function penWidth() {
  const points = strokes.flat();
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const height = Math.max(...ys) - Math.min(...ys);
  const extent = numberMode() ? height : Math.max(height, Math.max(...xs) - Math.min(...xs));
  return Math.min(Math.max(PEN_SHARE * extent, PEN_LEAST * canvas.height), PEN_MOST * canvas.height);
}

function render() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (!strokes.length) return;
  ctx.lineWidth = penWidth();
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.strokeStyle = ctx.fillStyle = "#111";
  for (const stroke of strokes) {
    ctx.beginPath();
    ctx.arc(stroke[0][0], stroke[0][1], ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fill();
    ctx.beginPath();
    ctx.moveTo(...stroke[0]);
    for (const p of stroke.slice(1)) ctx.lineTo(...p);
    ctx.stroke();
  }
}

let predictionId = null;  // names the shown prediction in a correction

// Back to the empty answer. The card stays where it is, so that nothing around it moves.
function clearResult() {
  latest++;
  predictionId = null;
  $("placeholder").hidden = false;
  $("feedback").hidden = true;
  $("feedback-status").textContent = "";
  $("status").textContent = "";
  $("status").className = "status";
  $("result-digit").textContent = "";
  $("confidence").textContent = "";
  $("probabilities").replaceChildren();
  $("seen-row").hidden = true;
  $("crops").replaceChildren();
  $("crops").hidden = $("as-number").hidden = $("number-feedback").hidden = true;
  $("number-feedback-status").textContent = "";
  $("boxes").replaceChildren();
  $("upload-boxes").replaceChildren();
  $("upload-figure").hidden = true;
  $("why").hidden = true;
  $("why-pictures").replaceChildren();
  $("model").hidden = true;
}

// --- one digit, or a whole number on a wide canvas ---
const numberMode = () => document.querySelector('input[name="mode"]:checked').value === "number";
// A phone's wide canvas is 2:1, so that it is tall enough to write in; a desktop's is 10:3.
const narrowScreen = window.matchMedia("(max-width: 40rem)");

// The canvas at a new size, with the drawing kept: scaled to fit and centred.
function resizeCanvas(width, height) {
  canvas.style.aspectRatio = `${width} / ${height}`;
  if (canvas.width === width && canvas.height === height) return;
  const s = Math.min(width / canvas.width, height / canvas.height);
  const dx = (width - canvas.width * s) / 2;
  const dy = (height - canvas.height * s) / 2;
  strokes = strokes.map((stroke) => stroke.map(([x, y]) => [dx + x * s, dy + y * s]));
  canvas.width = width;
  canvas.height = height;
  render();
}

// Switching mode keeps the work: the drawing, or the image given, is read again in the new mode.
function setMode() {
  const wide = numberMode();
  workspace.classList.toggle("wide", wide);
  resizeCanvas(wide ? (narrowScreen.matches ? 840 : 1400) : 560, wide ? 420 : 560);
  clearTimeout(strokeTimer);
  if (lastSent && !lastSent.onCanvas) send(lastSent.blob, lastSent.name);
  else if (strokes.length) predictCanvas();
  else clearResult();
}
document.querySelectorAll('input[name="mode"]').forEach((input) => input.addEventListener("change", setMode));

// --- drawing, with Pointer Events so mouse, touch and pen all work ---
function point(e) {
  const r = canvas.getBoundingClientRect();
  return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
}

let drawing = null;  // the stroke the pointer is drawing, until it lifts
canvas.addEventListener("pointerdown", (e) => {
  if (e.button !== 0) return;
  e.preventDefault();
  canvas.setPointerCapture(e.pointerId);
  clearTimeout(strokeTimer);
  $("boxes").replaceChildren();
  drawing = [point(e)];
  strokes.push(drawing);
  render();
});
canvas.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  for (const ev of events.length ? events : [e]) drawing.push(point(ev));
  render();
});
function endStroke() {
  if (!drawing) return;
  drawing = null;
  // Predict once the hand pauses, so a two-stroke 7 isn't judged on its first stroke alone; a number
  // takes longer to write.
  strokeTimer = setTimeout(predictCanvas, numberMode() ? 1200 : 350);
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

function predictCanvas() {
  clearTimeout(strokeTimer);
  if (!strokes.length) {
    showMessage(say("drawFirst"), "uncertain");
    return;
  }
  canvas.toBlob((blob) => send(blob, "drawing.png", true), "image/png");
}

// --- files: picker, drag and drop, paste ---
function sendFile(file) {
  if (file) send(file, file.name || "pasted.png");
  else showMessage(say("chooseFile"), "uncertain");
}

// Emptied as the picker opens, so that choosing the same file again is a change too.
fileInput.addEventListener("click", () => { fileInput.value = ""; });
fileInput.addEventListener("change", () => sendFile(fileInput.files[0]));
$("upload-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sendFile(fileInput.files[0]);
});
workspace.addEventListener("dragover", (e) => {
  e.preventDefault();
  workspace.classList.add("dragging");
});
workspace.addEventListener("dragleave", (e) => {
  if (!workspace.contains(e.relatedTarget)) workspace.classList.remove("dragging");
});
workspace.addEventListener("drop", (e) => {
  e.preventDefault();
  workspace.classList.remove("dragging");
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
async function send(blob, name, onCanvas = false) {
  const asNumber = numberMode();
  const id = ++latest;
  lastSent = { blob, name, onCanvas };
  const body = new FormData();
  body.append("file", blob, name);
  output.setAttribute("aria-busy", "true");
  $("status").textContent = say("reading");
  $("status").className = "status";
  $("placeholder").hidden = true;
  let response, data;
  try {
    response = await fetch(asNumber ? "/predict/number?explain=true" : "/predict?explain=true", { method: "POST", body });
    data = await response.json();
  } catch (err) {
    if (id === latest) showMessage(say("unreachable"), "error");
    return;
  } finally {
    if (id === latest) output.removeAttribute("aria-busy");
  }
  if (id !== latest) return;
  if (!response.ok) {
    // The service says why in the page's language. A 422 from here is an image with no digit to read.
    const detail = typeof data.detail === "string" ? data.detail : say("unreadable");
    showMessage(sentence(detail), response.status === 422 ? "uncertain" : "error");
    return;
  }
  clearResult();
  $("placeholder").hidden = true;
  if (asNumber) showNumber(data, onCanvas ? null : blob);
  else showPrediction(data, onCanvas ? null : blob);
  // Which weights answered, small, at the end: what a correction is tied to, and what /model describes.
  $("model").textContent = say("model", { model: data.model });
  $("model").hidden = false;
  bringIntoView();
}

// The answer (its digit, or what went wrong) in view: after an upload on a phone it is above the file picker.
function bringIntoView() {
  const r = $("answer").getBoundingClientRect();
  if (r.top < 0 || r.bottom > window.innerHeight) $("answer").scrollIntoView({ block: "nearest" });
}

function sentence(s) {
  return s.charAt(0).toUpperCase() + s.slice(1) + (/[.?!]$/.test(s) ? "" : ".");
}

function showMessage(text, kind) {
  clearResult();
  $("placeholder").hidden = true;
  $("status").textContent = text;
  $("status").className = "status " + kind;
  bringIntoView();
}

function status(text) {
  $("status").textContent = text;
  $("status").className = "status uncertain";
}

function runnerUp(probabilities, digit) {
  return probabilities.reduce((best, q, d) => (d !== digit && (best < 0 || q > probabilities[best]) ? d : best), -1);
}

// The upload itself, with each digit's box over it when a number was read.
function showUpload(blob, digits) {
  if (uploadUrl) URL.revokeObjectURL(uploadUrl);
  uploadUrl = URL.createObjectURL(blob);
  const img = $("upload-image");
  img.alt = digits ? say("boxedUpload", { count: digits.length }) : say("upload");
  img.src = uploadUrl;
  $("upload-figure").hidden = false;
  img.classList.remove("tiny");
  img.decode().then(() => {
    // A 28×28 upload is shown four times over, its pixels kept sharp.
    img.classList.toggle("tiny", Math.max(img.naturalWidth, img.naturalHeight) < 112);
    if (digits) drawBoxes($("upload-boxes"), digits, img.naturalWidth, img.naturalHeight);
  }, () => {});  // an image the browser can't show: the answer stands without it
}

function picture(src, alt) {
  const img = document.createElement("img");
  img.className = "seen";
  img.src = "data:image/png;base64," + src;
  img.alt = alt;
  return img;
}

function showPrediction(p, upload) {
  const several = p.hint && !p.not_a_digit;
  $("result-digit").textContent = p.not_a_digit ? "?" : several ? "" : p.digit;
  // "?" for no digit, with no confidence beside it: the guess it would be sure of isn't there.
  $("confidence").textContent = several || p.not_a_digit ? "" : say("sure", { percent: percent(p.confidence) });
  const other = runnerUp(p.probabilities, p.digit);
  if (p.not_a_digit) {
    status(say("notADigit", { digit: p.digit }));
  } else if (several) {
    status(say("several"));
    $("as-number").hidden = false;
  } else if (p.uncertain) {
    status(say("between", { digit: p.digit, other }));
  }
  if (upload) showUpload(upload, null);
  if (several) return;  // no single digit to explain, show the chances of, or correct
  $("seen").src = "data:image/png;base64," + p.input_image;
  $("seen").alt = say("seen", { digit: p.digit });
  $("seen-row").hidden = false;
  const between = p.uncertain && !p.not_a_digit;
  $("why-summary").textContent = say("whyDigit");
  $("why-pictures").replaceChildren(picture(p.explanation, say("pushed", { digit: p.digit })));
  $("why-legend").textContent = say(between ? "legendBetween" : p.not_a_digit ? "legendWould" : "legendMade",
    { digit: p.digit, other });
  $("why").hidden = false;
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
    meter.setAttribute("aria-label", `${digit}`);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = percent(prob);
    li.append(label, meter, value);
    return li;
  });
  $("probabilities").replaceChildren(...bars);
  predictionId = p.prediction_id;
  // The model's own answer is no correction, unless it found no digit and only had to choose one.
  for (const b of $("feedback-buttons").children) {
    const d = Number(b.dataset.digit);
    b.disabled = d === p.digit && !p.not_a_digit;
    b.setAttribute("aria-label", say(b.disabled ? "modelsAnswer" : "rightDigit", { digit: d }));
    b.setAttribute("aria-pressed", "false");
  }
  $("feedback").hidden = false;
}

function showNumber(n, upload) {
  $("result-digit").textContent = n.number;
  $("confidence").textContent = say("sureOfNumber", { percent: percent(n.confidence) });
  if (n.uncertain) {
    status(say("numberUncertain", { number: n.number }));
  }
  if (upload) showUpload(upload, n.digits);
  else drawBoxes($("boxes"), n.digits, canvas.width, canvas.height);
  const crops = n.digits.map((d, i) => {
    const li = document.createElement("li");
    const digit = document.createElement("span");
    digit.className = "crop-digit";
    digit.textContent = d.digit;
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = percent(d.confidence, 0);
    li.append(picture(d.input_image, say("crop", { place: i + 1, digit: d.digit })), digit, value);
    return li;
  });
  $("crops").replaceChildren(...crops);
  $("crops").hidden = false;
  $("why-summary").textContent = say("whyDigits");
  const why = n.digits.map((d, i) => {
    const li = document.createElement("li");
    const digit = document.createElement("span");
    digit.className = "crop-digit";
    digit.textContent = d.digit;
    li.append(picture(d.explanation, say("cropPushed", { place: i + 1, digit: d.digit })), digit);
    return li;
  });
  const list = document.createElement("ol");
  list.className = "crops";
  list.replaceChildren(...why);
  $("why-pictures").replaceChildren(list);
  $("why-legend").textContent = say("legendEach");
  $("why").hidden = false;
  predictionId = n.prediction_id;
  $("right-number").value = n.number;
  $("number-feedback").hidden = false;
}

// Each digit's box, in the image's own pixels, over it as it is shown: in shares of its size, so that the
// boxes stay put when the page is resized.
function drawBoxes(layer, digits, width, height) {
  const boxes = digits.map((d) => {
    const [x, y, w, h] = d.box;
    const div = document.createElement("div");
    div.style.left = `${(100 * x) / width}%`;
    div.style.top = `${(100 * y) / height}%`;
    div.style.width = `${(100 * w) / width}%`;
    div.style.height = `${(100 * h) / height}%`;
    const label = document.createElement("span");
    label.textContent = d.digit;
    div.append(label);
    return div;
  });
  layer.replaceChildren(...boxes);
}

// "Read it as a whole number": the mode changes, and with it the radio and the canvas.
$("as-number").addEventListener("click", () => {
  $("as-number").hidden = true;
  document.querySelector('input[name="mode"][value="number"]').checked = true;
  setMode();
});

// --- "Wrong? The right digit is:" ---
for (let d = 0; d < 10; d++) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "secondary";
  b.textContent = d;
  b.dataset.testid = `correct-${d}`;
  b.dataset.digit = d;
  b.addEventListener("click", () => {
    for (const other of $("feedback-buttons").children) other.setAttribute("aria-pressed", String(other === b));
    sendCorrection(d);
  });
  $("feedback-buttons").append(b);
}

$("number-feedback").addEventListener("submit", (e) => {
  e.preventDefault();
  const label = $("right-number").value;
  if (label === $("result-digit").textContent) {
    $("number-feedback-status").className = "status thanks";
    $("number-feedback-status").textContent = say("nothingToCorrect");
    return;
  }
  sendCorrection(label, $("number-feedback-status"));
});

async function sendCorrection(label, status = $("feedback-status")) {
  if (!predictionId) return;
  status.className = "status";
  status.textContent = say("sending");
  try {
    const response = await fetch("/feedback", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prediction_id: predictionId, label }),
    });
    const data = await response.json();
    if (!response.ok) throw new Error(typeof data.detail === "string" ? data.detail : response.statusText);
    status.className = "status thanks";
    status.textContent = say("recorded", { label });
  } catch (err) {
    status.className = "status error";
    status.textContent = sentence(say("notRecorded", { why: err.message }));
  }
}

$("predict").addEventListener("click", predictCanvas);
$("clear").addEventListener("click", () => {
  clearTimeout(strokeTimer);
  clearCanvas();
  clearResult();
  lastSent = null;
  fileInput.value = "";
});

clearCanvas();
clearResult();
canvas.style.aspectRatio = `${canvas.width} / ${canvas.height}`;
workspace.classList.add("js");
$("draw").hidden = output.hidden = $("drop-hint").hidden = false;
// With the canvas there, the file is optional; the form still posts when JavaScript is off.
fileInput.required = false;
$("submit").textContent = say("recognizeFile");
