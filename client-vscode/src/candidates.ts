/**
 * Diff before apply: a verified candidate is first shown in VS Code's diff view, as a
 * read-only virtual document (`asmopt-candidate:`); "Apply candidate" in that editor's title
 * bar then asks the server to apply it (asmopt.applyCandidate, which sends
 * workspace/applyEdit). Nothing is applied that the user has not seen: if the candidate
 * changed since the diff opened, the diff is refreshed and nothing is applied.
 */

import type { Host } from './host';
import { Commands, type CandidateParams, type CandidateResult } from './protocol';

export const CANDIDATE_SCHEME = 'asmopt-candidate';

/** What the candidate views need from the running server. */
export interface CandidateServer {
    requestCandidate(params: CandidateParams): Promise<CandidateResult | null>;
    /** Runs a server command directly (no middleware). */
    executeServerCommand(command: string, args: unknown[]): Promise<unknown>;
}

type Side = 'original' | 'candidate';

interface View {
    id: number;
    params: CandidateParams;
    result: CandidateResult;
}

export function fileName(uri: string): string {
    const path = uri.split('?')[0];
    const last = path.split(/[\\/]/).pop() ?? path;
    try {
        return decodeURIComponent(last);
    } catch {
        return last;
    }
}

/** The path part of a URI string, still percent-encoded (`file:///a/b.s` -> `/a/b.s`). */
function uriPath(uri: string): string {
    try {
        return new URL(uri).pathname || '/candidate.s';
    } catch {
        return '/' + fileName(uri);
    }
}

/** The view id and side named by a virtual URI, its query, or undefined. */
export function parseViewUri(uriOrQuery: string): { id: number; side: Side } | undefined {
    let query = uriOrQuery;
    if (uriOrQuery.startsWith(`${CANDIDATE_SCHEME}:`)) {
        const at = uriOrQuery.indexOf('?');
        if (at < 0) return undefined;
        query = uriOrQuery.slice(at + 1);
    }
    let decoded = query;
    try {
        decoded = decodeURIComponent(query);
    } catch {
        // Keep the raw query.
    }
    const params = new URLSearchParams(decoded);
    const id = Number(params.get('id'));
    const side = params.get('side');
    if (!Number.isInteger(id) || id <= 0 || (side !== 'original' && side !== 'candidate')) return undefined;
    return { id, side };
}

/** "f: 1.31× [1.27–1.35] · 10/10 tests · compiler" */
export function describeCandidate(result: CandidateResult): string {
    const parts: string[] = [];
    if (result.speedup) {
        const s = result.speedup;
        parts.push(`${s.median.toFixed(2)}× [${s.ciLow.toFixed(2)}–${s.ciHigh.toFixed(2)}]`);
    }
    parts.push(`${result.testsPassed}/${result.testsTotal} tests`);
    if (result.policy) parts.push(result.policy);
    return parts.join(' · ');
}

export class CandidateViews {
    private readonly views = new Map<number, View>();
    private readonly ids = new Map<string, number>();
    private nextId = 1;

    constructor(
        private readonly host: Host,
        private readonly server: CandidateServer,
    ) {}

    private static key(params: CandidateParams): string {
        return `${params.uri}#${params.function ?? ''}`;
    }

    private virtualUri(view: View, side: Side): string {
        const path = uriPath(view.result.targetUri || view.params.uri);
        return `${CANDIDATE_SCHEME}:${path}?id=${view.id}&side=${side}`;
    }

    /** The TextDocumentContentProvider: the text of a virtual document, by its URI query. */
    content(uriOrQuery: string): string | undefined {
        const ref = parseViewUri(uriOrQuery);
        const view = ref && this.views.get(ref.id);
        if (!ref || !view) return undefined;
        return ref.side === 'original' ? view.result.original : view.result.candidate;
    }

    /** Asks the server for the candidate of `params` and shows it beside the current text. */
    async show(params: CandidateParams): Promise<boolean> {
        const result = await this.server.requestCandidate(params);
        const what = params.function ? `\`${params.function}\`` : fileName(params.uri);
        if (!result) {
            void this.host.showInfo(
                `asmopt: no verified faster candidate for ${what} yet. Run "asmopt: Optimize ${params.function ? 'function' : 'file'}" first.`,
            );
            return false;
        }
        const key = CandidateViews.key(params);
        let id = this.ids.get(key);
        if (id === undefined) {
            id = this.nextId++;
            this.ids.set(key, id);
        }
        const view: View = { id, params, result };
        this.views.set(id, view);
        this.fireChanged(view);

        // The real target file on the left when it holds exactly the text the candidate
        // replaces; otherwise (a C file's PROG.opt.s not yet written, or edited since) the
        // server's `original`, read-only.
        const target = result.targetUri || params.uri;
        const current = await this.host.documentText(target);
        const leftIsFile = current !== undefined && current === result.original;
        const left = leftIsFile ? target : this.virtualUri(view, 'original');
        // An assembly buffer's `original` is the region the edit replaces (current text); a C
        // file's is gcc -O3's assembly, the baseline the candidate was measured against.
        const leftName = leftIsFile || target === params.uri ? `${fileName(target)} (current)` : `${fileName(target)} (gcc -O3)`;
        const title = `${leftName} ↔ asmopt ${result.function ?? params.function ?? ''} ${describeCandidate(result)}`.replace(/ {2,}/g, ' ');
        await this.host.showDiff(left, this.virtualUri(view, 'candidate'), title);
        return true;
    }

    /** Applies the candidate shown in the diff view named by `uriOrQuery`. */
    async applyFromView(uriOrQuery: string): Promise<boolean> {
        const ref = parseViewUri(uriOrQuery);
        const view = ref && this.views.get(ref.id);
        if (!view) {
            void this.host.showWarning('asmopt: this diff is out of date. Run "asmopt: Show candidate diff" again.');
            return false;
        }
        const what = view.params.function ? `\`${view.params.function}\`` : fileName(view.params.uri);
        const fresh = await this.server.requestCandidate(view.params);
        if (!fresh) {
            void this.host.showWarning(
                `asmopt: the candidate for ${what} is no longer available (the file or its results changed). Nothing was applied; run Optimize again.`,
            );
            return false;
        }
        if (fresh.candidate !== view.result.candidate || fresh.original !== view.result.original) {
            view.result = fresh;
            this.fireChanged(view);
            void this.host.showWarning(
                `asmopt: the candidate for ${what} changed since this diff was opened. Nothing was applied; review the updated diff and apply again.`,
            );
            return false;
        }
        await this.server.executeServerCommand(Commands.applyCandidate, [view.params.uri, view.params.function]);
        this.host.log.info(`applied candidate for ${what} to ${fresh.targetUri}`);
        void this.host.showInfo(`asmopt: applied the candidate for ${what} to ${fileName(fresh.targetUri)}. Undo restores the previous text.`);
        return true;
    }

    private fireChanged(view: View): void {
        this.host.fireVirtualDocumentChanged(this.virtualUri(view, 'original'));
        this.host.fireVirtualDocumentChanged(this.virtualUri(view, 'candidate'));
    }
}
