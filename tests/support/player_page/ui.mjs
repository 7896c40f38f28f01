// Drives the gateway's own page: fill in a URL and the API key, submit, wait until the
// embedded player advances, then take a screenshot. Prints one JSON line.
// Usage: node ui.mjs <gateway base url> <stream url> <api key> <screenshot path> <timeout s>
import { chromium } from "playwright-core";

const [base, streamUrl, apiKey, shot, timeoutArg] = process.argv.slice(2);
const deadline = Date.now() + Number(timeoutArg) * 1000;
const errors = [];
let result = { ok: false, link: null, currentTime: 0, errors };
let browser;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--mute-audio"],
  });
  const page = await browser.newPage({ viewport: { width: 960, height: 800 } });
  page.on("pageerror", (error) => errors.push(`page: ${error.message}`));
  await page.goto(base + "/");
  await page.fill("#url", streamUrl);
  await page.fill("#key", apiKey);
  await page.click("button[type=submit]");
  await page.waitForSelector("#link, #error:not(:empty)", { timeout: deadline - Date.now() });
  const link = await page.evaluate(() => document.getElementById("link")?.href ?? null);
  const shown = await page.evaluate(() => document.getElementById("error").textContent);
  if (shown) errors.push(`shown: ${shown}`);
  let currentTime = 0;
  while (link && Date.now() < deadline && currentTime < 1.5) {
    currentTime = await page.evaluate(() => document.getElementById("video").currentTime);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await page.screenshot({ path: shot });
  result = { ok: Boolean(link) && currentTime >= 1.5, link, currentTime, errors };
} catch (error) {
  errors.push(`driver: ${error.message}`);
} finally {
  if (browser) await browser.close().catch(() => {});
}
process.stdout.write(`${JSON.stringify(result)}\n`);
