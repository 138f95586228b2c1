/**
 * The `asmopt.*` settings: which ones the server reads (docs/protocol.md, "Settings"), how the
 * client checks their types, and the object it sends to the server.
 *
 * package.json declares the same keys; a unit test keeps the two lists equal.
 */

import type { SettingsReader, SettingValues } from './host';

export const SECTION = 'asmopt';

type Kind =
    | { type: 'string'; allowEmpty?: boolean; oneOf?: readonly string[] }
    | { type: 'boolean' }
    | { type: 'integer'; min?: number }
    | { type: 'number'; min?: number; max?: number; positive?: boolean }
    | { type: 'stringList'; oneOf?: readonly string[] }
    | { type: 'stringOrStringList' };

export const POLICIES = ['compiler', 'transformers', 'openai', 'vllm'] as const;
export const COMPARE_MODES = ['tokens', 'exact', 'floats'] as const;
export const MARCH_LEVELS = ['x86-64', 'x86-64-v2', 'x86-64-v3', 'x86-64-v4'] as const;
export const TRACE_LEVELS = ['off', 'messages', 'verbose'] as const;

/** Keys the server reads (camelCase, as on the wire). */
export const SERVER_SETTINGS: Readonly<Record<string, Kind>> = {
    policies: { type: 'stringList', oneOf: POLICIES },
    model: { type: 'string', allowEmpty: true },
    endpoint: { type: 'string', allowEmpty: true },
    samples: { type: 'integer', min: 1 },
    temperature: { type: 'number', min: 0, max: 2 },
    maxNewTokens: { type: 'integer', min: 1 },
    refineRounds: { type: 'integer', min: 0 },
    tensorParallelSize: { type: 'integer', min: 1 },
    maxModelLen: { type: 'integer', min: 1 },
    compileCommands: { type: 'string', allowEmpty: true },
    llmTimeout: { type: 'number', positive: true },
    testTimeout: { type: 'number', positive: true },
    maxOutputMb: { type: 'integer', min: 1 },
    memoryMb: { type: 'integer', min: 1 },
    sandbox: { type: 'boolean' },
    compiler: { type: 'string' },
    cflags: { type: 'stringOrStringList' },
    allowNative: { type: 'boolean' },
    marchLevel: { type: 'string', oneOf: MARCH_LEVELS },
    racing: { type: 'boolean' },
    goOn: { type: 'boolean' },
    profileOnOpen: { type: 'boolean' },
    ciTarget: { type: 'number', positive: true },
    benchBudget: { type: 'number', positive: true },
    compare: { type: 'string', oneOf: COMPARE_MODES },
    tolerance: { type: 'number', min: 0 },
    workers: { type: 'integer', min: 0 },
};

/** Keys only the client reads; changing one restarts the server. */
export const CLIENT_SETTINGS: Readonly<Record<string, Kind>> = {
    interpreter: { type: 'stringList' },
    serverArgs: { type: 'stringList' },
    'trace.server': { type: 'string', oneOf: TRACE_LEVELS },
};

export const RESTART_KEYS = Object.keys(CLIENT_SETTINGS).map((k) => `${SECTION}.${k}`);

export interface SettingProblem {
    /** The full key, e.g. `asmopt.samples`. */
    key: string;
    message: string;
}

const show = (value: unknown): string => JSON.stringify(value) ?? String(value);

/** Why `value` does not fit `kind`, or undefined when it fits. */
function checkValue(kind: Kind, value: unknown): string | undefined {
    const isStr = (v: unknown): v is string => typeof v === 'string';
    switch (kind.type) {
        case 'string':
            if (!isStr(value)) return 'a string';
            if (!kind.allowEmpty && value.trim() === '' && !kind.oneOf) return 'a non-empty string';
            if (kind.oneOf && !kind.oneOf.includes(value)) return `one of ${kind.oneOf.join(', ')}`;
            return undefined;
        case 'boolean':
            return typeof value === 'boolean' ? undefined : 'true or false';
        case 'integer': {
            const want = kind.min === undefined ? 'an integer' : `an integer of at least ${kind.min}`;
            if (typeof value !== 'number' || !Number.isInteger(value)) return want;
            return kind.min !== undefined && value < kind.min ? want : undefined;
        }
        case 'number': {
            let want = 'a number';
            if (kind.positive) want = 'a number greater than 0';
            else if (kind.min !== undefined && kind.max !== undefined) want = `a number from ${kind.min} to ${kind.max}`;
            else if (kind.min !== undefined) want = `a number of at least ${kind.min}`;
            if (typeof value !== 'number' || !Number.isFinite(value)) return want;
            if (kind.positive && value <= 0) return want;
            if (kind.min !== undefined && value < kind.min) return want;
            if (kind.max !== undefined && value > kind.max) return want;
            return undefined;
        }
        case 'stringList': {
            const want = kind.oneOf ? `a list of strings from ${kind.oneOf.join(', ')}` : 'a list of strings';
            if (!Array.isArray(value) || !value.every(isStr)) return want;
            if (kind.oneOf && !value.every((v) => kind.oneOf!.includes(v))) return want;
            return undefined;
        }
        case 'stringOrStringList':
            if (isStr(value) || (Array.isArray(value) && value.every(isStr))) return undefined;
            return 'a string or a list of strings';
    }
}

/** The value the user set (folder over workspace over user settings), or undefined. */
export function userValue(values: SettingValues | undefined): unknown {
    if (!values) return undefined;
    return values.workspaceFolderValue ?? values.workspaceValue ?? values.globalValue;
}

function where(values: SettingValues | undefined): string {
    if (values?.workspaceFolderValue !== undefined) return 'folder settings';
    if (values?.workspaceValue !== undefined) return 'workspace settings';
    return 'user settings';
}

function problem(key: string, values: SettingValues | undefined, value: unknown, want: string): SettingProblem {
    return {
        key: `${SECTION}.${key}`,
        message:
            `Setting ${SECTION}.${key} must be ${want}, not ${show(value)}. ` +
            `Fix it in your ${where(values)}; until then asmopt uses its default.`,
    };
}

export interface ServerSettings {
    /** Every server key: the user's value, or null when unset or invalid (the server then
     * keeps asmopt.toml's value or its default; it ignores null). */
    settings: Record<string, unknown>;
    problems: SettingProblem[];
}

/** The `asmopt` object sent to the server (initializationOptions, workspace/configuration,
 * didChangeConfiguration). Client-only keys are left out; defaults are sent as null so that
 * they never override a workspace's asmopt.toml. */
export function serverSettings(read: SettingsReader, scopeUri?: string): ServerSettings {
    const settings: Record<string, unknown> = {};
    const problems: SettingProblem[] = [];
    for (const [key, kind] of Object.entries(SERVER_SETTINGS)) {
        const values = read(key, scopeUri);
        const value = userValue(values);
        if (value === undefined || value === null) {
            settings[key] = null;
            continue;
        }
        const want = checkValue(kind, value);
        if (want) {
            problems.push(problem(key, values, value, want));
            settings[key] = null;
        } else {
            settings[key] = value;
        }
    }
    return { settings, problems };
}

export interface ClientSettings {
    interpreter: string[];
    serverArgs: string[];
    trace: (typeof TRACE_LEVELS)[number];
    problems: SettingProblem[];
}

/** The client-only settings, each replaced by its default when it has the wrong type. */
export function clientSettings(read: SettingsReader, scopeUri?: string): ClientSettings {
    const problems: SettingProblem[] = [];
    const get = <T>(key: string, fallback: T): T => {
        const values = read(key, scopeUri);
        const value = userValue(values);
        if (value === undefined || value === null) return fallback;
        const want = checkValue(CLIENT_SETTINGS[key], value);
        if (want) {
            problems.push(problem(key, values, value, want));
            return fallback;
        }
        return value as T;
    };
    return {
        interpreter: get<string[]>('interpreter', []),
        serverArgs: get<string[]>('serverArgs', []),
        trace: get('trace.server', 'off'),
        problems,
    };
}
