import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { statusBarView } from '../../src/statusBar';

describe('statusBarView', () => {
    it('shows starting, idle and stopped', () => {
        assert.equal(statusBarView({ kind: 'starting' }).text, '$(loading~spin) asmopt');
        assert.equal(statusBarView({ kind: 'running', server: { state: 'starting', jobs: [] } }).text, '$(loading~spin) asmopt');
        const idle = statusBarView({ kind: 'running', server: { state: 'idle', jobs: [] } });
        assert.equal(idle.text, '$(zap) asmopt');
        assert.equal(idle.command, 'asmopt.showOutput');
        const stopped = statusBarView({ kind: 'stopped', reason: 'asmopt is not installed.' });
        assert.equal(stopped.text, '$(error) asmopt: stopped');
        assert.equal(stopped.command, 'asmopt.restartServer');
        assert.equal(stopped.severity, 'error');
        assert.match(stopped.tooltip, /not installed/);
    });

    it('names one running job and its stage', () => {
        const view = statusBarView({
            kind: 'running',
            server: { state: 'running', jobs: [{ uri: 'file:///w/prog.c', function: 'work', stage: 'benchmark' }] },
        });
        assert.equal(view.text, '$(sync~spin) asmopt: work · benchmark');
        assert.match(view.tooltip, /work \(prog\.c\): benchmark/);
    });

    it('counts several jobs and names a whole-file job by its file', () => {
        const view = statusBarView({
            kind: 'running',
            server: {
                state: 'running',
                jobs: [
                    { uri: 'file:///w/my%20prog.c', function: null, stage: 'verify' },
                    { uri: 'file:///w/b.s', function: 'f', stage: 'generate' },
                ],
            },
        });
        assert.equal(view.text, '$(sync~spin) asmopt: 2 jobs');
        assert.match(view.tooltip, /my prog\.c \(my prog\.c\): verify/);
        assert.match(view.tooltip, /f \(b\.s\): generate/);
    });
});
