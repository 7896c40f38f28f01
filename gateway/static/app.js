// The gateway's own page: mint a link (/api/links for streams, /resolve for pages), then play it
// with the player its type needs. Everything is served by the gateway itself.
"use strict";

const form = document.getElementById("form");
const urlInput = document.getElementById("url");
const keyInput = document.getElementById("key");
const result = document.getElementById("result");
const errorBox = document.getElementById("error");
const video = document.getElementById("video");
let player = null;

keyInput.value = localStorage.getItem("hls-gateway-key") || "";

function looksLikeStream(url) {
  return /\.(m3u8|mpd)(\?|$)/i.test(new URL(url).pathname + new URL(url).search);
}

async function mint(url, key) {
  const headers = { Authorization: `Bearer ${key}` };
  if (looksLikeStream(url)) {
    const response = await fetch("api/links", {
      method: "POST",
      headers: { ...headers, "Content-Type": "application/json" },
      body: JSON.stringify({ url }),
    });
    if (!response.ok) throw new Error(await response.text());
    return (await response.json()).url;
  }
  const response = await fetch(`resolve?url=${encodeURIComponent(url)}`, { headers });
  if (!response.ok) throw new Error(await response.text());
  return (await response.json()).play;
}

function play(link) {
  if (player) player.destroy?.() ?? player.reset?.();
  player = null;
  if (/\.mpd(\?|$)/.test(link)) {
    player = dashjs.MediaPlayer().create();
    player.initialize(video, link, true);
  } else if (window.Hls && Hls.isSupported()) {
    player = new Hls();
    player.loadSource(link);
    player.attachMedia(video);
    video.play().catch(() => {});
  } else {
    video.src = link;  // Safari and TVs play HLS natively
    video.play().catch(() => {});
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  errorBox.textContent = "";
  result.textContent = "";
  localStorage.setItem("hls-gateway-key", keyInput.value);
  try {
    const link = await mint(urlInput.value, keyInput.value);
    const anchor = document.createElement("a");
    anchor.href = link;
    anchor.textContent = link;
    anchor.id = "link";
    result.append(anchor);
    // Play through the host that served this page: the printed link uses the public URL,
    // which may differ from how this browser reaches the gateway.
    const local = new URL(link);
    play(new URL(local.pathname + local.search, window.location.href).href);
  } catch (error) {
    errorBox.textContent = String(error.message || error).trim();
  }
});
