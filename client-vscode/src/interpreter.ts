/**
 * Which Python runs the server, and the command line that starts it.
 *
 * Order: the `asmopt.interpreter` setting, else the Python extension's active interpreter,
 * else `python3` on PATH.
 */

import * as os from 'node:os';
import * as path from 'node:path';

export const DEFAULT_PYTHON = 'python3';

export type InterpreterSource = 'setting' | 'python-extension' | 'default';

export interface Interpreter {
    /** The command and its leading arguments, e.g. ["/venv/bin/python"] or ["conda", "run", "-n", "x", "python"]. */
    command: string[];
    source: InterpreterSource;
}

export interface Substitutions {
    workspaceFolder?: string;
    userHome?: string;
    env?: Record<string, string | undefined>;
}

/** Expands `${workspaceFolder}`, `${userHome}`, `${env:NAME}` and a leading `~`. */
export function substitute(value: string, subs: Substitutions): string {
    const home = subs.userHome ?? os.homedir();
    let out = value.replace(/\$\{(workspaceFolder|userHome|env:([A-Za-z_][A-Za-z0-9_]*))\}/g, (whole, name, envName) => {
        if (name === 'workspaceFolder') return subs.workspaceFolder ?? whole;
        if (name === 'userHome') return home;
        return (subs.env ?? process.env)[envName] ?? '';
    });
    if (out === '~' || out.startsWith('~/')) out = path.join(home, out.slice(1));
    return out;
}

/** Resolves the interpreter; `fromPythonExtension` is only asked when the setting is empty. */
export async function resolveInterpreter(
    setting: string[],
    fromPythonExtension: () => Promise<string[] | undefined>,
    subs: Substitutions,
): Promise<Interpreter> {
    const configured = setting.map((part) => substitute(part, subs)).filter((part) => part.trim() !== '');
    if (configured.length > 0) return { command: configured, source: 'setting' };
    let active: string[] | undefined;
    try {
        active = await fromPythonExtension();
    } catch {
        active = undefined; // The Python extension is optional; a failure there is not ours.
    }
    if (active && active.length > 0 && active[0]) return { command: active, source: 'python-extension' };
    return { command: [DEFAULT_PYTHON], source: 'default' };
}

export interface ServerCommand {
    command: string;
    args: string[];
}

/** `<python> -m asmopt.cli serve <serverArgs>`. */
export function serverCommand(interpreter: Interpreter, serverArgs: string[], subs: Substitutions): ServerCommand {
    const [command, ...prefix] = interpreter.command;
    return {
        command,
        args: [...prefix, '-m', 'asmopt.cli', 'serve', ...serverArgs.map((a) => substitute(a, subs))],
    };
}

/** How a user would type the interpreter in a terminal (for messages). */
export function displayCommand(parts: string[]): string {
    return parts.map((p) => (/^[\w@%+=:,./-]+$/.test(p) ? p : `'${p.replace(/'/g, `'\\''`)}'`)).join(' ');
}

export function describeSource(source: InterpreterSource): string {
    switch (source) {
        case 'setting':
            return 'from the asmopt.interpreter setting';
        case 'python-extension':
            return "the Python extension's active interpreter";
        case 'default':
            return 'python3 on PATH (asmopt.interpreter is empty and no Python extension interpreter was found)';
    }
}
