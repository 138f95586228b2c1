/**
 * The LanguageClient (vscode-languageclient 9, node) that runs `asmopt serve` over stdio,
 * with asmopt's error handler, middleware and progress notifications.
 */

import {
    CloseAction,
    CodeLensRequest,
    DidChangeConfigurationNotification,
    ErrorAction,
    ExecuteCommandRequest,
    LanguageClient,
    RevealOutputChannelOn,
    State,
    TransportKind,
    WorkDoneProgress,
    WorkDoneProgressCancelNotification,
    WorkDoneProgressCreateRequest,
    type ClientCapabilities,
    type CodeLens,
    type DynamicFeature,
    type FeatureState,
    type LanguageClientOptions,
    type ServerOptions,
    type StaticFeature,
} from 'vscode-languageclient/node';

import type { LogOutputChannel } from 'vscode';

import type { CandidateServer } from './candidates';
import type { CommandRouter, CommandServer, LensInfo } from './commands';
import { ProgressNotifications } from './progress';
import { CANDIDATE_REQUEST, LANGUAGE_IDS, STATUS_NOTIFICATION, type CandidateParams, type CandidateResult, type StatusParams } from './protocol';
import type { ClientFactory, ClientHandle, ClientStartOptions } from './serverController';
import { SECTION } from './settings';
import { flattenArg } from './vscodeapi';

export const CLIENT_ID = 'asmopt';
const STOP_TIMEOUT_MS = 5_000;
const MAX_CONNECTION_ERRORS = 3;

/** Drops the built-in progress feature (status-bar progress that cannot be cancelled), and
 * keeps the client's own error toasts ("couldn't create connection", "Server initialization
 * failed", "connection got closed": none says why) in the output channel: ServerController
 * shows one message with the cause instead. */
class AsmoptLanguageClient extends LanguageClient {
    override error(message: string, data?: unknown, _showNotification?: boolean | 'force'): void {
        super.error(message, data, false);
    }

    override registerFeature(feature: StaticFeature | DynamicFeature<unknown>): void {
        if (!(feature instanceof NotificationProgressFeature)) {
            const state = feature.getState?.();
            if (state && state.kind === 'window' && state.id === WorkDoneProgressCreateRequest.method) return;
        }
        super.registerFeature(feature);
    }
}

/** `window/workDoneProgress/create` + `$/progress` -> a cancellable notification. */
class NotificationProgressFeature implements StaticFeature {
    constructor(
        private readonly client: LanguageClient,
        private readonly progress: ProgressNotifications,
    ) {}

    getState(): FeatureState {
        return { kind: 'static' };
    }

    fillClientCapabilities(capabilities: ClientCapabilities): void {
        capabilities.window = { ...capabilities.window, workDoneProgress: true };
    }

    initialize(): void {
        this.client.onRequest(WorkDoneProgressCreateRequest.type, ({ token }) => {
            const sub = this.client.onProgress(WorkDoneProgress.type, token, (value) => {
                this.progress.handle(token, value);
                if (value.kind === 'end') sub.dispose();
            });
        });
    }

    clear(): void {
        this.progress.clear();
    }
}

/** The running client, for the commands and views that outlive restarts. */
export class CurrentClient implements CandidateServer, CommandServer {
    client: LanguageClient | undefined;

    private get running(): LanguageClient {
        if (!this.client || !this.client.isRunning()) {
            throw new Error('the asmopt server is not running. Run "asmopt: Restart server" (the output shows why it stopped).');
        }
        return this.client;
    }

    requestCandidate(params: CandidateParams): Promise<CandidateResult | null> {
        return this.running.sendRequest<CandidateResult | null>(CANDIDATE_REQUEST, params);
    }

    executeServerCommand(command: string, args: unknown[]): Promise<unknown> {
        return this.running.sendRequest(ExecuteCommandRequest.type, { command, arguments: args });
    }

    async codeLenses(uri: string): Promise<LensInfo[]> {
        const lenses: CodeLens[] | null = await this.running.sendRequest(CodeLensRequest.type, { textDocument: { uri } });
        return (lenses ?? []).map((l) => ({ line: l.range.start.line, command: l.command?.command, args: l.command?.arguments }));
    }
}

export interface ClientDeps {
    output: LogOutputChannel;
    router: CommandRouter;
    progress: (client: LanguageClient) => ProgressNotifications;
    current: CurrentClient;
}

export function clientFactory(deps: ClientDeps): ClientFactory {
    return (options: ClientStartOptions): ClientHandle => {
        const { hooks } = options;
        const serverOptions: ServerOptions = {
            command: options.server.command,
            args: options.server.args,
            transport: TransportKind.stdio,
            options: { cwd: options.cwd, env: { ...process.env, PYTHONUNBUFFERED: '1' } },
        };
        const stderr = new OutputTail();
        const clientOptions: LanguageClientOptions = {
            documentSelector: LANGUAGE_IDS.map((language) => ({ scheme: 'file', language })),
            outputChannel: stderr.wrap(deps.output),
            traceOutputChannel: deps.output,
            revealOutputChannelOn: RevealOutputChannelOn.Never,
            // A failed initialize is reported once by ServerController, with the cause.
            initializationFailedHandler: () => false,
            initializationOptions: { settings: options.settings },
            errorHandler: {
                error: (_error, _message, count) => ({
                    action: (count ?? 0) <= MAX_CONNECTION_ERRORS ? ErrorAction.Continue : ErrorAction.Shutdown,
                    handled: false,
                }),
                closed: () =>
                    hooks.onClosed() === 'restart'
                        ? { action: CloseAction.Restart, handled: true }
                        : { action: CloseAction.DoNotRestart, handled: true },
            },
            middleware: {
                executeCommand: (command, args, next) =>
                    deps.router.execute(command, args.map(flattenArg), async (c, a) => next(c, a)),
                workspace: {
                    configuration: async (params, token, next) => {
                        const answers = params.items.map((item) => (item.section === SECTION ? hooks.serverSettings(item.scopeUri) : undefined));
                        if (answers.every((a) => a !== undefined)) return answers;
                        const result = await next(params, token);
                        if (!Array.isArray(result)) return result;
                        return result.map((value, i) => answers[i] ?? value);
                    },
                },
            },
        };
        const client = new AsmoptLanguageClient(CLIENT_ID, 'asmopt', serverOptions, clientOptions);
        client.registerFeature(
            new NotificationProgressFeature(client, deps.progress(client)),
        );
        client.onNotification(STATUS_NOTIFICATION, (params: StatusParams) => hooks.onStatus(params));
        client.onDidChangeState((e) => hooks.onRunning(e.newState === State.Running));
        deps.current.client = client;
        return {
            start: async () => {
                await client.start();
                // vscode-languageclient 9 resolves start() (with nothing) when the server
                // exits while it initializes: that is a failed start too.
                if (!client.isRunning()) throw new Error('the server exited while starting');
            },
            serverOutput: () => stderr.text(),
            stop: async () => {
                if (deps.current.client === client) deps.current.client = undefined;
                await client.dispose(STOP_TIMEOUT_MS);
            },
            sendSettings: (settings) => {
                if (client.isRunning()) {
                    void client.sendNotification(DidChangeConfigurationNotification.type, { settings: { [SECTION]: settings } });
                }
            },
        };
    };
}

/** The last few kilobytes the server wrote to stderr (the client appends stderr to its
 * output channel with `append`; its own log lines use `appendLine`). */
export class OutputTail {
    private tail = '';

    constructor(private readonly limit = 4096) {}

    record(data: string): void {
        this.tail = (this.tail + data).slice(-this.limit);
    }

    text(): string {
        return this.tail;
    }

    wrap(channel: LogOutputChannel): LogOutputChannel {
        return new Proxy(channel, {
            get: (target, prop, receiver) => {
                if (prop === 'append') {
                    return (value: string) => {
                        this.record(value);
                        target.append(value);
                    };
                }
                const value = Reflect.get(target, prop, receiver);
                return typeof value === 'function' ? value.bind(target) : value;
            },
        });
    }
}

export function cancelProgress(client: LanguageClient, token: string | number): void {
    void client.sendNotification(WorkDoneProgressCancelNotification.type, { token });
}
