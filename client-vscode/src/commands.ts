/**
 * The server's commands as the user meets them. The language client registers
 * asmopt.optimizeFunction / optimizeFile / applyCandidate to forward to the server; its
 * `executeCommand` middleware lands here first, so that:
 *
 * - from a CodeLens or code action (arguments `[uri, function]`) they go straight through;
 * - from the command palette or a menu (no arguments, or the editor's URI) the file and the
 *   function under the cursor are filled in;
 * - asmopt.applyCandidate never applies unseen: outside the diff view it opens the diff;
 *   inside it (title-bar button) it applies.
 */

import { CANDIDATE_SCHEME, CandidateViews } from './candidates';
import type { Host } from './host';
import { Commands, isSupportedLanguage, type CandidateParams } from './protocol';

/** A `vscode.Uri` argument, flattened by the wrapper. */
export interface UriArg {
    kind: 'uri';
    uri: string;
    scheme: string;
    query: string;
}

export function isUriArg(value: unknown): value is UriArg {
    return typeof value === 'object' && value !== null && (value as UriArg).kind === 'uri' && typeof (value as UriArg).uri === 'string';
}

/** A CodeLens as the server sent it: its first line and its command. */
export interface LensInfo {
    line: number;
    command?: string;
    args?: unknown[];
}

export interface CommandServer {
    /** The document's code lenses (the server puts one above each function). */
    codeLenses(uri: string): Promise<LensInfo[]>;
}

export type Next = (command: string, args: unknown[]) => Promise<unknown>;

/** The functions of a document, in order, from the lenses whose arguments are `[uri, name]`. */
export function functionsFromLenses(lenses: LensInfo[], uri: string): { line: number; name: string }[] {
    const byName = new Map<string, number>();
    for (const lens of lenses) {
        const [lensUri, name] = lens.args ?? [];
        if (typeof name === 'string' && name !== '' && (lensUri === uri || typeof lensUri === 'string')) {
            const line = byName.get(name);
            if (line === undefined || lens.line < line) byName.set(name, lens.line);
        }
    }
    return [...byName].map(([name, line]) => ({ name, line })).sort((a, b) => a.line - b.line);
}

/** The function whose lens is the last one at or above `line`. */
export function functionAtLine(lenses: LensInfo[], uri: string, line: number): string | undefined {
    let found: string | undefined;
    for (const fn of functionsFromLenses(lenses, uri)) {
        if (fn.line <= line) found = fn.name;
    }
    return found;
}

export class CommandRouter {
    constructor(
        private readonly host: Host,
        private readonly server: CommandServer,
        private readonly views: CandidateViews,
    ) {}

    /** The `executeCommand` middleware; a failure becomes a message, not a silent rejection. */
    async execute(command: string, args: unknown[], next: Next): Promise<unknown> {
        try {
            return await this.route(command, args, next);
        } catch (err) {
            const message = (err as Error)?.message ?? String(err);
            this.host.log.error(`${command}: ${message}`);
            void this.host.showError(`asmopt: ${command} failed: ${message}`);
            return undefined;
        }
    }

    private async route(command: string, args: unknown[], next: Next): Promise<unknown> {
        switch (command) {
            case Commands.optimizeFunction: {
                const target = await this.functionTarget(args, true);
                return target ? next(command, [target.uri, target.function]) : undefined;
            }
            case Commands.optimizeFile: {
                const uri = this.documentUri(args, 'Optimize file');
                return uri ? next(command, [uri]) : undefined;
            }
            case Commands.applyCandidate:
                return this.applyCandidate(args);
            default:
                return next(command, args);
        }
    }

    /** asmopt.showCandidateDiff: `[uri, function]`, or the function under the cursor. */
    async showCandidateDiff(args: unknown[]): Promise<boolean> {
        const target = await this.functionTarget(args, false);
        return target ? this.views.show(target) : false;
    }

    private async applyCandidate(args: unknown[]): Promise<unknown> {
        const [first] = args;
        if (isUriArg(first) && first.scheme === CANDIDATE_SCHEME) return this.views.applyFromView(first.query);
        const editor = this.host.activeEditor();
        if (args.length === 0 && editor?.scheme === CANDIDATE_SCHEME) return this.views.applyFromView(editor.uri);
        // From a code action, the palette or a menu: show the diff; the user applies from there.
        const target = await this.functionTarget(args, false);
        return target ? this.views.show(target) : false;
    }

    /** The document a command is about: its URI argument, else the active editor's. */
    private documentUri(args: unknown[], action: string): string | undefined {
        const [first] = args;
        if (typeof first === 'string' && first !== '') return first;
        if (isUriArg(first) && first.scheme !== CANDIDATE_SCHEME) return first.uri;
        const editor = this.host.activeEditor();
        if (editor && editor.scheme !== CANDIDATE_SCHEME && isSupportedLanguage(editor.languageId)) return editor.uri;
        void this.host.showWarning(`asmopt: open a C or assembly file first, then run "asmopt: ${action}".`);
        return undefined;
    }

    /**
     * `[uri, function]` from the arguments, else the function under the cursor. When
     * `needFunction` is false a file without a function under the cursor gives
     * `function: null` (the whole file).
     */
    private async functionTarget(args: unknown[], needFunction: boolean): Promise<CandidateParams | undefined> {
        const [first, second] = args;
        if (typeof first === 'string' && first !== '' && (typeof second === 'string' || second === null)) {
            return { uri: first, function: second };
        }
        const action = needFunction ? 'Optimize function' : 'Show candidate diff';
        const uri = this.documentUri(args, action);
        if (!uri) return undefined;
        const editor = this.host.activeEditor();
        const lenses = await this.server.codeLenses(uri);
        const line = editor && editor.uri === uri ? editor.line : -1;
        const atCursor = functionAtLine(lenses, uri, line);
        if (atCursor) return { uri, function: atCursor };
        if (!needFunction) return { uri, function: null };
        const names = functionsFromLenses(lenses, uri).map((f) => f.name);
        if (names.length === 0) {
            void this.host.showWarning(
                'asmopt found no function in this file. Functions are C function definitions, or assembly labels with `.type f,@function`.',
            );
            return undefined;
        }
        const picked = await this.host.showQuickPick(names, 'Which function should asmopt optimize?');
        return picked ? { uri, function: picked } : undefined;
    }
}
