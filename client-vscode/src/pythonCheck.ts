/**
 * Before starting the server: can this interpreter run at all, and does it have asmopt?
 * A missing Python or a missing package gets a message that says how to fix it, instead of
 * a server that dies at start and is restarted in a loop.
 */

import { spawn } from 'node:child_process';

import { displayCommand, describeSource, type Interpreter } from './interpreter';

export const IMPORT_CHECK = 'import asmopt.server, sys; print(sys.executable)';
export const CHECK_TIMEOUT_MS = 30_000;

export interface ProcessResult {
    /** Exit code; null when the process could not start or was killed. */
    code: number | null;
    stdout: string;
    stderr: string;
    /** Why it could not start (e.g. ENOENT), or 'timeout'. */
    error?: string;
}

export type RunProcess = (command: string, args: string[], timeoutMs: number, cwd?: string) => Promise<ProcessResult>;

export type CheckResult =
    | { ok: true; executable: string }
    | { ok: false; reason: 'no-python' | 'no-asmopt' | 'timeout'; message: string; fix?: string };

/** Runs `<python> -c "import asmopt.server"`. */
export async function checkInterpreter(interpreter: Interpreter, run: RunProcess, cwd?: string): Promise<CheckResult> {
    const [command, ...prefix] = interpreter.command;
    const shown = displayCommand(interpreter.command);
    const result = await run(command, [...prefix, '-c', IMPORT_CHECK], CHECK_TIMEOUT_MS, cwd);
    if (result.error === 'timeout') {
        return {
            ok: false,
            reason: 'timeout',
            message: `asmopt: "${shown} -c 'import asmopt.server'" did not finish in ${CHECK_TIMEOUT_MS / 1000} s. Check that this Python works, or set asmopt.interpreter to another one.`,
        };
    }
    if (result.error !== undefined || result.code === null) {
        return {
            ok: false,
            reason: 'no-python',
            message:
                `asmopt: cannot run Python "${shown}" (${describeSource(interpreter.source)}): ${result.error ?? 'killed'}. ` +
                `Install Python 3.11 or later, or set asmopt.interpreter to the Python that has asmopt, e.g. ["/path/to/.venv/bin/python"].`,
        };
    }
    if (result.code !== 0) {
        const fix = `${shown} -m pip install 'asmopt[server]'`;
        const why = lastLine(result.stderr) || `exit code ${result.code}`;
        // A Python that cannot even start prints something else than an ImportError.
        const missing = /ModuleNotFoundError|ImportError/.test(result.stderr);
        return {
            ok: false,
            reason: 'no-asmopt',
            fix,
            message: missing
                ? `asmopt is not installed in ${shown} (${describeSource(interpreter.source)}): ${why}. ` +
                  `Install it there with: ${fix} — or set asmopt.interpreter to a Python that has it.`
                : `asmopt: ${shown} -c 'import asmopt.server' failed: ${why}. ` +
                  `Reinstall with: ${fix} — or set asmopt.interpreter to another Python.`,
        };
    }
    return { ok: true, executable: result.stdout.trim() || command };
}

function lastLine(text: string): string {
    const lines = text.trim().split(/\r?\n/);
    return lines[lines.length - 1]?.trim() ?? '';
}

/** `RunProcess` with node's child_process: no shell, a time limit, output kept small. */
export const runProcess: RunProcess = (command, args, timeoutMs, cwd) =>
    new Promise((resolve) => {
        let stdout = '';
        let stderr = '';
        let settled = false;
        const finish = (result: ProcessResult) => {
            if (!settled) {
                settled = true;
                clearTimeout(timer);
                resolve(result);
            }
        };
        let child;
        try {
            child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
        } catch (err) {
            finish({ code: null, stdout, stderr, error: (err as Error).message });
            return;
        }
        const timer = setTimeout(() => {
            child.kill('SIGKILL');
            finish({ code: null, stdout, stderr, error: 'timeout' });
        }, timeoutMs);
        child.stdout.on('data', (d: Buffer) => (stdout = (stdout + d.toString()).slice(-16_384)));
        child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-16_384)));
        child.on('error', (err: NodeJS.ErrnoException) => finish({ code: null, stdout, stderr, error: err.code ?? err.message }));
        child.on('close', (code) => finish({ code, stdout, stderr }));
    });
