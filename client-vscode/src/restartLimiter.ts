/**
 * At most `maxRestarts` automatic restarts within `windowMs`; after that the server stays
 * down until the user asks for a restart. Without this a server that dies at start would be
 * restarted forever.
 */
export class RestartLimiter {
    private crashes: number[] = [];

    constructor(
        readonly maxRestarts = 3,
        readonly windowMs = 3 * 60_000,
        private readonly now: () => number = Date.now,
    ) {}

    /** Records a crash; true when one more automatic restart is allowed. */
    recordCrash(): boolean {
        const t = this.now();
        this.crashes = this.crashes.filter((c) => t - c < this.windowMs);
        this.crashes.push(t);
        return this.crashes.length <= this.maxRestarts;
    }

    /** The user restarted the server by hand: start counting afresh. */
    reset(): void {
        this.crashes = [];
    }

    get windowMinutes(): number {
        return Math.round(this.windowMs / 60_000);
    }
}
