import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { RestartLimiter } from '../../src/restartLimiter';

describe('RestartLimiter', () => {
    it('allows N restarts in the window, then refuses', () => {
        let t = 0;
        const limiter = new RestartLimiter(3, 180_000, () => t);
        assert.deepEqual([1, 2, 3, 4].map(() => ((t += 1000), limiter.recordCrash())), [true, true, true, false]);
        assert.equal(limiter.recordCrash(), false);
    });

    it('forgets crashes older than the window', () => {
        let t = 0;
        const limiter = new RestartLimiter(2, 60_000, () => t);
        limiter.recordCrash();
        limiter.recordCrash();
        t = 61_000;
        assert.equal(limiter.recordCrash(), true);
    });

    it('starts afresh after a manual restart', () => {
        const limiter = new RestartLimiter(1, 60_000, () => 0);
        limiter.recordCrash();
        assert.equal(limiter.recordCrash(), false);
        limiter.reset();
        assert.equal(limiter.recordCrash(), true);
    });
});
