/**
 * End to end against the real `asmopt serve`, over stdio, speaking the LSP messages the
 * VS Code LanguageClient speaks (vscode-languageserver-protocol). VS Code itself is not
 * needed: this test plays the client, with the extension's own settings payload and the
 * capabilities the client announces.
 *
 * Python: $ASMOPT_PYTHON, else <repo>/.venv/bin/python, else python3. Skips (with the
 * reason) when that Python cannot import asmopt.server.
 */

import * as assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';

import {
    CodeActionRequest,
    CodeLensRequest,
    createProtocolConnection,
    DidChangeConfigurationNotification,
    DidOpenTextDocumentNotification,
    ExecuteCommandRequest,
    ExitNotification,
    InitializedNotification,
    InitializeRequest,
    ShutdownRequest,
    StreamMessageReader,
    StreamMessageWriter,
    type CodeLens,
    type ProtocolConnection,
} from 'vscode-languageserver-protocol/node';

import { CANDIDATE_REQUEST, STATUS_NOTIFICATION, type CandidateResult, type StatusParams } from '../../src/protocol';
import { serverSettings } from '../../src/settings';

const repo = path.resolve(__dirname, '../../../..');
const venvPython = path.join(repo, '.venv', 'bin', 'python');
const python = process.env.ASMOPT_PYTHON ?? (fs.existsSync(venvPython) ? venvPython : 'python3');
const RUN_TIMEOUT_MS = Number(process.env.ASMOPT_IT_TIMEOUT_MS ?? 300_000);

function skipReason(): string | undefined {
    const check = spawnSync(python, ['-c', 'import asmopt.server'], { encoding: 'utf8', timeout: 60_000 });
    if (check.error) return `cannot run ${python}: ${check.error.message}`;
    if (check.status !== 0) {
        const why = check.stderr.trim().split('\n').pop();
        return `asmopt.server is not importable with ${python} (${why}); install it with: ${python} -m pip install -e '.[server]'`;
    }
    return undefined;
}

const SKIP = skipReason();
if (SKIP) console.log(`# SKIP integration test: ${SKIP}`);

// A program whose loop clang -O3 replaces by its closed form while gcc -O3 vectorizes it, so
// the compiler policy alone finds a verified faster candidate; plus its tests. `noinline`:
// otherwise gcc inlines work() into main and a spliced work() is never called.
const PROGRAM = `#include <stdio.h>

__attribute__((noinline)) long work(long n) {
    long s = 0;
    for (long i = 0; i < n; i++) {
        s += i * 3;
    }
    return s;
}

int main(void) {
    long n;
    if (scanf("%ld", &n) != 1) return 1;
    printf("%ld\\n", work(n));
    return 0;
}
`;

function reference(n: number): string {
    const N = BigInt(n);
    return `${(3n * N * (N - 1n)) / 2n}\n`;
}

function until<T>(what: string, ms: number, poll: () => Promise<T | undefined>, everyMs = 250): Promise<T> {
    const deadline = Date.now() + ms;
    return new Promise((resolve, reject) => {
        const tick = async () => {
            try {
                const value = await poll();
                if (value !== undefined) return resolve(value);
            } catch (err) {
                return reject(err);
            }
            if (Date.now() > deadline) return reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
            setTimeout(tick, everyMs);
        };
        void tick();
    });
}

describe('asmopt serve (integration)', { skip: SKIP, timeout: RUN_TIMEOUT_MS + 120_000 }, () => {
    let dir: string;
    let proc: ChildProcessWithoutNullStreams;
    let conn: ProtocolConnection;
    let uri: string;
    let stderr = '';
    const progress: { token: unknown; kind: string; title?: string; message?: string }[] = [];
    const statuses: StatusParams[] = [];
    const messages: string[] = [];
    const applied: unknown[] = [];
    let lensRefreshes = 0;

    // The extension's payload, with only what the test sets.
    const settingsFor: Record<string, unknown> = { policies: ['compiler'], benchBudget: 3 };
    // A raw value the client-side validation would have caught, to test the server's own check.
    let override: Record<string, unknown> = {};
    const payload = () => ({ ...serverSettings((key) => ({ globalValue: settingsFor[key] })).settings, ...override });

    before(async () => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), 'asmopt-it-'));
        fs.writeFileSync(path.join(dir, 'prog.c'), PROGRAM);
        fs.mkdirSync(path.join(dir, 'tests'));
        for (const [i, n] of [1000, 200_000_000, 400_000_000].entries()) {
            fs.writeFileSync(path.join(dir, 'tests', `${i + 1}.in`), `${n}\n`);
            fs.writeFileSync(path.join(dir, 'tests', `${i + 1}.out`), reference(n));
        }
        uri = pathToFileURL(path.join(dir, 'prog.c')).toString();

        proc = spawn(python, ['-m', 'asmopt.cli', 'serve'], { cwd: dir, env: { ...process.env, PYTHONUNBUFFERED: '1' } });
        proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        conn = createProtocolConnection(new StreamMessageReader(proc.stdout), new StreamMessageWriter(proc.stdin));

        // Server -> client requests the LanguageClient answers.
        conn.onRequest('workspace/configuration', (params: { items: { section?: string }[] }) =>
            params.items.map((item) => (item.section === 'asmopt' ? payload() : null)),
        );
        conn.onRequest('window/workDoneProgress/create', () => null);
        conn.onRequest('client/registerCapability', () => null);
        conn.onRequest('client/unregisterCapability', () => null);
        conn.onRequest('workspace/codeLens/refresh', () => ((lensRefreshes += 1), null));
        conn.onRequest('workspace/inlayHint/refresh', () => null);
        conn.onRequest('workspace/diagnostic/refresh', () => null);
        conn.onRequest('window/showMessageRequest', () => null);
        conn.onRequest('workspace/applyEdit', (params: unknown) => (applied.push(params), { applied: true }));
        conn.onNotification('$/progress', (p: { token: unknown; value: { kind: string; title?: string; message?: string } }) =>
            progress.push({ token: p.token, ...p.value }),
        );
        conn.onNotification(STATUS_NOTIFICATION, (p: StatusParams) => statuses.push(p));
        conn.onNotification('window/showMessage', (p: { message: string }) => messages.push(p.message));
        conn.onNotification('window/logMessage', () => undefined);
        conn.onNotification('textDocument/publishDiagnostics', () => undefined);
        conn.listen();

        const init = await conn.sendRequest(InitializeRequest.type, {
            processId: process.pid,
            rootUri: pathToFileURL(dir).toString(),
            workspaceFolders: [{ uri: pathToFileURL(dir).toString(), name: 'it' }],
            initializationOptions: { settings: payload() },
            capabilities: {
                window: { workDoneProgress: true, showMessage: {} },
                workspace: {
                    configuration: true,
                    workspaceFolders: true,
                    applyEdit: true,
                    workspaceEdit: { documentChanges: true, resourceOperations: ['create', 'rename', 'delete'] },
                    codeLens: { refreshSupport: true },
                    executeCommand: { dynamicRegistration: true },
                    didChangeConfiguration: { dynamicRegistration: true },
                },
                textDocument: {
                    synchronization: { dynamicRegistration: true, didSave: true },
                    codeLens: { dynamicRegistration: true },
                    codeAction: {
                        dynamicRegistration: true,
                        codeActionLiteralSupport: { codeActionKind: { valueSet: ['', 'quickfix', 'refactor', 'refactor.rewrite'] } },
                    },
                    hover: { contentFormat: ['markdown', 'plaintext'] },
                    inlayHint: { dynamicRegistration: true },
                },
            },
        });
        const commands = init.capabilities.executeCommandProvider?.commands ?? [];
        for (const c of ['asmopt.optimizeFunction', 'asmopt.optimizeFile', 'asmopt.applyCandidate']) {
            assert.ok(commands.includes(c), `server does not announce ${c} (has ${commands.join(', ')})`);
        }
        assert.ok(init.capabilities.codeLensProvider, 'no codeLensProvider');
        assert.ok(init.capabilities.codeActionProvider, 'no codeActionProvider');
        await conn.sendNotification(InitializedNotification.type, {});
        await conn.sendNotification(DidChangeConfigurationNotification.type, { settings: { asmopt: payload() } });
        await conn.sendNotification(DidOpenTextDocumentNotification.type, {
            textDocument: { uri, languageId: 'c', version: 1, text: PROGRAM },
        });
    });

    after(async () => {
        if (conn) {
            try {
                await Promise.race([conn.sendRequest(ShutdownRequest.type), new Promise((r) => setTimeout(r, 5000))]);
                await conn.sendNotification(ExitNotification.type);
            } catch {
                // The server may already be gone.
            }
            conn.dispose();
        }
        if (proc && proc.exitCode === null) {
            await new Promise((r) => setTimeout(r, 1000));
            if (proc.exitCode === null) proc.kill('SIGKILL');
        }
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    const lenses = async () => (await conn.sendRequest(CodeLensRequest.type, { textDocument: { uri } })) ?? [];
    const workLens = (all: CodeLens[]) => all.find((l) => l.command?.arguments?.[1] === 'work' || l.range.start.line === 2);

    it('offers an Optimize lens above each function', async () => {
        const all = await until('code lenses', 30_000, async () => {
            const ls = await lenses();
            return ls.length >= 2 ? ls : undefined;
        });
        const lens = workLens(all);
        assert.ok(lens, `no lens for work: ${JSON.stringify(all)}`);
        assert.equal(lens.range.start.line, 2);
        assert.equal(lens.command?.command, 'asmopt.optimizeFunction');
        assert.deepEqual(lens.command?.arguments, [uri, 'work']);
        assert.match(lens.command?.title ?? '', /Optimize/);
    });

    it('offers "Optimize function" and "Optimize file" code actions', async () => {
        const actions =
            (await conn.sendRequest(CodeActionRequest.type, {
                textDocument: { uri },
                range: { start: { line: 4, character: 8 }, end: { line: 4, character: 8 } },
                context: { diagnostics: [] },
            })) ?? [];
        const titles = actions.map((a) => a.title);
        assert.ok(titles.some((t) => /Optimize function .*work/.test(t)), `titles: ${titles.join(' | ')}`);
        assert.ok(titles.some((t) => /Optimize file/.test(t)), `titles: ${titles.join(' | ')}`);
        const fn = actions.find((a) => /Optimize function/.test(a.title))!;
        assert.equal('kind' in fn ? fn.kind : undefined, 'refactor.rewrite');
    });

    it('optimizes a function with work-done progress, then the lens shows the result', async () => {
        const before = progress.length;
        const started = Date.now();
        await conn.sendRequest(ExecuteCommandRequest.type, { command: 'asmopt.optimizeFunction', arguments: [uri, 'work'] });
        const begin = await until('progress begin', 30_000, async () => progress.slice(before).find((p) => p.kind === 'begin'));
        await until('progress end', RUN_TIMEOUT_MS, async () =>
            progress.slice(before).find((p) => p.kind === 'end' && p.token === begin.token),
        );
        console.log(`# run took ${((Date.now() - started) / 1000).toFixed(1)} s; stages: ${progress
            .slice(before)
            .map((p) => p.message ?? p.title ?? p.kind)
            .join(' > ')}`);
        assert.ok(statuses.some((s) => s.state === 'running' && s.jobs.some((j) => j.function === 'work')), 'no asmopt/status with the running job');
        const lens = await until('a result lens', 30_000, async () => {
            const l = workLens(await lenses());
            return l && !/^Optimize$|running/.test(l.command?.title ?? '') ? l : undefined;
        });
        console.log(`# lens after the run: ${lens.command?.title}`);
        assert.match(lens.command?.title ?? '', /✓|✗|no faster candidate/);
        assert.ok(statuses.at(-1)?.state === 'idle', `last status: ${JSON.stringify(statuses.at(-1))}`);
    });

    it('answers asmopt/candidate with the verified candidate or null', async () => {
        const result = (await conn.sendRequest(CANDIDATE_REQUEST, { uri, function: 'work' })) as CandidateResult | null;
        const lens = workLens(await lenses());
        if (result === null) {
            assert.doesNotMatch(lens?.command?.title ?? '', /✓/, 'a ✓ lens but no candidate');
            console.log('# no verified faster candidate (asmopt/candidate returned null)');
            return;
        }
        for (const key of ['original', 'candidate', 'targetUri', 'policy', 'label'] as const) assert.equal(typeof result[key], 'string', key);
        assert.equal(result.function, 'work');
        assert.ok(result.targetUri.endsWith('prog.opt.s'), result.targetUri);
        assert.ok(result.testsPassed === result.testsTotal && result.testsTotal > 0, `${result.testsPassed}/${result.testsTotal}`);
        assert.notEqual(result.candidate, result.original);
        if (result.speedup) assert.ok(result.speedup.ciLow <= result.speedup.median && result.speedup.median <= result.speedup.ciHigh);
        console.log(`# candidate: ${result.label}; ${result.speedup?.median?.toFixed(3)}x, ${result.testsPassed}/${result.testsTotal} tests, ${result.policy}`);

        // What "Apply candidate" in the diff view sends: the server answers with workspace/applyEdit.
        await conn.sendRequest(ExecuteCommandRequest.type, { command: 'asmopt.applyCandidate', arguments: [uri, 'work'] });
        const edit = await until('workspace/applyEdit', 10_000, async () => applied[0] as { edit: { documentChanges?: unknown[] } } | undefined);
        const text = JSON.stringify(edit);
        assert.ok(text.includes(result.targetUri) || text.includes('prog.opt.s'), `edit does not touch prog.opt.s: ${text.slice(0, 500)}`);
        assert.ok(!fs.existsSync(path.join(dir, 'prog.opt.s')), 'the server wrote the file itself');
    });

    it('reports a setting of the wrong type with a message naming the key', async () => {
        messages.length = 0;
        override = { samples: 'four' };
        await conn.sendNotification(DidChangeConfigurationNotification.type, { settings: { asmopt: payload() } });
        const message = await until('window/showMessage', 10_000, async () => messages.find((m) => /samples/.test(m)));
        override = {};
        assert.match(message, /samples/);
    });

    it('did not crash', () => {
        assert.equal(proc.exitCode, null, `server exited: ${stderr.slice(-2000)}`);
    });
});
