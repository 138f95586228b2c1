/**
 * The custom messages of docs/protocol.md, as types. Shared by the extension and the
 * integration test; no `vscode` import.
 */

export const CANDIDATE_REQUEST = 'asmopt/candidate';
export const STATUS_NOTIFICATION = 'asmopt/status';

export const Commands = {
    // Run by the server (workspace/executeCommand); the language client registers them.
    optimizeFunction: 'asmopt.optimizeFunction',
    optimizeFile: 'asmopt.optimizeFile',
    applyCandidate: 'asmopt.applyCandidate',
    cancel: 'asmopt.cancel',
    hottestFunctions: 'asmopt.hottestFunctions',
    // Client only.
    showCandidateDiff: 'asmopt.showCandidateDiff',
    restartServer: 'asmopt.restartServer',
    showOutput: 'asmopt.showOutput',
    showHottestFunctions: 'asmopt.showHottestFunctions',
} as const;

export const SERVER_COMMANDS: readonly string[] = [
    Commands.optimizeFunction,
    Commands.optimizeFile,
    Commands.applyCandidate,
    Commands.cancel,
    Commands.hottestFunctions,
];

/** Language ids the server handles (protocol.md: any id ending in `asm`, plus `c`). */
export const LANGUAGE_IDS = ['c', 'asm', 'gas', 'x86asm', 'asm-intel-x86-generic'] as const;

export function isSupportedLanguage(languageId: string): boolean {
    return languageId === 'c' || languageId.endsWith('asm') || (LANGUAGE_IDS as readonly string[]).includes(languageId);
}

export interface CandidateParams {
    uri: string;
    function: string | null;
}

export interface Speedup {
    median: number;
    ciLow: number;
    ciHigh: number;
    runs: number;
}

export interface CandidateResult {
    original: string;
    candidate: string;
    targetUri: string;
    function: string | null;
    speedup: Speedup | null;
    testsPassed: number;
    testsTotal: number;
    policy: string;
    label: string;
}

export type ServerState = 'starting' | 'idle' | 'running';

export interface StatusJob {
    uri: string;
    function: string | null;
    stage: string;
}

export interface StatusParams {
    state: ServerState;
    jobs: StatusJob[];
}

/** One function of `asmopt.hottestFunctions`: where it is defined (the file asked about or another source of its target), when found. */
export interface HotFunction {
    name: string;
    instructions: number;
    share: number;
    uri: string | null;
    line: number | null;
}

/** The answer of `asmopt.hottestFunctions` (instructions from valgrind, not time). */
export interface HottestAnswer {
    target: string;
    metric: string;
    total: number;
    ownShare: number;
    startupBound: string;
    tests: string[];
    skippedTests: string[];
    functions: HotFunction[];
    elsewhere: { name: string; instructions: number; share: number }[];
}

export type HottestResult = HottestAnswer | { error: string };
