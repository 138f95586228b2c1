/**
 * "asmopt: Show hottest functions": the file's functions by their share of the instructions
 * their program executes on its tests (the server's `asmopt.hottestFunctions`: valgrind, in
 * the sandbox; instructions, not time), in a quick pick that jumps to the one chosen, in
 * whichever source of the program defines it. The profile lenses run it too, with the
 * document's URI.
 */

import { isUriArg } from './commands';
import type { Host, PickItem } from './host';
import { Commands, isSupportedLanguage, type HotFunction, type HottestAnswer, type HottestResult } from './protocol';

export interface HottestServer {
    executeServerCommand(command: string, args: unknown[]): Promise<unknown>;
}

/** `31%`, `3.2%`, `0.04%`: as the server's lenses say it (two figures below 10%). */
export function shareText(share: number): string {
    const percent = share * 100;
    if (percent >= 9.95) return `${percent.toFixed(0)}%`;
    if (percent >= 0.995) return `${percent.toFixed(1)}%`;
    return `${Number(percent.toPrecision(2))}%`;
}

export function isHottestAnswer(value: unknown): value is HottestAnswer {
    return typeof value === 'object' && value !== null && Array.isArray((value as HottestAnswer).functions);
}

/** The file name of a URI, decoded (`my%20file.c` -> `my file.c`). */
function fileName(uri: string): string {
    const last = uri.split('/').pop() ?? uri;
    try {
        return decodeURIComponent(last);
    } catch {
        return last;
    }
}

/** Where a function is, for its item: nothing in the file asked about, else the other file. */
function whereText(f: HotFunction, asked: string | undefined): string {
    if (f.uri === null) return ' · not found in the sources of the program';
    if (asked !== undefined && f.uri !== asked) return ` · in ${fileName(f.uri)}`;
    return '';
}

/** The quick pick's items, hottest first; `asked`: the document the list is for. */
export function hottestItems(answer: HottestAnswer, asked?: string): PickItem[] {
    return answer.functions.map((f: HotFunction) => ({
        label: f.name,
        description: `${shareText(f.share)} of instructions`,
        detail: `${f.instructions.toLocaleString('en-US')} instructions` + whereText(f, asked),
    }));
}

/** The quick pick's placeholder: what the figures are, and a start-up-bound run said once. */
export function hottestPlaceholder(answer: HottestAnswer): string {
    const tests = `${answer.tests.length} test${answer.tests.length === 1 ? '' : 's'}`;
    const head = `${answer.target}: instructions per function on ${tests} (valgrind; not time)`;
    if (answer.startupBound) return `${head}. Mostly start-up and libc: its own code runs ${shareText(answer.ownShare)} of them`;
    return head;
}

export class HottestFunctions {
    constructor(
        private readonly host: Host,
        private readonly server: HottestServer,
    ) {}

    /** Runs the command; resolves to the function jumped to, if any. */
    async show(args: unknown[]): Promise<HotFunction | undefined> {
        const uri = this.documentUri(args);
        if (!uri) return undefined;
        const answer = await this.ask(uri);
        if (answer === undefined) return undefined;
        if (!isHottestAnswer(answer)) {
            const why = typeof answer === 'object' && answer !== null && 'error' in answer ? answer.error : 'no answer from the server';
            void this.host.showWarning(`asmopt: no profile for ${uri.split('/').pop()}: ${why}`);
            return undefined;
        }
        if (answer.functions.length === 0) {
            void this.host.showInfo(`asmopt: no function of ${answer.target} executed an instruction of its own on its tests.`);
            return undefined;
        }
        const index = await this.host.pickItem(hottestItems(answer, uri), hottestPlaceholder(answer));
        if (index === undefined) return undefined;
        const chosen = answer.functions[index];
        if (chosen?.uri && chosen.line !== null) {
            // The server names the file: the one asked about, or another source of the
            // program, which is opened (revealLine opens any document).
            await this.host.revealLine(chosen.uri, chosen.line);
            return chosen;
        }
        void this.host.showInfo(`asmopt: \`${chosen?.name}\` is not defined in the sources of ${answer.target} (a library function, or one asmopt could not find).`);
        return undefined;
    }

    /** The server's answer, under a progress notification (a first profile takes seconds). */
    private ask(uri: string): Promise<HottestResult | undefined> {
        return new Promise((resolve, reject) => {
            this.host.withProgress('asmopt: profiling (valgrind, on the tests)…', false, async () => {
                try {
                    resolve((await this.server.executeServerCommand(Commands.hottestFunctions, [uri])) as HottestResult | undefined);
                } catch (err) {
                    reject(err);
                }
            });
        });
    }

    private documentUri(args: unknown[]): string | undefined {
        const [first] = args;
        if (typeof first === 'string' && first !== '') return first;
        if (isUriArg(first)) return first.uri;
        const editor = this.host.activeEditor();
        if (editor && editor.scheme === 'file' && isSupportedLanguage(editor.languageId)) return editor.uri;
        void this.host.showWarning('asmopt: open a C or assembly file first, then run "asmopt: Show hottest functions".');
        return undefined;
    }
}
