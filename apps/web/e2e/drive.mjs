// node e2e/drive.mjs URL [SCREENSHOT.png]: open the page in headless Chromium (Debian's
// /usr/bin/chromium, or $CHROMIUM), wait until it has generated or shown an error, save a
// screenshot, and print window.matedge (what the page reports) as JSON.
import {chromium} from 'playwright-core';

const [url, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
                                       args: ['--no-sandbox']});
try {
  const page = await browser.newPage({viewport: {width: 1000, height: 760}});
  const logs = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  await page.goto(url);
  await page.waitForFunction(() => ['done', 'error'].includes(window.matedge?.state), null,
                             {timeout: Number(process.env.E2E_TIMEOUT_MS ?? 120000)});
  const report = await page.evaluate(() => window.matedge);
  report.errorVisible = await page.locator('#error').isVisible();
  report.errorText = await page.locator('#error').textContent();
  report.logs = logs;
  if (screenshot) await page.screenshot({path: screenshot, fullPage: true});
  console.log(JSON.stringify(report));
} finally {
  await browser.close();
}
