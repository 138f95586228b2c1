/** What the status bar item says, from the client's state and the server's `asmopt/status`. */

import type { StatusBarView } from './host';
import { Commands, type StatusParams } from './protocol';

export type ClientState =
    | { kind: 'starting' }
    | { kind: 'running'; server?: StatusParams }
    | { kind: 'stopped'; reason: string };

function fileName(uri: string): string {
    const last = uri.split(/[\\/]/).pop() ?? uri;
    try {
        return decodeURIComponent(last);
    } catch {
        return last;
    }
}

function jobName(job: { uri: string; function: string | null }): string {
    return job.function ?? fileName(job.uri);
}

export function statusBarView(state: ClientState): StatusBarView {
    if (state.kind === 'starting' || (state.kind === 'running' && state.server?.state === 'starting')) {
        return { text: '$(loading~spin) asmopt', tooltip: 'asmopt: the server is starting', command: Commands.showOutput };
    }
    if (state.kind === 'stopped') {
        return {
            text: '$(error) asmopt: stopped',
            tooltip: `asmopt: the server is not running. ${state.reason}\nClick to restart it.`,
            command: Commands.restartServer,
            severity: 'error',
        };
    }
    const jobs = state.server?.jobs ?? [];
    if (state.server?.state === 'running' || jobs.length > 0) {
        const lines = jobs.map((j) => `${jobName(j)} (${fileName(j.uri)}): ${j.stage}`);
        let text = '$(sync~spin) asmopt: running';
        if (jobs.length === 1) text = `$(sync~spin) asmopt: ${jobName(jobs[0])} · ${jobs[0].stage}`;
        else if (jobs.length > 1) text = `$(sync~spin) asmopt: ${jobs.length} jobs`;
        return {
            text,
            tooltip: ['asmopt: running', ...lines].join('\n') + '\nClick to show the output.',
            command: Commands.showOutput,
        };
    }
    return { text: '$(zap) asmopt', tooltip: 'asmopt: idle. Click to show the output.', command: Commands.showOutput };
}
