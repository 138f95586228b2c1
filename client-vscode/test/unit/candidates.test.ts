import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { CANDIDATE_SCHEME, CandidateViews, describeCandidate, parseViewUri } from '../../src/candidates';
import { CommandRouter } from '../../src/commands';
import type { CandidateParams, CandidateResult } from '../../src/protocol';
import { FakeHost } from './fakeHost';

const ASM = 'file:///w/prog.s';

function candidate(over: Partial<CandidateResult> = {}): CandidateResult {
    return {
        original: 'f:\n\tmovl $0, %eax\n\tret\n',
        candidate: 'f:\n\txorl %eax, %eax\n\tret\n',
        targetUri: ASM,
        function: 'f',
        speedup: { median: 1.31, ciLow: 1.27, ciHigh: 1.35, runs: 40 },
        testsPassed: 10,
        testsTotal: 10,
        policy: 'compiler',
        label: 'Apply optimized `f` (1.31×)',
        ...over,
    };
}

class FakeServer {
    result: CandidateResult | null = candidate();
    requests: CandidateParams[] = [];
    commands: { command: string; args: unknown[] }[] = [];
    lenses: { line: number; command?: string; args?: unknown[] }[] = [];
    async requestCandidate(params: CandidateParams) {
        this.requests.push(params);
        return this.result;
    }
    async executeServerCommand(command: string, args: unknown[]) {
        this.commands.push({ command, args });
        return null;
    }
    async codeLenses() {
        return this.lenses;
    }
}

function setup() {
    const host = new FakeHost();
    const server = new FakeServer();
    const views = new CandidateViews(host, server);
    const router = new CommandRouter(host, server, views);
    const next = async (command: string, args: unknown[]) => {
        server.commands.push({ command: `next:${command}`, args });
        return null;
    };
    return { host, server, views, router, next };
}

describe('candidate diff view', () => {
    it('shows the current file beside a read-only virtual candidate', async () => {
        const { host, server, views } = setup();
        host.files[ASM] = candidate().original;
        assert.equal(await views.show({ uri: ASM, function: 'f' }), true);
        assert.deepEqual(server.requests, [{ uri: ASM, function: 'f' }]);
        assert.equal(host.diffs.length, 1);
        const diff = host.diffs[0];
        assert.equal(diff.left, ASM);
        assert.ok(diff.right.startsWith(`${CANDIDATE_SCHEME}:/w/prog.s?`), diff.right);
        assert.equal(views.content(diff.right), candidate().candidate);
        assert.match(diff.title, /prog\.s \(current\) ↔ asmopt f 1\.31× \[1\.27–1\.35\] · 10\/10 tests · compiler/);
        // Nothing was applied.
        assert.deepEqual(server.commands, []);
    });

    it("shows the server's original when the target does not hold it (C file: PROG.opt.s not yet written)", async () => {
        const { host, server, views } = setup();
        server.result = candidate({ targetUri: 'file:///w/prog.opt.s', original: 'baseline asm' });
        await views.show({ uri: 'file:///w/prog.c', function: 'f' });
        const diff = host.diffs[0];
        assert.ok(diff.left.startsWith(`${CANDIDATE_SCHEME}:/w/prog.opt.s?`), diff.left);
        assert.equal(views.content(diff.left), 'baseline asm');
        assert.match(diff.title, /prog\.opt\.s \(gcc -O3\)/);
    });

    it('says so when there is no verified candidate', async () => {
        const { host, server, views } = setup();
        server.result = null;
        assert.equal(await views.show({ uri: ASM, function: 'f' }), false);
        assert.equal(host.diffs.length, 0);
        assert.match(host.byLevel('info')[0].text, /no verified faster candidate for `f` yet.*Optimize function/);
    });

    it('applies from the diff view through the server command', async () => {
        const { host, server, views } = setup();
        await views.show({ uri: ASM, function: 'f' });
        assert.equal(await views.applyFromView(host.diffs[0].right), true);
        assert.deepEqual(server.commands, [{ command: 'asmopt.applyCandidate', args: [ASM, 'f'] }]);
        assert.match(host.byLevel('info').at(-1)!.text, /applied the candidate for `f` to prog\.s/);
    });

    it('does not apply a candidate that changed since the diff was opened, and refreshes the diff', async () => {
        const { host, server, views } = setup();
        await views.show({ uri: ASM, function: 'f' });
        const right = host.diffs[0].right;
        server.result = candidate({ candidate: 'f:\n\tret\n' });
        host.changedDocs = [];
        assert.equal(await views.applyFromView(right), false);
        assert.deepEqual(server.commands, []);
        assert.equal(views.content(right), 'f:\n\tret\n');
        assert.ok(host.changedDocs.includes(right));
        assert.match(host.byLevel('warning')[0].text, /changed since this diff was opened\. Nothing was applied/);
    });

    it('does not apply when the candidate is gone', async () => {
        const { host, server, views } = setup();
        await views.show({ uri: ASM, function: 'f' });
        server.result = null;
        assert.equal(await views.applyFromView(host.diffs[0].right), false);
        assert.deepEqual(server.commands, []);
    });

    it('reuses one view per function, so a second show refreshes the same tab', async () => {
        const { host, views } = setup();
        await views.show({ uri: ASM, function: 'f' });
        await views.show({ uri: ASM, function: 'f' });
        await views.show({ uri: ASM, function: 'g' });
        assert.equal(host.diffs[0].right, host.diffs[1].right);
        assert.notEqual(host.diffs[0].right, host.diffs[2].right);
    });
});

describe('asmopt.applyCandidate (middleware)', () => {
    it('from a code action [uri, f]: opens the diff instead of applying', async () => {
        const { host, server, router, next } = setup();
        await router.execute('asmopt.applyCandidate', [ASM, 'f'], next);
        assert.equal(host.diffs.length, 1);
        assert.deepEqual(server.commands, []);
    });

    it("from the diff editor's title button (the virtual URI): applies", async () => {
        const { host, server, router, next } = setup();
        await router.execute('asmopt.applyCandidate', [ASM, 'f'], next);
        const right = host.diffs[0].right;
        const query = right.slice(right.indexOf('?') + 1);
        await router.execute('asmopt.applyCandidate', [{ kind: 'uri', uri: right, scheme: CANDIDATE_SCHEME, query }], next);
        assert.deepEqual(server.commands, [{ command: 'asmopt.applyCandidate', args: [ASM, 'f'] }]);
    });

    it('from the palette while the diff is the active editor: applies', async () => {
        const { host, server, router, next } = setup();
        await router.execute('asmopt.applyCandidate', [ASM, 'f'], next);
        host.editor = { uri: host.diffs[0].right.replace('=', '%3D'), scheme: CANDIDATE_SCHEME, languageId: 'asm', line: 0 };
        await router.execute('asmopt.applyCandidate', [], next);
        assert.deepEqual(server.commands, [{ command: 'asmopt.applyCandidate', args: [ASM, 'f'] }]);
    });
});

describe('helpers', () => {
    it('parseViewUri reads id and side, also percent-encoded', () => {
        assert.deepEqual(parseViewUri('asmopt-candidate:/a/b.s?id=3&side=original'), { id: 3, side: 'original' });
        assert.deepEqual(parseViewUri('id%3D4%26side%3Dcandidate'), { id: 4, side: 'candidate' });
        assert.equal(parseViewUri('asmopt-candidate:/a/b.s'), undefined);
    });

    it('describeCandidate without a speed-up', () => {
        assert.equal(describeCandidate(candidate({ speedup: null, testsPassed: 7, policy: '' })), '7/10 tests');
    });
});
