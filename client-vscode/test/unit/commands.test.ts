import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { CandidateViews } from '../../src/candidates';
import { CommandRouter, functionAtLine } from '../../src/commands';
import { FakeHost } from './fakeHost';

const C = 'file:///w/prog.c';
const lenses = [
    { line: 2, command: 'asmopt.optimizeFunction', args: [C, 'work'] },
    { line: 10, command: 'asmopt.optimizeFunction', args: [C, 'main'] },
    { line: 10, command: 'asmopt.applyCandidate', args: [C, 'main'] },
];

function setup() {
    const host = new FakeHost();
    const server = {
        lenses,
        calls: [] as unknown[],
        async codeLenses() {
            return this.lenses;
        },
        async requestCandidate() {
            return null;
        },
        async executeServerCommand() {
            return null;
        },
    };
    const router = new CommandRouter(host, server, new CandidateViews(host, server));
    const sent: { command: string; args: unknown[] }[] = [];
    const next = async (command: string, args: unknown[]) => (sent.push({ command, args }), 'ok');
    return { host, server, router, sent, next };
}

describe('functionAtLine', () => {
    it('is the last function starting at or above the cursor', () => {
        assert.equal(functionAtLine(lenses, C, 0), undefined);
        assert.equal(functionAtLine(lenses, C, 2), 'work');
        assert.equal(functionAtLine(lenses, C, 9), 'work');
        assert.equal(functionAtLine(lenses, C, 40), 'main');
    });
});

describe('asmopt.optimizeFunction (middleware)', () => {
    it('passes [uri, function] from a CodeLens straight through', async () => {
        const { router, sent, next } = setup();
        assert.equal(await router.execute('asmopt.optimizeFunction', [C, 'work'], next), 'ok');
        assert.deepEqual(sent, [{ command: 'asmopt.optimizeFunction', args: [C, 'work'] }]);
    });

    it('from the palette: the function under the cursor', async () => {
        const { host, router, sent, next } = setup();
        host.editor = { uri: C, scheme: 'file', languageId: 'c', line: 5 };
        await router.execute('asmopt.optimizeFunction', [], next);
        assert.deepEqual(sent, [{ command: 'asmopt.optimizeFunction', args: [C, 'work'] }]);
    });

    it('cursor above every function: asks which one', async () => {
        const { host, router, sent, next } = setup();
        host.editor = { uri: C, scheme: 'file', languageId: 'c', line: 0 };
        host.quickPickAnswer = 'main';
        await router.execute('asmopt.optimizeFunction', [], next);
        assert.deepEqual(host.quickPicks, [['work', 'main']]);
        assert.deepEqual(sent, [{ command: 'asmopt.optimizeFunction', args: [C, 'main'] }]);
    });

    it('no C or assembly editor: says what to do, sends nothing', async () => {
        const { host, router, sent, next } = setup();
        host.editor = { uri: 'file:///w/notes.md', scheme: 'file', languageId: 'markdown', line: 0 };
        await router.execute('asmopt.optimizeFunction', [], next);
        assert.deepEqual(sent, []);
        assert.match(host.byLevel('warning')[0].text, /open a C or assembly file first/);
    });

    it('a file without functions: says so', async () => {
        const { host, server, router, sent, next } = setup();
        server.lenses = [];
        host.editor = { uri: C, scheme: 'file', languageId: 'c', line: 3 };
        await router.execute('asmopt.optimizeFunction', [], next);
        assert.deepEqual(sent, []);
        assert.match(host.byLevel('warning')[0].text, /found no function/);
    });

    it('a server error becomes a message', async () => {
        const { host, router } = setup();
        await router.execute('asmopt.optimizeFunction', [C, 'work'], async () => {
            throw new Error('server is not running');
        });
        assert.match(host.byLevel('error')[0].text, /asmopt\.optimizeFunction failed: server is not running/);
    });
});

describe('asmopt.optimizeFile (middleware)', () => {
    it('fills in the active file, or takes a menu URI', async () => {
        const { host, router, sent, next } = setup();
        host.editor = { uri: 'file:///w/x.s', scheme: 'file', languageId: 'asm', line: 0 };
        await router.execute('asmopt.optimizeFile', [], next);
        await router.execute('asmopt.optimizeFile', [{ kind: 'uri', uri: C, scheme: 'file', query: '' }], next);
        assert.deepEqual(sent.map((s) => s.args), [['file:///w/x.s'], [C]]);
    });
});

describe('asmopt.showCandidateDiff', () => {
    it('without a function under the cursor asks for the whole file', async () => {
        const host = new FakeHost();
        const requests: unknown[] = [];
        const server = {
            codeLenses: async () => [],
            requestCandidate: async (p: unknown) => (requests.push(p), null),
            executeServerCommand: async () => null,
        };
        const router = new CommandRouter(host, server, new CandidateViews(host, server));
        host.editor = { uri: C, scheme: 'file', languageId: 'c', line: 0 };
        await router.showCandidateDiff([]);
        assert.deepEqual(requests, [{ uri: C, function: null }]);
    });
});
