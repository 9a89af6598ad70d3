/**
 * A real headless browser for the console tests: Debian's chromium driven by puppeteer-core.
 * `launchBrowser` skips the test (with the reason) when either is missing; CI installs both.
 * `watchPage` collects what must stay empty on every console page: console errors and warnings,
 * uncaught page errors, failed requests and Content-Security-Policy violations.
 */
import { existsSync } from 'node:fs';
import type { TestContext } from 'node:test';
import type { Browser, Page } from 'puppeteer-core';

/** Where chromium is: CHROMIUM_PATH, else Debian's /usr/bin/chromium. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Why a browser test cannot run here, or undefined when it can. */
export async function browserMissing(): Promise<string | undefined> {
  if (!existsSync(CHROMIUM)) return `no chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`;
  try {
    await import('puppeteer-core');
  } catch {
    return 'the npm package puppeteer-core is not installed';
  }
  return undefined;
}

export async function startBrowser(): Promise<Browser> {
  const { default: puppeteer } = await import('puppeteer-core');
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // root (CI containers) cannot use chromium's sandbox; the pages are our own, on loopback
    args: [...(process.getuid?.() === 0 ? ['--no-sandbox'] : []), '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--disable-extensions'],
    timeout: 30_000,
    protocolTimeout: 60_000,
  });
}

/** The browser, closed after the test; undefined (and the test skipped) when there is none. */
export async function launchBrowser(t: TestContext): Promise<Browser | undefined> {
  const missing = await browserMissing();
  if (missing) {
    t.skip(missing);
    return undefined;
  }
  const browser = await startBrowser();
  t.after(() => browser.close());
  return browser;
}

export interface PageProblems {
  console: string[];
  errors: string[];
  failed: string[];
  /** CSP violations seen by the pages themselves (securitypolicyviolation events). */
  csp(): Promise<string[]>;
}

/** Starts collecting `page`'s problems; call before the first navigation. */
export async function watchPage(page: Page): Promise<PageProblems> {
  const p = { console: [] as string[], errors: [] as string[], failed: [] as string[] };
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warn') p.console.push(`${m.type()}: ${m.text()} (${m.location().url ?? ''})`);
  });
  page.on('pageerror', (e) => p.errors.push(String(e)));
  page.on('requestfailed', (r) => p.failed.push(`${r.url()}: ${r.failure()?.errorText ?? ''}`));
  // kept in sessionStorage, so violations survive the navigations between pages of one origin
  await page.evaluateOnNewDocument(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      const seen = JSON.parse(sessionStorage.getItem('csp-violations') ?? '[]') as string[];
      seen.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} in ${e.documentURI}`);
      sessionStorage.setItem('csp-violations', JSON.stringify(seen));
    });
  });
  return {
    ...p,
    csp: () => page.evaluate(() => JSON.parse(sessionStorage.getItem('csp-violations') ?? '[]') as string[]),
  };
}
