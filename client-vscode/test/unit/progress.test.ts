import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ProgressNotifications } from '../../src/progress';
import { FakeHost, settle } from './fakeHost';

describe('ProgressNotifications', () => {
    it('shows a cancellable notification that follows begin/report/end', async () => {
        const host = new FakeHost();
        const cancelled: unknown[] = [];
        const progress = new ProgressNotifications(host, (t) => cancelled.push(t));
        progress.handle('tok', { kind: 'begin', title: 'Optimizing work', cancellable: true, message: 'baseline', percentage: 0 });
        assert.equal(host.progresses.length, 1);
        const p = host.progresses[0];
        assert.equal(p.title, 'asmopt: Optimizing work');
        assert.equal(p.cancellable, true);
        progress.handle('tok', { kind: 'report', message: 'verify', percentage: 50 });
        progress.handle('tok', { kind: 'report', message: 'benchmark', percentage: 40 }); // never backwards
        assert.deepEqual(p.reports, [{ message: 'baseline', increment: 0 }, { message: 'verify', increment: 50 }, { message: 'benchmark', increment: 0 }]);
        p.cancel();
        assert.deepEqual(cancelled, ['tok']);
        progress.handle('tok', { kind: 'end' });
        await settle();
        assert.equal(p.done, true);
        assert.equal(progress.active, 0);
    });

    it('closes every notification when the server stops', async () => {
        const host = new FakeHost();
        const progress = new ProgressNotifications(host, () => undefined);
        progress.handle(1, { kind: 'begin', title: 'a' });
        progress.handle(2, { kind: 'begin', title: 'b' });
        progress.clear();
        await settle();
        assert.deepEqual(host.progresses.map((p) => p.done), [true, true]);
    });

    it('ignores reports for unknown tokens', () => {
        const host = new FakeHost();
        const progress = new ProgressNotifications(host, () => undefined);
        progress.handle('x', { kind: 'report', message: 'late' });
        progress.handle('x', { kind: 'end' });
        assert.equal(host.progresses.length, 0);
    });
});

describe('ProgressNotifications summary', () => {
    it("shows the run's summary from WorkDoneProgressEnd.message when the notification closes", async () => {
        const host = new FakeHost();
        const progress = new ProgressNotifications(host, () => undefined);
        progress.handle('t', { kind: 'begin', title: 'asmopt: optimizing `f`', cancellable: true });
        progress.handle('t', { kind: 'end', message: '`f`: ✓ 1.31× faster (CI 1.28–1.34), 10/10 tests' });
        await settle();
        assert.deepEqual(
            host.messages.map((m) => [m.level, m.text]),
            [['info', 'asmopt: `f`: ✓ 1.31× faster (CI 1.28–1.34), 10/10 tests']],
        );
        progress.handle('u', { kind: 'begin', title: 'x' });
        progress.handle('u', { kind: 'end' });
        await settle();
        assert.equal(host.messages.length, 1); // no message, no toast
    });
});
