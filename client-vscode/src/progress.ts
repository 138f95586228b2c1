/**
 * The server's work-done progress as a notification with a Cancel button.
 *
 * vscode-languageclient 9 shows `$/progress` in the status bar (ProgressLocation.Window),
 * where it cannot be cancelled; asmopt runs take minutes, so they get a notification, and
 * Cancel sends `window/workDoneProgress/cancel` (the server then kills every child process).
 */

import type { Host, ProgressHandle } from './host';

export type ProgressToken = string | number;

export type WorkDoneValue =
    | { kind: 'begin'; title: string; cancellable?: boolean; message?: string; percentage?: number }
    | { kind: 'report'; cancellable?: boolean; message?: string; percentage?: number }
    | { kind: 'end'; message?: string };

interface Part {
    handle?: ProgressHandle;
    resolve?: () => void;
    reported: number;
    pending?: { message?: string; percentage?: number };
    ended: boolean;
}

export class ProgressNotifications {
    private readonly parts = new Map<ProgressToken, Part>();

    constructor(
        private readonly host: Host,
        private readonly sendCancel: (token: ProgressToken) => void,
    ) {}

    get active(): number {
        return this.parts.size;
    }

    /** One `$/progress` value for `token`. */
    handle(token: ProgressToken, value: WorkDoneValue): void {
        switch (value.kind) {
            case 'begin': {
                if (this.parts.has(token)) return;
                const part: Part = { reported: 0, ended: false, pending: { message: value.message, percentage: value.percentage } };
                this.parts.set(token, part);
                const title = value.title.startsWith('asmopt') ? value.title : `asmopt: ${value.title}`;
                this.host.withProgress(title, value.cancellable ?? false, (handle) => {
                    if (part.ended) return Promise.resolve();
                    part.handle = handle;
                    handle.onCancel(() => this.sendCancel(token));
                    if (part.pending) this.report(part, part.pending);
                    part.pending = undefined;
                    return new Promise<void>((resolve) => (part.resolve = resolve));
                });
                return;
            }
            case 'report': {
                const part = this.parts.get(token);
                if (!part) return;
                if (part.handle) this.report(part, value);
                else part.pending = { message: value.message ?? part.pending?.message, percentage: value.percentage ?? part.pending?.percentage };
                return;
            }
            case 'end':
                this.end(token);
                // The run's summary ("`f`: ✓ 1.31× faster…", "no faster candidate", "cancelled").
                if (value.message) void this.host.showInfo(value.message.startsWith('asmopt') ? value.message : `asmopt: ${value.message}`);
                return;
        }
    }

    /** The server stopped: close every notification. */
    clear(): void {
        for (const token of [...this.parts.keys()]) this.end(token);
    }

    private end(token: ProgressToken): void {
        const part = this.parts.get(token);
        if (!part) return;
        part.ended = true;
        this.parts.delete(token);
        part.resolve?.();
    }

    private report(part: Part, value: { message?: string; percentage?: number }): void {
        let increment: number | undefined;
        if (typeof value.percentage === 'number') {
            const pct = Math.max(0, Math.min(100, value.percentage));
            increment = Math.max(0, pct - part.reported);
            part.reported += increment;
        }
        if (value.message !== undefined || increment) part.handle?.report({ message: value.message, increment });
    }
}
