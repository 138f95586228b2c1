// The asmopt extension in a real VS Code: code-server (VS Code's web build) driven through
// Debian's chromium by playwright-core, headless, on loopback only. What a user would do:
// open a C file and a .s file (a lens on every function), the command palette, the profile
// lens ("% of instructions") and the hottest functions, Optimize with progress to the end
// (its summary, the result lens), the diff and Apply then Undo, and the failure cases (no
// Python, asmopt not installed, bad server arguments), each one message with its cause. A
// screenshot of each step goes to e2e/screenshots/.
//
//   node e2e/run.mjs [--python /path/to/python]    (after e2e/setup.sh and the extension build)
import { spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const clientRoot = path.dirname(here);
const repo = path.dirname(clientRoot);
const require = createRequire(path.join(here, '.deps', 'node_modules', 'x.js'));
const { chromium } = require('playwright-core');
const codeServer = path.join(here, '.deps', 'node_modules', 'code-server', 'out', 'node', 'entry.js');
const CHROMIUM = process.env.ASMOPT_E2E_CHROMIUM ?? '/usr/lib/chromium/chromium';
const args = process.argv.slice(2);
const python = args.includes('--python') ? args[args.indexOf('--python') + 1] : process.env.ASMOPT_PYTHON ?? path.join(repo, '.venv', 'bin', 'python');
const shots = path.join(here, 'screenshots');
const started = Date.now();
const results = [];

fs.rmSync(shots, { recursive: true, force: true });
fs.mkdirSync(shots, { recursive: true });
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'asmopt-e2e-'));
fs.chmodSync(tmp, 0o755); // the sandbox's user must reach the folders made inside

function log(message) {
    console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${message}`);
}

async function freePort() {
    return new Promise((resolve) => {
        const server = net.createServer();
        server.listen(0, '127.0.0.1', () => {
            const { port } = server.address();
            server.close(() => resolve(port));
        });
    });
}

const SMALL_S = `\t.text
\t.globl\tsquare
\t.type\tsquare, @function
square:
\t.cfi_startproc
\tmovl\t%edi, %eax
\timull\t%edi, %eax
\tret
\t.cfi_endproc
\t.size\tsquare, .-square
\t.globl\tmain
\t.type\tmain, @function
main:
\t.cfi_startproc
\tmovl\t$3, %edi
\tcall\tsquare
\txorl\t%eax, %eax
\tret
\t.cfi_endproc
\t.size\tmain, .-main
\t.section\t.note.GNU-stack,"",@progbits
`;

function workspace(name, settings) {
    const ws = path.join(tmp, name);
    // Not examples/align itself: which compiler wins there, and by how much, depends on the
    // machine, and on a noisy one nothing may be measurably faster within the suite's budget.
    fs.cpSync(path.join(here, 'workspace'), ws, { recursive: true });
    fs.writeFileSync(path.join(ws, 'square.s'), SMALL_S);
    fs.mkdirSync(path.join(ws, '.vscode'), { recursive: true });
    fs.writeFileSync(path.join(ws, '.vscode', 'settings.json'), JSON.stringify(settings, null, 2));
    return ws;
}

/** code-server for one workspace, in a process group of its own (killed whole at the end:
 * code-server keeps the extension host and asmopt serve alive for hours otherwise). */
async function startCodeServer(name, ws, extensions) {
    const port = await freePort();
    const home = path.join(tmp, `${name}-home`);
    const env = {
        ...process.env,
        HOME: home,
        XDG_CONFIG_HOME: path.join(home, 'config'),
        XDG_DATA_HOME: path.join(home, 'data'),
        XDG_CACHE_HOME: path.join(home, 'cache'),
        XDG_STATE_HOME: path.join(home, 'state'),
        XDG_RUNTIME_DIR: path.join(home, 'run'),
        TMPDIR: path.join(home, 'tmp'),
    };
    fs.mkdirSync(home, { mode: 0o755 });
    for (const dir of ['config', 'data', 'cache', 'state', 'run']) fs.mkdirSync(path.join(home, dir), { recursive: true, mode: 0o700 });
    // A temporary folder like /tmp (the sandbox must reach the folders made inside it).
    fs.mkdirSync(path.join(home, 'tmp'));
    fs.chmodSync(path.join(home, 'tmp'), 0o1777);
    const child = spawn(
        process.execPath,
        [codeServer, '--auth', 'none', '--bind-addr', `127.0.0.1:${port}`, '--disable-telemetry', '--disable-update-check',
            '--disable-workspace-trust', '--disable-getting-started-override', '--user-data-dir', path.join(home, 'user-data'),
            '--extensions-dir', extensions, ws],
        { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const deadline = Date.now() + 60_000;
    while (!/HTTP server listening/.test(output)) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`code-server did not start:\n${output}`);
        await new Promise((r) => setTimeout(r, 100));
    }
    return { url: `http://127.0.0.1:${port}/?folder=${encodeURIComponent(ws)}`, stop: () => { try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } } };
}

async function openBrowser() {
    return chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
            '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
        // launch() gives the browser a fresh profile folder of its own (--user-data-dir).
    });
}

async function shot(page, name) {
    await page.screenshot({ path: path.join(shots, `${String(results.length + 1).padStart(2, '0')}-${name}.png`) });
}

async function step(page, name, body) {
    const t0 = Date.now();
    try {
        await body();
        results.push({ name, ok: true, s: (Date.now() - t0) / 1000 });
        log(`ok   ${name}`);
    } catch (err) {
        results.push({ name, ok: false, s: (Date.now() - t0) / 1000, error: String(err?.message ?? err).split('\n')[0] });
        log(`FAIL ${name}: ${String(err?.message ?? err).split('\n').slice(0, 3).join(' | ')}`);
    } finally {
        await shot(page, name.replace(/[^a-z0-9]+/gi, '-').toLowerCase()).catch(() => undefined);
    }
}

async function loadWorkbench(browser, url) {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(url);
    await page.waitForSelector('.monaco-workbench', { timeout: 90_000 });
    await page.waitForTimeout(1500);
    return page;
}

async function command(page, title) {
    await page.keyboard.press('Escape');
    await page.keyboard.press('F1');
    await page.waitForSelector('.quick-input-widget input', { timeout: 10_000 });
    await page.keyboard.type(title);
    await page.waitForTimeout(400);
    await page.keyboard.press('Enter');
}

/** The `index`-th lens (top to bottom) whose text is `text`. */
// The editor draws lenses a moment after a file is shown (again): look for up to 15 s.
async function lensNamed(page, text, index, timeout = 15_000) {
    const deadline = Date.now() + timeout;
    for (;;) {
        const found = [];
        for (const handle of await page.$$('.codelens-decoration a')) {
            if ((await handle.textContent()).trim() !== text) continue;
            const box = await handle.boundingBox();
            if (box) found.push({ handle, y: box.y });
        }
        found.sort((a, b) => a.y - b.y);
        if (found[index]) return found[index].handle;
        if (Date.now() >= deadline) throw new Error(`no lens #${index} "${text}" (found ${found.length})`);
        await page.waitForTimeout(250);
    }
}

async function goToLine(page, line) {
    await page.keyboard.press('Escape');
    await page.keyboard.press('Control+G');
    await page.waitForSelector('.quick-input-widget input', { timeout: 10_000 });
    await page.keyboard.type(String(line));
    await page.keyboard.press('Enter');
    await page.waitForTimeout(300);
}

async function openFile(page, name) {
    await page.keyboard.press('Escape');
    await page.keyboard.press('Control+P');
    await page.waitForSelector('.quick-input-widget input', { timeout: 10_000 });
    await page.keyboard.type(name);
    // Enter only once the file is listed (the first search of a workspace takes a moment).
    await page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first().waitFor({ timeout: 20_000 });
    await page.waitForTimeout(300);
    await page.keyboard.press('Enter');
    await page.locator('.tab.active', { hasText: name }).first().waitFor({ timeout: 15_000 });
    await page.waitForTimeout(500);
}

async function lenses(page) {
    return page.$$eval('.codelens-decoration a, .codelens-decoration span', (els) => els.map((e) => e.textContent.trim()).filter(Boolean));
}

async function waitFor(page, what, predicate, timeout = 60_000) {
    const deadline = Date.now() + timeout;
    let last;
    while (Date.now() < deadline) {
        last = await predicate();
        if (last) return last;
        await page.waitForTimeout(250);
    }
    throw new Error(`timed out waiting for ${what}`);
}

async function notifications(page) {
    return page.$$eval('.notification-toast .notification-list-item-message', (els) => els.map((e) => e.textContent.trim()));
}

async function installExtension(extensions) {
    const vsix = path.join(clientRoot, 'asmopt.vsix');
    if (!fs.existsSync(vsix)) throw new Error(`${vsix} is missing: run client-vscode/scripts/ci.sh (or npm run package) first`);
    execFileSync(process.execPath, [codeServer, '--extensions-dir', extensions, '--install-extension', vsix], {
        stdio: 'ignore',
        env: { ...process.env, HOME: path.join(tmp, 'install-home'), XDG_DATA_HOME: path.join(tmp, 'install-home') },
    });
}

const SETTINGS = {
    'asmopt.interpreter': [python],
    'asmopt.policies': ['compiler'],
    'asmopt.benchBudget': 4,
    'workbench.startupEditor': 'none',
    'security.workspace.trust.enabled': false,
    'editor.codeLens': true,
    'editor.inlayHints.enabled': 'on',
    'telemetry.telemetryLevel': 'off',
    'extensions.autoCheckUpdates': false,
    'workbench.tips.enabled': false,
};

async function mainSession(browser, extensions) {
    const ws = workspace('main', SETTINGS);
    const server = await startCodeServer('main', ws, extensions);
    try {
        const page = await loadWorkbench(browser, server.url);
        await step(page, 'lens on every function of a C file', async () => {
            await openFile(page, 'align.c');
            const found = await waitFor(page, 'the lenses', async () => {
                const l = await lenses(page);
                return l.filter((t) => t === 'Optimize').length >= 3 ? l : null;
            });
            log(`  lenses: ${JSON.stringify(found)}`);
        });
        await step(page, 'lens on every function of a .s file', async () => {
            await openFile(page, 'square.s');
            await waitFor(page, 'two lenses', async () => ((await lenses(page)).filter((t) => t === 'Optimize').length === 2 ? true : null));
        });
        await step(page, 'the command palette lists the commands', async () => {
            await page.keyboard.press('F1');
            await page.waitForSelector('.quick-input-widget input');
            await page.keyboard.type('asmopt:');
            await page.waitForTimeout(800);
            const items = await page.$$eval('.quick-input-list .monaco-list-row', (els) => els.map((e) => e.textContent));
            await shot(page, 'palette');
            await page.keyboard.press('Escape');
            for (const want of ['Optimize function', 'Optimize file', 'Restart server', 'Show hottest functions']) {
                if (!items.some((t) => t.includes(want))) throw new Error(`no "${want}" in ${JSON.stringify(items)}`);
            }
        });
        await step(page, 'the profile lens ("% of instructions") and Show hottest functions', async () => {
            // Opening align.c profiled it (valgrind on its quickest test, in the sandbox).
            await openFile(page, 'align.c');
            const share = await waitFor(page, 'the profile lens', async () => (await lenses(page)).find((t) => /% of instructions$/.test(t)), 180_000);
            log(`  profile lens: ${share}`);
            await page.locator('.codelens-decoration a', { hasText: '% of instructions' }).first().click();
            // In list order (the DOM's order is not the list's: rows are reused and positioned).
            const rows = await waitFor(page, 'the hottest functions', async () => {
                const r = await page.$$eval('.quick-input-list .monaco-list-row', (els) =>
                    els.map((e) => [Number(e.getAttribute('data-index')), e.textContent]).sort((a, b) => a[0] - b[0]).map((x) => x[1]));
                return r.length >= 2 && r.every((t) => t.includes('of instructions')) ? r : null;
            }, 30_000);
            log(`  hottest: ${JSON.stringify(rows.slice(0, 3))}`);
            await shot(page, 'hottest-functions');
            if (!rows[0].startsWith('align')) throw new Error(`align() is not the hottest: ${JSON.stringify(rows)}`);
            await page.keyboard.press('Enter');
            await page.waitForTimeout(800);
            const line = await page.$eval('.editor-status-selection, [id="status.editor.selection"]', (e) => e.textContent).catch(() => '');
            log(`  after the jump: ${line}`);
            if (line && !/Ln 15\b/.test(line)) throw new Error(`the cursor is not on align() (line 15): ${line}`);
        });
        await step(page, 'Optimize: progress through the stages, then the summary and the result lens', async () => {
            await openFile(page, 'align.c');
            await waitFor(page, 'lenses', async () => ((await lenses(page)).includes('Optimize') ? true : null));
            await (await lensNamed(page, 'Optimize', 1)).click(); // align(), the second function
            const stages = new Set();
            const t0 = Date.now();
            let summary;
            while (Date.now() - t0 < 240_000) {
                const texts = await notifications(page);
                const progress = await page.$$eval('.notification-toast', (els) => els.map((e) => e.textContent));
                for (const t of [...progress, ...(await lenses(page))]) {
                    for (const s of ['baseline', 'generate', 'verify', 'benchmark']) if (t.includes(s)) stages.add(s);
                }
                if (stages.size && Date.now() % 5 === 0) await shot(page, `progress-${[...stages].join('-')}`);
                // The summary the run ends with (not the progress notification's own text).
                summary = texts.find((t) => t.startsWith('asmopt: `align`:'));
                if (summary) break;
                await page.waitForTimeout(300);
            }
            log(`  stages seen: ${[...stages].join(', ')}; summary: ${summary}`);
            if (!summary) throw new Error('no summary at the end of the run');
            const result = await waitFor(page, 'the result lens', async () => (await lenses(page)).find((t) => /×|faster|failed/.test(t)));
            log(`  result lens: ${result}`);
            for (const s of ['baseline', 'generate', 'verify']) if (!stages.has(s)) throw new Error(`stage ${s} never shown (saw ${[...stages]})`);
            const hint = await waitFor(page, 'the inlay hint', async () =>
                (await page.$$eval('.view-lines span', (els) => els.map((e) => e.textContent))).find((t) => t.includes('⚡')), 20_000);
            log(`  inlay hint: ${hint}`);
        });
        await step(page, 'the diff, Apply, then Undo', async () => {
            await page.keyboard.press('Escape');
            // The result lens carries asmopt.applyCandidate: the client shows the diff first.
            await page.locator('.codelens-decoration a', { hasText: '✓' }).first().click();
            await page.waitForSelector('.monaco-diff-editor', { timeout: 20_000 }).catch(() => undefined);
            await page.waitForTimeout(1500);
            await shot(page, 'diff');
            const diff = await page.$('.monaco-diff-editor');
            const toasts = await notifications(page);
            if (!diff) throw new Error(`no diff editor (messages: ${JSON.stringify(toasts)})`);
            await command(page, 'asmopt: Apply candidate');
            await page.waitForTimeout(2500);
            await shot(page, 'applied');
            const applied = await page.$$eval('.tab', (els) => els.map((e) => e.textContent));
            log(`  tabs after Apply: ${JSON.stringify(applied)}`);
            const said = await waitFor(page, 'the applied message', async () => (await notifications(page)).find((t) => /applied the candidate/.test(t)), 15_000);
            log(`  ${said}`);
            await page.keyboard.press('Control+Z');
            await page.waitForTimeout(1000);
        });
        await step(page, 'Cancel a run', async () => {
            await openFile(page, 'align.c');
            await (await lensNamed(page, 'Optimize', 0)).click(); // base()
            const cancel = page.locator('.notification-toast .monaco-button, .notification-toast a', { hasText: 'Cancel' }).first();
            await cancel.waitFor({ timeout: 30_000 });
            await cancel.click();
            await waitFor(page, 'the cancelled summary', async () => (await notifications(page)).find((t) => /cancelled/.test(t)), 30_000);
        });
    } finally {
        server.stop();
    }
}

async function failure(browser, extensions, name, settings, expect) {
    const ws = workspace(name, { ...SETTINGS, ...settings });
    const server = await startCodeServer(name, ws, extensions);
    try {
        const page = await loadWorkbench(browser, server.url);
        await step(page, `failure: ${name} gives one clear message`, async () => {
            await openFile(page, 'align.c');
            let messages;
            try {
                messages = await waitFor(page, 'an error message', async () => {
                    const m = (await notifications(page)).filter((t) => t.startsWith('asmopt') || /server/.test(t));
                    return m.length ? m : null;
                }, 30_000);
            } catch (err) {
                await command(page, 'asmopt: Show output');
                await page.waitForTimeout(1500);
                await shot(page, `${name}-output`);
                await command(page, 'Notifications: Show Notifications');
                await page.waitForTimeout(1000);
                await shot(page, `${name}-notifications`);
                throw err;
            }
            await page.waitForTimeout(3000);
            const all = (await notifications(page)).filter((t) => /asmopt|server|connection/i.test(t));
            log(`  messages: ${JSON.stringify(all)}`);
            await command(page, 'asmopt: Show output');
            await page.waitForTimeout(1500);
            await shot(page, `${name}-output`);
            if (all.length !== 1) throw new Error(`${all.length} messages, not one: ${JSON.stringify(all)}`);
            if (!expect.test(messages[0])) throw new Error(`the message does not say ${expect}: ${messages[0]}`);
        });
    } finally {
        server.stop();
    }
}

async function main() {
    const extensions = path.join(tmp, 'extensions');
    fs.mkdirSync(extensions);
    installExtension(extensions);
    log(`extension installed; python ${python}`);
    const browser = await openBrowser();
    const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
    const wanted = (name) => !only || only === name;
    try {
        if (wanted('main')) await mainSession(browser, extensions);
        if (wanted('no-python')) await failure(browser, extensions, 'no-python', { 'asmopt.interpreter': ['/nonexistent/python3'] }, /cannot run Python .*nonexistent/);
        const bare = path.join(tmp, 'bare-venv');
        execFileSync('python3', ['-m', 'venv', '--without-pip', bare]);
        if (wanted('asmopt-not-installed')) await failure(browser, extensions, 'asmopt-not-installed', { 'asmopt.interpreter': [path.join(bare, 'bin', 'python')] }, /asmopt is not installed/);
        if (wanted('bad-server-args')) await failure(browser, extensions, 'bad-server-args', { 'asmopt.serverArgs': ['--bogus'] }, /No such option '--bogus'/);
    } finally {
        await browser.close();
        fs.rmSync(tmp, { recursive: true, force: true });
    }
    const failed = results.filter((r) => !r.ok);
    console.log(`\nreal VS Code suite: ${results.length} steps in ${((Date.now() - started) / 1000).toFixed(0)} s; screenshots in ${shots}`);
    for (const r of results) console.log(`  ${r.ok ? 'ok  ' : 'FAIL'} ${r.name} (${r.s.toFixed(1)} s)${r.error ? `: ${r.error}` : ''}`);
    console.log(`${results.length - failed.length} passed, ${failed.length} failed`);
    process.exit(failed.length ? 1 : 0);
}

main().catch((err) => {
    console.error(err);
    fs.rmSync(tmp, { recursive: true, force: true });
    process.exit(1);
});
