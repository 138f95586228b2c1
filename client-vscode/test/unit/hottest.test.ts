import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { HottestFunctions, hottestItems, hottestPlaceholder, shareText } from '../../src/hottest';
import type { HottestAnswer } from '../../src/protocol';
import { FakeHost } from './fakeHost';

const C = 'file:///w/prog.c';

const ANSWER: HottestAnswer = {
    target: 'prog',
    metric: 'instructions (valgrind Ir); not time',
    total: 2000,
    ownShare: 0.9,
    startupBound: '',
    tests: ['a', 'b'],
    skippedTests: [],
    functions: [
        { name: 'work', instructions: 1240, share: 0.62, uri: C, line: 2 },
        { name: 'helper', instructions: 500, share: 0.25, uri: null, line: null },
        { name: 'main', instructions: 5, share: 0.0025, uri: C, line: 10 },
    ],
    elsewhere: [],
};

function setup(answer: unknown = ANSWER) {
    const host = new FakeHost();
    const calls: { command: string; args: unknown[] }[] = [];
    const server = {
        async executeServerCommand(command: string, args: unknown[]) {
            calls.push({ command, args });
            if (answer instanceof Error) throw answer;
            return answer;
        },
    };
    return { host, calls, hottest: new HottestFunctions(host, server) };
}

describe('shareText', () => {
    it('says shares as the lenses do', () => {
        assert.equal(shareText(0.312), '31%');
        assert.equal(shareText(0.032), '3.2%');
        assert.equal(shareText(0.0004), '0.04%');
    });
});

describe('asmopt.showHottestFunctions', () => {
    it('asks the server for the lens document, lists the functions hottest first and jumps to the chosen one', async () => {
        const { host, calls, hottest } = setup();
        host.pickAnswer = 0;
        const chosen = await hottest.show([C]);
        assert.deepEqual(calls, [{ command: 'asmopt.hottestFunctions', args: [C] }]);
        assert.equal(host.progresses.length, 1);
        assert.deepEqual(
            host.picks[0].items.map((i) => [i.label, i.description]),
            [
                ['work', '62% of instructions'],
                ['helper', '25% of instructions'],
                ['main', '0.25% of instructions'],
            ],
        );
        assert.match(host.picks[0].placeholder, /^prog: instructions per function on 2 tests \(valgrind; not time\)$/);
        assert.deepEqual(host.revealed, [{ uri: C, line: 2 }]);
        assert.equal(chosen?.name, 'work');
    });

    it('from the palette: the active C file', async () => {
        const { host, calls, hottest } = setup();
        host.editor = { uri: C, scheme: 'file', languageId: 'c', line: 0 };
        await hottest.show([]);
        assert.deepEqual(calls[0].args, [C]);
        assert.deepEqual(host.revealed, []); // dismissed
    });

    it('a function found in no source of the program: says so instead of jumping', async () => {
        const { host, hottest } = setup();
        host.pickAnswer = 1;
        assert.equal(await hottest.show([C]), undefined);
        assert.deepEqual(host.revealed, []);
        assert.match(host.byLevel('info')[0].text, /`helper` is not defined in the sources of prog/);
    });

    it('a function of another file of the program: opens that file on its line', async () => {
        const other = 'file:///w/my%20helpers.s';
        const answer = { ...ANSWER, functions: [ANSWER.functions[0], { ...ANSWER.functions[1], uri: other, line: 7 }] };
        const { host, hottest } = setup(answer);
        host.pickAnswer = 1;
        const chosen = await hottest.show([C]);
        assert.equal(chosen?.name, 'helper');
        assert.deepEqual(host.revealed, [{ uri: other, line: 7 }]);
        assert.deepEqual(
            host.picks[0].items.map((i) => i.detail),
            ['1,240 instructions', '500 instructions · in my helpers.s'],
        );
    });

    it('a start-up-bound run is said in the placeholder', () => {
        const text = hottestPlaceholder({ ...ANSWER, startupBound: 'only 4% ...', ownShare: 0.04 });
        assert.match(text, /Mostly start-up and libc: its own code runs 4.0% of them$/);
        assert.match(hottestItems(ANSWER, C)[1].detail ?? '', /not found in the sources of the program/);
        assert.equal(hottestItems(ANSWER, C)[0].detail, '1,240 instructions');
    });

    it("the server's reason when there is no profile", async () => {
        const { host, hottest } = setup({ error: 'no tests for prog.c: put NAME.in files in a tests/ folder beside it' });
        await hottest.show([C]);
        assert.deepEqual(host.picks, []);
        assert.match(host.byLevel('warning')[0].text, /^asmopt: no profile for prog\.c: no tests for prog\.c/);
    });

    it('no C or assembly editor: says what to do, asks nothing', async () => {
        const { host, calls, hottest } = setup();
        host.editor = { uri: 'file:///w/notes.md', scheme: 'file', languageId: 'markdown', line: 0 };
        await hottest.show([]);
        assert.deepEqual(calls, []);
        assert.match(host.byLevel('warning')[0].text, /open a C or assembly file first/);
    });

    it('a server failure rejects (the command wrapper turns it into a message)', async () => {
        const { hottest } = setup(new Error('the asmopt server is not running'));
        await assert.rejects(hottest.show([C]), /not running/);
    });
});
