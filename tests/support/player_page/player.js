// State shared by the player pages and read by drive.mjs through page.evaluate.
window.playerState = { errors: [], log: [], fatal: false, engineVersion: null };

function note(text) {
  window.playerState.log.push(`${(performance.now() / 1000).toFixed(2)}s ${text}`);
}

function fatal(text) {
  window.playerState.fatal = true;
  window.playerState.errors.push(text);
  note(text);
}

function startPlayback(video) {
  video.muted = true;
  const started = video.play();
  if (started) started.catch((error) => note(`play() rejected: ${error.message}`));
}

function watchVideo(video) {
  for (const name of ["loadedmetadata", "canplay", "playing", "waiting", "stalled", "ended"]) {
    video.addEventListener(name, () => note(`video ${name} t=${video.currentTime.toFixed(2)}`));
  }
  video.addEventListener("error", () => {
    const error = video.error;
    fatal(`video element error ${error ? error.code : "?"}: ${error ? error.message : ""}`);
  });
}
