// Opens a player page in Debian's Chromium and reports, as one JSON line on stdout, whether the
// video really advanced: {ok, currentTime, errors, log}.
// Usage: node drive.mjs <page url> <seconds to advance> <timeout seconds>
// "Advance" is measured from the first position the video showed, so a live stream that
// starts far into its timeline must still play on for the full number of seconds.
import { chromium } from "playwright-core";

const [pageUrl, secondsArg, timeoutArg] = process.argv.slice(2);
const target = Number(secondsArg);
const deadline = Date.now() + Number(timeoutArg) * 1000;
const executablePath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

const errors = [];
const log = [];
const stamp = () => new Date().toISOString().slice(11, 23);
const record = (text) => log.push(`${stamp()} ${text}`);

let browser;
let result = { ok: false, currentTime: 0, errors, log };
try {
  browser = await chromium.launch({
    executablePath,
    args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--mute-audio"],
    timeout: Math.max(1000, deadline - Date.now()),
  });
  record(`browser ${browser.version()}`);
  const page = await browser.newPage();
  page.on("console", (message) => {
    record(`console.${message.type()}: ${message.text()}`);
    if (message.type() === "error") errors.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (error) => {
    record(`pageerror: ${error.message}`);
    errors.push(`page: ${error.message}`);
  });
  page.on("requestfailed", (request) => {
    record(`request failed: ${request.url()} ${request.failure()?.errorText ?? ""}`);
  });
  page.on("response", (response) => {
    record(`response ${response.status()} ${response.url()}`);
  });
  await page.goto(pageUrl, { timeout: Math.max(1000, deadline - Date.now()) });

  let state = null;
  let currentTime = 0;
  let start = null;
  let advanced = 0;
  while (Date.now() < deadline) {
    [state, currentTime] = await page.evaluate(() => [
      { errors: window.playerState.errors, fatal: window.playerState.fatal },
      document.getElementById("video").currentTime,
    ]);
    if (start === null && currentTime > 0) start = currentTime <= 0.5 ? 0 : currentTime;
    advanced = start === null ? 0 : currentTime - start;
    if (advanced >= target || state.fatal) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const pageState = await page.evaluate(() => window.playerState);
  errors.unshift(...pageState.errors);
  for (const line of pageState.log) log.push(`page ${line}`);
  record(`${pageState.engineVersion ?? "engine"}: advanced ${advanced} of ${target}`);
  if (advanced < target && !pageState.fatal) {
    errors.push(`timed out: video advanced ${advanced.toFixed(2)}s of ${target}s`);
  }
  const stalls = pageState.log.filter((line) => /bufferStalledError/.test(line)).length;
  result = { ok: advanced >= target && !pageState.fatal, currentTime, advanced, stalls, errors, log };
} catch (error) {
  errors.push(`driver: ${error.message}`);
} finally {
  if (browser) await browser.close().catch(() => {});
}
process.stdout.write(`${JSON.stringify(result)}\n`);
